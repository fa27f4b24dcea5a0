"""Migrations as plain data: the plan's step, each backend's arguments, the gate on its result."""

from __future__ import annotations

from typing import Any

import pytest

from components import plan as plans
from components import spec
from components.backends import common
from components.backends.docker import translate as docker
from components.backends.kubernetes import translate as kube
from components.backends.swarm import translate as swarm
from components.plan import model

UP = ["python", "-m", "demo.migrate", "up"]
DOWN = ["python", "-m", "demo.migrate", "down", "--to", "{version}"]


def plan_of(
    backend: str = "docker",
    down_to: dict[str, int] | None = None,
    **migrations: Any,
) -> model.StackPlan:
    block = {"command": UP, "down": DOWN, "schemaVersion": 3, **migrations}
    raw = {
        "backend": backend,
        "services": {
            "web": {
                "image": "msops/demo:1.1.0",
                "replicas": 2,
                "database": "main",
                "env": {"LOG_LEVEL": "info"},
                "secretEnv": {"API_KEY": "apiKey"},
                "migrations": block,
            },
            "api": {"image": "msops/api:1.0.0"},
        },
        "databases": {"main": {}},
        "secrets": {"apiKey": "k"},
    }
    return plans.build(spec.load(raw, "dev"), stack="dev", down_to=down_to)


def web(plan: model.StackPlan) -> model.Workload:
    return plan.workload("web")


# --- the plan ------------------------------------------------------------------------------------


def test_a_service_with_migrations_needs_its_schema_version() -> None:
    assert dict(web(plan_of()).env)["SCHEMA_VERSION"] == "3"


def test_a_service_without_migrations_needs_schema_0() -> None:
    plan = plan_of()
    assert (plan.workload("api").migration, dict(plan.workload("api").env)["SCHEMA_VERSION"]) == (
        None,
        "0",
    )


def test_the_plan_runs_the_up_command_to_the_schema_version() -> None:
    step = web(plan_of()).migration
    assert step is not None
    assert (step.command, step.direction, step.target_version) == (tuple(UP), "up", 3)


def test_the_timeout_is_in_seconds() -> None:
    step = web(plan_of(timeout="1m30s")).migration
    assert step is not None and step.timeout == 90


def test_a_down_step_runs_the_down_command_with_the_version_in() -> None:
    step = web(plan_of(down_to={"web": 2})).migration
    assert step is not None
    assert step.command == ("python", "-m", "demo.migrate", "down", "--to", "2")
    assert (step.direction, step.schema_version, step.target_version) == ("down", 3, 2)


def test_a_down_step_leaves_the_services_env_as_it_is() -> None:
    assert web(plan_of(down_to={"web": 2})).env == web(plan_of()).env


def test_a_down_step_for_a_service_without_down_is_a_problem() -> None:
    config = spec.load(
        {
            "services": {
                "web": {
                    "image": "a/b:1",
                    "database": "m",
                    "migrations": {"command": UP, "schemaVersion": 2},
                }
            },
            "databases": {"m": {}},
        },
        "dev",
    )
    (problem,) = plans.builder.migrate_down_problems(config, {"web": 1})
    assert "services.web has no migrations.down" in problem, problem


def test_a_down_step_for_an_unknown_service_is_a_problem() -> None:
    config = spec.load({"services": {"web": {"image": "a/b:1"}}}, "dev")
    assert plans.builder.migrate_down_problems(config, {"nope": 1}), "unknown service"


# --- the gate on a one-off container's result ----------------------------------------------------


def test_an_exit_code_of_0_passes_the_schema_version() -> None:
    assert common.migration_gate(web(plan_of()), 0, "", []) == "3"


@pytest.mark.parametrize("code", [1, 2, 3, None])
def test_any_other_exit_fails_naming_the_key_and_the_command(code: int | None) -> None:
    with pytest.raises(common.MigrationFailed) as caught:
        common.migration_gate(web(plan_of()), code, "", [])
    message = str(caught.value)
    assert message.startswith("msops:services.web.migrations: the migration `python -m"), message
    assert "the ones before keep serving" in message, message


def test_a_failure_quotes_the_last_lines_with_secrets_masked_on_one_line() -> None:
    url = "postgresql://app:pw-9Zr2@main:5432/main"
    logs = "".join(f"line {i}\n" for i in range(10)) + f"failed for {url}\npassword pw-9Zr2\n"
    with pytest.raises(common.MigrationFailed) as caught:
        common.migration_gate(web(plan_of()), 1, logs, [url])
    message = str(caught.value)
    assert "line 7 | line 8 | line 9 | failed for [secret] | password [secret]" in message
    assert "line 4" not in message and "pw-9Zr2" not in message and "\n" not in message


def test_log_frame_headers_and_long_lines_are_cleaned() -> None:
    (line,) = common.log_tail("\x01\x00\x00\x00\x00\x00\x00\x05" + "x" * 300, [])
    assert line == "x" * 200 + "...", line


# --- docker and swarm: a one-off container -------------------------------------------------------


def test_secrets_become_files_and_the_env_names_them() -> None:
    workload = web(plan_of())
    files = common.secret_files(workload, {"API_KEY": "k", "DATABASE_URL": "u"})
    assert [(f["file"], f["content"], f["permissions"]) for f in files] == [
        ("/run/secrets/API_KEY", "k", "0444"),
        ("/run/secrets/DATABASE_URL", "u", "0444"),
    ]
    env = common.migration_env(workload)
    assert env["DATABASE_URL_FILE"] == "/run/secrets/DATABASE_URL"
    assert "DATABASE_URL" not in env and env["LOG_LEVEL"] == "info", env


def docker_args(plan: model.StackPlan) -> dict[str, Any]:
    return docker.migration(
        plan,
        web(plan),
        name="dev-web-migrate",
        image="img",
        image_id="sha256:1",
        network="net",
        envs=["A=1"],
        uploads=[],
    ).args


def test_the_docker_migration_runs_once_to_completion() -> None:
    args = docker_args(plan_of())
    assert (args["must_run"], args["attach"], args["logs"], args["rm"]) == (
        False,
        True,
        True,
        False,
    )
    assert args["restart"] == "no" and args["command"] == UP


def test_the_docker_migration_is_labelled_with_its_role_and_schema() -> None:
    labels = {item["label"]: item["value"] for item in docker_args(plan_of())["labels"]}
    assert (labels["msops.role"], labels["msops.schema"]) == ("migration", "3"), labels


def test_the_docker_migration_runs_as_the_service_without_capabilities() -> None:
    args = docker_args(plan_of())
    assert (args["user"], args["capabilities"]) == ("10001", {"drops": ["ALL"]})
    assert args["security_opts"] == ["no-new-privileges:true"]


def test_the_docker_migration_waits_no_longer_than_its_timeout() -> None:
    spec_ = docker.migration(
        plan_of(timeout="2m"),
        web(plan_of(timeout="2m")),
        name="m",
        image="i",
        image_id="d",
        network="n",
        envs=[],
        uploads=[],
    )
    assert spec_.options["custom_timeouts"] == {"create": "120s"}


def test_the_swarm_migration_is_the_same_container_on_the_overlay_network() -> None:
    plan = plan_of("swarm")
    args = swarm.migration(
        plan, web(plan), image="img", image_id="d", network_id="ovl", envs=[], uploads=[]
    ).args
    assert args["networks_advanced"] == [{"name": "ovl"}] and args["attach"] is True


def test_the_swarm_service_is_labelled_with_the_migrations_result() -> None:
    plan = plan_of("swarm")
    args = swarm.service(plan, web(plan), network_id="n", env={}, secrets=[], schema="3").args
    labels = {item["label"]: item["value"] for item in args["labels"]}
    assert labels["msops.schema"] == "3", labels


# --- kubernetes: a Job ---------------------------------------------------------------------------


def job(**migrations: Any) -> dict[str, Any]:
    plan = plan_of("kubernetes", **migrations)
    return kube.migration_job(plan, web(plan), namespace="ns", env=[]).args


def test_the_job_is_named_after_its_service_with_a_hash() -> None:
    name = job()["metadata"]["name"]
    assert name.startswith("web-migrate-") and len(name) == len("web-migrate-") + 8, name


def test_the_same_migration_keeps_its_job_name() -> None:
    assert job()["metadata"]["name"] == job()["metadata"]["name"]


@pytest.mark.parametrize(
    "change", [{"schemaVersion": 2}, {"command": ["migrate"]}, {"timeout": "1m"}]
)
def test_another_migration_gets_another_job_name(change: dict[str, Any]) -> None:
    assert job(**change)["metadata"]["name"] != job()["metadata"]["name"], change


def test_the_job_runs_the_command_as_args_like_a_docker_cmd() -> None:
    (container,) = job()["spec"]["template"]["spec"]["containers"]
    assert container["args"] == UP and "command" not in container, container


def test_the_job_fails_within_its_deadline_and_pulumi_waits_a_minute_longer() -> None:
    plan = plan_of("kubernetes", timeout="5m")
    spec_ = kube.migration_job(plan, web(plan), namespace="ns", env=[])
    assert spec_.args["spec"]["active_deadline_seconds"] == 300
    assert spec_.options["custom_timeouts"] == {"create": "360s"}
