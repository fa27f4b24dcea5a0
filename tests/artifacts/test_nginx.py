"""The rendered nginx.conf under the real nginx: it parses, needs no root, finds the replicas
through a real DNS server (dnsmasq) at run time, follows them as they come and go, retries."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from components.artifacts import render_nginx_conf
from components.artifacts.nginx import (
    DOCKER_DNS,
    LB_HEALTH_PATH,
    LB_STATUS_PATH,
    LB_UPSTREAM_HEALTH_PATH,
)
from tests.dns import Dnsmasq, Lb, Service, replica_of, start_nginx

pytestmark = pytest.mark.timeout(120)

NAME = "web"
# nginx keeps a resolved name for `valid` by its clock of whole seconds, so an answer can be
# used for up to valid + 1 s; the rest is slack for a loaded machine.
VALID_SECONDS = 2
WINDOW_SECONDS = VALID_SECONDS + 2.0


def write_conf(directory: Path, text: str) -> Path:
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


def nginx_t(nginx: Any, conf: Path, container: tuple[str, ...]) -> Any:
    """`nginx -t` on `conf`, run as the LB container runs nginx (see conftest.lb_container)."""
    # -e stderr: the compiled-in error log path is opened before the config is read.
    return nginx.run(
        "-t", "-p", "/tmp/", "-c", "/dev/stdin", "-e", "stderr", prefix=container, stdin=conf
    )


def directives(conf: str, name: str) -> list[str]:
    """The arguments of every `name ...;` directive in the config."""
    return re.findall(rf"^[ \t]*{re.escape(name)}[ \t]+([^;{{]*);", conf, flags=re.MULTILINE)


def conf_for(**kwargs: Any) -> str:
    return render_nginx_conf(**{"service": NAME, "port": 8080, **kwargs})


# --- nginx -t ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"service": "web", "port": 8080},
        {"service": "orders-api", "port": 1, "listen": "127.0.0.1:9000"},
        {"service": "api.internal.example", "port": 65535, "resolver": "127.0.0.1:5353"},
        {"service": "a", "port": 80, "listen": "[::1]:8080", "resolver": "[::1]:53"},
        {"service": "billing_v2", "port": 3000, "resolver_valid": "1m30s"},
        {"service": "web", "port": 8080, "connect_timeout": "250ms", "health_path": "/readyz"},
    ],
    ids=lambda arguments: "-".join(f"{k}={v}" for k, v in arguments.items()),
)
def test_config_passes_nginx_t(
    nginx: Any, tmp_path: Path, lb_container: tuple[str, ...], arguments: dict[str, Any]
) -> None:
    conf = write_conf(tmp_path, render_nginx_conf(**arguments))
    result = nginx_t(nginx, conf, lb_container)
    assert result.ok, result.report()


def test_config_for_a_name_that_resolves_nowhere_passes_nginx_t(
    nginx: Any, tmp_path: Path, lb_container: tuple[str, ...]
) -> None:
    # The old config named the replicas, and nginx refused it when one was gone
    # ("[emerg] host not found in upstream"). Now nothing is resolved before a request.
    conf = write_conf(tmp_path, conf_for(service="no-such-replica.invalid"))
    result = nginx_t(nginx, conf, lb_container)
    assert result.ok, result.report()


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("resolver_valid", "1s"),
        ("resolver_valid", "1d"),
        # `resolver valid=` takes whole seconds: nginx 1.22 refuses "valid=500ms".
        ("resolver_valid", "500ms"),
        ("listen", "0"),
        ("listen", "99999"),
        ("resolver", "127.0.0.1:0"),
        ("resolver", "127.0.0.1:99999"),
    ],
)
def test_what_the_renderer_accepts_nginx_accepts(
    nginx: Any, tmp_path: Path, lb_container: tuple[str, ...], argument: str, value: str
) -> None:
    try:
        text = conf_for(**{argument: value})
    except ValueError:
        return  # refused with a clear error before nginx ever sees it: fine
    result = nginx_t(nginx, write_conf(tmp_path, text), lb_container)
    assert result.ok, result.report()


# --- what the text says ------------------------------------------------------------------------


def test_pid_and_temp_paths_are_under_tmp() -> None:
    conf = conf_for()
    paths = directives(conf, "pid") + [
        arg for name in re.findall(r"(\w+_temp_path)", conf) for arg in directives(conf, name)
    ]
    assert len(paths) == 6, f"expected pid and 5 temp paths, found {paths}"
    outside = [p for p in paths if not p.startswith("/tmp/")]
    assert not outside, f"paths outside /tmp need a writable root filesystem: {outside}"


def test_error_log_goes_to_stderr() -> None:
    assert directives(conf_for(), "error_log") == ["stderr warn"]


def test_access_log_is_off() -> None:
    assert directives(conf_for(), "access_log") == ["off"]


@pytest.mark.parametrize("listen", ["8080", "9000", "127.0.0.1:9090", "[::1]:8080"])
def test_listen_argument_is_the_listen_directive(listen: str) -> None:
    assert directives(conf_for(listen=listen), "listen") == [listen]


def test_resolver_is_docker_dns_by_default() -> None:
    assert DOCKER_DNS == "127.0.0.11"
    assert directives(conf_for(), "resolver") == ["127.0.0.11 valid=2s ipv6=off"]


def test_resolver_and_its_validity_are_the_arguments() -> None:
    conf = conf_for(resolver="127.0.0.1:5353", resolver_valid="5s")
    assert directives(conf, "resolver") == ["127.0.0.1:5353 valid=5s ipv6=off"]


def test_upstream_is_a_variable_so_it_is_resolved_per_request() -> None:
    conf = conf_for(service="orders", port=9000, health_path="/readyz")
    passes = directives(conf, "proxy_pass")
    assert (directives(conf, "set"), passes) == (
        ["$app orders:9000"],
        ["http://$app/readyz", "http://$app"],
    )


def test_config_names_no_replica() -> None:
    # No upstream block or server list to go stale. The only addresses are the resolver's
    # and the loopback that may read /lb-status.
    conf = conf_for(resolver="10.9.8.7")
    addresses = set(re.findall(r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b", conf))
    assert re.findall(r"^\s*upstream\b", conf, re.MULTILINE) == [], conf
    assert directives(conf, "server") == [], "a server directive names a replica"
    assert addresses == {"10.9.8.7", "127.0.0.1"} and directives(conf, "allow") == ["127.0.0.1"]


def test_retries_cover_errors_timeouts_5xx_and_non_idempotent_requests() -> None:
    conf = conf_for()
    assert directives(conf, "proxy_next_upstream") == [
        "error timeout http_502 http_503 http_504 non_idempotent"
    ]
    assert directives(conf, "proxy_next_upstream_tries") == ["0"], "0: every address once"


def test_connect_timeout_is_the_argument() -> None:
    assert directives(conf_for(connect_timeout="300ms"), "proxy_connect_timeout") == ["300ms"]


# The demo app's default upstream timeout (app/demo/config.py): what web gives one call
# through api's LB, from connecting to the answer.
CALLER_TIMEOUT_SECONDS = 2.0


def _seconds(nginx_time: str) -> float:
    match = re.fullmatch(r"([0-9]+)(ms|s)", nginx_time)
    assert match, f"not an nginx time in ms or s: {nginx_time!r}"
    return int(match[1]) / (1000 if match[2] == "ms" else 1)


def test_a_caller_outlasts_the_connect_timeouts_of_a_rollouts_stale_addresses() -> None:
    # A rollout replaces every replica at once; for up to `resolver valid` after, a request
    # may be tried on each old address before a live one, each costing a connect timeout.
    # Four of them must take at most half of a caller's timeout, the rest being the answer's
    # (at 1s, two old api replicas took all of web's: the live tier's rollback of api lost
    # requests through web).
    (timeout,) = directives(conf_for(), "proxy_connect_timeout")
    assert 4 * _seconds(timeout) <= CALLER_TIMEOUT_SECONDS / 2, timeout


# --- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("service", ""),
        ("service", "web;"),
        ("service", "web app"),
        ("service", "-web"),
        ("service", "web-"),
        ("service", "we{b}"),
        ("service", "$web"),
        ("service", "web:8080"),
        ("service", 42),
        ("port", 0),
        ("port", 65536),
        ("port", -1),
        ("port", True),
        ("port", "8080"),
        ("port", 80.0),
        ("listen", ""),
        ("listen", "80; include /etc/passwd"),
        ("listen", "8080 default_server"),
        ("listen", "http://web:80"),
        ("health_path", ""),
        ("health_path", "healthz"),
        ("health_path", "/health z"),
        ("health_path", "/a;b"),
        ("health_path", "/$uri"),
        ("resolver", ""),
        ("resolver", "127.0.0.11; include /etc/passwd"),
        ("resolver", "127.0.0.11 valid=1s"),
        ("resolver_valid", ""),
        ("resolver_valid", "2"),
        ("resolver_valid", "ten"),
        ("resolver_valid", "2s;"),
        ("connect_timeout", "1 s"),
        ("connect_timeout", "-1s"),
    ],
)
def test_invalid_argument_raises_a_value_error_naming_it(argument: str, value: Any) -> None:
    with pytest.raises(ValueError) as raised:
        conf_for(**{argument: value})
    message = str(raised.value)
    assert argument in message and repr(value) in message, message


# --- the running load balancer -----------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """A replica that answers every request with what it received, as JSON."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length).decode(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Replica", "echo")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo(service: Service) -> str:
    """A live replica that echoes each request; yields its address."""
    return str(service.server(_Echo).server_address[0])


class Dying:
    """A replica killed mid-request: it reads each request, then resets the connection."""

    def __init__(self, listener: socket.socket) -> None:
        self.address = str(listener.getsockname()[0])
        self.requests = 0
        self._listener = listener
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        listener.settimeout(0.2)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    if connection.recv(65536):
                        self.requests += 1
                # Linger 0: close with a reset, as the kernel does for a killed process's socket.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def dying(service: Service) -> Iterator[Dying]:
    replica = Dying(service.listener())
    try:
        yield replica
    finally:
        replica.stop()


def request(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@pytest.fixture
def start_lb(
    nginx: Any,
    tmp_path: Path,
    lb_container: tuple[str, ...],
    dnsmasq: Dnsmasq,
    service: Service,
) -> Iterator[Callable[..., Lb]]:
    """Starts nginx in the foreground on the rendered config, as the LB container would,
    resolving NAME through the test's dnsmasq every VALID_SECONDS."""
    started: list[Lb] = []

    def start(**kwargs: Any) -> Lb:
        arguments = {
            "service": NAME,
            "port": service.port,
            "resolver": dnsmasq.resolver,
            "resolver_valid": f"{VALID_SECONDS}s",
            **kwargs,
        }
        lb = start_nginx(
            nginx.binary,
            lambda listen: render_nginx_conf(listen=listen, **arguments),
            tmp_path,
            prefix=lb_container,
        )
        started.append(lb)
        return lb

    try:
        yield start
    finally:
        for lb in started:
            lb.stop()


def replicas_answering(lb: Lb, count: int) -> Counter[str]:
    return Counter(replica_of(f"{lb.url}/") for _ in range(count))


def wait_for_replicas(lb: Lb, until: Callable[[Counter[str]], bool], what: str) -> float:
    """Seconds until a batch of 20 requests through the LB satisfies `until`."""
    started = time.monotonic()
    seen: Counter[str] = Counter()
    while time.monotonic() - started < 15:
        seen = replicas_answering(lb, 20)
        if until(seen):
            return time.monotonic() - started
    raise AssertionError(f"{what}: never happened in 15 s; last batch {dict(seen)}")


def test_requests_spread_over_every_replica(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    replicas = service.apps(*({"REPLICA_ID": f"r{i}"} for i in range(3)))
    dnsmasq.set(NAME, [r.host for r in replicas])
    lb = start_lb()
    answered = replicas_answering(lb, 90)
    # nginx starts each request at a random address of the answer: about 30 each.
    assert set(answered) == {"r0", "r1", "r2"} and min(answered.values()) >= 10, dict(answered)


def test_lb_starts_and_serves_its_health_when_the_name_resolves_to_nothing(
    start_lb: Callable[..., Lb], dnsmasq: Dnsmasq
) -> None:
    assert dnsmasq.lookup(NAME) == (3, []), "the name should be NXDOMAIN"
    lb = start_lb()
    health = request(f"{lb.url}{LB_HEALTH_PATH}")
    status, _ = request(f"{lb.url}/")
    assert (health, status, lb.daemon.proc.poll()) == ((200, b"ok\n"), 502, None), lb.output()
    assert "[emerg]" not in lb.output(), lb.output()


def test_first_replica_gets_traffic_without_a_reload(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    lb = start_lb()
    assert request(f"{lb.url}/")[0] == 502, "no replica yet"
    replica = service.app(REPLICA_ID="first")
    dnsmasq.set(NAME, [replica.host])
    # nginx caches no negative answer: the next request asks the DNS again.
    waited = wait_for_replicas(lb, lambda seen: seen == {"first": 20}, "first replica served")
    assert waited < WINDOW_SECONDS and lb.daemon.proc.poll() is None, lb.output()


def test_lb_starts_and_serves_with_some_replicas_down(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    live = service.app(REPLICA_ID="live")
    dnsmasq.set(NAME, [service.dead(), live.host, service.dead()])
    lb = start_lb()
    assert replicas_answering(lb, 30) == {"live": 30}, lb.output()


def test_requests_to_a_killed_replica_still_in_dns_go_to_the_others(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    replicas = service.apps(*({"REPLICA_ID": f"r{i}"} for i in range(3)))
    dnsmasq.set(NAME, [r.host for r in replicas])
    lb = start_lb()
    replicas_answering(lb, 10)  # the answer is in nginx's cache now
    replicas[1].kill()
    assert replicas_answering(lb, 60).keys() == {"r0", "r2"}, lb.output()


def test_replica_added_to_dns_gets_traffic_within_resolver_valid(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    first = service.app(REPLICA_ID="first")
    dnsmasq.set(NAME, [first.host])
    lb = start_lb()
    assert replicas_answering(lb, 10) == {"first": 10}
    added = service.app(REPLICA_ID="added")
    dnsmasq.add(NAME, added.host)
    waited = wait_for_replicas(lb, lambda seen: "added" in seen, "added replica served")
    # Same master, never signalled: nginx followed the DNS, no reload.
    assert waited < WINDOW_SECONDS and lb.daemon.proc.poll() is None, f"{waited:.2f} s"


def test_replica_removed_from_dns_stops_getting_traffic(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    kept, removed = service.app(REPLICA_ID="kept"), service.app(REPLICA_ID="removed")
    dnsmasq.set(NAME, [kept.host, removed.host])
    lb = start_lb()
    wait_for_replicas(lb, lambda seen: len(seen) == 2, "both replicas served")
    dnsmasq.remove(NAME, removed.host)
    waited = wait_for_replicas(lb, lambda seen: seen == {"kept": 20}, "removed replica left")
    # Still up and healthy: only the DNS took it out of rotation.
    assert waited < WINDOW_SECONDS and removed.get("/healthz").status == 200, f"{waited:.2f} s"
    assert replicas_answering(lb, 40) == {"kept": 40}


def test_get_requests_survive_a_replica_dying_mid_request(
    start_lb: Callable[..., Lb], echo: str, dying: Dying, dnsmasq: Dnsmasq
) -> None:
    dnsmasq.set(NAME, [dying.address, echo])
    lb = start_lb()
    answers = [request(f"{lb.url}/orders/{i}") for i in range(20)]
    paths = [(s, json.loads(b)["path"] if s == 200 else b) for s, b in answers]
    assert paths == [(200, f"/orders/{i}") for i in range(20)], lb.output()
    # Each request starts at either address; 20 in a row all missing the dying one: 1e-6.
    assert dying.requests > 0, "no request met the dying replica, so no retry was proven"


def test_post_requests_survive_a_replica_dying_mid_request(
    start_lb: Callable[..., Lb], echo: str, dying: Dying, dnsmasq: Dnsmasq
) -> None:
    # The request reached the dying replica, so only `non_idempotent` lets nginx resend a POST.
    dnsmasq.set(NAME, [dying.address, echo])
    lb = start_lb()
    answers = [request(f"{lb.url}/orders", data=f"order {i}".encode()) for i in range(20)]
    bodies = [(s, json.loads(b)["body"] if s == 200 else b) for s, b in answers]
    assert bodies == [(200, f"order {i}") for i in range(20)], lb.output()
    assert dying.requests > 0, "no request met the dying replica, so no retry was proven"


def test_lb_healthz_answers_with_no_replica_up(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    dnsmasq.set(NAME, [service.dead(), service.dead()])
    lb = start_lb()
    own = request(f"{lb.url}{LB_HEALTH_PATH}")
    end_to_end, _ = request(f"{lb.url}{LB_UPSTREAM_HEALTH_PATH}")
    assert (own, end_to_end) == ((200, b"ok\n"), 502)


def test_lb_upstream_healthz_proxies_the_replicas_health_path(
    start_lb: Callable[..., Lb], echo: str, dnsmasq: Dnsmasq
) -> None:
    dnsmasq.set(NAME, [echo])
    lb = start_lb(health_path="/readyz")
    status, body = request(f"{lb.url}{LB_UPSTREAM_HEALTH_PATH}")
    assert (status, json.loads(body)["path"]) == (200, "/readyz")


def test_lb_upstream_healthz_reaches_a_demo_replicas_liveness(
    start_lb: Callable[..., Lb], service: Service, dnsmasq: Dnsmasq
) -> None:
    replica = service.app(REPLICA_ID="r0")
    dnsmasq.set(NAME, [service.dead(), replica.host])
    lb = start_lb(health_path="/healthz")
    answers = {request(f"{lb.url}{LB_UPSTREAM_HEALTH_PATH}") for _ in range(10)}
    assert answers == {(200, b"ok\n")}, lb.output()


def test_replica_sees_forwarded_headers(
    start_lb: Callable[..., Lb], echo: str, dnsmasq: Dnsmasq
) -> None:
    dnsmasq.set(NAME, [echo])
    lb = start_lb()
    status, body = request(f"{lb.url}/whoami")
    headers = json.loads(body)["headers"]
    seen = {k: headers.get(k) for k in ("x-forwarded-for", "x-forwarded-proto", "host")}
    expected = {"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http", "host": "127.0.0.1"}
    assert (status, seen) == (200, expected)


def test_lb_status_serves_stub_status_to_loopback(start_lb: Callable[..., Lb]) -> None:
    lb = start_lb()
    status, body = request(f"{lb.url}{LB_STATUS_PATH}")
    assert status == 200 and body.startswith(b"Active connections:"), body


def test_lb_serves_without_root(start_lb: Callable[..., Lb], echo: str, dnsmasq: Dnsmasq) -> None:
    dnsmasq.set(NAME, [echo])
    lb = start_lb()
    status, _ = request(f"{lb.url}/")
    # The Popen pid is nginx's master: unshare, sh and setpriv each exec the next program.
    status_lines = Path(f"/proc/{lb.pid}/status").read_text().splitlines()
    uids = {
        int(uid) for line in status_lines if line.startswith("Uid:") for uid in line.split()[1:]
    }
    assert status == 200 and 0 not in uids, f"status {status}, nginx master uids {uids}"
