"""The schema rules of a rollback, per service (`rollback --service`), through the action."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.vocabulary import MIGRATE_DOWN_ENV
from msops import releases
from msops.actions.base import SchemaPlanned
from msops.actions.rollback import Rollback
from msops.errors import SchemaRefused
from tests import fakes

pytestmark = pytest.mark.timeout(120)

OLD, NEW = "msops/demo:1.0.0", "msops/demo:1.1.0"


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    """dev: release 1 runs 1.0.0 on schema 2, release 2 (deployed, in the file) 1.1.0 on 3."""
    bench = fakes.Bench(tmp_path)
    bench.deployed(
        "dev",
        [fakes.schema_update(OLD, 2, hour=0), fakes.schema_update(NEW, 3, hour=1, down=False)],
        fakes.schema_stack_text(NEW, 3, down=False),
    )
    return bench


def with_down(bench: fakes.Bench) -> None:
    bench.deployed(
        "dev",
        [fakes.schema_update(OLD, 2, hour=0), fakes.schema_update(NEW, 3, hour=1)],
        fakes.schema_stack_text(NEW, 3),
    )


def messages(bench: fakes.Bench) -> list[str]:
    return [str(call[2]).splitlines()[0] for call in bench.gateway.called("up")]


def test_a_service_rollback_to_an_older_schema_is_refused_before_writing(
    bench: fakes.Bench,
) -> None:
    before = bench.path("dev").read_bytes()
    with pytest.raises(SchemaRefused, match=r"services\.web: release 1 needs schema 2"):
        Rollback(bench.cfg(), "dev", services=("web",), to=1, yes=True).run()
    assert bench.path("dev").read_bytes() == before and bench.gateway.called("up") == []


def test_a_service_rollback_with_ignore_schema_accepts_the_newer_one(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", services=("web",), to=1, yes=True, ignore_schema=True).run()
    (planned,) = bench.of(SchemaPlanned)
    assert [s.service for s in planned.plan.accepted] == ["web"]
    assert messages(bench) == ["msops rollback: web to release 1"]


def test_a_service_rollback_with_migrate_down_runs_the_down_first(bench: fakes.Bench) -> None:
    with_down(bench)
    Rollback(bench.cfg(), "dev", services=("web",), to=1, yes=True, migrate_down=True).run()
    assert messages(bench) == [
        releases.migrate_down_message({"web": 2}, 1),
        "msops rollback: web to release 1",
    ]
    assert bench.gateway.envs[0] == {MIGRATE_DOWN_ENV: json.dumps({"web": 2})}
