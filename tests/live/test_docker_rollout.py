"""Scenario 2, docker rollout under load: only the replicas change, and no request is lost.

Under continuous load on the published LB port: image 1.0.0 -> 1.1.0 with replicas 2 -> 3,
a rollback to the first graph, then a scale to 3 and 3 -> 1. Each loses 0 requests; the LB
and Prometheus are never replaced; Prometheus scrapes a surviving replica without a gap; a
row written to Postgres before survives all of it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.live.applier import CONTAINER, Applier, LiveGraph, label_map, live_synth, stack_config
from tests.live.engine import Engine
from tests.live.helpers import LiveResults, apply_or_explain, docker_stack, http_get
from tests.live.loadgen import Load

pytestmark = pytest.mark.timeout(900)

SCENARIO = "2 docker rollout"
LB = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
MARKER = "written before the rollout"
SCRAPE_SECONDS = 15
# What a rollout may touch: the replicas, the image they run, and the one-off container that
# migrates the schema to the release's version before them.
REPLICA = re.compile(r"dev-web-\d+|dev-web-image|image-.*|dev-web-migrate")


@dataclass
class Rollout:
    engine: Engine
    applier: Applier
    config: dict[str, Any]

    def graph(self, *, image: str, replicas: int) -> LiveGraph:
        web = self.config["msops:services"]["web"]
        web["image"], web["replicas"] = image, replicas
        return live_synth(config=self.config, stack_name="dev")

    def container(self, name: str) -> str:
        return next(
            a.outputs["id"]
            for a in self.applier.state.values()
            if a.type == CONTAINER and a.name == name
        )

    def replica_ids(self) -> dict[str, str]:
        """Replica resource name -> container ID."""
        return {
            a.name: a.outputs["id"]
            for a in self.applier.state.values()
            if a.type == CONTAINER
            and label_map(a.inputs.get("labels")).get("msops.role") == "replica"
        }

    def psql(self, sql: str) -> str:
        db = self.engine.client.containers.get(self.container("dev-main"))
        code, out = db.exec_run(["psql", "-U", "app", "-d", "main", "-tAc", sql], user="postgres")
        assert code == 0, out.decode()
        return out.decode().strip()


@pytest.fixture(scope="module")
def rollout(
    engine: Engine, standins: dict[str, str], live_results: LiveResults
) -> Iterator[Rollout]:
    config = stack_config("dev")
    first = live_synth(config=config, stack_name="dev")
    with docker_stack(engine.client, first, live_results, SCENARIO) as applier:
        state = Rollout(engine, applier, config)
        state.psql("CREATE TABLE IF NOT EXISTS live_marker (note text)")
        state.psql(f"INSERT INTO live_marker VALUES ('{MARKER}')")
        yield state


def _under_load(
    rollout: Rollout, graph: LiveGraph, label: str, live_results: LiveResults
) -> tuple[float, float]:
    """Apply under load; returns when the apply started and ended (monotonic seconds)."""
    lb = rollout.container("dev-web-lb")
    prometheus = rollout.container("dev-monitoring-prometheus")
    with Load(f"{LB}/", workers=4, rate=200) as load:
        time.sleep(1)
        started = time.monotonic()
        up = apply_or_explain(rollout.applier, graph)
        ended = time.monotonic()
        time.sleep(2)
    outcome = load.result
    changed = sorted({s.urn.rsplit("::", 1)[-1] for s in up.steps if s.op != "same"})
    live_results.record(SCENARIO, f"{label} seconds", round(ended - started, 1))
    live_results.record(SCENARIO, f"{label} requests lost", f"{outcome.failed} of {outcome.total}")
    live_results.record(
        SCENARIO,
        f"{label} longest gap / slowest request",
        f"{outcome.longest_gap:.2f}s / {outcome.slowest:.2f}s",
    )
    live_results.record(SCENARIO, f"{label} changed", changed)
    assert outcome.failed == 0, f"{label}: {outcome.describe()}"
    assert rollout.container("dev-web-lb") == lb, f"{label} replaced the LB"
    assert rollout.container("dev-monitoring-prometheus") == prometheus, (
        f"{label} replaced Prometheus"
    )
    others = [n for n in changed if not REPLICA.fullmatch(n)]
    assert not others, f"{label} changed more than the replicas, image and migration: {others}"
    return started, ended


def test_rollout_1_0_0_to_1_1_0_and_3_replicas_loses_nothing(
    rollout: Rollout, live_results: LiveResults
) -> None:
    _under_load(
        rollout, rollout.graph(image="msops/demo:1.1.0", replicas=3), "rollout", live_results
    )
    versions = {http_get(f"{LB}/").json()["version"] for _ in range(30)}
    assert versions == {"1.1.0"}, versions


def test_rollback_to_the_first_graph_loses_nothing(
    rollout: Rollout, live_results: LiveResults
) -> None:
    _under_load(
        rollout, rollout.graph(image="msops/demo:1.0.0", replicas=2), "rollback", live_results
    )
    versions = {http_get(f"{LB}/").json()["version"] for _ in range(30)}
    assert versions == {"1.0.0"}, versions


def test_scale_3_to_1_loses_nothing_and_keeps_the_survivors_scrape(
    rollout: Rollout, live_results: LiveResults
) -> None:
    since = time.monotonic()
    _under_load(
        rollout, rollout.graph(image="msops/demo:1.0.0", replicas=3), "scale 2->3", live_results
    )
    survivor = rollout.engine.client.containers.get(rollout.replica_ids()["dev-web-1"])
    address = next(iter(survivor.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    _under_load(
        rollout, rollout.graph(image="msops/demo:1.0.0", replicas=1), "scale 3->1", live_results
    )
    time.sleep(SCRAPE_SECONDS)
    # Every scrape of the surviving replica across both changes: none missed, all up.
    window = int(time.monotonic() - since)
    selector = f'up{{job="web",instance="{address}:8080"}}'

    def query(expr: str) -> float | None:
        body = http_get(f"{PROMETHEUS}/api/v1/query?query={expr}").json()
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    samples = query(f"count_over_time({selector}[{window}s])") or 0
    lowest = query(f"min_over_time({selector}[{window}s])")
    live_results.record(SCENARIO, "scrapes of the surviving replica", f"{samples:.0f} in {window}s")
    assert samples >= window // SCRAPE_SECONDS - 1, f"{samples} scrapes of {address} in {window}s"
    assert lowest == 1, f"{address} was seen down during the scale (min up {lowest})"


def test_postgres_data_survives(rollout: Rollout, live_results: LiveResults) -> None:
    notes = rollout.psql("SELECT note FROM live_marker")
    live_results.record(SCENARIO, "Postgres row after all of it", notes)
    assert notes == MARKER
