"""Runtime tests of the demo app: a real process answering HTTP on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.processes import wait_for

if TYPE_CHECKING:
    from tests.runtime.processes import AppHandle, Response, StartApp

pytestmark = pytest.mark.timeout(60)

EXPECTED_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(handle: AppHandle) -> dict[str, tuple[str, list]]:
    """/metrics as {family name: (type, samples)}."""
    resp = handle.get("/metrics")
    assert resp.status == 200, f"/metrics answered {resp.status}: {resp.text}"
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(resp.text)}


def in_flight(handle: AppHandle, path: str) -> float:
    return handle.sample("http_requests_in_flight", path=path)


def request_count(handle: AppHandle, path: str, code: str, method: str = "GET") -> float:
    _, samples = scrape(handle).get("http_requests", ("counter", []))
    wanted = {"method": method, "path": path, "code": code}
    return sum(s.value for s in samples if s.name == "http_requests_total" and s.labels == wanted)


def test_healthz_answers_ok(demo_app: AppHandle) -> None:
    resp = demo_app.get("/healthz")

    assert (resp.status, resp.text.strip()) == (200, "ok")


def test_version_reports_app_version(demo_app: AppHandle) -> None:
    resp = demo_app.get("/version")

    assert resp.status == 200
    assert json.loads(resp.body) == {"version": "9.8.7-test"}


def test_root_reports_replica_in_body_and_header(start_app: StartApp) -> None:
    handle = start_app(REPLICA_ID="replica-b", SERVICE_NAME="orders", APP_VERSION="2.0.0")

    resp = handle.get("/")

    assert resp.status == 200
    assert json.loads(resp.body) == {
        "service": "orders",
        "version": "2.0.0",
        "replica": "replica-b",
    }
    assert resp.headers["X-Replica"] == "replica-b"


def test_replica_header_is_on_error_responses_too(demo_app: AppHandle) -> None:
    resp = demo_app.get("/fail")

    assert resp.headers["X-Replica"] == "replica-under-test"


def test_metrics_exposes_the_three_families(demo_app: AppHandle) -> None:
    # A labelled family shows no samples until its first request.
    demo_app.get("/")

    families = scrape(demo_app)

    types = {name: kind for name, (kind, _) in families.items()}
    assert types.get("http_requests") == "counter", f"families: {types}"
    assert types.get("http_request_duration_seconds") == "histogram", f"families: {types}"
    assert types.get("app_info") == "gauge", f"families: {types}"
    _, info = families["app_info"]
    assert [(s.labels, s.value) for s in info] == [
        ({"version": "9.8.7-test", "service": "demo"}, 1.0)
    ]


def test_only_app_info_carries_the_version(start_app: StartApp) -> None:
    # The version joins onto other series through app_info (or a scrape-target label):
    # on every series it would multiply their number at each release.
    handle = start_app(APP_VERSION="1.2.3", DEMO_FAIL_RATE="0.5", DEMO_SEED="1")
    for path in ("/", "/version", "/fail", "/nope"):
        handle.get(path)

    labelled = {
        s.name for _, samples in scrape(handle).values() for s in samples if "version" in s.labels
    }

    assert labelled == {"app_info"}


def test_latency_histogram_uses_the_agreed_buckets(demo_app: AppHandle) -> None:
    demo_app.get("/version")

    _, samples = scrape(demo_app)["http_request_duration_seconds"]

    buckets = [
        float(s.labels["le"])
        for s in samples
        if s.name == "http_request_duration_seconds_bucket"
        and s.labels["path"] == "/version"
        and s.labels["method"] == "GET"
    ]
    assert buckets == EXPECTED_BUCKETS


def test_request_counter_increments_by_status_code(demo_app: AppHandle) -> None:
    before_ok = request_count(demo_app, "/version", "200")

    for _ in range(3):
        assert demo_app.get("/version").status == 200

    assert request_count(demo_app, "/version", "200") == before_ok + 3
    assert request_count(demo_app, "/version", "500") == 0


def test_fail_is_counted_with_code_500(demo_app: AppHandle) -> None:
    resp = demo_app.get("/fail")

    assert resp.status == 500
    assert request_count(demo_app, "/fail", "500") == 1


def test_unknown_path_is_404_and_counted_as_other(demo_app: AppHandle) -> None:
    resp = demo_app.get("/wp-admin/../secret?x=1")

    assert resp.status == 404
    assert request_count(demo_app, "other", "404") == 1
    assert not any(
        "wp-admin" in str(s.labels) for _, samples in scrape(demo_app).values() for s in samples
    ), "the raw path leaked into a label"


def test_slow_sleeps_and_is_observed_in_the_histogram(demo_app: AppHandle) -> None:
    started = time.monotonic()
    resp = demo_app.get("/slow?seconds=0.3")
    elapsed = time.monotonic() - started

    assert resp.status == 200
    assert elapsed >= 0.3
    _, samples = scrape(demo_app)["http_request_duration_seconds"]
    fast = [
        s.value
        for s in samples
        if s.name == "http_request_duration_seconds_bucket"
        and s.labels == {"method": "GET", "path": "/slow", "le": "0.25"}
    ]
    assert fast == [0.0], "a 0.3 s request landed in the 0.25 s bucket"


def test_readyz_is_200_without_database(demo_app: AppHandle) -> None:
    resp = demo_app.get("/readyz")

    assert resp.status == 200, resp.text


def test_readyz_is_503_when_database_unreachable_and_hides_password(
    start_app: StartApp,
) -> None:
    password = "pw-must-not-leak-7d1f"
    # Nothing listens on a freshly freed loopback port, so the connect is refused.
    url = f"postgresql://app:{password}@127.0.0.1:{closed_port()}/app"
    handle = start_app(DATABASE_URL=url)

    resp: Response = handle.get("/readyz")

    assert resp.status == 503, resp.text
    assert password not in resp.text
    assert "127.0.0.1" not in resp.text, "the database address leaked into /readyz"


def test_users_requests_are_refused_while_the_database_is_unreachable(
    start_app: StartApp,
) -> None:
    handle = start_app(DATABASE_URL=f"postgresql://app:pw@127.0.0.1:{closed_port()}/app")

    resp = handle.get("/")

    assert (resp.status, resp.headers.get("Retry-After")) == (503, "1"), resp.text


def test_in_flight_gauge_counts_a_request_being_handled(demo_app: AppHandle) -> None:
    client = threading.Thread(target=lambda: demo_app.get("/slow?seconds=1"))
    client.start()

    seen = wait_for(lambda: in_flight(demo_app, "/slow") or None, "/slow to be in flight")
    client.join(timeout=10)

    assert seen == 1
    assert in_flight(demo_app, "/slow") == 0


def test_sigterm_exits_zero(demo_app: AppHandle) -> None:
    demo_app.terminate()

    assert demo_app.proc.wait(timeout=5) == 0, demo_app.logs()


def test_sigterm_lets_in_flight_request_finish(demo_app: AppHandle) -> None:
    results: list[Response] = []
    client = threading.Thread(target=lambda: results.append(demo_app.get("/slow?seconds=1.5")))
    client.start()
    # The signal must land while the request is being handled, not before it arrives.
    wait_for(lambda: in_flight(demo_app, "/slow") or None, "/slow to be in flight")

    demo_app.terminate()
    client.join(timeout=10)

    assert [r.status for r in results] == [200], demo_app.logs()
    assert demo_app.proc.wait(timeout=5) == 0, demo_app.logs()
