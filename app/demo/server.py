"""HTTP server of the demo microservice: liveness, readiness, version, metrics, an upstream call."""

from __future__ import annotations

import json
import math
import random
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from demo.config import Config, ConfigError
from demo.db import Database
from demo.upstream import VIA_HEADER, Answer, Upstream

# Alert rules and dashboards rendered by msops use these buckets; change them together.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Any other path is labelled "other", so a scanner probing random URLs cannot blow up
# the number of series Prometheus has to store.
KNOWN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/metrics", "/version", "/fail", "/slow", "/upstream"}
)
# What the service is for. Faults (DEMO_FAIL_RATE, DEMO_DELAY_SECONDS) land here only: the
# probes, /metrics and /version keep telling the truth about a replica that is failing.
BUSINESS_PATHS = frozenset({"/", "/fail", "/slow", "/upstream"})

MAX_SLOW_SECONDS = 5.0
# How long one readiness check stands for users' requests.
READY_CACHE_SECONDS = 1.0


class Faults:
    """Per-request dice for the injected failures and delays; seedable (DEMO_SEED)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        # Handler threads share one generator, and random.Random is not thread-safe.
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.config.fail_rate > 0 or self.config.delay_seconds > 0

    def draw(self) -> tuple[float, bool]:
        """(seconds to delay this request, whether it fails)."""
        config = self.config
        with self._lock:
            delay = 0.0
            if config.delay_seconds > 0 and (
                config.delay_rate >= 1 or self._rng.random() < config.delay_rate
            ):
                delay = config.delay_seconds
            fail = config.fail_rate > 0 and self._rng.random() < config.fail_rate
        return delay, fail


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
        # By path and nothing else: a test (or a person) can see that a request is being
        # handled right now, and the label set stays as bounded as KNOWN_PATHS.
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being handled right now, by path.",
            ["path"],
            registry=self.registry,
        )
        self.upstream_requests = Counter(
            "upstream_requests_total",
            'Calls to UPSTREAM_URL, by the status it answered ("error": no answer).',
            ["code"],
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "upstream_request_duration_seconds",
            "Time spent calling UPSTREAM_URL.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    @staticmethod
    def path_label(path: str) -> str:
        return path if path in KNOWN_PATHS else "other"

    def observe(self, method: str, path: str, code: int, seconds: float) -> None:
        label = self.path_label(path)
        self.requests.labels(method=method, path=label, code=str(code)).inc()
        self.duration.labels(method=method, path=label).observe(seconds)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


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
        metrics = self.server.metrics
        in_flight = metrics.in_flight.labels(path=metrics.path_label(url.path))
        in_flight.inc()
        code = 500
        try:
            code = self._route(url.path, parse_qs(url.query))
        finally:
            in_flight.dec()
            metrics.observe(self.command, url.path, code, time.perf_counter() - started)

    def _route(self, path: str, query: dict[str, list[str]]) -> int:
        server = self.server
        config = server.config
        if path not in KNOWN_PATHS:
            return self._send_text(404, "not found\n")
        if self.command not in ("GET", "HEAD"):
            return self._send_text(405, "method not allowed\n", {"Allow": "GET, HEAD"})
        if path in BUSINESS_PATHS:
            # A replica that is not ready refuses users' requests, so that the LB (which
            # retries a 503 on another replica) sends them where they can be served: Docker's
            # DNS, unlike a Kubernetes Service, keeps an unhealthy replica in rotation.
            reason = server.not_ready()
            if reason is not None:
                return self._send_text(503, f"not ready: {reason}\n", {"Retry-After": "1"})
        if path in BUSINESS_PATHS and server.faults.active:
            delay, fail = server.faults.draw()
            if delay:
                time.sleep(delay)
            if fail:
                return self._send_text(500, "injected failure (DEMO_FAIL_RATE)\n")
        if path == "/":
            return self._root()
        if path == "/healthz":
            if not config.healthy:
                return self._send_text(503, "unhealthy (DEMO_HEALTHY=0)\n")
            return self._send_text(200, "ok\n")
        if path == "/readyz":
            reason = server.not_ready(fresh=True)
            if reason is not None:
                return self._send_text(503, f"not ready: {reason}\n")
            return self._send_text(200, "ready\n")
        if path == "/metrics":
            return self._send(200, server.metrics.render(), prometheus_client.CONTENT_TYPE_LATEST)
        if path == "/version":
            return self._send_json(200, {"version": config.version})
        if path == "/fail":
            return self._send_text(500, "failing on purpose\n")
        if path == "/upstream":
            return self._upstream()
        return self._slow(query)

    def _identity(self) -> dict[str, Any]:
        config = self.server.config
        return {"service": config.service, "version": config.version, "replica": config.replica}

    def _from_another_service(self) -> bool:
        return bool(self.headers.get(VIA_HEADER))

    def _root(self) -> int:
        server = self.server
        body = self._identity()
        if server.db is not None:
            config = server.config
            body["visits"] = server.db.record_visit(config.service, config.replica, config.version)
        if server.upstream is not None and not self._from_another_service():
            answer = server.call_upstream()
            body["upstream"] = answer.identity or {"error": answer.reason}
        return self._send_json(200, body)

    def _upstream(self) -> int:
        server = self.server
        if server.upstream is None:
            return self._send_text(404, "no upstream: UPSTREAM_URL is not set\n")
        if self._from_another_service():
            return self._send_text(508, "loop: a call from another service is not passed on\n")
        answer = server.call_upstream()
        if answer.identity is None:
            return self._send_json(502, {"error": answer.reason})
        return self._send_json(200, {**self._identity(), "upstream": answer.identity})

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
        self.faults = Faults(config)
        self.db = Database(config.database_url) if config.database_url else None
        self._ready_lock = threading.Lock()
        self._ready_at = -math.inf
        self._ready_reason: str | None = None
        self.upstream = (
            Upstream(config.upstream_url, config.upstream_timeout, caller=config.service)
            if config.upstream_url
            else None
        )
        super().__init__((config.host, config.port), Handler)

    def not_ready(self, *, fresh: bool = False) -> str | None:
        """Why this replica cannot serve now, or None. Only what it owns decides: the upstream
        is left out on purpose, so an api outage does not take every web replica out.
        Checked at most once a second for users' requests (`fresh` for /readyz itself)."""
        if not self.config.healthy:
            return "unhealthy (DEMO_HEALTHY=0)"
        now = time.monotonic()
        with self._ready_lock:
            if fresh or now - self._ready_at >= READY_CACHE_SECONDS:
                db = self.db
                self._ready_reason = db.readiness(self.config.schema_version) if db else None
                self._ready_at = now
            return self._ready_reason

    def call_upstream(self) -> Answer:
        assert self.upstream is not None
        started = time.perf_counter()
        answer = self.upstream.call()
        self.metrics.upstream_duration.observe(time.perf_counter() - started)
        self.metrics.upstream_requests.labels(code=answer.code).inc()
        return answer

    def server_close(self) -> None:
        super().server_close()
        if self.db is not None:
            self.db.close()


def _describe(config: Config, port: int) -> list[str]:
    """Start-up lines for the log: what is switched on, never a secret's value."""
    lines = [
        f"{config.service} {config.version} replica={config.replica} "
        f"listening on {config.host}:{port}"
    ]
    if config.database_url:
        lines.append(f"database: configured; needs schema {config.schema_version}")
    if config.upstream_url:
        lines.append(f"upstream: configured; timeout {config.upstream_timeout:g} s")
    if config.fail_rate or config.delay_seconds or not config.healthy:
        lines.append(
            f"faults: fail_rate={config.fail_rate:g} delay={config.delay_seconds:g}s "
            f"delay_rate={config.delay_rate:g} seed={config.seed} healthy={config.healthy}"
        )
    return lines


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"demo: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    # The _created series double the series count and nothing msops renders reads them.
    prometheus_client.disable_created_metrics()
    try:
        server = DemoServer(config, Metrics(config))
    except OSError as exc:
        print(
            f"demo: cannot listen on {config.host}:{config.port} ({exc.strerror or exc})",
            file=sys.stderr,
            flush=True,
        )
        return 1

    def stop(signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever() to return, and serve_forever() is running
        # on this very thread, so it must be called from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # server_port, not config.port: PORT=0 asks the OS for a free port.
    for line in _describe(config, server.server_port):
        print(line, file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print(f"{config.service} stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
