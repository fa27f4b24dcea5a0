"""The rendered LB and Prometheus configs, run by the real nginx and Prometheus over 3 replicas."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from components.artifacts import nginx, prometheus
from tests.runtime.processes import AppHandle, StartApp, free_port, http_get

pytestmark = pytest.mark.timeout(120)

REPLICAS = ("r1", "r2", "r3")
LOAD_REQUESTS = 2000
LOAD_WORKERS = 8


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install {package}")
    return path


@dataclass
class Daemon:
    """A real server process the test started; stop() is safe to call twice."""

    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    url: str

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _start(name: str, argv: list[str], url: str, ready_path: str, tmp: Path) -> Daemon:
    log = (tmp / f"{name}.log").open("w+b")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    daemon = Daemon(name, proc, log, url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if http_get(url + ready_path, timeout=1).status == 200:
                return daemon
        except OSError:
            time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"{name} did not become ready:\n{daemon.output()}")


@pytest.fixture
def replicas(start_app: StartApp) -> list[AppHandle]:
    return [start_app(REPLICA_ID=rid, APP_VERSION="1.0.0") for rid in REPLICAS]


@pytest.fixture
def lb(replicas: list[AppHandle], tmp_path: Path) -> Iterator[Daemon]:
    binary = _require("nginx", "nginx-light")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        nginx.render_nginx_conf(
            upstreams=[f"127.0.0.1:{r.port}" for r in replicas], listen=f"127.0.0.1:{port}"
        )
    )
    daemon = _start(
        "nginx",
        [binary, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        f"http://127.0.0.1:{port}",
        nginx.LB_HEALTH_PATH,
        tmp_path,
    )
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def prom(replicas: list[AppHandle], tmp_path: Path) -> Iterator[Daemon]:
    binary = _require("prometheus", "prometheus")
    port = free_port()
    job = prometheus.ScrapeJob(name="web", targets=tuple(f"127.0.0.1:{r.port}" for r in replicas))
    rules = tmp_path / "rules.yml"
    rules.write_text(
        prometheus.render_alert_rules(
            services=["web"],
            error_rate=0.05,
            p99_latency=0.5,
            target_down_for="1m",
            evaluate_for="5m",
        )
    )
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        prometheus.render_prometheus_config(
            jobs=[job], scrape_interval="1s", evaluation_interval="1s", rule_files=[str(rules)]
        )
    )
    daemon = _start(
        "prometheus",
        [
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        f"http://127.0.0.1:{port}",
        "/-/ready",
        tmp_path,
    )
    try:
        yield daemon
    finally:
        daemon.stop()


def _kill(replica: AppHandle) -> None:
    """SIGKILL: the replica dies mid-request, as on an OOM kill or a lost host."""
    replica.proc.kill()
    replica.proc.wait()


def _up_by_instance(prom: Daemon) -> dict[str, float]:
    query = urllib.parse.urlencode({"query": 'up{job="web"}'})
    body = json.loads(http_get(f"{prom.url}/api/v1/query?{query}").body)
    return {r["metric"]["instance"]: float(r["value"][1]) for r in body["data"]["result"]}


def _wait_for_up(prom: Daemon, expected: dict[str, float]) -> dict[str, float]:
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = _up_by_instance(prom)
        if seen == expected:
            break
        time.sleep(0.5)
    return seen


def test_requests_through_the_lb_reach_every_replica(lb: Daemon) -> None:
    answered = Counter(http_get(lb.url + "/").headers["X-Replica"] for _ in range(60))
    assert set(answered) == set(REPLICAS), f"replicas that answered: {dict(answered)}"


def test_lb_health_check_is_answered_by_nginx_itself(lb: Daemon, replicas: list) -> None:
    for replica in replicas:
        _kill(replica)
    assert http_get(lb.url + nginx.LB_HEALTH_PATH).status == 200


def test_killing_a_replica_under_load_loses_no_request(lb: Daemon, replicas: list) -> None:
    victim = replicas[1]

    def request(i: int) -> int:
        if i == LOAD_REQUESTS // 4:
            _kill(victim)
        try:
            return http_get(lb.url + "/", timeout=10).status
        except OSError:
            return -1

    with ThreadPoolExecutor(LOAD_WORKERS) as pool:
        statuses = Counter(pool.map(request, range(LOAD_REQUESTS)))

    assert victim.proc.poll() is not None, "the replica was not killed during the load"
    assert statuses == Counter({200: LOAD_REQUESTS}), f"statuses: {dict(statuses)}\n{lb.output()}"


def test_after_a_kill_the_lb_serves_only_from_live_replicas(lb: Daemon, replicas: list) -> None:
    _kill(replicas[0])
    answered = Counter(http_get(lb.url + "/").headers["X-Replica"] for _ in range(30))
    assert set(answered) == {"r2", "r3"}, dict(answered)


def test_prometheus_scrapes_every_replica(prom: Daemon, replicas: list[AppHandle]) -> None:
    expected = {f"127.0.0.1:{r.port}": 1.0 for r in replicas}
    assert _wait_for_up(prom, expected) == expected, prom.output()


def test_prometheus_reports_the_killed_replica_down(
    prom: Daemon, replicas: list[AppHandle]
) -> None:
    expected = {f"127.0.0.1:{r.port}": 1.0 for r in replicas}
    assert _wait_for_up(prom, expected) == expected, "replicas never all came up"
    _kill(replicas[2])
    expected[f"127.0.0.1:{replicas[2].port}"] = 0.0
    assert _wait_for_up(prom, expected) == expected, prom.output()
