"""HTTP server of the demo microservice: liveness, readiness, version and Prometheus metrics."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Alert rules and dashboards rendered by msops use these buckets; change them together.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Any other path is labelled "other", so a scanner probing random URLs cannot blow up
# the number of series Prometheus has to store.
KNOWN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/version", "/fail", "/slow"})

MAX_SLOW_SECONDS = 5.0
DB_CONNECT_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    version: str = "dev"
    service: str = "demo"
    replica: str = ""
    database_url: str | None = None
    access_log: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        return cls(
            host=env.get("HOST", cls.host),
            port=int(env.get("PORT", cls.port)),
            version=env.get("APP_VERSION", cls.version),
            service=env.get("SERVICE_NAME", cls.service),
            # The hostname is the container id under Docker and the pod name under
            # Kubernetes, which is what a person reading X-Replica wants to see.
            replica=env.get("REPLICA_ID") or socket.gethostname(),
            database_url=env.get("DATABASE_URL") or None,
            access_log=env.get("ACCESS_LOG", "") == "1",
        )


class Metrics:
    """The service's metric families, on a registry of its own."""

    def __init__(self, config: Config) -> None:
        # A private registry keeps the process/platform collectors of the global one out,
        # so /metrics shows exactly the families the rendered rules are written against.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests handled, by method, path and status code.",
            ["method", "path", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time spent handling an HTTP request.",
            ["method", "path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.info = Gauge(
            "app_info",
            "Always 1; labels carry the running version and service name.",
            ["version", "service"],
            registry=self.registry,
        )
        self.info.labels(version=config.version, service=config.service).set(1)

    def observe(self, method: str, path: str, code: int, seconds: float) -> None:
        label = path if path in KNOWN_PATHS else "other"
        self.requests.labels(method=method, path=label, code=str(code)).inc()
        self.duration.labels(method=method, path=label).observe(seconds)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


def check_database(url: str) -> str | None:
    """Return None when the database answers, else a reason safe to show to anyone."""
    try:
        # Imported here so the service runs without the driver when it has no database.
        import psycopg
    except ImportError:
        return "database driver not installed"
    try:
        with psycopg.connect(url, connect_timeout=DB_CONNECT_TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        # Only the exception type leaves this function: libpq messages can quote the
        # conninfo string, password included, when it fails to parse.
        return f"database unavailable ({type(exc).__name__})"
    return None


class Handler(BaseHTTPRequestHandler):
    server: DemoServer

    server_version = "msops-demo"
    # A client that connects and never sends a request would otherwise hold back
    # graceful shutdown forever.
    timeout = 10

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Off unless asked for: a line per request to stderr costs real throughput
        # under the load tests. Errors still go through log_message.
        if self.server.config.access_log:
            super().log_request(code, size)

    def _dispatch(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        code = 500
        try:
            code = self._route(url.path, parse_qs(url.query))
        finally:
            self.server.metrics.observe(self.command, url.path, code, time.perf_counter() - started)

    def _route(self, path: str, query: dict[str, list[str]]) -> int:
        config = self.server.config
        if path not in KNOWN_PATHS:
            return self._send_text(404, "not found\n")
        if self.command not in ("GET", "HEAD"):
            return self._send_text(405, "method not allowed\n", {"Allow": "GET, HEAD"})
        if path == "/":
            return self._send_json(
                200,
                {"service": config.service, "version": config.version, "replica": config.replica},
            )
        if path == "/healthz":
            return self._send_text(200, "ok\n")
        if path == "/readyz":
            reason = check_database(config.database_url) if config.database_url else None
            if reason is not None:
                return self._send_text(503, f"not ready: {reason}\n")
            return self._send_text(200, "ready\n")
        if path == "/metrics":
            return self._send(
                200, self.server.metrics.render(), prometheus_client.CONTENT_TYPE_LATEST
            )
        if path == "/version":
            return self._send_json(200, {"version": config.version})
        if path == "/fail":
            return self._send_text(500, "failing on purpose\n")
        return self._slow(query)

    def _slow(self, query: dict[str, list[str]]) -> int:
        raw = query.get("seconds", ["1"])[0]
        try:
            seconds = float(raw)
        except ValueError:
            return self._send_text(400, "seconds must be a number\n")
        if not math.isfinite(seconds):
            return self._send_text(400, "seconds must be finite\n")
        seconds = min(max(seconds, 0.0), MAX_SLOW_SECONDS)
        time.sleep(seconds)
        return self._send_json(200, {"slept": seconds})

    def _send_json(self, code: int, body: dict[str, Any]) -> int:
        return self._send(code, (json.dumps(body) + "\n").encode(), "application/json")

    def _send_text(self, code: int, body: str, headers: dict[str, str] | None = None) -> int:
        return self._send(code, body.encode(), "text/plain; charset=utf-8", headers)

    def _send(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> int:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Replica", self.server.config.replica)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return code


class DemoServer(ThreadingHTTPServer):
    # Non-daemon threads let server_close() wait for in-flight requests, which is what
    # makes SIGTERM graceful.
    daemon_threads = False
    # socketserver's default backlog of 5 drops SYNs under load, which clients see as
    # 1 s (then 3 s) connect stalls; a kernel-sized backlog removes them.
    request_queue_size = 1024

    def __init__(self, config: Config, metrics: Metrics) -> None:
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        self.config = config
        self.metrics = metrics
        super().__init__((config.host, config.port), Handler)


def main() -> int:
    config = Config.from_env()
    # The _created series double the series count and nothing msops renders reads them.
    prometheus_client.disable_created_metrics()
    server = DemoServer(config, Metrics(config))

    def stop(signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever() to return, and serve_forever() is running
        # on this very thread, so it must be called from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # server_port, not config.port: PORT=0 asks the OS for a free port.
    print(
        f"{config.service} {config.version} replica={config.replica} "
        f"listening on {config.host}:{server.server_port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print(f"{config.service} stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
