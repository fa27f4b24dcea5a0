"""The rendered nginx.conf, checked by the real nginx: it parses, needs no root, and retries."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.artifacts import render_nginx_conf

STARTUP_TIMEOUT = 10.0


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


def ports(free_port: Callable[[], int], count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def directives(conf: str, name: str) -> list[str]:
    """The arguments of every `name ...;` directive in the config."""
    return re.findall(rf"^[ \t]*{re.escape(name)}[ \t]+([^;{{]*);", conf, flags=re.MULTILINE)


# --- nginx -t ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 10])
def test_config_with_n_upstreams_passes_nginx_t(
    nginx: Any,
    tmp_path: Path,
    free_port: Callable[[], int],
    lb_container: tuple[str, ...],
    count: int,
) -> None:
    upstreams = [f"127.0.0.1:{p}" for p in ports(free_port, count)]
    conf = write_conf(tmp_path, render_nginx_conf(upstreams=upstreams))
    result = nginx_t(nginx, conf, lb_container)
    assert result.ok, result.report()


@pytest.mark.parametrize("algorithm", ["least_conn", "round_robin"])
def test_config_with_each_algorithm_passes_nginx_t(
    nginx: Any,
    tmp_path: Path,
    free_port: Callable[[], int],
    lb_container: tuple[str, ...],
    algorithm: str,
) -> None:
    upstreams = [f"127.0.0.1:{p}" for p in ports(free_port, 3)]
    conf = write_conf(tmp_path, render_nginx_conf(upstreams=upstreams, algorithm=algorithm))
    result = nginx_t(nginx, conf, lb_container)
    assert result.ok, result.report()


def test_config_with_resolver_passes_nginx_t(
    nginx: Any, tmp_path: Path, free_port: Callable[[], int], lb_container: tuple[str, ...]
) -> None:
    upstreams = [f"127.0.0.1:{p}" for p in ports(free_port, 2)]
    conf = write_conf(tmp_path, render_nginx_conf(upstreams=upstreams, resolver="127.0.0.11"))
    result = nginx_t(nginx, conf, lb_container)
    assert result.ok, result.report()


def test_config_with_host_name_upstreams_passes_nginx_t(
    nginx: Any, tmp_path: Path, free_port: Callable[[], int], lb_container: tuple[str, ...]
) -> None:
    # A name, as the docker backend passes container names; nginx resolves it while parsing.
    upstreams = [f"localhost:{p}" for p in ports(free_port, 2)]
    conf = write_conf(tmp_path, render_nginx_conf(upstreams=upstreams))
    result = nginx_t(nginx, conf, lb_container)
    assert result.ok, result.report()


# --- what the text says ------------------------------------------------------------------------


def test_pid_and_temp_paths_are_under_tmp() -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"])
    paths = directives(conf, "pid") + [
        arg for name in re.findall(r"(\w+_temp_path)", conf) for arg in directives(conf, name)
    ]
    assert len(paths) == 6, f"expected pid and 5 temp paths, found {paths}"
    outside = [p for p in paths if not p.startswith("/tmp/")]
    assert not outside, f"paths outside /tmp need a writable root filesystem: {outside}"


def test_error_log_goes_to_stderr() -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"])
    assert directives(conf, "error_log") == ["stderr warn"], conf


def test_access_log_is_off() -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"])
    assert directives(conf, "access_log") == ["off"], conf


def test_empty_upstream_list_raises_value_error() -> None:
    with pytest.raises(ValueError, match="upstream"):
        render_nginx_conf(upstreams=[])


@pytest.mark.parametrize("listen", ["8080", "9000", "127.0.0.1:9090"])
def test_listen_argument_is_the_listen_directive(listen: str) -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"], listen=listen)
    assert directives(conf, "listen") == [listen], conf


@pytest.mark.parametrize(("algorithm", "expected"), [("least_conn", 1), ("round_robin", 0)])
def test_least_conn_directive_only_for_least_conn(algorithm: str, expected: int) -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"], algorithm=algorithm)
    assert len(re.findall(r"^\s*least_conn;", conf, flags=re.MULTILINE)) == expected, conf


def test_resolver_is_absent_by_default() -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"])
    assert directives(conf, "resolver") == [], conf


def test_resolver_is_docker_dns_when_given() -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"], resolver="127.0.0.11")
    assert directives(conf, "resolver") == ["127.0.0.11 valid=10s ipv6=off"], conf


def test_every_upstream_gets_the_passive_health_check() -> None:
    upstreams = ["a:1", "b:2", "c:3"]
    conf = render_nginx_conf(upstreams=upstreams, max_fails=2, fail_timeout="30s")
    assert directives(conf, "server") == [f"{u} max_fails=2 fail_timeout=30s" for u in upstreams]


def test_retries_cover_errors_timeouts_5xx_and_non_idempotent_requests() -> None:
    conf = render_nginx_conf(upstreams=["127.0.0.1:8081"])
    assert directives(conf, "proxy_next_upstream") == [
        "error timeout http_502 http_503 http_504 non_idempotent"
    ], conf


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("upstreams", ["127.0.0.1"]),
        ("upstreams", ["a:1; evil"]),
        ("upstreams", ["a:70000"]),
        ("listen", "80; include /etc/passwd"),
        ("algorithm", "ip_hash"),
        ("health_path", "healthz"),
        ("fail_timeout", "ten"),
        ("max_fails", -1),
    ],
)
def test_invalid_argument_raises_value_error(argument: str, value: Any) -> None:
    arguments: dict[str, Any] = {"upstreams": ["127.0.0.1:8081"], argument: value}
    with pytest.raises(ValueError, match=argument.rstrip("s")):
        render_nginx_conf(**arguments)


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
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def replica() -> Iterator[str]:
    """A live replica on loopback; yields its "127.0.0.1:port"."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dying_replica() -> Iterator[str]:
    """A replica killed mid-request: it reads the request, then resets the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                # Linger 0: close with a reset, as the kernel does for a killed process's socket.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def request(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass(frozen=True)
class RunningLb:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def start_lb(
    nginx: Any, tmp_path: Path, free_port: Callable[[], int], lb_container: tuple[str, ...]
) -> Iterator[Callable[..., RunningLb]]:
    """Starts nginx in the foreground on the rendered config, as the LB container would."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**kwargs: Any) -> RunningLb:
        port = free_port()
        conf = write_conf(tmp_path, render_nginx_conf(listen=f"127.0.0.1:{port}", **kwargs))
        log = tmp_path / "nginx.stderr"
        command = [*lb_container, nginx.binary, "-p", "/tmp/", "-c", "/dev/stdin", "-e", "stderr"]
        with log.open("wb") as stderr, conf.open("rb") as stdin:
            process = subprocess.Popen(
                [*command, "-g", "daemon off;"], stdin=stdin, stdout=stderr, stderr=stderr
            )
        started.append(process)
        lb = RunningLb(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"nginx exited {process.returncode}:\n{log.read_text()}")
            try:
                request(f"{lb.url}/lb-healthz")
                return lb
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"nginx did not answer on {lb.url} in {STARTUP_TIMEOUT}s:\n{log.read_text()}")

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_lb_healthz_answers_200_with_no_replica_up(
    start_lb: Callable[..., RunningLb], free_port: Callable[[], int]
) -> None:
    lb = start_lb(upstreams=[f"127.0.0.1:{free_port()}"])
    status, body = request(f"{lb.url}/lb-healthz")
    assert (status, body) == (200, b"ok\n")


def test_get_requests_survive_a_dead_replica(
    start_lb: Callable[..., RunningLb], replica: str, free_port: Callable[[], int]
) -> None:
    # max_fails=0 keeps the dead replica in rotation, so every other request meets it first.
    dead = f"127.0.0.1:{free_port()}"
    lb = start_lb(upstreams=[dead, replica], algorithm="round_robin", max_fails=0)
    statuses = [request(f"{lb.url}/orders/{i}")[0] for i in range(10)]
    assert statuses == [200] * 10


def test_post_requests_survive_a_replica_dying_mid_request(
    start_lb: Callable[..., RunningLb], replica: str, dying_replica: str
) -> None:
    # The request reached the dying replica, so only `non_idempotent` lets nginx resend a POST.
    lb = start_lb(upstreams=[dying_replica, replica], algorithm="round_robin", max_fails=0)
    answers = [request(f"{lb.url}/orders", data=f"order {i}".encode()) for i in range(10)]
    echoed = [
        (status, json.loads(body)["body"] if status == 200 else body) for status, body in answers
    ]
    assert echoed == [(200, f"order {i}") for i in range(10)]


def test_replica_sees_forwarded_headers(start_lb: Callable[..., RunningLb], replica: str) -> None:
    lb = start_lb(upstreams=[replica])
    status, body = request(f"{lb.url}/whoami")
    headers = json.loads(body)["headers"]
    seen = {k: headers.get(k) for k in ("x-forwarded-for", "x-forwarded-proto", "host")}
    expected = {"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http", "host": "127.0.0.1"}
    assert (status, seen) == (200, expected)


def test_lb_upstream_healthz_reaches_the_replica_health_path(
    start_lb: Callable[..., RunningLb], replica: str
) -> None:
    lb = start_lb(upstreams=[replica], health_path="/readyz")
    status, body = request(f"{lb.url}/lb-upstream-healthz")
    assert (status, json.loads(body)["path"]) == (200, "/readyz")


def test_lb_status_serves_stub_status_to_loopback(
    start_lb: Callable[..., RunningLb], replica: str
) -> None:
    lb = start_lb(upstreams=[replica])
    status, body = request(f"{lb.url}/lb-status")
    assert status == 200 and body.startswith(b"Active connections:"), body


def test_lb_serves_without_root(start_lb: Callable[..., RunningLb], replica: str) -> None:
    lb = start_lb(upstreams=[replica])
    status, _ = request(f"{lb.url}/")
    # The Popen pid is nginx's master: unshare, sh and setpriv each exec the next program.
    status_lines = Path(f"/proc/{lb.process.pid}/status").read_text().splitlines()
    uids = {
        int(uid) for line in status_lines if line.startswith("Uid:") for uid in line.split()[1:]
    }
    assert status == 200 and 0 not in uids, f"status {status}, nginx master uids {uids}"
