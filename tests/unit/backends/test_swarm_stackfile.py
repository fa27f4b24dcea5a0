"""The swarm backend as a stack file: the plan in, stack.yaml and its files out, no Pulumi."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from components import plan as plans
from components import spec
from components.backends.common import Args
from components.backends.swarm import stackfile, translate

STACK = "staging"
WEB = {"image": "ghcr.io/msops/demo:1.0.0", "replicas": 2, "port": 8080, "lb": {"port": 8000}}


def full_plan() -> plans.StackPlan:
    raw: dict[str, Any] = {
        "backend": "swarm",
        "services": {"web": {**WEB, "database": "main", "secretEnv": {"API_TOKEN": "api"}}},
        "databases": {"main": {"version": "16.4", "password": "db-pw-Zq8wK2vLr4"}},
        "secrets": {"api": "tok-Hx73PqN0aVe5"},
        "monitoring": {"enabled": True, "grafana": True},
    }
    return plans.build(spec.load(raw, STACK), stack=STACK)


def doc() -> dict[str, Any]:
    return stackfile.stack_file(full_plan()).document


def test_the_stack_file_is_version_3_8() -> None:
    assert doc()["version"] == "3.8"


def test_web_is_replicated_with_its_count() -> None:
    deploy = doc()["services"]["web"]["deploy"]
    assert deploy["mode"] == "replicated" and deploy["replicas"] == 2, deploy


def test_updates_start_first_and_roll_back_on_failure() -> None:
    deploy = doc()["services"]["web"]["deploy"]
    update = deploy["update_config"]
    assert update["order"] == "start-first" and update["failure_action"] == "rollback", update
    assert update["parallelism"] == 1 and update["max_failure_ratio"] == 0.0, update
    assert update["monitor"] == translate.duration(
        full_plan().workload("web").liveness.unhealthy_after
    )
    assert deploy["rollback_config"]["order"] == "start-first", deploy["rollback_config"]


def test_postgres_stays_on_its_labelled_node_and_stops_first() -> None:
    deploy = doc()["services"]["main"]["deploy"]
    assert deploy["placement"] == {"constraints": ["node.labels.msops.db.main == true"]}, deploy
    assert deploy["update_config"]["order"] == "stop-first", deploy["update_config"]
    assert deploy["endpoint_mode"] == "dnsrr", deploy


def test_the_mesh_publishes_the_services_port() -> None:
    ports = doc()["services"]["web"]["ports"]
    assert ports == [{"target": 8080, "published": 8000, "protocol": "tcp", "mode": "ingress"}]


def test_secrets_are_external_and_never_values() -> None:
    bundle = stackfile.stack_file(full_plan())
    secrets = bundle.document["secrets"]
    assert all(s["external"] is True for s in secrets.values()), secrets
    names = {s["name"] for s in secrets.values()}
    assert names == set(stackfile.external_secrets(full_plan())), names
    text = repr(bundle)
    assert "tok-Hx73PqN0aVe5" not in text and "db-pw-Zq8wK2vLr4" not in text, "a secret value"


def test_a_secret_variable_is_a_file_and_its_file_variable() -> None:
    web = doc()["services"]["web"]
    env = web["environment"]
    assert "API_TOKEN" not in env and env["API_TOKEN_FILE"] == "/run/secrets/API_TOKEN", env
    targets = {s["target"]: s for s in web["secrets"]}
    assert targets["/run/secrets/API_TOKEN"]["mode"] == 0o400, targets
    assert targets["/run/secrets/API_TOKEN"]["uid"] == "10001", targets


def test_no_rendered_service_environment_holds_a_secret() -> None:
    services = doc()["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        assert not {"API_TOKEN", "DATABASE_URL"} & set(env), f"services.{name}: {env}"
        values = " ".join(map(str, env.values()))
        assert "tok-Hx73PqN0aVe5" not in values and "db-pw-Zq8wK2vLr4" not in values, name


def test_the_rendered_environment_is_the_one_msops_up_sets() -> None:
    plan = full_plan()
    (web,) = [w for w in plan.workloads if w.name == "web"]
    assert doc()["services"]["web"]["environment"] == translate.service_env(web)


def test_configs_are_files_beside_the_stack_file_with_hashed_names() -> None:
    plan = full_plan()
    bundle = stackfile.stack_file(plan)
    for key, config in bundle.document["configs"].items():
        local = config["file"].removeprefix("./")
        assert local in bundle.files, f"configs.{key}: {local} not rendered"
        assert config["name"] == translate.config_name(
            plan, config["name"].split("_", 1)[1].rsplit("-", 1)[0], bundle.files[local]
        ), f"configs.{key}"


def test_prometheus_finds_the_tasks_of_the_stack_service() -> None:
    plan = full_plan()
    files = stackfile.stack_file(plan).files
    assert files["prometheus/prometheus.yml"] == translate.prometheus_config(plan)
    assert "tasks.staging_web" in files["prometheus/prometheus.yml"]


def test_config_text_is_what_msops_uploads() -> None:
    spec_ = Args("c", {"name": "n", "data": base64.b64encode(b"a: 1\n").decode()})
    assert stackfile.config_text(spec_) == "a: 1\n"


def test_the_header_says_the_stack_name_to_deploy_under() -> None:
    header = "\n".join(stackfile.stack_file(full_plan()).header)
    assert "docker stack deploy --detach=false -c stack.yaml staging" in header, header


def test_an_argument_the_stack_file_does_not_map_stops_the_render() -> None:
    with pytest.raises(ValueError, match=r"'secret_labels'.*stackfile\.py"):
        stackfile.service(Args("x", {"secret_labels": {}}))
