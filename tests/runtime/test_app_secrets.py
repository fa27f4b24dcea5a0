"""Secrets from files (`<NAME>_FILE`) and the start-up errors around them, with the real app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.processes import StartApp, run_app_to_exit

pytestmark = pytest.mark.timeout(60)

PASSWORD = "pw-must-not-leak-93be"
URL = f"postgresql://app:{PASSWORD}@127.0.0.1:1/app"


def test_both_variable_and_file_set_fails_the_start(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL)

    done = run_app_to_exit(DATABASE_URL=URL, DATABASE_URL_FILE=str(secret))

    assert done.code == 2, done.output
    assert "both DATABASE_URL and DATABASE_URL_FILE are set" in done.stderr, done.stderr
    assert PASSWORD not in done.output


def test_a_missing_file_fails_the_start_naming_variable_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"

    done = run_app_to_exit(DATABASE_URL_FILE=str(missing))

    assert done.code == 2, done.output
    assert f"DATABASE_URL_FILE={missing}: cannot read the file" in done.stderr, done.stderr
    assert "Traceback" not in done.output


def test_an_unreadable_path_fails_the_start(tmp_path: Path) -> None:
    # A directory: unreadable as a file even for root, which the tests often run as.
    done = run_app_to_exit(DATABASE_URL_FILE=str(tmp_path))

    assert done.code == 2, done.output
    assert f"DATABASE_URL_FILE={tmp_path}: cannot read the file (Is a directory)" in done.stderr


def test_an_empty_file_fails_the_start(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("\n")

    done = run_app_to_exit(DATABASE_URL_FILE=str(secret))

    assert done.code == 2, done.output
    assert f"DATABASE_URL_FILE={secret}: the file is empty" in done.stderr


def test_the_file_value_is_used_with_its_newline_stripped(
    start_app: StartApp, tmp_path: Path
) -> None:
    # A refused port: /readyz then reports the database as unavailable, which shows the
    # URL from the file was parsed and dialled, newline and all stripped.
    secret = tmp_path / "url"
    secret.write_text(URL + "\n")
    app = start_app(DATABASE_URL_FILE=str(secret))

    resp = app.get("/readyz")

    assert resp.status == 503, resp.text
    assert "database unavailable (OperationalError)" in resp.text, resp.text
    assert PASSWORD not in resp.text + app.logs()


def test_upstream_url_file_is_read(start_app: StartApp, tmp_path: Path) -> None:
    api = start_app(SERVICE_NAME="api")
    secret = tmp_path / "upstream"
    secret.write_text(api.url + "\n")
    web = start_app(SERVICE_NAME="web", UPSTREAM_URL_FILE=str(secret))

    resp = web.get("/upstream")

    assert resp.status == 200, resp.text
    assert json.loads(resp.body)["upstream"]["service"] == "api"


def test_an_upstream_url_that_is_not_http_fails_without_echoing_it() -> None:
    done = run_app_to_exit(UPSTREAM_URL=f"ftp://user:{PASSWORD}@api")

    assert done.code == 2, done.output
    assert "UPSTREAM_URL is not an http(s) URL" in done.stderr
    assert PASSWORD not in done.output


def test_a_bad_number_fails_the_start_naming_the_variable() -> None:
    done = run_app_to_exit(DEMO_FAIL_RATE="1.5")

    assert done.code == 2, done.output
    assert "DEMO_FAIL_RATE=1.5 is out of range: it must be 0..1" in done.stderr, done.stderr


def test_the_app_reaches_its_database_with_the_env_a_swarm_service_gets(
    start_app: StartApp, database_url: str, tmp_path: Path
) -> None:
    """The variables the staging stack's api service runs with on swarm, the secret file
    moved from /run/secrets into tmp: the database URL is in the file only."""
    from components import plan as plans
    from components.backends.swarm import translate
    from msops import stackfiles
    from tests.runtime.test_app_schema import migrate_to

    config = stackfiles.validate(stackfiles.config_values("staging"), "staging")
    api = plans.build(config, stack="staging").workload("api")
    env = translate.service_env(api)
    assert "DATABASE_URL" not in env, env
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert files == {"DATABASE_URL_FILE": f"{translate.SECRETS_DIR}/DATABASE_URL"}, files
    secret = tmp_path / "DATABASE_URL"
    secret.write_text(database_url)
    secret.chmod(0o400)
    migrate_to(database_url, int(env["SCHEMA_VERSION"]))

    app = start_app(DATABASE_URL_FILE=str(secret), SCHEMA_VERSION=env["SCHEMA_VERSION"])

    resp = app.get("/readyz")
    assert resp.status == 200, resp.text
    assert database_url not in app.logs()
