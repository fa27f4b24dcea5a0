"""The demo app against a real PostgreSQL: readiness follows the schema, `/` records visits."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.runtime.processes import StartApp, run_app_to_exit, run_migrate

pytestmark = pytest.mark.timeout(90)


def migrate_to(url: str, version: int) -> None:
    done = run_migrate("up", "--to", str(version), DATABASE_URL=url)
    assert done.code == 0, done.output


def test_readyz_is_503_on_a_schema_older_than_needed(
    start_app: StartApp, database_url: str
) -> None:
    migrate_to(database_url, 2)
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION="3")

    resp = app.get("/readyz")

    assert resp.status == 503, resp.text
    assert "schema 2 is older than the 3 this version needs" in resp.text


def test_readyz_is_200_at_the_schema_needed(start_app: StartApp, database_url: str) -> None:
    migrate_to(database_url, 3)
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION="3")

    resp = app.get("/readyz")

    assert resp.status == 200, resp.text


def test_readyz_turns_200_once_the_schema_catches_up(
    start_app: StartApp, database_url: str
) -> None:
    migrate_to(database_url, 2)
    app = start_app(DATABASE_URL=database_url)
    assert app.get("/readyz").status == 503, "ready before the migration ran"

    migrate_to(database_url, 3)

    assert app.get("/readyz").status == 200


def test_readyz_needs_the_newest_schema_by_default(start_app: StartApp, database_url: str) -> None:
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION=None)

    resp = app.get("/readyz")

    assert resp.status == 503
    assert "schema 0 is older than the 3 this version needs" in resp.text


def test_readyz_accepts_a_schema_newer_than_needed(start_app: StartApp, database_url: str) -> None:
    # An old image after a roll-forward of the schema: expand/contract keeps it working.
    migrate_to(database_url, 3)
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION="2")

    assert app.get("/readyz").status == 200


def test_schema_version_0_checks_only_the_connection(
    start_app: StartApp, database_url: str
) -> None:
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION="0")

    assert app.get("/readyz").status == 200


def test_schema_version_beyond_this_build_fails_the_start(database_url: str) -> None:
    done = run_app_to_exit(DATABASE_URL=database_url, SCHEMA_VERSION="9")

    assert done.code == 2, done.output
    assert "SCHEMA_VERSION=9, but this build has migrations up to 3" in done.stderr


def test_root_records_a_visit_at_schema_3(start_app: StartApp, database_url: str) -> None:
    migrate_to(database_url, 3)
    app = start_app(DATABASE_URL=database_url, REPLICA_ID="r-visits", APP_VERSION="1.1.0")

    first = json.loads(app.get("/").body)
    second = json.loads(app.get("/").body)

    assert second["visits"] == first["visits"] + 1, (first, second)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT service, replica, version FROM visits").fetchall()
    assert rows == [("demo", "r-visits", "1.1.0")] * 2


def test_root_answers_without_visits_below_schema_3(start_app: StartApp, database_url: str) -> None:
    migrate_to(database_url, 2)
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION="2")

    resp = app.get("/")

    assert resp.status == 200, resp.text
    assert json.loads(resp.body)["visits"] is None


def test_root_starts_recording_visits_when_the_schema_reaches_3(
    start_app: StartApp, database_url: str
) -> None:
    migrate_to(database_url, 2)
    app = start_app(DATABASE_URL=database_url, SCHEMA_VERSION="2")
    assert json.loads(app.get("/").body)["visits"] is None

    migrate_to(database_url, 3)

    assert json.loads(app.get("/").body)["visits"] == 1


def test_database_url_file_is_read_by_the_app(
    start_app: StartApp, database_url: str, tmp_path: Path
) -> None:
    migrate_to(database_url, 3)
    secret = tmp_path / "database-url"
    secret.write_text(database_url + "\n")

    app = start_app(DATABASE_URL_FILE=str(secret))

    assert app.get("/readyz").status == 200
    assert json.loads(app.get("/").body)["visits"] == 1


def test_readyz_goes_503_when_the_schema_is_migrated_down(
    start_app: StartApp, database_url: str
) -> None:
    migrate_to(database_url, 3)
    app = start_app(DATABASE_URL=database_url)
    assert app.get("/readyz").status == 200

    done = run_migrate("down", "--to", "2", DATABASE_URL=database_url)
    assert done.code == 0, done.output

    resp = app.get("/readyz")
    assert resp.status == 503, resp.text
    assert "schema 2 is older than the 3" in resp.text
