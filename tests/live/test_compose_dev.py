"""Scenario 5, compose dev: `docker-compose up` of the rendered dev stack serves through its LB
from every replica, with the stand-in images, on a real engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import plan as plans
from components import spec as specs
from components.vocabulary import LABEL_ROLE, ROLE_MIGRATION
from msops import render, synth
from tests.live.engine import Engine
from tests.live.helpers import LiveResults, http_get, wait_for

pytestmark = pytest.mark.timeout(600)

SCENARIO = "5 compose dev"
PROJECT = "msops-live-compose"
LB = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
ROOT = Path(__file__).resolve().parents[2]
VARIABLES = {"MSOPS_DB_MAIN_PASSWORD": "compose-live-pw", "MSOPS_GRAFANA_ADMIN_PASSWORD": "gpw"}


@dataclass
class Composed:
    engine: Engine
    out: Path
    replicas: int


def compose(engine: Engine, out: Path, *args: str, timeout: float = 300) -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed; scripts/test.sh installs it", pytrace=False)
    done = subprocess.run(
        [binary, "-p", PROJECT, "-f", "compose.yaml", *args],
        cwd=out,
        env={**os.environ, **engine.env, **VARIABLES},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def composed(
    engine: Engine, standins: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Composed]:
    out = tmp_path_factory.mktemp("compose") / "dev"
    values, _ = synth.config_from_file("dev")
    plan = plans.build(specs.load(specs.raw_config(values), "dev"), stack="dev")
    render.write(render.docker(plan, project_root=ROOT, base=out), out)
    try:
        compose(engine, out, "up", "-d", "--no-build")
        yield Composed(engine, out, plan.workload("web").replicas)
    finally:
        compose(engine, out, "down", "-v", "--remove-orphans", "--timeout", "20")


def test_every_container_becomes_healthy(composed: Composed, live_results: LiveResults) -> None:
    def healthy() -> dict[str, str] | None:
        found = composed.engine.client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
        )
        health = {
            c.name: c.attrs["State"].get("Health", {}).get("Status")
            for c in found
            if c.labels.get(LABEL_ROLE) != ROLE_MIGRATION
        }
        return health if health and all(h == "healthy" for h in health.values()) else None

    health, waited = wait_for(healthy, timeout=240, what="every compose container healthy")
    live_results.record(SCENARIO, "containers healthy", f"{len(health)} after {waited:.1f}s")
    assert len(health) == 9, (
        f"expected web's and api's LB and 2 replicas each, Postgres, Prometheus, Grafana: {health}"
    )


def test_the_migration_ran_to_completion_first(composed: Composed) -> None:
    found = composed.engine.client.containers.list(
        all=True,
        filters={
            "label": [f"com.docker.compose.project={PROJECT}", f"{LABEL_ROLE}={ROLE_MIGRATION}"]
        },
    )
    assert [(c.status, c.attrs["State"]["ExitCode"]) for c in found] == [("exited", 0)]


def test_the_lb_serves_from_every_replica(composed: Composed, live_results: LiveResults) -> None:
    replicas = composed.engine.client.containers.list(
        filters={
            "label": [
                f"com.docker.compose.project={PROJECT}",
                "msops.role=replica",
                "msops.service=web",
            ]
        }
    )
    hostnames = {c.attrs["Config"]["Hostname"] for c in replicas}
    assert len(hostnames) == composed.replicas, f"replica containers: {hostnames}"

    def all_answer() -> Counter[str] | None:
        seen: Counter[str] = Counter()
        for _ in range(60):
            answer = http_get(f"{LB}/")
            if answer.status != 200:
                return None
            seen[answer.headers.get("X-Replica", "")] += 1
        return seen if set(seen) == hostnames else None

    seen, waited = wait_for(all_answer, timeout=120, what=f"every replica answering via {LB}")
    live_results.record(SCENARIO, "LB requests by replica", f"{dict(seen)} after {waited:.1f}s")
    readyz = http_get(f"{LB}/readyz")
    assert readyz.status == 200, f"/readyz through the LB: {readyz.status} {readyz.body[:200]!r}"


def test_web_answers_through_api(composed: Composed, live_results: LiveResults) -> None:
    # web's UPSTREAM_URL is api's LB on the compose network, as on the docker backend.
    def through_api() -> dict[str, str] | None:
        answer = http_get(f"{LB}/")
        upstream = answer.json().get("upstream") if answer.status == 200 else None
        return upstream if upstream and upstream.get("service") == "api" else None

    upstream, waited = wait_for(through_api, timeout=60, what="web answering through api")
    live_results.record(SCENARIO, "web -> api", f"{upstream} after {waited:.1f}s")
    assert upstream["service"] == "api", upstream


def test_prometheus_finds_every_replica(composed: Composed, live_results: LiveResults) -> None:
    def all_up() -> list[object] | None:
        body = http_get(f"{PROMETHEUS}/api/v1/targets?state=active").json()
        web = [t for t in body["data"]["activeTargets"] if t["labels"].get("job") == "web"]
        ok = len(web) == composed.replicas and all(t["health"] == "up" for t in web)
        return web if ok else None

    targets, waited = wait_for(all_up, timeout=90, what="every web replica up in Prometheus")
    live_results.record(
        SCENARIO, "Prometheus web targets up", f"{len(targets)} after {waited:.1f}s"
    )
