"""Issue 15 on docker: one microservice rolled back on its own, under load, through web.

The dev stack (web in front of api through api's LB, api owning Postgres and its
migrations) deployed by msops' own Up action with api at 1.0.0, then api shipped at 1.1.0
(web unchanged), then `msops rollback dev --service api` as the CLI runs it: the Rollback
action picks api's release from the history, writes api's block back into the stack file in
tmp, and deploys it. The gateway under those actions (helpers.LiveGateway) synthesizes the
stack file and applies it to the real engine. A load generator sends requests to web's LB
all the while the rollback runs; a web answer that carries no api identity is lost too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from msops.actions.rollback import Rollback, RollbackResult
from msops.actions.up import Up
from msops.stackfiles import StackDocument
from tests import multi
from tests.live.engine import Engine
from tests.live.helpers import (
    LiveGateway,
    LiveResults,
    container_ids,
    http_get,
    live_bench,
    wait_for,
)
from tests.live.loadgen import Load, LoadResult

pytestmark = pytest.mark.timeout(900)

SCENARIO = "docker rollback of one service"
STACK = "dev"
LB = "http://127.0.0.1:8000"
FIRST, SECOND = "1.0.0", "1.1.0"
WEB = ("dev-web-1", "dev-web-2", "dev-web-lb")
# What rolling api back may touch: its replicas, the image they run, and the one-off
# container that migrates the schema with that image before them.
API_REPLICAS = ("dev-api-1", "dev-api-2")
FOLLOWERS = ("dev-api-image", "dev-api-migrate")


@dataclass
class Rolled:
    """The scenario, run once: what was running and written before and after the rollback."""

    result: RollbackResult
    load: LoadResult
    before: dict[str, str]  # container resource name -> container ID
    after: dict[str, str]
    changed: list[str]  # the resources the rollback's apply did not leave as they were
    text_before: str
    text_after: str


def upstream_of_web() -> tuple[str, str]:
    """(service, version) of the api replica that answered one request to web's LB."""
    upstream = http_get(f"{LB}/").json().get("upstream") or {}
    return upstream.get("service", ""), upstream.get("version", "")


def deploy(up: Up, live_results: LiveResults, label: str) -> None:
    """Run msops' Up action (the gateway applies it), recording how long it took."""
    started = time.monotonic()
    up.run()
    live_results.record(SCENARIO, f"{label} seconds", round(time.monotonic() - started, 1))


@pytest.fixture(scope="module")
def rolled(
    engine: Engine,
    standins: dict[str, str],
    live_results: LiveResults,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rolled]:
    root = tmp_path_factory.mktemp("service-rollback")
    with live_bench(engine.client, root, "rollback") as bench:
        cfg, gateway = bench.cfg(), bench.gateway
        assert isinstance(gateway, LiveGateway)
        deploy(Up(cfg, STACK, yes=True), live_results, f"release 1 (api {FIRST})")
        doc = StackDocument.load(STACK, bench.stacks)
        doc.set_image("api", f"msops/demo:{SECOND}")
        doc.save()
        deploy(Up(cfg, STACK, yes=True), live_results, f"release 2 (api {SECOND})")
        wait_for(
            lambda: upstream_of_web() == ("api", SECOND), timeout=60, what=f"web on api {SECOND}"
        )
        before, text_before = container_ids(gateway.applier), bench.text(STACK)
        with Load(f"{LB}/", workers=4, rate=200, upstream=True) as load:
            time.sleep(1)
            started = time.monotonic()
            result = Rollback(cfg, STACK, services=("api",), yes=True).run()
            live_results.record(SCENARIO, "rollback seconds", round(time.monotonic() - started, 1))
            time.sleep(2)
        applied = gateway.applied[-1]
        live_results.record(SCENARIO, "rollback apply seconds", round(applied.seconds, 1))
        yield Rolled(
            result=result,
            load=load.result,
            before=before,
            after=container_ids(gateway.applier),
            changed=sorted({s.urn.rsplit("::", 1)[-1] for s in applied.steps if s.op != "same"}),
            text_before=text_before,
            text_after=bench.text(STACK),
        )


def test_no_request_through_web_is_lost_while_api_rolls_back(
    rolled: Rolled, live_results: LiveResults
) -> None:
    load = rolled.load
    live_results.record(SCENARIO, "requests lost", f"{load.failed} of {load.total}")
    live_results.record(
        SCENARIO,
        "longest gap / slowest request",
        f"{load.longest_gap:.2f}s / {load.slowest:.2f}s",
    )
    live_results.record(SCENARIO, "api versions web answered with", load.upstream_versions)
    # The load saw api move: answers from both versions, so the count covers the switch.
    assert set(load.upstream_versions) == {FIRST, SECOND}, load.describe()
    assert load.failed == 0, load.describe()


def test_web_answers_through_api_at_the_first_version_after_it(
    rolled: Rolled, live_results: LiveResults
) -> None:
    seen = {upstream_of_web() for _ in range(30)}
    target = rolled.result.targets["api"]
    live_results.record(SCENARIO, "api rolled back to", f"release {target.number}, {seen}")
    assert (target.number, seen) == (1, {("api", FIRST)}), (target.number, seen)


def test_web_replicas_and_lb_are_not_replaced(rolled: Rolled) -> None:
    replaced = [name for name in WEB if rolled.before[name] != rolled.after[name]]
    assert not replaced, f"the rollback of api replaced {replaced}"


def test_only_api_replicas_and_what_follows_them_changed(
    rolled: Rolled, live_results: LiveResults
) -> None:
    moved = sorted(n for n, cid in rolled.after.items() if rolled.before.get(n) != cid)
    live_results.record(SCENARIO, "rollback changed", rolled.changed)
    assert moved == sorted([*API_REPLICAS, "dev-api-migrate"]), moved
    assert set(rolled.changed) <= {*API_REPLICAS, *FOLLOWERS}, rolled.changed


def test_the_stack_files_web_block_is_byte_identical(rolled: Rolled) -> None:
    assert rolled.text_after != rolled.text_before, "the rollback wrote nothing"
    assert multi.block(rolled.text_after, "web") == multi.block(rolled.text_before, "web")
