"""The fault switches that show a bad release for real: failures, delays, a failing /healthz."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.runtime.processes import StartApp

pytestmark = pytest.mark.timeout(90)

BUSINESS = ("/", "/slow?seconds=0")
OPERATIONAL = ("/healthz", "/readyz", "/metrics", "/version")


def test_fail_rate_1_fails_every_business_request(start_app: StartApp) -> None:
    app = start_app(DEMO_FAIL_RATE="1")

    statuses = {path: app.get(path).status for path in BUSINESS}

    assert statuses == dict.fromkeys(BUSINESS, 500)


def test_fail_rate_1_leaves_probes_metrics_and_version_alone(start_app: StartApp) -> None:
    app = start_app(DEMO_FAIL_RATE="1")

    statuses = {path: app.get(path).status for path in OPERATIONAL}

    assert statuses == dict.fromkeys(OPERATIONAL, 200)


def test_injected_failures_are_counted_as_500(start_app: StartApp) -> None:
    app = start_app(DEMO_FAIL_RATE="1")

    for _ in range(4):
        app.get("/")

    assert app.sample("http_requests_total", method="GET", path="/", code="500") == 4
    assert app.sample("http_requests_total", method="GET", path="/", code="200") == 0


def test_fail_rate_0_2_fails_about_a_fifth(start_app: StartApp) -> None:
    app = start_app(DEMO_FAIL_RATE="0.2", DEMO_SEED="1234")

    statuses = Counter(app.get("/").status for _ in range(500))

    # Binomial(500, 0.2): mean 100, sd 9; 50..150 is more than 5 sd either way.
    assert set(statuses) == {200, 500}, statuses
    assert 50 <= statuses[500] <= 150, statuses


def test_the_same_seed_fails_the_same_requests(start_app: StartApp) -> None:
    runs = []
    for _ in range(2):
        app = start_app(DEMO_FAIL_RATE="0.3", DEMO_SEED="7")
        runs.append([app.get("/").status for _ in range(60)])
        app.stop()

    assert runs[0] == runs[1]
    assert 500 in runs[0], "a 0.3 fail rate failed none of 60 requests"


def test_delay_slows_business_requests(start_app: StartApp) -> None:
    app = start_app(DEMO_DELAY_SECONDS="0.3")

    started = time.monotonic()
    resp = app.get("/")
    elapsed = time.monotonic() - started

    assert resp.status == 200
    assert elapsed >= 0.3, f"/ took {elapsed:.3f} s"


def test_delay_leaves_probes_fast(start_app: StartApp) -> None:
    app = start_app(DEMO_DELAY_SECONDS="5")

    elapsed = {}
    for path in OPERATIONAL:
        started = time.monotonic()
        assert app.get(path).status == 200, path
        elapsed[path] = time.monotonic() - started

    assert max(elapsed.values()) < 2.5, f"seconds per probe: {elapsed}"


def test_delay_rate_0_delays_nothing(start_app: StartApp) -> None:
    app = start_app(DEMO_DELAY_SECONDS="5", DEMO_DELAY_RATE="0")

    started = time.monotonic()
    app.get("/")

    assert time.monotonic() - started < 2.5


def test_delayed_requests_land_in_the_slow_buckets(start_app: StartApp) -> None:
    app = start_app(DEMO_DELAY_SECONDS="0.3")
    app.get("/")

    fast = app.sample("http_request_duration_seconds_bucket", method="GET", path="/", le="0.25")
    slow = app.sample("http_request_duration_seconds_bucket", method="GET", path="/", le="0.5")

    assert (fast, slow) == (0, 1)


def test_healthy_0_fails_healthz(start_app: StartApp) -> None:
    app = start_app(DEMO_HEALTHY="0", wait_healthy=False)

    resp = app.get("/healthz")

    assert resp.status == 503, resp.text
    assert "DEMO_HEALTHY=0" in resp.text


def test_healthy_0_refuses_users_requests_so_the_lb_retries_them(start_app: StartApp) -> None:
    app = start_app(DEMO_HEALTHY="0", wait_healthy=False)

    resp = app.get("/")

    assert (resp.status, resp.headers.get("Retry-After")) == (503, "1"), resp.text


def test_healthy_0_is_not_ready(start_app: StartApp) -> None:
    app = start_app(DEMO_HEALTHY="0", wait_healthy=False)

    assert app.get("/readyz").status == 503
