"""The demo app and its migrate command as real processes on loopback, for runtime tests."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Protocol, TypeVar

from prometheus_client.parser import text_string_to_metric_families

APP_DIR = Path(__file__).resolve().parents[2] / "app"

_SECRET_VARS = ("DATABASE_URL", "UPSTREAM_URL")
# The app reads these; a developer's shell (or CI) exporting one of them must not change
# what a test sees, so they are dropped before the test's own values go in.
APP_ENV_VARS = (
    "PORT",
    "HOST",
    "APP_VERSION",
    "SERVICE_NAME",
    "REPLICA_ID",
    "ACCESS_LOG",
    "SCHEMA_VERSION",
    "UPSTREAM_TIMEOUT_SECONDS",
    "DEMO_FAIL_RATE",
    "DEMO_DELAY_SECONDS",
    "DEMO_DELAY_RATE",
    "DEMO_SEED",
    "DEMO_HEALTHY",
    *_SECRET_VARS,
    *(f"{name}_FILE" for name in _SECRET_VARS),
)

STARTUP_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
_LISTENING = re.compile(rb"listening on \S+:(\d+)\s*$", re.MULTILINE)

T = TypeVar("T")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now.

    Drawn from below the kernel's ephemeral range, so no `bind(port 0)` and no outgoing
    connection (the load tests make thousands) can be handed the same port between this
    call and the caller's bind. Only another free_port() caller could, and the callers
    that can retry (see launch_app and the Postgres fixture) do.
    """
    high = max(_ephemeral_low(), 12000)
    for _ in range(200):
        port = random.randrange(10000, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1 below the ephemeral range")


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Poll `probe` until it returns something other than None; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def http_get(url: str, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> Response:
    """GET without raising on 4xx/5xx, since those are answers the tests check."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, err.headers, err.read())


def metric_samples(text: str) -> dict[str, tuple[str, list]]:
    """Prometheus text as {family name: (type, samples)}."""
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


@dataclass
class AppHandle:
    """One running replica of the demo app."""

    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self, path: str, timeout: float = 10.0, headers: Mapping[str, str] | None = None
    ) -> Response:
        return http_get(self.url + path, timeout=timeout, headers=headers)

    def metrics(self) -> dict[str, tuple[str, list]]:
        resp = self.get("/metrics")
        assert resp.status == 200, f"/metrics answered {resp.status}: {resp.text}"
        return metric_samples(resp.text)

    def sample(self, name: str, **labels: str) -> float:
        """The value of one series on /metrics (0 when it does not exist yet)."""
        return sum(
            s.value
            for _, samples in self.metrics().values()
            for s in samples
            if s.name == name and s.labels == labels
        )

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM and return at once, for tests of graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM, then SIGKILL if it lingers; safe to call twice. Returns the exit code."""
        self.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode

    def __enter__(self) -> AppHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def app_env(env: Mapping[str, str | None]) -> dict[str, str]:
    """The child's environment: ours without the app's variables, then the test's values.
    A value of None leaves that variable unset."""
    child = {k: v for k, v in os.environ.items() if k not in APP_ENV_VARS}
    child["HOST"] = "127.0.0.1"
    child.update({k: v for k, v in env.items() if v is not None})
    for name, value in env.items():
        if value is None:
            child.pop(name, None)
    return child


def _read_port(handle: AppHandle) -> int | None:
    """The port from the app's start-up line; None while it has not printed it."""
    handle.log.flush()
    match = _LISTENING.search(os.pread(handle.log.fileno(), 1 << 16, 0))
    return int(match.group(1)) if match else None


def _wait_started(handle: AppHandle, ready_path: str) -> bool:
    """True once the app printed its port and `ready_path` answers 200; False if it died."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            return False
        port = _read_port(handle)
        if port is not None:
            handle.port = port
            try:
                if handle.get(ready_path, timeout=1.0).status == 200:
                    return True
            except OSError:
                pass
        time.sleep(0.02)
    handle.stop()
    raise RuntimeError(
        f"demo app not answering {ready_path} after {STARTUP_TIMEOUT_SECONDS}s:\n" + handle.logs()
    )


def launch_app(
    port: int | None = None, *, wait_healthy: bool = True, **env: str | None
) -> AppHandle:
    """Start `python -m demo.server` on 127.0.0.1 and wait until it answers.

    Keyword arguments in capitals are environment variables for the app
    (APP_VERSION="1.2.3", REPLICA_ID="r1", ...); a value of None leaves that variable
    unset. Without `port` the app binds port 0 and the handle reads back the port it got,
    so no other process can take it in between. It waits for /healthz, or for /metrics
    with wait_healthy=False (an app started with DEMO_HEALTHY=0). The caller owns the
    handle and must stop() it; the `start_app` fixture does that for you.
    """
    child_env = app_env({**env, "PORT": str(port if port is not None else 0)})
    # A file, not a pipe: nobody reads the app's output while it runs, and a full pipe
    # would block it. Append mode, so reading it back never moves where the app writes.
    # The handle owns the file and closes it in stop().
    log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.server"],
        cwd=APP_DIR,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    handle = AppHandle(port=port or 0, proc=proc, log=log, env=child_env)
    if _wait_started(handle, "/healthz" if wait_healthy else "/metrics"):
        return handle
    output = handle.logs()
    code = handle.stop()
    raise RuntimeError(f"demo app exited with {code} during startup:\n{output}")


@dataclass(frozen=True)
class Exited:
    """A process that ran to its end: exit code and everything it printed."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_app_to_exit(timeout: float = STARTUP_TIMEOUT_SECONDS, **env: str | None) -> Exited:
    """Run the app where it is expected to refuse to start; kill it if it serves instead."""
    child_env = app_env({"PORT": "0", **env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.server"],
        cwd=APP_DIR,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the app started instead of exiting:\n{out}{err}") from None
    return Exited(proc.returncode, out, err)


def run_migrate(*args: str, timeout: float = 60.0, **env: str | None) -> Exited:
    """`python -m demo.migrate ARGS` with the given environment, to its end."""
    done = subprocess.run(
        [sys.executable, "-m", "demo.migrate", *args],
        cwd=APP_DIR,
        env=app_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Exited(done.returncode, done.stdout, done.stderr)


class StartApp(Protocol):
    def __call__(
        self, port: int | None = None, *, wait_healthy: bool = True, **env: str | None
    ) -> AppHandle: ...
