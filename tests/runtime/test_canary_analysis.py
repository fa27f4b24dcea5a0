"""Canary analysis against a real Prometheus scraping real demo replicas of two versions.

Traffic goes through the real nginx with the LB config msops renders, which finds the
replicas of both versions through a real DNS server (dnsmasq), as the docker LB finds them
through Docker's. Prometheus scrapes every replica; the analysis tells the versions apart by
the app's own `app_info{version}`, as it does on docker and swarm.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from msops import analysis
from tests.dns import Dnsmasq, Service
from tests.runtime.canary import PROBES, Release, ToolMissing, Traffic, running_release

pytestmark = pytest.mark.timeout(120)

SCRAPE_SECONDS = 1
THRESHOLDS = analysis.Thresholds(error_rate=0.05, p99_latency=0.5, min_requests=20)
# A look every 2s, aborted after two bad looks in a row.
STEP = analysis.Step(pause=4.0, interval=2.0, failure_limit=2, deadline=15.0)


def series(version: str) -> analysis.Series:
    return analysis.Series(job="web", version=version, excluded_paths=PROBES)


def _release(service: Service, dnsmasq: Dnsmasq, tmp_path: Path, **env: str) -> Iterator[Release]:
    try:
        with running_release(
            service, dnsmasq, tmp_path, scrape_seconds=SCRAPE_SECONDS, **env
        ) as release:
            yield release
    except ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def bad_canary(service: Service, dnsmasq: Dnsmasq, tmp_path: Path) -> Iterator[Release]:
    yield from _release(service, dnsmasq, tmp_path, DEMO_FAIL_RATE="0.2")


@pytest.fixture
def good_canary(service: Service, dnsmasq: Dnsmasq, tmp_path: Path) -> Iterator[Release]:
    yield from _release(service, dnsmasq, tmp_path)


def _analyze(release: Release) -> analysis.StepOutcome:
    return analysis.analyze_step(
        release.prometheus_url,
        canary=series("1.1.0"),
        stable=series("1.0.0"),
        thresholds=THRESHOLDS,
        step=STEP,
    )


def test_a_bad_canary_is_aborted_within_interval_times_failure_limit_and_a_scrape(
    bad_canary: Release,
) -> None:
    with Traffic(bad_canary.lb, [*bad_canary.stable, bad_canary.canary]):
        outcome = _analyze(bad_canary)
    bound = STEP.interval * STEP.failure_limit + SCRAPE_SECONDS
    print(f"\nbad canary aborted after {outcome.elapsed:.2f}s (bound {bound:g}s)")
    assert outcome.status == "failed", outcome.report()
    assert outcome.elapsed <= bound + 0.5, outcome.report()


def test_an_aborted_canary_reports_the_failing_query_and_its_values(bad_canary: Release) -> None:
    with Traffic(bad_canary.lb, [*bad_canary.stable, bad_canary.canary]):
        report = _analyze(bad_canary).report()
    assert "error rate" in report and 'version="1.1.0"' in report, report


def test_a_good_canary_passes_every_step(good_canary: Release) -> None:
    with Traffic(good_canary.lb, [*good_canary.stable, good_canary.canary]):
        outcomes = [_analyze(good_canary) for _ in range(2)]
    assert [o.status for o in outcomes] == ["passed", "passed"], [o.report() for o in outcomes]


def test_an_idle_canary_waits_instead_of_passing(good_canary: Release) -> None:
    # Only probes and scrapes reach it: nothing a user sent.
    with Traffic(good_canary.lb, [*good_canary.stable, good_canary.canary], users=False):
        outcome = _analyze(good_canary)
    assert outcome.status == "no-traffic", outcome.report()
    assert {j.status for j in outcome.judgements} == {"wait"}, outcome.report()
