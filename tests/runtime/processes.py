"""Running the demo app as a real process on loopback, for runtime tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Protocol

APP_DIR = Path(__file__).resolve().parents[2] / "app"

# The app reads these; a developer's shell (or CI) exporting one of them must not change
# what a test sees, so they are dropped before the test's own values go in.
APP_ENV_VARS = (
    "PORT",
    "HOST",
    "APP_VERSION",
    "DATABASE_URL",
    "SERVICE_NAME",
    "REPLICA_ID",
    "ACCESS_LOG",
)

STARTUP_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def http_get(url: str, timeout: float = 10.0) -> Response:
    """GET without raising on 4xx/5xx, since those are answers the tests check."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, err.headers, err.read())


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

    def get(self, path: str, timeout: float = 10.0) -> Response:
        return http_get(self.url + path, timeout=timeout)

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


def _wait_healthy(handle: AppHandle) -> bool:
    """True once /healthz answers 200; False if the process died first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            return False
        try:
            if handle.get("/healthz", timeout=1.0).status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError(
        f"demo app on port {handle.port} not healthy after {STARTUP_TIMEOUT_SECONDS}s:\n"
        + handle.logs()
    )


def launch_app(port: int | None = None, **env: str | None) -> AppHandle:
    """Start `python -m demo.server` on 127.0.0.1 and wait until /healthz answers.

    Keyword arguments are environment variables for the app (APP_VERSION="1.2.3",
    REPLICA_ID="r1", ...); a value of None leaves that variable unset. The caller owns
    the handle and must stop() it; the `start_app` fixture does that for you.
    """
    # free_port() can race with another process grabbing the same port, so a port we
    # picked ourselves gets a few tries; a port the caller asked for gets one.
    attempts = 3 if port is None else 1
    output = ""
    for _ in range(attempts):
        chosen = free_port() if port is None else port
        child_env = {k: v for k, v in os.environ.items() if k not in APP_ENV_VARS}
        child_env.update({"HOST": "127.0.0.1", "PORT": str(chosen)})
        child_env.update({k: v for k, v in env.items() if v is not None})
        for name, value in env.items():
            if value is None:
                child_env.pop(name, None)
        # A file, not a pipe: nobody reads the app's output while it runs, and a full
        # pipe would block it. The handle owns the file and closes it in stop().
        log = tempfile.TemporaryFile()  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo.server"],
            cwd=APP_DIR,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        handle = AppHandle(port=chosen, proc=proc, log=log, env=child_env)
        if _wait_healthy(handle):
            return handle
        output = handle.logs()
        handle.stop()
    raise RuntimeError(f"demo app exited during startup (port {chosen}):\n{output}")


class StartApp(Protocol):
    def __call__(self, port: int | None = None, **env: str | None) -> AppHandle: ...
