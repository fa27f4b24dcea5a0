"""The demo's migrations (`python -m demo.migrate`) against a real PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.runtime.processes import Exited, run_migrate

if TYPE_CHECKING:
    from tests.runtime.postgres import PostgresServer

pytestmark = pytest.mark.timeout(90)

NEWEST = 3


def migrate(url: str, *args: str, **env: str | None) -> Exited:
    return run_migrate(*args, DATABASE_URL=url, **env)


def version_of(url: str) -> int:
    """The version recorded in the database, read directly: no process per check."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        ).fetchall()
    return {name for (name,) in rows}


def at(url: str, version: int) -> None:
    done = migrate(url, "up", "--to", str(version))
    assert done.code == 0, done.output


def test_up_brings_an_empty_database_to_the_newest_version(database_url: str) -> None:
    done = migrate(database_url, "up")

    assert done.code == 0, done.output
    assert version_of(database_url) == NEWEST
    assert {"notes", "visits", "schema_version"} <= tables(database_url)


def test_up_without_to_stops_at_schema_version(database_url: str) -> None:
    done = migrate(database_url, "up", SCHEMA_VERSION="2")

    assert done.code == 0, done.output
    assert version_of(database_url) == 2
    assert "visits" not in tables(database_url)


def test_up_to_stops_at_the_target(database_url: str) -> None:
    done = migrate(database_url, "up", "--to", "1")

    assert done.code == 0, done.output
    assert version_of(database_url) == 1
    assert "author" not in columns(database_url, "notes")


def test_up_at_the_newest_version_does_nothing_and_exits_zero(database_url: str) -> None:
    at(database_url, NEWEST)

    again = migrate(database_url, "up")

    assert again.code == 0, again.output
    assert "nothing to do" in again.stdout
    assert version_of(database_url) == NEWEST


def test_up_beyond_the_newest_version_is_a_usage_error(database_url: str) -> None:
    done = migrate(database_url, "up", "--to", str(NEWEST + 1))

    assert done.code == 2, done.output
    assert "version 4 is unknown" in done.stderr
    assert version_of(database_url) == 0


def test_two_ups_at_once_take_turns(database_url: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: migrate(database_url, "up"), range(2)))

    assert [r.code for r in runs] == [0, 0], [r.output for r in runs]
    assert version_of(database_url) == NEWEST


def test_down_to_undoes_the_newer_steps(database_url: str) -> None:
    at(database_url, NEWEST)

    done = migrate(database_url, "down", "--to", "2")

    assert done.code == 0, done.output
    assert version_of(database_url) == 2
    assert "visits" not in tables(database_url)


def test_down_to_the_current_version_does_nothing(database_url: str) -> None:
    at(database_url, 2)

    done = migrate(database_url, "down", "--to", "2")

    assert done.code == 0, done.output
    assert version_of(database_url) == 2


def test_down_past_a_step_without_down_is_refused_and_changes_nothing(database_url: str) -> None:
    at(database_url, NEWEST)

    done = migrate(database_url, "down", "--to", "1")

    assert done.code == 3, done.output
    assert "migration 2" in done.stderr and "has no down step" in done.stderr, done.stderr
    assert "nothing was changed" in done.stderr
    # Step 3 has a down, and a half-done refusal would have run it first.
    assert version_of(database_url) == NEWEST
    assert "visits" in tables(database_url)


def test_down_needs_a_target(database_url: str) -> None:
    done = migrate(database_url, "down")

    assert done.code == 2, done.output
    assert "--to" in done.stderr


def test_status_reports_the_version_and_each_step(database_url: str) -> None:
    at(database_url, 2)

    done = migrate(database_url, "status")

    assert done.code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].startswith("schema version: 2 "), done.stdout
    assert "pending" in lines[3] and "visits" in lines[3], done.stdout
    assert "no down" in lines[2], done.stdout


def test_status_json_lists_applied_and_reversible_steps(database_url: str) -> None:
    at(database_url, 1)

    report = json.loads(migrate(database_url, "status", "--json", SCHEMA_VERSION="2").stdout)

    assert (report["version"], report["latest"], report["needed"]) == (1, NEWEST, 2)
    assert [(m["version"], m["applied"], m["reversible"]) for m in report["migrations"]] == [
        (1, True, True),
        (2, False, False),
        (3, False, True),
    ]


def test_a_row_written_at_schema_2_survives_up_to_3_and_down_to_2(database_url: str) -> None:
    at(database_url, 2)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO notes (body, author) VALUES ('kept', 'ada')")

    at(database_url, 3)
    assert migrate(database_url, "down", "--to", "2").code == 0

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT body, author FROM notes").fetchall()
    assert rows == [("kept", "ada")]
    assert version_of(database_url) == 2


def test_up_to_2_backfills_notes_written_at_1(database_url: str) -> None:
    at(database_url, 1)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('old')")

    at(database_url, 2)

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT author FROM notes").fetchall() == [("anonymous",)]


def test_a_failing_step_is_rolled_back_and_the_version_stays(database_url: str) -> None:
    at(database_url, 2)
    # Someone created the table by hand: step 3's CREATE TABLE fails.
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE visits (id int)")

    done = migrate(database_url, "up")

    assert done.code == 1, done.output
    assert "up 3 (visits table) failed and was rolled back" in done.stderr, done.stderr
    assert version_of(database_url) == 2
    assert columns(database_url, "visits") == {"id"}


def test_database_url_file_is_read(database_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(database_url + "\n")

    done = run_migrate("up", DATABASE_URL_FILE=str(secret))

    assert done.code == 0, done.output
    assert version_of(database_url) == NEWEST


def test_no_database_url_is_a_usage_error() -> None:
    done = run_migrate("status")

    assert done.code == 2, done.output
    assert "DATABASE_URL (or DATABASE_URL_FILE) is not set" in done.stderr


def test_a_connection_failure_exits_1_without_the_password(
    postgres: PostgresServer, database_url: str
) -> None:
    wrong = "wrong-pw-must-not-leak-51c2"
    url = postgres.url(database_url.rsplit("/", 1)[1], password=wrong)

    done = run_migrate("up", DATABASE_URL=url)

    assert done.code == 1, done.output
    assert "password authentication failed" in done.stderr, done.stderr
    assert wrong not in done.output
