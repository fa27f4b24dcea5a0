"""--atomic verification against a real HTTP server on loopback: health and Prometheus JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from components import spec as specs
from msops import verify
from tests import fakes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[tuple[str, fakes.ServiceState]]:
    state = fakes.ServiceState()
    with fakes.serve(state) as url:
        yield url, state


def plan(url: str | None, prometheus: str | None, replicas: int = 2) -> verify.Plan:
    return verify.Plan(
        services=(verify.ServiceTarget("web", url, "/healthz", replicas),),
        prometheus_url=prometheus,
        error_rate=0.05,
    )


def run(p: verify.Plan, timeout: float = 0.0) -> verify.Verdict:
    return verify.verify(p, timeout=timeout, interval=0.01)


def test_healthy_release_verifies_in_one_round(server: tuple[str, fakes.ServiceState]) -> None:
    url, _ = server
    verdict = run(plan(url, url))
    assert (verdict.ok, verdict.problems, verdict.rounds) == (True, [], 1)


def test_health_needs_twice_as_many_successes_as_replicas(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, state = server
    state.health_codes = [200] * 5 + [503]
    verdict = run(plan(url, None, replicas=3))
    assert not verdict.ok and "answered 503 after 5/6 healthy answers" in verdict.problems[0], (
        verdict.problems
    )


def test_failing_health_endpoint_fails_verification(server: tuple[str, fakes.ServiceState]) -> None:
    url, state = server
    state.health = 503
    verdict = run(plan(url, None))
    assert verdict.problems == [f"web: GET {url}/healthz answered 503 after 0/4 healthy answers"]


def test_release_that_recovers_within_the_deadline_verifies(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, state = server
    state.health_codes = [503]
    verdict = run(plan(url, url), timeout=10)
    assert (verdict.ok, verdict.rounds) == (True, 2), verdict.problems


def test_target_down_fails_verification(server: tuple[str, fakes.ServiceState]) -> None:
    url, state = server
    state.down = [{"job": "web", "instance": "dev-web-2:8080"}]
    verdict = run(plan(url, url))
    assert "web: Prometheus cannot scrape dev-web-2:8080 (up == 0)" in verdict.problems


def test_missing_replicas_fail_verification(server: tuple[str, fakes.ServiceState]) -> None:
    url, state = server
    state.up_count = 1
    verdict = run(plan(url, url))
    assert verdict.problems == ["web: Prometheus sees 1 of 2 replicas up"]


def test_unscraped_service_counts_as_zero_replicas_up(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, state = server
    state.up_count = None
    assert run(plan(url, url)).problems == ["web: Prometheus sees 0 of 2 replicas up"]


def test_error_rate_above_the_threshold_fails_verification(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, state = server
    state.requests, state.errors = 100, 20
    verdict = run(plan(url, url))
    assert verdict.problems == [
        "web: error rate 20.00% is above the 5.00% threshold over the last 1m (monitoring.alerts)"
    ]


def test_p99_latency_above_the_threshold_fails_verification(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, state = server
    state.requests = 100
    state.buckets = [("0.1", 50), ("1", 95), ("2.5", 100), ("+Inf", 100)]
    p = verify.Plan(
        services=(verify.ServiceTarget("web", url, "/healthz", 2),),
        prometheus_url=url,
        error_rate=0.05,
        p99_latency=0.5,
    )
    (problem,) = run(p).problems
    assert problem.startswith("web: p99 latency 2.200s is above the 0.5s threshold"), problem


def test_no_traffic_is_no_error_rate(server: tuple[str, fakes.ServiceState]) -> None:
    url, state = server
    state.requests = state.errors = 0
    assert run(plan(url, url)).ok


def test_error_rate_counts_users_requests_over_the_window(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, state = server
    p = verify.Plan(
        services=(verify.ServiceTarget("web", url, "/healthz", 2),),
        prometheus_url=url,
        error_rate=0.05,
        excluded_paths={"web": ("/healthz", "/metrics")},
    )
    run(p)
    counted = [q for q in state.queries if q.startswith("sum(increase(")]
    assert counted == [
        'sum(increase(http_requests_total{job="web",path!~"/healthz|/metrics"}[1m]))',
        'sum(increase(http_requests_total{job="web",code=~"5..",path!~"/healthz|/metrics"}[1m]))',
    ]


def test_prometheus_error_fails_verification(server: tuple[str, fakes.ServiceState]) -> None:
    url, state = server
    state.prometheus_status = 400
    verdict = run(plan(url, url))
    assert verdict.problems and "Prometheus rejected" in verdict.problems[0], verdict.problems


def test_refused_connection_fails_verification() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    verdict = run(plan(f"http://127.0.0.1:{port}", None))
    assert not verdict.ok and "failed after 0/4 healthy answers" in verdict.problems[0]


def test_internal_url_is_a_note_when_prometheus_covers_it(
    server: tuple[str, fakes.ServiceState],
) -> None:
    url, _ = server

    def fetch(target: str, timeout: float) -> tuple[int, bytes]:
        if "web-lb" in target:
            raise verify.Unreachable("web-lb does not resolve")
        return verify.http_fetch(target, timeout)

    verdict = verify.verify(plan("http://web-lb:8080", url), fetch=fetch, timeout=0)
    assert verdict.ok and verdict.notes == [
        "web: its URL http://web-lb:8080 is not reachable from this machine; Prometheus checked it"
    ]


def test_zero_replicas_have_nothing_to_check(server: tuple[str, fakes.ServiceState]) -> None:
    url, _ = server
    verdict = run(plan(url, None, replicas=0))
    assert verdict.ok and verdict.notes == ["web: runs 0 replicas, so it has nothing to check"]


def test_http_fetch_returns_error_statuses(server: tuple[str, fakes.ServiceState]) -> None:
    url, _ = server
    status, _ = verify.http_fetch(f"{url}/missing", 2.0)
    assert status == 404


def test_http_fetch_maps_name_errors_to_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(verify.Unreachable, match="web-lb does not resolve"):
        verify.http_fetch("http://web-lb:8080/healthz", 2.0)


def stack(**monitoring: Any) -> specs.StackConfig:
    return specs.load(
        {
            "services": {
                "web": {"image": "msops/demo:1.0.0", "replicas": 3, "health": {"path": "/livez"}}
            },
            "monitoring": {"scrapeInterval": "30s", "alerts": {"errorRate": 0.01}, **monitoring},
        }
    )


def test_plan_for_reads_urls_and_thresholds_from_outputs_and_config() -> None:
    outputs = {
        "services": {"web": {"url": "http://127.0.0.1:8000"}},
        "prometheusUrl": "http://p:9090",
    }
    assert verify.plan_for(outputs, stack()) == verify.Plan(
        services=(verify.ServiceTarget("web", "http://127.0.0.1:8000", "/livez", 3),),
        prometheus_url="http://p:9090",
        error_rate=0.01,
        rate_window="120s",
        p99_latency=0.5,
        excluded_paths={"web": ("/livez", "/readyz", "/metrics")},
    )


def test_plan_for_skips_prometheus_when_monitoring_is_off() -> None:
    outputs = {"services": {}, "prometheusUrl": "http://p:9090"}
    p = verify.plan_for(outputs, stack(enabled=False))
    assert p.prometheus_url is None and p.services[0].url is None
