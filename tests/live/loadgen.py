"""Bounded-concurrency HTTP load that counts what clients would see during a change.

Each of `workers` threads sends GET requests in a loop, each on a new connection (many
independent clients, so that a refused port or a vanished backend shows), up to `rate`
requests per second in all. A 2xx answer is a success; anything else is a failure counted by
kind: refused, reset, timeout, dns(<errno>), truncated, http_<code>. It records which replicas
(X-Replica) and versions (the body's "version") answered, and when: the first and last
failure, and the longest stretch with no successful answer (the outage window).

Through a service that calls another (web → api) it also records which version of the
upstream answered (the body's "upstream"); `upstream=True` counts a 2xx that carries no
upstream identity as a failure, `upstream_error`: web answers 200 with the reason instead
when api does not answer, which is a request lost for its user.

The target is a URL (`http://127.0.0.1:8000/`), or, with `resolve_each=True`, a name whose
every address is a backend (`tasks.staging_web`): it is resolved per request and the
requests go round the addresses, as a client-side balancer does; a failed lookup (counted
apart, in `lookup_failures`) keeps the last good answer. Standard library only: the
swarm scenarios run this file as a script inside a client container
(`python3 loadgen.py --url http://tasks.staging_web:8080/ --resolve-each`), stopped by
SIGTERM, which prints the result as JSON on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

FAILURE_SAMPLES = 20


@dataclass
class LoadResult:
    """What the clients saw. Times are seconds since the load started."""

    ok: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    lookup_failures: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    version_seen: dict[str, list[float]] = field(default_factory=dict)  # version -> [first, last]
    upstream_versions: dict[str, int] = field(default_factory=dict)
    first_failure: float | None = None
    last_failure: float | None = None
    longest_gap: float = 0.0
    slowest: float = 0.0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def describe(self) -> str:
        window = (
            f", failures from {self.first_failure:.2f}s to {self.last_failure:.2f}s"
            if self.first_failure is not None and self.last_failure is not None
            else ""
        )
        lookups = f"; failed lookups {self.lookup_failures}" if self.lookup_failures else ""
        return (
            f"{self.failed} of {self.total} requests failed {dict(self.failures)} in "
            f"{self.seconds:.1f}s; longest gap without a success {self.longest_gap:.2f}s, "
            f"slowest request {self.slowest:.2f}s{window}{lookups}; "
            f"versions {dict(self.versions)}; replicas {len(self.replicas)}"
            + (f"; upstream versions {self.upstream_versions}" if self.upstream_versions else "")
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        return cls(**json.loads(text))


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return "reset"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return f"dns({exc.errno})"
    if isinstance(exc, http.client.IncompleteRead):
        return "truncated"
    return type(exc).__name__


def _versions(body: bytes) -> tuple[str, str]:
    """The answer's own version and its upstream's ("" for what it does not carry)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    upstream = data.get("upstream")
    version = upstream.get("version") if isinstance(upstream, dict) else None
    return str(data.get("version", "")), version if isinstance(version, str) else ""


class Load:
    """Start it, make the change, stop it: `with Load(url) as load: ...; load.result`."""

    def __init__(
        self,
        url: str,
        *,
        workers: int = 4,
        rate: float = 200.0,
        timeout: float = 5.0,
        resolve_each: bool = False,
        upstream: bool = False,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.workers = workers
        self.interval = workers / rate if rate > 0 else 0.0
        self.timeout = timeout
        self.resolve_each = resolve_each
        self.upstream = upstream
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._successes: list[float] = []
        self._rr = itertools.count()
        self._last_addresses: list[str] = []
        self._t0 = 0.0
        self.result = LoadResult()

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._t0 = time.monotonic()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self._threads.clear()
        result = self.result
        result.seconds = time.monotonic() - self._t0
        marks = sorted([0.0, *self._successes, result.seconds])
        result.longest_gap = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)
        return result

    def _address(self) -> str:
        if not self.resolve_each:
            return self.host
        try:
            infos = socket.getaddrinfo(self.host, self.port, socket.AF_INET, socket.SOCK_STREAM)
            addresses = sorted({info[4][0] for info in infos})
            self._last_addresses = addresses
        except socket.gaierror as exc:
            # As a client-side balancer does (nginx's resolver, Prometheus' dns_sd): keep the
            # last good answer through a failed lookup, and count the lookup apart.
            with self._lock:
                key = f"dns({exc.errno})"
                self.result.lookup_failures[key] = self.result.lookup_failures.get(key, 0) + 1
            if not self._last_addresses:
                raise
            addresses = self._last_addresses
        return addresses[next(self._rr) % len(addresses)]

    def _work(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._one()
            next_at += self.interval
            pause = next_at - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                next_at = time.monotonic()

    def _one(self) -> None:
        started = time.monotonic()
        kind = ""
        replica = version = upstream = ""
        conn = None
        try:
            conn = http.client.HTTPConnection(self._address(), self.port, timeout=self.timeout)
            conn.request("GET", self.path, headers={"Host": self.host, "Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            if 200 <= response.status < 300:
                replica = response.getheader("X-Replica", "")
                version, upstream = _versions(body)
                if self.upstream and not upstream:
                    kind = "upstream_error"
            else:
                kind = f"http_{response.status}"
        except Exception as exc:
            kind = _classify(exc)
        finally:
            if conn is not None:
                conn.close()
        now = time.monotonic() - self._t0
        with self._lock:
            res = self.result
            res.slowest = max(res.slowest, now - (started - self._t0))
            if kind:
                res.failed += 1
                res.failures[kind] = res.failures.get(kind, 0) + 1
                if res.first_failure is None:
                    res.first_failure = started - self._t0
                res.last_failure = now
                if len(res.samples) < FAILURE_SAMPLES:
                    res.samples.append(f"{now:.3f}s {kind}")
            else:
                res.ok += 1
                self._successes.append(now)
                if replica:
                    res.replicas[replica] = res.replicas.get(replica, 0) + 1
                if version:
                    res.versions[version] = res.versions.get(version, 0) + 1
                    seen = res.version_seen.setdefault(version, [now, now])
                    seen[1] = now
                if upstream:
                    res.upstream_versions[upstream] = res.upstream_versions.get(upstream, 0) + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--resolve-each", action="store_true")
    args = parser.parse_args(argv)
    load = Load(
        args.url,
        workers=args.workers,
        rate=args.rate,
        timeout=args.timeout,
        resolve_each=args.resolve_each,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    load.start()
    print("load started", file=sys.stderr, flush=True)
    while not done.wait(0.5):
        pass
    print(load.stop().to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
