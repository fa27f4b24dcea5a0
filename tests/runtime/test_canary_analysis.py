"""Canary analysis against a real Prometheus scraping real demo replicas of two versions.

Traffic goes through the real nginx with the LB config msops renders, which finds the
replicas of both versions through a real DNS server (dnsmasq), as the docker LB finds them
through Docker's. Prometheus scrapes every replica; the analysis tells the versions apart by
the app's own `app_info{version}`, as it does on docker and swarm.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.artifacts import nginx, prometheus
from msops import analysis
from tests.dns import Daemon, Dnsmasq, HostedApp, Lb, Service, start_nginx, start_server
from tests.runtime.conftest import require_tool
from tests.runtime.processes import http_get

pytestmark = pytest.mark.timeout(120)

SCRAPE_SECONDS = 1
PROBES = ("/healthz", "/readyz", "/metrics")
THRESHOLDS = analysis.Thresholds(error_rate=0.05, p99_latency=0.5, min_requests=20)
# A look every 2s, aborted after two bad looks in a row.
STEP = analysis.Step(pause=4.0, interval=2.0, failure_limit=2, deadline=15.0)


def series(version: str) -> analysis.Series:
    return analysis.Series(job="web", version=version, excluded_paths=PROBES)


@dataclass
class Release:
    """Stable 1.0.0 on two replicas and a 1.1.0 canary on one, behind the LB, scraped."""

    stable: list[HostedApp]
    canary: HostedApp
    lb: Lb
    prometheus_url: str


def _prometheus(apps: list[HostedApp], tmp_path: Path) -> tuple[Daemon, str]:
    binary = require_tool("prometheus", "prometheus")
    job = prometheus.ScrapeJob(name="web", targets=tuple(f"{a.host}:{a.port}" for a in apps))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        prometheus.render_prometheus_config(jobs=[job], scrape_interval=f"{SCRAPE_SECONDS}s")
    )
    daemon, port = start_server(
        "prometheus",
        lambda port: [
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        lambda port: f"http://127.0.0.1:{port}/-/ready",
    )
    return daemon, f"http://127.0.0.1:{port}"


def _release(
    service: Service, dnsmasq: Dnsmasq, tmp_path: Path, **canary_env: str
) -> Iterator[Release]:
    stable = service.apps(*({"REPLICA_ID": f"stable-{i}", "APP_VERSION": "1.0.0"} for i in (1, 2)))
    canary = service.app(REPLICA_ID="canary-1", APP_VERSION="1.1.0", DEMO_SEED="7", **canary_env)
    apps = [*stable, canary]
    dnsmasq.set("web", [a.host for a in apps])
    lb = start_nginx(
        require_tool("nginx", "nginx-light"),
        lambda listen: nginx.render_nginx_conf(
            service="web",
            port=service.port,
            listen=listen,
            resolver=dnsmasq.resolver,
            resolver_valid="1s",
        ),
        tmp_path,
    )
    daemon, url = _prometheus(apps, tmp_path)
    try:
        _wait_scraped(url, len(apps))
        yield Release(stable, canary, lb, url)
    finally:
        daemon.stop()
        lb.stop()


def _wait_scraped(url: str, targets: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        up = analysis.query(url, 'sum(up{job="web"})', analysis.http_fetch)
        if up and analysis.value_of(up[0]) == targets:
            return
        time.sleep(0.2)
    pytest.fail(f"Prometheus at {url} did not scrape {targets} targets in 30s")


@pytest.fixture
def bad_canary(service: Service, dnsmasq: Dnsmasq, tmp_path: Path) -> Iterator[Release]:
    yield from _release(service, dnsmasq, tmp_path, DEMO_FAIL_RATE="0.2")


@pytest.fixture
def good_canary(service: Service, dnsmasq: Dnsmasq, tmp_path: Path) -> Iterator[Release]:
    yield from _release(service, dnsmasq, tmp_path)


class Traffic:
    """Users' requests through the LB, and probes straight to every replica, until stopped."""

    def __init__(self, lb: Lb, apps: list[HostedApp], *, users: bool = True) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe, args=(apps,), daemon=True)]
        if users:
            self._threads += [
                threading.Thread(target=self._use, args=(lb,), daemon=True) for _ in range(2)
            ]

    def _use(self, lb: Lb) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                http_get(f"{lb.url}/", timeout=5)

    def _probe(self, apps: list[HostedApp]) -> None:
        while not self._stop.wait(0.05):
            for app in apps:
                for path in PROBES:
                    http_get(f"{app.url}{path}", timeout=5)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


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
