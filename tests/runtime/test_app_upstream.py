"""Service to service: `web` calling `api` over UPSTREAM_URL, both real app processes."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.runtime.processes import AppHandle, StartApp, free_port

pytestmark = pytest.mark.timeout(60)

SECRET = "upstream-pw-must-not-leak-0e4a"


def refused_url() -> str:
    """An http URL with credentials whose port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://svc:{SECRET}@127.0.0.1:{port}"


@pytest.fixture
def api(start_app: StartApp) -> AppHandle:
    return start_app(SERVICE_NAME="api", APP_VERSION="2.0.0", REPLICA_ID="api-1")


def test_upstream_answers_with_the_upstreams_identity(start_app: StartApp, api: AppHandle) -> None:
    web = start_app(
        SERVICE_NAME="web", APP_VERSION="1.0.0", REPLICA_ID="web-1", UPSTREAM_URL=api.url
    )

    resp = web.get("/upstream")

    assert resp.status == 200, resp.text
    assert json.loads(resp.body) == {
        "service": "web",
        "version": "1.0.0",
        "replica": "web-1",
        "upstream": {"service": "api", "version": "2.0.0", "replica": "api-1"},
    }


def test_root_includes_what_the_upstream_answered(start_app: StartApp, api: AppHandle) -> None:
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=api.url)

    body = json.loads(web.get("/").body)

    assert body["upstream"] == {"service": "api", "version": "2.0.0", "replica": "api-1"}


def test_upstream_down_is_502_with_a_reason_and_no_secret(start_app: StartApp) -> None:
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=refused_url())

    resp = web.get("/upstream")

    assert resp.status == 502, resp.text
    assert json.loads(resp.body) == {"error": "upstream unreachable (ConnectionRefusedError)"}
    assert SECRET not in resp.text + web.logs()
    assert "127.0.0.1" not in resp.text, "the upstream's address leaked into the answer"


def test_upstream_down_leaves_readyz_200(start_app: StartApp) -> None:
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=refused_url())

    assert web.get("/upstream").status == 502
    assert web.get("/readyz").status == 200


def test_upstream_down_leaves_root_200_with_the_reason(start_app: StartApp) -> None:
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=refused_url())

    resp = web.get("/")

    assert resp.status == 200, resp.text
    assert json.loads(resp.body)["upstream"] == {
        "error": "upstream unreachable (ConnectionRefusedError)"
    }


def test_an_upstream_error_status_is_502(start_app: StartApp) -> None:
    api = start_app(SERVICE_NAME="api", DEMO_FAIL_RATE="1")
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=api.url)

    resp = web.get("/upstream")

    assert resp.status == 502, resp.text
    assert json.loads(resp.body) == {"error": "upstream answered 500"}


def test_a_slow_upstream_times_out_quickly(start_app: StartApp) -> None:
    api = start_app(SERVICE_NAME="api", DEMO_DELAY_SECONDS="5")
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=api.url, UPSTREAM_TIMEOUT_SECONDS="0.3")

    started = time.monotonic()
    resp = web.get("/upstream")
    elapsed = time.monotonic() - started

    assert resp.status == 502, resp.text
    assert json.loads(resp.body) == {"error": "upstream timed out after 0.3 s"}
    assert elapsed < 3, f"the call took {elapsed:.1f} s"


def test_upstream_calls_are_counted_by_code(start_app: StartApp, api: AppHandle) -> None:
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=api.url)
    for _ in range(3):
        web.get("/upstream")
    api.stop()

    web.get("/upstream")

    assert web.sample("upstream_requests_total", code="200") == 3
    assert web.sample("upstream_requests_total", code="error") == 1


def test_credentials_in_the_url_are_sent_as_basic_auth_not_in_the_path(
    start_app: StartApp, api: AppHandle
) -> None:
    url = api.url.replace("http://", f"http://svc:{SECRET}@")
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL=url)

    resp = web.get("/upstream")

    assert resp.status == 200, resp.text
    assert api.sample("http_requests_total", method="GET", path="/", code="200") == 1


def test_a_loop_stops_after_one_hop(start_app: StartApp) -> None:
    # A service that names itself as its upstream: the call it makes carries the via
    # header, and the answer to that call is made without calling again.
    port = free_port()
    web = start_app(port, SERVICE_NAME="web", UPSTREAM_URL=f"http://127.0.0.1:{port}")

    resp = web.get("/")

    assert resp.status == 200, resp.text
    assert json.loads(resp.body)["upstream"]["service"] == "web"
    assert web.sample("upstream_requests_total", code="200") == 1
