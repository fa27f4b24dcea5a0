"""Scenario 4, swarm staging: the staging graph on a one-node swarm, under load from inside.

The kernel here has no IP_VS, so Swarm's routing mesh and service VIPs carry no traffic: a
published port refuses connections and a VIP name (`main`, `staging_web`, `api`) does not
answer. What this leaves unproven is the mesh itself; everything here goes to
`tasks.<service>` from a client container on the stack's overlay network: the load (round
the task addresses, resolved per request), and the queries to Prometheus.

web calls api: the stack file gives web `UPSTREAM_URL=http://api:8080` (services.web.upstreams),
api's name on the overlay network, which Docker's DNS answers with api's virtual IP; on a real
cluster the VIP balances over api's tasks. Here the tier proves that the name resolves to that
VIP from the network, and, with web pointed at `tasks.staging_api` instead (the tier's change,
like the health timing; MSOPS_LIVE_SWARM_UPSTREAM=vip keeps the stack's), that web's answers
come from api's tasks across the overlay network. Not proven here: traffic through the VIP.
See docs/swarm.md, "Service to service".
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.live.applier import (
    NETWORK,
    SERVICE,
    Applier,
    LiveGraph,
    ServiceRolledBack,
    live_synth,
    stack_config,
)
from tests.live.engine import Engine
from tests.live.helpers import (
    LiveResults,
    OverlayClient,
    apply_or_explain,
    new_applier,
    wait_for,
)
from tests.live.images import UNHEALTHY_SUFFIX

pytestmark = pytest.mark.timeout(900)

SCENARIO = "4 swarm staging"
WEB = "staging_web"
API = "staging_api"
# What web calls on this kernel, where api's VIP carries nothing: its tasks.
TASKS_UPSTREAM = f"http://tasks.{API}:8080"
LOAD_URL = f"http://tasks.{WEB}:8080/version"
PROMETHEUS = "http://tasks.staging_msops-prometheus:9090"
DB_LABEL = "msops.db.main"
# The staging stack's web health check (10s interval, 3 retries) has Swarm watch every updated
# task for 35s: one rollout takes over a minute, a rolled-back one about 80s. By default the
# tier runs the staging graph with a faster check, to stay within CI's time budget;
# MSOPS_LIVE_SWARM_TIMING=stack keeps the committed timing (the figures for docs/benchmarks.md).
FAST_HEALTH = {"interval": "3s", "retries": 2, "startPeriod": "2s"}


def staging_config() -> tuple[dict[str, Any], str, str]:
    """The staging config as the tier runs it, with how its health timing and web's upstream
    differ from the stack file's."""
    config = stack_config("staging")
    services = config["msops:services"]
    web = services["web"]
    upstream = "as committed: http://api:8080 (api's VIP)"
    if os.environ.get("MSOPS_LIVE_SWARM_UPSTREAM", "tasks") != "vip":
        del web["upstreams"]
        web.setdefault("env", {})["UPSTREAM_URL"] = TASKS_UPSTREAM
        upstream = f"the tier's: {TASKS_UPSTREAM} (MSOPS_LIVE_SWARM_UPSTREAM=vip for the stack's)"
    if os.environ.get("MSOPS_LIVE_SWARM_TIMING", "fast") == "stack":
        return config, f"as committed: {web.get('health', {})}", upstream
    for svc in services.values():
        svc["health"] = {**(svc.get("health") or {}), **FAST_HEALTH}
    timing = f"the tier's: {FAST_HEALTH} (MSOPS_LIVE_SWARM_TIMING=stack for the stack's)"
    return config, timing, upstream


@dataclass
class Staging:
    engine: Engine
    applier: Applier
    client: OverlayClient
    config: dict[str, Any]

    def graph(self, *, replicas: int | None = None, image: str | None = None) -> LiveGraph:
        """The staging graph (with the tier's health timing) and the web service changed."""
        if replicas is not None:
            self.config["msops:services"]["web"]["replicas"] = replicas
        if image is not None:
            self.config["msops:services"]["web"]["image"] = image
        return live_synth(config=self.config, stack_name="staging")

    def tasks(self, service: str = WEB) -> dict[str, str]:
        """Running task containers of a service (web's by default): hostname (as X-Replica
        shows it) -> image reference.

        A task's hostname is its container ID's first 12 characters, as Swarm sets it.
        """
        running = self.engine.client.api.containers(
            filters={"label": f"com.docker.swarm.service.name={service}", "status": "running"}
        )
        return {c["Id"][:12]: c["Image"] for c in running}

    def history(self) -> list[str]:
        """The web service's tasks, oldest first: what Swarm did, for failure messages."""
        tasks = self.engine.client.api.tasks(filters={"service": WEB})
        return [
            f"slot {t.get('Slot')} {t['DesiredState']}/{t['Status']['State']} "
            f"{t['Status'].get('Err') or t['Status'].get('Message')} "
            f"({t['CreatedAt'][11:19]}-{t['Status']['Timestamp'][11:19]})"
            for t in sorted(tasks, key=lambda t: t["CreatedAt"])
        ]

    def task_addresses(self) -> set[str]:
        return set(self.client.addresses(f"tasks.{WEB}"))


def _label_node(engine: Engine, node_id: str, value: str | None) -> None:
    node = engine.client.nodes.get(node_id)
    spec = node.attrs["Spec"]
    labels = dict(spec.get("Labels") or {})
    if value is None:
        labels.pop(DB_LABEL, None)
    else:
        labels[DB_LABEL] = value
    spec["Labels"] = labels
    node.update(spec)


@pytest.fixture(scope="module")
def staging(
    engine: Engine, standins: dict[str, str], swarm_node: str, live_results: LiveResults
) -> Iterator[Staging]:
    # docs/swarm.md: the database is pinned to the node labelled for it.
    _label_node(engine, swarm_node, "true")
    applier = new_applier(engine.client, "staging")
    client: OverlayClient | None = None
    try:
        config, timing, upstream = staging_config()
        live_results.record(SCENARIO, "health timing", timing)
        live_results.record(SCENARIO, "web's upstream", upstream)
        started = time.monotonic()
        apply_or_explain(applier, live_synth(config=config, stack_name="staging"))
        live_results.record(SCENARIO, "apply seconds", round(time.monotonic() - started, 1))
        network = applier.output(NETWORK, "staging-network", "name")
        client = OverlayClient(engine.client, image=standins["base"], network=network)
        yield Staging(engine, applier, client, config)
    finally:
        if client is not None:
            client.close()
        applier.destroy()
        _label_node(engine, swarm_node, None)


def test_requests_reach_every_task(staging: Staging, live_results: LiveResults) -> None:
    tasks = staging.tasks()
    load = staging.client.start_load(LOAD_URL)
    time.sleep(3)
    result = load.stop()
    live_results.record(SCENARIO, "requests by task", result.replicas)
    assert result.failed == 0, result.describe()
    assert set(result.replicas) == set(tasks), (
        f"tasks {sorted(tasks)} but answers from {result.replicas}"
    )


def test_web_answers_through_api_across_the_overlay_network(
    staging: Staging, live_results: LiveResults
) -> None:
    api_tasks = set(staging.tasks(API))
    seen: dict[str, int] = {}
    bad = []
    for _ in range(40):
        body = staging.client.get_json(f"http://tasks.{WEB}:8080/")
        upstream = body.get("upstream") or {}
        if body.get("service") == "web" and upstream.get("service") == "api":
            seen[upstream.get("replica", "")] = seen.get(upstream.get("replica", ""), 0) + 1
        else:
            bad.append(body)
    live_results.record(SCENARIO, "web -> api answers by api task", seen)
    assert bad == [], f"{len(bad)} of 40 answers not through api: {bad[:3]}"
    assert seen and set(seen) <= api_tasks, f"api answered as {seen}; its tasks: {api_tasks}"


def test_apis_service_name_resolves_to_its_vip_on_the_overlay_network(
    staging: Staging, live_results: LiveResults
) -> None:
    """What the stack file's `http://api:8080` reaches on a real cluster: api's virtual IP on
    the stack network (which, on this kernel, carries no traffic)."""
    committed = live_synth(config=stack_config("staging"), stack_name="staging")
    (web,) = [r for r in committed if r.type == SERVICE and r.name == "web"]
    url = web.inputs["taskSpec"]["containerSpec"]["env"]["UPSTREAM_URL"]
    network_id = staging.applier.output(NETWORK, "staging-network")
    vips = {
        v["Addr"].split("/")[0]
        for v in staging.engine.client.api.inspect_service(API)["Endpoint"]["VirtualIPs"]
        if v["NetworkID"] == network_id
    }
    resolved = set(staging.client.addresses("api"))
    live_results.record(SCENARIO, "'api' resolves to", sorted(resolved))
    live_results.record(SCENARIO, "api's VIP on the stack network", sorted(vips))
    assert url == "http://api:8080", url
    assert vips and resolved == vips, f"'api' resolves to {resolved}; api's VIP is {vips}"


def test_the_database_url_is_a_file_and_no_secret_is_in_the_service_spec(
    staging: Staging, live_results: LiveResults
) -> None:
    """What `docker service inspect staging_api` shows holds no secret, and the app still
    reaches its database: it read the URL from DATABASE_URL_FILE."""
    spec = staging.engine.client.api.inspect_service(API)["Spec"]["TaskTemplate"]
    env = dict(item.split("=", 1) for item in spec["ContainerSpec"].get("Env") or [])
    live_results.record(SCENARIO, "api env names", sorted(env))
    assert "DATABASE_URL" not in env, f"{API}: DATABASE_URL is in the service spec"
    assert env.get("DATABASE_URL_FILE") == "/run/secrets/DATABASE_URL", env
    assert not [k for k, v in env.items() if "://" in v and "@" in v], f"{API}: a URL with a login"
    status, body = staging.client.get(f"http://tasks.{API}:8080/readyz")
    live_results.record(SCENARIO, "/readyz", f"{status} {body.strip()[:120]}")
    assert status == 200, f"/readyz of {API}: {status} {body[:200]}"


def _apply_under_load(
    staging: Staging, graph: LiveGraph, live_results: LiveResults, label: str
) -> tuple[float, Any]:
    load = staging.client.start_load(LOAD_URL)
    started = time.monotonic()
    try:
        apply_or_explain(staging.applier, graph)
    finally:
        seconds = time.monotonic() - started
        time.sleep(1)
        result = load.stop()
    live_results.record(SCENARIO, f"{label} seconds", round(seconds, 1))
    live_results.record(SCENARIO, f"{label} requests lost", f"{result.failed} of {result.total}")
    if result.lookup_failures:
        live_results.record(SCENARIO, f"{label} failed DNS lookups", result.lookup_failures)
    return seconds, result


def test_scale_up_and_down_loses_no_request(staging: Staging, live_results: LiveResults) -> None:
    _, up = _apply_under_load(staging, staging.graph(replicas=4), live_results, "scale 2->4")
    tasks_at_four = staging.tasks()
    _, down = _apply_under_load(staging, staging.graph(replicas=2), live_results, "scale 4->2")
    assert len(tasks_at_four) == 4, f"after scaling to 4: {sorted(tasks_at_four)}"
    assert up.failed == 0, f"scale 2->4: {up.describe()}; tasks: {staging.history()}"
    assert down.failed == 0, f"scale 4->2: {down.describe()}; tasks: {staging.history()}"
    assert len(staging.tasks()) == 2, f"after scaling to 2: {sorted(staging.tasks())}"


def test_prometheus_dns_sd_finds_every_task(staging: Staging, live_results: LiveResults) -> None:
    def targets_match() -> list[str]:
        addresses = staging.task_addresses()
        body = staging.client.get_json(f"{PROMETHEUS}/api/v1/targets?state=active")
        web = [t for t in body["data"]["activeTargets"] if t["labels"].get("job") == "web"]
        found = {t["discoveredLabels"]["__address__"].rsplit(":", 1)[0] for t in web}
        up = all(t["health"] == "up" for t in web)
        return sorted(found) if found == addresses and up and addresses else []

    found, waited = wait_for(
        targets_match, timeout=120, interval=2, what="Prometheus targets = tasks"
    )
    live_results.record(
        SCENARIO, "Prometheus web targets up", f"{len(found)} (waited {waited:.1f}s)"
    )
    assert len(found) == 2


def test_start_first_update_loses_no_request(staging: Staging, live_results: LiveResults) -> None:
    image = "ghcr.io/msops/demo:1.1.0"
    _, result = _apply_under_load(
        staging, staging.graph(image=image), live_results, "update 1.0.0->1.1.0"
    )
    live_results.record(SCENARIO, "update versions served", result.versions)
    assert result.failed == 0, f"{result.describe()}; tasks: {staging.history()}"
    assert set(staging.tasks().values()) == {image}, staging.tasks()
    assert "1.1.0" in result.versions, result.versions


def _engine_time(stamp: str | None) -> float | None:
    """An Engine API timestamp (RFC 3339, nanoseconds) as a Unix time."""
    if not stamp:
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    parsed = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return parsed.timestamp() + float(f"0.{frac or 0}")


def test_failed_update_is_rolled_back_by_swarm(staging: Staging, live_results: LiveResults) -> None:
    good = staging.tasks()
    broken = f"ghcr.io/msops/demo:1.2.0{UNHEALTHY_SUFFIX}"
    graph = staging.graph(image=broken)
    api = staging.engine.client.api
    sid = api.inspect_service(WEB)["ID"]

    # When Swarm turned to rolling back: its UpdateStatus keeps only the update's start.
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            state = (api.inspect_service(sid).get("UpdateStatus") or {}).get("State")
            if state:
                seen.setdefault(state, time.time())
            stop.wait(0.25)

    load = staging.client.start_load(LOAD_URL)
    started = time.time()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    error: ServiceRolledBack | None = None
    try:
        staging.applier.up(graph)
    except ServiceRolledBack as exc:
        error = exc
    finally:
        applied = time.time() - started
        stop.set()
        watcher.join(5)
        result = load.stop()
    status = api.inspect_service(sid).get("UpdateStatus") or {}
    began, done = seen.get("rollback_started"), _engine_time(status.get("CompletedAt"))
    live_results.record(SCENARIO, "broken update: apply failed after", f"{applied:.1f}s: {error}")
    live_results.record(
        SCENARIO, "broken update requests lost", f"{result.failed} of {result.total}"
    )
    live_results.record(SCENARIO, "broken update versions served", result.versions)
    assert error is not None, "the update to an image whose health check fails did not fail"
    assert status.get("State") == "rollback_completed", f"Swarm did not roll back: {status}"
    assert began is not None and done is not None, status
    live_results.record(SCENARIO, "rollback began after", f"{began - started:.1f}s")
    live_results.record(
        SCENARIO, "rollback done (old version on every task) after", f"{done - started:.1f}s"
    )
    assert result.failed == 0, f"{result.describe()}; tasks: {staging.history()}"
    assert set(result.versions) == {"1.1.0"}, f"served during the broken update: {result.versions}"
    assert set(staging.tasks().values()) == set(good.values()), staging.tasks()
