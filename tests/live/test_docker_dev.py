"""Scenario 1, docker dev: the dev stack's graph applied to a real engine works end to end:
web behind its LB on 127.0.0.1:8000 calling api through api's LB on the stack network, api
owning the database."""

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
    OverlayClient,
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
NETWORK = "msops-dev-net"
SERVICES = ("web", "api")
PROMETHEUS = "http://127.0.0.1:9090"
GRAFANA = "http://127.0.0.1:3000"


@dataclass
class Dev:
    engine: Engine
    applier: Applier
    graph: LiveGraph
    # A container on the stack network: api's LB is published nowhere else.
    client: OverlayClient


@pytest.fixture(scope="module")
def dev(engine: Engine, standins: dict[str, str], live_results: LiveResults) -> Iterator[Dev]:
    graph = live_synth("dev")
    with docker_stack(engine.client, graph, live_results, SCENARIO) as applier:
        client = OverlayClient(engine.client, image=standins["base"], network=NETWORK)
        try:
            yield Dev(engine, applier, graph, client)
        finally:
            client.close()


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
    assert len(health) == 9, (
        f"expected web's and api's LB and 2 replicas each, Postgres, Prometheus, Grafana: {health}"
    )
    assert all(status == "healthy" for status in health.values()), health


def test_the_migration_ran_once_to_completion(dev: Dev, live_results: LiveResults) -> None:
    containers = dev.engine.client.containers.list(
        all=True, filters={"label": ["msops.stack=dev", f"{LABEL_ROLE}={ROLE_MIGRATION}"]}
    )
    states = {c.name: (c.status, c.attrs["State"]["ExitCode"]) for c in containers}
    owners = {c.labels.get("msops.service") for c in containers}
    live_results.record(SCENARIO, "migration containers (status, exit code)", states)
    assert list(states.values()) == [("exited", 0)], states
    assert owners == {"api"}, f"the migration belongs to api alone: {owners}"


def test_lb_reaches_every_replica(dev: Dev, live_results: LiveResults) -> None:
    expected = set(replica_env(dev.graph, "REPLICA_ID", "web"))
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


def test_web_answers_through_api_behind_its_lb(dev: Dev, live_results: LiveResults) -> None:
    """web's UPSTREAM_URL is api's LB (`http://api-lb:8080`, from services.web.upstreams): each
    answer carries the api replica that served web's call, and api's LB spreads them."""
    expected = set(replica_env(dev.graph, "REPLICA_ID", "api"))
    upstream_url = set(replica_env(dev.graph, "UPSTREAM_URL", "web"))
    seen: Counter[str] = Counter()
    bad = []
    for _ in range(200):
        answer = http_get(f"{LB}/")
        body = answer.json() if answer.status == 200 else {}
        upstream = body.get("upstream") or {}
        if body.get("service") == "web" and upstream.get("service") == "api":
            seen[upstream.get("replica", "")] += 1
        else:
            bad.append((answer.status, answer.body[:200]))
    live_results.record(SCENARIO, "web UPSTREAM_URL", sorted(upstream_url))
    live_results.record(SCENARIO, "web -> api answers by api replica", dict(seen))
    assert upstream_url == {"http://api-lb:8080"}, upstream_url
    assert bad == [], f"{len(bad)} of 200 answers not through api: {bad[:3]}"
    assert set(seen) == expected, f"api replicas behind web: {dict(seen)}; expected {expected}"


def test_apis_readyz_reaches_postgres(dev: Dev, live_results: LiveResults) -> None:
    # api owns the database; its LB is reachable only on the stack network, as web reaches it.
    status, body = dev.client.get("http://api-lb:8080/readyz")
    live_results.record(SCENARIO, "api /readyz", f"{status} {body.strip()}")
    assert status == 200, body


def test_prometheus_sees_every_replica_up_and_loads_the_rules(
    dev: Dev, live_results: LiveResults
) -> None:
    replicas = {s: len(replica_env(dev.graph, "REPLICA_ID", s)) for s in SERVICES}

    def all_up() -> dict[str, int]:
        up = {}
        for service in SERVICES:
            targets = prometheus_targets(lambda p: http_get(PROMETHEUS + p).json(), service)
            if len(targets) != replicas[service] or any(t["health"] != "up" for t in targets):
                return {}
            up[service] = len(targets)
        return up

    up, waited = wait_for(all_up, timeout=60, what=f"targets {replicas} up in Prometheus")
    rules = prometheus_rule_count(lambda p: http_get(PROMETHEUS + p).json())
    live_results.record(SCENARIO, "Prometheus targets up", f"{up} (after {waited:.1f}s)")
    live_results.record(SCENARIO, "Prometheus rules loaded", rules)
    assert up == replicas, up
    assert rules >= 3 * len(SERVICES), (
        f"Prometheus loaded {rules} rules; expected TargetDown, HighErrorRate, HighLatency each "
        f"for {SERVICES}"
    )


def test_grafana_has_its_datasource_and_a_dashboard_per_service(
    dev: Dev, live_results: LiveResults
) -> None:
    password = dev.applier.output(
        RANDOM_PASSWORD, "dev-monitoring-grafana-admin-password", "result"
    )
    auth = ("admin", password)
    datasources = http_get(f"{GRAFANA}/api/datasources", auth=auth).json()
    search = http_get(f"{GRAFANA}/api/search", auth=auth).json()
    boards = {s: http_get(f"{GRAFANA}/api/dashboards/uid/msops-{s}", auth=auth) for s in SERVICES}
    live_results.record(SCENARIO, "Grafana datasources", [d["uid"] for d in datasources])
    live_results.record(SCENARIO, "Grafana dashboards", [d["uid"] for d in search])
    assert [d["uid"] for d in datasources] == ["prometheus"], datasources
    assert {f"msops-{s}" for s in SERVICES} <= {d["uid"] for d in search}, search
    for service, board in boards.items():
        assert board.status == 200 and board.json()["dashboard"]["panels"], (
            service,
            board.body[:300],
        )
