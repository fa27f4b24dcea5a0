"""A service's migrations block: what it takes, and every mistake named with its key."""

from __future__ import annotations

from typing import Any

import pytest

from components import spec
from tests.graphs import stack_values

UP = ["python", "-m", "demo.migrate", "up"]
DOWN = ["python", "-m", "demo.migrate", "down", "--to", "{version}"]


def config(database: bool = True, **block: Any) -> dict[str, Any]:
    migrations = {"command": UP, "schemaVersion": 3, **block}
    web: dict[str, Any] = {"image": "ghcr.io/acme/web:1.2.3", "migrations": migrations}
    raw: dict[str, Any] = {"services": {"web": web}}
    if database:
        web["database"] = "main"
        raw["databases"] = {"main": {}}
    return raw


def only_problem(raw: dict[str, Any]) -> str:
    with pytest.raises(spec.ConfigError) as info:
        spec.load(raw, "test")
    (problem,) = info.value.problems
    return problem


def test_a_block_with_command_down_and_schema_version_validates() -> None:
    block = spec.load(config(down=DOWN), "test").services["web"].migrations
    assert block is not None
    assert (block.command, block.down, block.schema_version, block.timeout) == (
        UP,
        DOWN,
        3,
        "10m",
    )


def test_down_is_optional() -> None:
    block = spec.load(config(), "test").services["web"].migrations
    assert block is not None and block.down is None


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_committed_stack_migrates_the_service_that_owns_its_database(stack: str) -> None:
    loaded = spec.load(spec.raw_config(stack_values(stack)), stack)
    owners = [name for name, svc in loaded.services.items() if svc.migrations is not None]
    assert owners == [n for n, s in loaded.services.items() if s.database is not None], owners


def test_a_block_without_a_database_is_refused() -> None:
    problem = only_problem(config(database=False))
    assert problem.startswith("msops:services.web.migrations: a migrations block needs a database")
    assert "services.web.database" in problem, problem


@pytest.mark.parametrize("command", [[], [""], ["  "]])
def test_an_empty_command_is_refused(command: list[str]) -> None:
    problem = only_problem(config(command=command))
    assert problem.startswith("msops:services.web.migrations.command:"), problem
    assert "the command is empty" in problem, problem


def test_version_in_the_up_command_is_refused() -> None:
    problem = only_problem(config(command=[*UP, "--to", "{version}"]))
    assert problem.startswith("msops:services.web.migrations.command:"), problem
    assert "{version} belongs in `down` only" in problem, problem


def test_a_down_command_without_version_is_refused() -> None:
    problem = only_problem(config(down=["python", "-m", "demo.migrate", "down"]))
    assert problem.startswith("msops:services.web.migrations.down:"), problem
    assert "has no {version}" in problem and "'--to', '{version}'" in problem, problem


def test_an_empty_down_command_is_refused() -> None:
    problem = only_problem(config(down=[]))
    assert problem.startswith("msops:services.web.migrations.down:"), problem


@pytest.mark.parametrize("version", [0, -1])
def test_a_schema_version_below_1_is_refused(version: int) -> None:
    problem = only_problem(config(schemaVersion=version))
    assert problem.startswith("msops:services.web.migrations.schemaVersion:"), problem


def test_a_schema_version_as_text_is_refused() -> None:
    problem = only_problem(config(schemaVersion="3"))
    assert problem.startswith("msops:services.web.migrations.schemaVersion: got '3'"), problem


def test_a_missing_schema_version_is_refused() -> None:
    raw = config()
    del raw["services"]["web"]["migrations"]["schemaVersion"]
    assert only_problem(raw) == (
        "msops:services.web.migrations.schemaVersion: required key is missing; add it"
    )


def test_a_misspelt_key_is_named_with_a_suggestion() -> None:
    problem = only_problem(config(dwon=DOWN))
    assert "msops:services.web.migrations.dwon: unknown key" in problem, problem
    assert "did you mean 'down'?" in problem, problem


def test_a_bad_timeout_is_refused() -> None:
    problem = only_problem(config(timeout="ten minutes"))
    assert problem.startswith("msops:services.web.migrations.timeout:"), problem
