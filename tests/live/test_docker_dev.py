"""Scenario 1, docker dev: the dev stack's graph applied to a real engine works end to end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from components.vocabulary import LABEL_ROLE, ROLE_MIGRATION
from tests.live.applier import RANDOM_PASSWORD, Applier, LiveGraph, live_synth
from tests.live.engine import Engine
from tests.live.helpers import (
    LiveResults,
    docker_stack,
    http_get,
    prometheus_rule_count,
    prometheus_targets,
    replica_env,
    wait_for,
)

pytestmark = pytest.mark.timeout(900)

SCENARIO = "1 docker dev"
LB = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
GRAFANA = "http://127.0.0.1:3000"


@dataclass
class Dev:
    engine: Engine
    applier: Applier
    graph: LiveGraph


@pytest.fixture(scope="module")
def dev(engine: Engine, standins: dict[str, str], live_results: LiveResults) -> Iterator[Dev]:
    graph = live_synth("dev")
    with docker_stack(engine.client, graph, live_results, SCENARIO) as applier:
        yield Dev(engine, applier, graph)


def test_every_long_running_container_is_healthy(dev: Dev, live_results: LiveResults) -> None:
    containers = dev.engine.client.containers.list(all=True, filters={"label": "msops.stack=dev"})
    health = {
        c.name: c.attrs["State"].get("Health", {}).get("Status")
        for c in containers
        if c.labels.get(LABEL_ROLE) != ROLE_MIGRATION
    }
    live_results.record(
        SCENARIO,
        "containers healthy",
        f"{sum(h == 'healthy' for h in health.values())}/{len(health)}",
    )
    assert len(health) == 6, f"expected LB, 2 replicas, Postgres, Prometheus, Grafana: {health}"
    assert all(status == "healthy" for status in health.values()), health


def test_the_migration_ran_once_to_completion(dev: Dev, live_results: LiveResults) -> None:
    containers = dev.engine.client.containers.list(
        all=True, filters={"label": ["msops.stack=dev", f"{LABEL_ROLE}={ROLE_MIGRATION}"]}
    )
    states = {c.name: (c.status, c.attrs["State"]["ExitCode"]) for c in containers}
    live_results.record(SCENARIO, "migration containers (status, exit code)", states)
    assert list(states.values()) == [("exited", 0)], states


def test_lb_reaches_every_replica(dev: Dev, live_results: LiveResults) -> None:
    expected = set(replica_env(dev.graph, "REPLICA_ID"))
    seen: Counter[str] = Counter()
    failed = 0
    for _ in range(400):
        answer = http_get(f"{LB}/")
        if answer.status == 200:
            seen[answer.headers.get("X-Replica", "")] += 1
        else:
            failed += 1
    live_results.record(SCENARIO, "LB requests by replica", dict(seen))
    assert failed == 0, f"{failed} of 400 requests through {LB} failed"
    assert set(seen) == expected, (
        f"replicas answering through {LB}: {dict(seen)}; expected {expected}"
    )


def test_readyz_reaches_postgres(dev: Dev, live_results: LiveResults) -> None:
    answer = http_get(f"{LB}/readyz")
    live_results.record(SCENARIO, "/readyz", f"{answer.status} {answer.body.decode().strip()}")
    assert answer.status == 200, answer.body


def test_prometheus_sees_every_replica_up_and_loads_the_rules(
    dev: Dev, live_results: LiveResults
) -> None:
    replicas = len(replica_env(dev.graph, "REPLICA_ID"))

    def all_up() -> list[dict[str, object]]:
        targets = prometheus_targets(lambda p: http_get(PROMETHEUS + p).json(), "web")
        return (
            targets
            if len(targets) == replicas and all(t["health"] == "up" for t in targets)
            else []
        )

    targets, waited = wait_for(all_up, timeout=60, what=f"{replicas} web targets up in Prometheus")
    rules = prometheus_rule_count(lambda p: http_get(PROMETHEUS + p).json())
    live_results.record(
        SCENARIO, "Prometheus web targets up", f"{len(targets)} (after {waited:.1f}s)"
    )
    live_results.record(SCENARIO, "Prometheus rules loaded", rules)
    assert rules >= 3, (
        f"Prometheus loaded {rules} rules; expected TargetDown, HighErrorRate, HighLatency"
    )


def test_grafana_has_its_datasource_and_dashboard(dev: Dev, live_results: LiveResults) -> None:
    password = dev.applier.output(
        RANDOM_PASSWORD, "dev-monitoring-grafana-admin-password", "result"
    )
    auth = ("admin", password)
    datasources = http_get(f"{GRAFANA}/api/datasources", auth=auth).json()
    search = http_get(f"{GRAFANA}/api/search", auth=auth).json()
    board = http_get(f"{GRAFANA}/api/dashboards/uid/msops-web", auth=auth)
    live_results.record(SCENARIO, "Grafana datasources", [d["uid"] for d in datasources])
    live_results.record(SCENARIO, "Grafana dashboards", [d["uid"] for d in search])
    assert [d["uid"] for d in datasources] == ["prometheus"], datasources
    assert "msops-web" in {d["uid"] for d in search}, search
    assert board.status == 200 and board.json()["dashboard"]["panels"], board.body[:300]
