"""No secret in plain text in a stack file: refused under `msops check` (the file, leaf by leaf)
and in the Pulumi program (the keys Pulumi marks secret)."""

from __future__ import annotations

from typing import Any

import pytest

from components import spec
from components.platform import InvalidConfig
from components.vocabulary import SECRET_MASK
from msops import stackfiles, synth
from msops.errors import ConfigInvalid
from tests.graphs import stack_values

pytestmark = pytest.mark.timeout(120)

PASSWORD = "hunter2-planted"
URL = f"postgres://u:{PASSWORD}@db.example/app"


def dev() -> dict[str, Any]:
    return stack_values("dev")


def problems_of(values: dict[str, Any]) -> list[str]:
    """The problems `msops check` reports for these (file-masked) values; [] if it accepts."""
    try:
        stackfiles.validate(values, "dev")
    except ConfigInvalid as exc:
        return exc.problems
    return []


def program_problems(values: dict[str, Any], secret_keys: list[str]) -> list[str]:
    """The problems the Pulumi program stops with, its config marked as Pulumi would."""
    try:
        synth.synth_config(values, stack="dev", secret_keys=secret_keys)
    except InvalidConfig as exc:
        return exc.problems
    return []


# --- msops check: the file, leaf by leaf ----------------------------------------------------------


def test_a_plaintext_database_password_is_refused_naming_key_and_fix() -> None:
    values = dev()
    values["msops:databases"]["main"]["password"] = PASSWORD
    (problem,) = problems_of(values)
    assert problem.startswith("msops:databases.main.password: a secret in plain text"), problem
    assert "msops secret set dev msops:databases.main.password" in problem, problem
    assert "pulumi config set --secret --path 'msops:databases.main.password'" in problem
    assert PASSWORD not in problem, problem


def test_an_encrypted_database_password_is_accepted() -> None:
    values = dev()
    values["msops:databases"]["main"]["password"] = SECRET_MASK
    assert problems_of(values) == []


def test_a_plaintext_named_secret_is_refused() -> None:
    values = dev()
    values["msops:secrets"] = {"apiKey": PASSWORD}
    values["msops:services"]["web"]["secretEnv"] = {"API_KEY": "apiKey"}
    (problem,) = problems_of(values)
    assert problem.startswith("msops:secrets.apiKey: a secret in plain text"), problem
    assert PASSWORD not in problem, problem


def test_a_plaintext_external_url_is_refused_once() -> None:
    values = dev()
    values["msops:databases"]["main"] = {"externalUrl": URL}
    (problem,) = problems_of(values)
    assert problem.startswith("msops:databases.main.externalUrl: a secret in plain text"), problem


def test_a_url_with_a_password_in_env_is_refused_with_the_password_hidden() -> None:
    values = dev()
    values["msops:services"]["web"]["env"]["CACHE_URL"] = URL
    (problem,) = problems_of(values)
    assert problem.startswith("msops:services.web.env.CACHE_URL: got 'postgres://u:***@"), problem
    assert "secretEnv: {CACHE_URL: cache-url}" in problem, problem
    assert "msops secret set dev msops:secrets.cache-url" in problem, problem
    assert PASSWORD not in problem, problem


def test_a_url_with_a_password_anywhere_else_is_refused() -> None:
    values = dev()
    values["msops:services"]["api"]["migrations"]["command"] = ["migrate", "--db", URL]
    (problem,) = problems_of(values)
    assert problem.startswith("msops:services.api.migrations.command[2]: got"), problem
    assert PASSWORD not in problem, problem


@pytest.mark.parametrize(
    "text", ["http://example.com/a:b@c", "https://user@host/x", "redis://host:6379/0", "a:b@c"]
)
def test_a_url_without_a_password_is_accepted(text: str) -> None:
    values = dev()
    values["msops:services"]["web"]["env"]["SOME_URL"] = text
    assert problems_of(values) == []


def test_a_url_with_an_empty_user_still_counts() -> None:
    assert spec.redact_url("redis://:pw123@cache:6379") == "redis://:***@cache:6379"


def test_a_long_text_is_scanned_in_linear_time() -> None:
    # Not timed: the scan of a scheme-like run longer than any config value returns at all.
    assert spec.redact_url("a" * 200_000 + "://u:p") == "a" * 200_000 + "://u:p"


def test_every_problem_is_reported_at_once() -> None:
    values = dev()
    values["msops:databases"]["main"]["password"] = PASSWORD
    values["msops:services"]["web"]["env"]["CACHE_URL"] = URL
    values["msops:services"]["web"]["replicas"] = -1
    keys = [p.split(":", 2)[1].split(" ")[0] for p in problems_of(values)]
    assert len(keys) == 3, keys


def test_a_file_variable_for_a_secret_in_env_is_refused() -> None:
    values = dev()
    values["msops:services"]["api"]["env"]["DATABASE_URL_FILE"] = "/tmp/url"
    (problem,) = problems_of(values)
    assert problem.startswith("msops:services.api.env.DATABASE_URL_FILE: msops sets it"), problem


# --- the Pulumi program: the keys Pulumi marks secret ------------------------------------------


def test_the_program_refuses_a_password_in_a_key_not_marked_secret() -> None:
    values = dev()
    values["msops:databases"]["main"]["password"] = PASSWORD
    problems = program_problems(values, secret_keys=[])
    assert [p.split(":")[1] for p in problems] == ["databases.main.password"], problems


def test_the_program_accepts_a_password_in_a_key_marked_secret() -> None:
    values = dev()
    values["msops:databases"]["main"]["password"] = PASSWORD
    assert program_problems(values, secret_keys=["msops:databases"]) == []


def test_the_program_refuses_a_url_with_a_password_in_env() -> None:
    values = dev()
    values["msops:services"]["web"]["env"]["CACHE_URL"] = URL
    problems = program_problems(values, secret_keys=[])
    assert [p.split(":")[1] for p in problems] == ["services.web.env.CACHE_URL"], problems
    assert all(PASSWORD not in p for p in problems), problems


def test_the_program_reads_the_secret_keys_the_engine_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under `pulumi up` the language host passes them in PULUMI_CONFIG_SECRET_KEYS.
    from components.secrets import config_secret_keys

    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", '["msops:databases"]')
    assert config_secret_keys(["msops:databases", "msops:services"]) == {"msops:databases"}


def test_a_plain_password_that_is_a_number_is_one_line_and_not_shown() -> None:
    values = dev()
    values["msops:databases"]["main"]["password"] = 73615
    (problem,) = problems_of(values)
    assert "a secret in plain text" in problem and "73615" not in problem, problem
