"""Rollback, `up --atomic` and history with database schemas, through the actions (no typer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.vocabulary import MIGRATE_DOWN_ENV
from msops import releases
from msops.actions.base import MigratingDown, ReleaseChosen, SchemaPlanned
from msops.actions.history import History
from msops.actions.rollback import Rollback
from msops.actions.up import Up
from msops.errors import OperationFailed, SchemaRefused, VerificationFailed
from msops.verify import Verdict
from tests import fakes

pytestmark = pytest.mark.timeout(120)

OLD, NEW = "msops/demo:1.0.0", "msops/demo:1.1.0"
DOWN_ENV = {MIGRATE_DOWN_ENV: json.dumps({"web": 2})}


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    """dev: release 1 runs 1.0.0 on schema 2, release 2 (deployed, in the file) 1.1.0 on 3."""
    bench = fakes.Bench(tmp_path)
    bench.deployed(
        "dev",
        [fakes.schema_update(OLD, 2, hour=0), fakes.schema_update(NEW, 3, hour=1)],
        fakes.schema_stack_text(NEW, 3),
    )
    return bench


def without_down(bench: fakes.Bench) -> None:
    """Release 2 has no down migration."""
    bench.deployed(
        "dev",
        [fakes.schema_update(OLD, 2, hour=0), fakes.schema_update(NEW, 3, hour=1, down=False)],
        fakes.schema_stack_text(NEW, 3, down=False),
    )


def messages(bench: fakes.Bench) -> list[str | None]:
    return [call[2] for call in bench.gateway.called("up")]


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_to_an_older_schema_without_the_flag_writes_nothing(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    with pytest.raises(SchemaRefused) as caught:
        Rollback(bench.cfg(), "dev", to=1, yes=True).run()
    assert caught.value.exit_code == 2
    assert "--migrate-down" in str(caught.value) and "down --to 2" in str(caught.value)
    assert bench.text("dev") == before, "nothing may be written"
    assert bench.gateway.called("up") == bench.gateway.called("set_secret") == []


def test_rollback_with_migrate_down_runs_the_down_first_then_the_release(
    bench: fakes.Bench,
) -> None:
    Rollback(bench.cfg(), "dev", to=1, yes=True, migrate_down=True).run()
    assert messages(bench) == [
        releases.migrate_down_message({"web": 2}, 1),
        "msops rollback to release 1",
    ]
    assert bench.gateway.envs == [DOWN_ENV, {}], bench.gateway.envs


def test_the_down_step_is_an_update_of_the_stack_file_as_deployed(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=1, yes=True, migrate_down=True).run()
    down_step, rollback = bench.gateway.updates["dev"][-2:]
    images = [
        json.loads(u.config["msops:services"].value)["web"]["image"] for u in (down_step, rollback)
    ]
    assert images == [NEW, OLD], "the down runs with the image that migrated up"
    assert f"image: {OLD}" in bench.text("dev")


def test_rollback_reports_the_down_step_it_runs(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=1, yes=True, migrate_down=True).run()
    (planned,) = bench.of(SchemaPlanned)
    (running,) = bench.of(MigratingDown)
    assert planned.plan.down_versions() == running.plan.down_versions() == {"web": 2}


def test_a_confirmed_rollback_previews_the_release_and_downs_the_deployed_config(
    bench: fakes.Bench,
) -> None:
    bench.confirm = fakes.Answers(True)
    deployed = bench.text("dev")
    Rollback(bench.cfg(), "dev", to=1, migrate_down=True).run()
    assert f"image: {OLD}" in bench.gateway.previewed["dev"], "the preview shows release 1"
    assert "migrating web to schema 2 first" in bench.confirm.questions[0]
    down_step = bench.gateway.updates["dev"][-2]
    assert json.loads(down_step.config["msops:services"].value)["web"]["image"] == NEW
    assert deployed != bench.text("dev") and f"image: {OLD}" in bench.text("dev")


def test_a_declined_rollback_runs_no_down(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    before = bench.text("dev")
    with pytest.raises(OperationFailed, match="cancelled"):
        Rollback(bench.cfg(), "dev", to=1, migrate_down=True).run()
    assert (bench.gateway.called("up"), bench.text("dev")) == ([], before)


def test_a_failed_down_step_rolls_nothing_back(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    bench.gateway.fail_next_up = "the migration `python -m demo.migrate down --to 2` exited 3"
    with pytest.raises(OperationFailed) as caught:
        Rollback(bench.cfg(), "dev", to=1, yes=True, migrate_down=True).run()
    assert "the down migration failed, so release 1 was not rolled back" in str(caught.value)
    assert "exited 3" in str(caught.value)
    assert (len(bench.gateway.called("up")), bench.text("dev")) == (1, before)


def test_rollback_without_a_down_is_refused_naming_both_versions(bench: fakes.Bench) -> None:
    without_down(bench)
    with pytest.raises(SchemaRefused) as caught:
        Rollback(bench.cfg(), "dev", to=1, yes=True, migrate_down=True).run()
    text = str(caught.value)
    assert "needs schema 2, but its database is at 3" in text and "no down migration" in text
    assert bench.gateway.called("up") == []


def test_ignore_schema_rolls_back_without_a_down_step(bench: fakes.Bench) -> None:
    without_down(bench)
    Rollback(bench.cfg(), "dev", to=1, yes=True, ignore_schema=True).run()
    assert messages(bench) == ["msops rollback to release 1"]
    (planned,) = bench.of(SchemaPlanned)
    assert [s.service for s in planned.plan.accepted] == ["web"]


def test_rollback_to_an_equal_schema_is_as_today(bench: fakes.Bench) -> None:
    bench.deployed(
        "dev",
        [fakes.schema_update(OLD, 3, hour=0), fakes.schema_update(NEW, 3, hour=1)],
        fakes.schema_stack_text(NEW, 3),
    )
    Rollback(bench.cfg(), "dev", to=1, yes=True).run()
    assert messages(bench) == ["msops rollback to release 1"] and bench.of(SchemaPlanned) == []


# --- up --atomic that fails after a migration ----------------------------------------------------


@pytest.fixture
def failing(bench: fakes.Bench) -> fakes.Bench:
    """dev: release 1 (1.0.0, schema 2) deployed; the file holds 1.1.0 on schema 3."""
    bench.deployed("dev", [fakes.schema_update(OLD, 2, hour=0)], fakes.schema_stack_text(NEW, 3))
    bench.verdicts.append(Verdict(ok=False, problems=["web: GET /healthz answered 503"]))
    return bench


def test_a_failed_atomic_release_without_a_down_is_not_restored(failing: fakes.Bench) -> None:
    failing.deployed(
        "dev", [fakes.schema_update(OLD, 2, hour=0)], fakes.schema_stack_text(NEW, 3, down=False)
    )
    with pytest.raises(OperationFailed) as caught:
        Up(failing.cfg(), "dev", yes=True, atomic=True).run()
    assert not isinstance(caught.value, VerificationFailed), "nothing was restored"
    text = str(caught.value)
    assert text.startswith("verification failed"), text
    assert "release 1 was not restored" in text and "left as it is" in text, text
    assert f"image: {NEW}" in failing.text("dev"), "the new release stays in the file"
    assert messages(failing) == [None]


def test_a_failed_atomic_release_with_a_down_needs_migrate_down(failing: fakes.Bench) -> None:
    with pytest.raises(OperationFailed, match="--atomic --migrate-down"):
        Up(failing.cfg(), "dev", yes=True, atomic=True).run()
    assert messages(failing) == [None]


def test_atomic_with_migrate_down_downs_then_restores(failing: fakes.Bench) -> None:
    with pytest.raises(VerificationFailed, match="restored release 1"):
        Up(failing.cfg(), "dev", yes=True, atomic=True, migrate_down=True).run()
    assert messages(failing) == [
        None,
        releases.migrate_down_message({"web": 2}, 1),
        releases.restore_message(1, 2),
    ]
    assert failing.gateway.envs[1] == DOWN_ENV
    assert f"image: {OLD}" in failing.text("dev")
    (chosen,) = failing.of(ReleaseChosen)
    assert chosen.restore is True


def test_a_failed_atomic_update_may_have_migrated_too(failing: fakes.Bench) -> None:
    failing.verdicts.clear()
    failing.gateway.fail_next_up = "the replicas did not become healthy"
    with pytest.raises(OperationFailed, match="release 1 was not restored"):
        Up(failing.cfg(), "dev", yes=True, atomic=True).run()


# --- history -------------------------------------------------------------------------------------


def test_history_shows_each_releases_schema(bench: fakes.Bench) -> None:
    rows = History(bench.cfg(), "dev").run().rows()
    assert [r["schema"] for r in rows] == [{"web": 3}, {"web": 2}]


def test_history_takes_the_newest_schema_from_the_stack_outputs(bench: fakes.Bench) -> None:
    bench.gateway.stack_outputs["dev"] = {"services": {"web": {"schemaVersion": 4}}}
    rows = History(bench.cfg(), "dev").run().rows()
    assert rows[0]["schema"] == {"web": 4}


def test_history_after_a_down_step_shows_where_it_left_the_database(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=1, yes=True, migrate_down=True).run()
    rows = History(bench.cfg(), "dev").run().rows()
    assert [r["schema"] for r in rows[:2]] == [{"web": 2}, {"web": 2}], rows[:2]
