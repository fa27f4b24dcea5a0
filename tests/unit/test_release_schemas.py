"""The schema rules of a rollback and a restore, on plain data: every case of issue 16."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from msops import releases
from msops.releases import Release, SchemaPlan, Update
from tests import fakes

pytestmark = pytest.mark.timeout(30)

UP = ["python", "-m", "demo.migrate", "up"]
DOWN = ["python", "-m", "demo.migrate", "down", "--to", "{version}"]


def service(image: str, schema: int | None, *, down: bool = True) -> dict[str, Any]:
    """A recorded service; `schema` None: no migrations block."""
    svc: dict[str, Any] = {"image": image, "replicas": 2, "database": "main"}
    if schema is not None:
        svc["migrations"] = {"command": UP, "schemaVersion": schema}
        if down:
            svc["migrations"]["down"] = DOWN
    return svc


def config(**services: dict[str, Any]) -> dict[str, Any]:
    return {"msops:backend": "docker", "msops:services": services, "msops:databases": {"main": {}}}


def update(values: dict[str, Any], *, result: str = "succeeded", message: str = "") -> Update:
    return Update(
        kind="update",
        result=result,
        start_time=fakes.EPOCH,
        message=message,
        version=0,
        config=fakes.entries(values, set()),
    )


def numbered(*updates: Update) -> list[Release]:
    """Releases 1..n, oldest first, from updates given oldest first."""
    timed = [
        Update(**{**u.__dict__, "start_time": fakes.EPOCH + timedelta(hours=i)})
        for i, u in enumerate(updates)
    ]
    return releases.number_releases(list(reversed(timed)))


V1 = config(web=service("msops/demo:1.0.0", 2))
V2 = config(web=service("msops/demo:1.1.0", 3))
V2_NO_DOWN = config(web=service("msops/demo:1.1.0", 3, down=False))


def plan(
    history: list[Release],
    to: int,
    current: dict[str, Any] | None = None,
    **flags: Any,
) -> SchemaPlan:
    """The schema plan of rolling back to release `to` with the stack file at `current`
    (default: what the newest update recorded)."""
    current = history[-1].config if current is None else current
    return releases.plan_schema(history, history[to - 1], current, **flags)


def refusal(schema: SchemaPlan) -> str:
    text = releases.schema_refusal(schema, "dev")
    assert text is not None, f"expected a refusal: {schema}"
    return text


# --- what a release records ----------------------------------------------------------------------


def test_a_release_records_each_services_schema_and_down() -> None:
    (rel,) = numbered(update(V2))
    schema = rel.schemas()["web"]
    assert (schema.version, schema.image, schema.down) == (3, "msops/demo:1.1.0", tuple(DOWN))


def test_a_service_without_migrations_records_no_schema() -> None:
    (rel,) = numbered(update(config(web=service("msops/demo:1.0.0", None))))
    assert rel.schemas() == {}


def test_a_recorded_schema_that_is_not_a_number_is_left_out() -> None:
    bad = config(web=service("msops/demo:1.0.0", 2))
    bad["msops:services"]["web"]["migrations"]["schemaVersion"] = "two"
    assert releases.recorded_schemas(bad) == {}


def test_a_recorded_down_that_is_not_a_list_counts_as_none() -> None:
    odd = config(web=service("msops/demo:1.0.0", 2))
    odd["msops:services"]["web"]["migrations"]["down"] = "down --to {version}"
    assert releases.recorded_schemas(odd)["web"].down is None


def test_a_down_steps_message_reads_back_as_the_versions_it_left() -> None:
    message = releases.migrate_down_message({"web": 2, "api": 1}, 7)
    assert releases.migrated_down(message) == {"web": 2, "api": 1}, message


def test_any_other_message_reads_back_as_no_down_step() -> None:
    assert releases.migrated_down("msops rollback to release 7") == {}


def test_a_down_step_left_its_database_at_the_target_although_its_config_needs_more() -> None:
    (_, down) = numbered(
        update(V2), update(V2, message=releases.migrate_down_message({"web": 2}, 1))
    )
    assert (down.schemas()["web"].version, down.schema_left()) == (3, {"web": 2})


# --- where the database is -----------------------------------------------------------------------


def test_the_database_is_where_the_newest_successful_update_left_it() -> None:
    history = numbered(update(V1), update(V2), update(V1))
    mark = releases.database_schemas(history)["web"]
    assert (mark.version, mark.release.number) == (2, 3)


def test_a_failed_update_after_it_may_have_migrated_further() -> None:
    history = numbered(update(V1), update(V2, result="failed"))
    mark = releases.database_schemas(history)["web"]
    assert (mark.version, mark.release.number) == (3, 2)


def test_a_failed_update_needing_less_does_not_lower_it() -> None:
    history = numbered(update(V2), update(V1, result="failed"))
    assert releases.database_schemas(history)["web"].version == 3


# --- rollback: equal, newer ----------------------------------------------------------------------


def test_an_equal_schema_rolls_back_as_today() -> None:
    other = config(web={**service("msops/demo:1.0.1", 2), "replicas": 3})
    schema = plan(numbered(update(V1), update(other)), to=1)
    assert (schema.older, releases.schema_refusal(schema, "dev")) == ((), None)


def test_a_target_needing_a_newer_schema_rolls_back_as_today() -> None:
    # After a down step: release 3 left the database at 2; release 2 needs 3 and migrates up.
    history = numbered(
        update(V1), update(V2), update(V1, message=releases.migrate_down_message({"web": 2}, 1))
    )
    schema = plan(history, to=2)
    assert schema.older == () and releases.schema_refusal(schema, "dev") is None


def test_a_target_without_migrations_leaves_the_database_alone() -> None:
    before = config(web=service("msops/demo:0.9.0", None))
    schema = plan(numbered(update(before), update(V2)), to=1)
    assert schema.undeclared == ("web",) and releases.schema_refusal(schema, "dev") is None


# --- rollback: older, with a down ----------------------------------------------------------------


def test_older_with_a_down_and_no_flag_stops_and_names_the_migration_and_the_flag() -> None:
    text = refusal(plan(numbered(update(V1), update(V2)), to=1))
    assert "nothing was written" in text, text
    assert "needs schema 2, but its database is at 3" in text, text
    assert "`python -m demo.migrate down --to 2`" in text, text
    assert "`msops rollback dev --to 1 --migrate-down`" in text, text


def test_older_with_a_down_and_migrate_down_runs_it_first() -> None:
    schema = plan(numbered(update(V1), update(V2)), to=1, migrate_down=True)
    assert releases.schema_refusal(schema, "dev") is None
    (step,) = schema.downs
    assert (step.service, step.current, step.target) == ("web", 3, 2), step
    assert step.down == ("python", "-m", "demo.migrate", "down", "--to", "2"), step
    assert step.image == "msops/demo:1.1.0", "the image that migrated up knows the way down"
    assert schema.down_versions() == {"web": 2}


def test_the_down_comes_from_the_release_that_migrated_not_the_target() -> None:
    # Release 1 has no down; release 2, which migrated to 3, has one.
    old = config(web=service("msops/demo:1.0.0", 2, down=False))
    schema = plan(numbered(update(old), update(V2)), to=1, migrate_down=True)
    assert [s.service for s in schema.downs] == ["web"], schema


def test_a_down_step_needs_the_stack_file_to_pin_the_image_that_migrated() -> None:
    moved = config(web=service("msops/demo:1.2.0", 3))
    schema = plan(numbered(update(V1), update(V2)), to=1, current=moved, migrate_down=True)
    text = refusal(schema)
    assert "pins msops/demo:1.2.0" in text and "msops/demo:1.1.0" in text, text


def test_a_down_step_needs_the_stack_file_to_hold_what_was_deployed_last() -> None:
    edited = config(web=service("msops/demo:1.1.0", 3))
    edited["msops:monitoring"] = {"enabled": False}
    schema = plan(numbered(update(V1), update(V2)), to=1, current=edited, migrate_down=True)
    assert "holds changes that release 2 did not deploy" in refusal(schema)


# --- rollback: older, without a down -------------------------------------------------------------


def test_older_without_a_down_is_refused_naming_both_versions_and_the_ways_out() -> None:
    text = refusal(plan(numbered(update(V1), update(V2_NO_DOWN)), to=1))
    assert "release 1 needs schema 2, but its database is at 3" in text, text
    assert "has no down migration" in text, text
    assert "Roll forward" in text and "`msops up dev`" in text, text
    assert "add a `migrations.down`" in text and "--ignore-schema" in text, text


def test_older_without_a_down_is_refused_even_with_migrate_down() -> None:
    schema = plan(numbered(update(V1), update(V2_NO_DOWN)), to=1, migrate_down=True)
    assert schema.downs == () and "has no down migration" in refusal(schema)


# --- rollback: --ignore-schema -------------------------------------------------------------------


def test_ignore_schema_accepts_an_older_schema_without_a_down() -> None:
    schema = plan(numbered(update(V1), update(V2_NO_DOWN)), to=1, ignore_schema=True)
    assert releases.schema_refusal(schema, "dev") is None
    assert [(s.service, s.current, s.target) for s in schema.accepted] == [("web", 3, 2)]


def test_ignore_schema_runs_no_down_without_migrate_down() -> None:
    schema = plan(numbered(update(V1), update(V2)), to=1, ignore_schema=True)
    assert (schema.downs, len(schema.accepted)) == ((), 1)


def test_both_flags_migrate_down_where_possible_and_accept_the_rest() -> None:
    before = config(
        web=service("msops/demo:1.0.0", 2), api=service("msops/api:1.0.0", 1, down=False)
    )
    after = config(
        web=service("msops/demo:1.1.0", 3), api=service("msops/api:1.1.0", 2, down=False)
    )
    schema = plan(
        numbered(update(before), update(after)), to=1, migrate_down=True, ignore_schema=True
    )
    assert [s.service for s in schema.downs] == ["web"], schema
    assert [s.service for s in schema.accepted] == ["api"], schema


# --- per-service rollback ------------------------------------------------------------------------

TWO_BEFORE = config(
    web=service("msops/demo:1.0.0", 2), api=service("msops/api:1.0.0", 4, down=False)
)
TWO_AFTER = config(
    web=service("msops/demo:1.0.0", 2), api=service("msops/api:1.1.0", 5, down=False)
)


def test_per_service_rollback_applies_the_rules_to_that_services_database() -> None:
    history = numbered(update(TWO_BEFORE), update(TWO_AFTER))
    text = refusal(plan(history, to=1, services={"api"}))
    assert "services.api: release 1 needs schema 4, but its database is at 5" in text, text


def test_per_service_rollback_leaves_the_other_services_databases_out() -> None:
    history = numbered(update(TWO_BEFORE), update(TWO_AFTER))
    schema = plan(history, to=1, services={"web"})
    assert schema.older == () and releases.schema_refusal(schema, "dev") is None


def test_per_service_rollback_migrates_down_only_that_service() -> None:
    before = config(web=service("msops/demo:1.0.0", 2), api=service("msops/api:1.0.0", 4))
    after = config(web=service("msops/demo:1.1.0", 3), api=service("msops/api:1.1.0", 5))
    schema = plan(
        numbered(update(before), update(after)), to=1, services={"api"}, migrate_down=True
    )
    assert schema.down_versions() == {"api": 4}, schema


# --- restoring after a failed `up --atomic` ------------------------------------------------------


def restore_plan(failed: dict[str, Any], **flags: Any) -> SchemaPlan:
    """Release 1 deployed; release 2 (`failed`) failed, maybe after its migration ran."""
    history = numbered(update(V1), update(failed, result="failed"))
    return releases.plan_schema(history, history[0], failed, **flags)


def test_a_restore_after_a_release_that_needs_no_newer_schema_goes_ahead() -> None:
    same = config(web=service("msops/demo:1.0.1", 2))
    assert releases.restore_refusal(restore_plan(same), "dev") is None


def test_a_restore_after_a_release_without_a_down_leaves_it_and_says_why() -> None:
    text = releases.restore_refusal(restore_plan(V2_NO_DOWN), "dev")
    assert text is not None
    assert "release 1 was not restored" in text, text
    assert "could not become healthy again" in text and "left as it is" in text, text
    assert "schema 3, and release 1 needs 2; it has no down migration" in text, text


def test_a_restore_after_a_release_with_a_down_names_migrate_down() -> None:
    text = releases.restore_refusal(restore_plan(V2), "dev")
    assert text is not None and "`msops up dev --atomic --migrate-down`" in text, text


def test_a_restore_with_migrate_down_runs_the_failed_releases_down_first() -> None:
    schema = restore_plan(V2, migrate_down=True)
    assert releases.restore_refusal(schema, "dev") is None
    assert schema.down_versions() == {"web": 2}
    assert schema.downs[0].image == "msops/demo:1.1.0"


# --- history's schema column ---------------------------------------------------------------------


def test_history_rows_show_each_releases_schema() -> None:
    rows = releases.history_rows(numbered(update(V1), update(V2)))
    assert [r["schema"] for r in rows] == [{"web": 3}, {"web": 2}]


def test_history_rows_show_where_a_down_step_left_the_database() -> None:
    down = update(V2, message=releases.migrate_down_message({"web": 2}, 1))
    rows = releases.history_rows(numbered(update(V1), update(V2), down))
    assert rows[0]["schema"] == {"web": 2}, rows[0]


def test_history_rows_take_the_newest_releases_schema_from_the_stack_outputs() -> None:
    outputs = {"services": {"web": {"image": "msops/demo:1.1.0", "schemaVersion": 4}}}
    rows = releases.history_rows(numbered(update(V1), update(V2)), outputs)
    assert [r["schema"] for r in rows] == [{"web": 4}, {"web": 2}]


def test_history_rows_never_credit_a_failed_release_with_the_outputs() -> None:
    outputs = {"services": {"web": {"schemaVersion": 2}}}
    rows = releases.history_rows(numbered(update(V1), update(V2, result="failed")), outputs)
    assert rows[0]["schema"] == {"web": 3}, rows[0]
