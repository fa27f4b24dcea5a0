"""A stable and a canary version of the demo app behind the real nginx, scraped by the real
Prometheus on loopback: what the canary analysis tests and bench/canary.py run against."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from components.artifacts import nginx, prometheus
from msops import analysis
from tests.dns import Daemon, Dnsmasq, HostedApp, Lb, Service, start_nginx, start_server
from tests.runtime.processes import http_get

PROBES = ("/healthz", "/readyz", "/metrics")


class ToolMissing(Exception):
    """A tool the release needs is not installed."""


@dataclass
class Release:
    """Stable 1.0.0 on two replicas and a 1.1.0 canary on one, behind the LB, scraped."""

    stable: list[HostedApp]
    canary: HostedApp
    lb: Lb
    prometheus_url: str


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed: apt-get install {package}")
    return path


def _prometheus(apps: list[HostedApp], tmp_path: Path, scrape_seconds: float) -> tuple[Daemon, str]:
    binary = _tool("prometheus", "prometheus")
    job = prometheus.ScrapeJob(name="web", targets=tuple(f"{a.host}:{a.port}" for a in apps))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        prometheus.render_prometheus_config(jobs=[job], scrape_interval=f"{scrape_seconds:g}s")
    )
    daemon, port = start_server(
        "prometheus",
        lambda port: [
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        lambda port: f"http://127.0.0.1:{port}/-/ready",
    )
    return daemon, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def running_release(
    service: Service,
    dnsmasq: Dnsmasq,
    tmp_path: Path,
    *,
    scrape_seconds: float = 1,
    **canary_env: str,
) -> Iterator[Release]:
    """Two stable replicas (1.0.0) and a canary (1.1.0, with `canary_env`) on one port, in the
    DNS under `web`, behind the LB, scraped every `scrape_seconds`; stopped afterwards."""
    stable = service.apps(*({"REPLICA_ID": f"stable-{i}", "APP_VERSION": "1.0.0"} for i in (1, 2)))
    canary = service.app(REPLICA_ID="canary-1", APP_VERSION="1.1.0", DEMO_SEED="7", **canary_env)
    apps = [*stable, canary]
    dnsmasq.set("web", [a.host for a in apps])
    lb = start_nginx(
        _tool("nginx", "nginx-light"),
        lambda listen: nginx.render_nginx_conf(
            service="web",
            port=service.port,
            listen=listen,
            resolver=dnsmasq.resolver,
            resolver_valid="1s",
        ),
        tmp_path,
    )
    daemon, url = _prometheus(apps, tmp_path, scrape_seconds)
    try:
        _wait_scraped(url, len(apps))
        yield Release(stable, canary, lb, url)
    finally:
        daemon.stop()
        lb.stop()


def _wait_scraped(url: str, targets: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        up = analysis.query(url, 'sum(up{job="web"})', analysis.http_fetch)
        if up and analysis.value_of(up[0]) == targets:
            return
        time.sleep(0.2)
    raise RuntimeError(f"Prometheus at {url} did not scrape {targets} targets in 30s")


class Traffic:
    """Users' requests through the LB, and probes straight to every replica, until stopped."""

    def __init__(self, lb: Lb, apps: list[HostedApp], *, users: bool = True) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe, args=(apps,), daemon=True)]
        if users:
            self._threads += [
                threading.Thread(target=self._use, args=(lb,), daemon=True) for _ in range(2)
            ]

    def _use(self, lb: Lb) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                http_get(f"{lb.url}/", timeout=5)

    def _probe(self, apps: list[HostedApp]) -> None:
        while not self._stop.wait(0.05):
            for app in apps:
                for path in PROBES:
                    http_get(f"{app.url}{path}", timeout=5)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
