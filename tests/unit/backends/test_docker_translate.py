"""The docker translator as plain functions: plan in, provider arguments out, no Pulumi mocks."""

from __future__ import annotations

from typing import Any

import pytest

from components import plan as plans
from components import spec
from components.backends.docker import translate
from components.vocabulary import LABEL_ROLE, LABEL_SECRET_ENV, LABEL_VERSION, WAIVER_PREFIX

NETWORK = "net-name"
IMAGE = "image-ref"


def plan_of(services: dict[str, Any] | None = None, **sections: Any) -> plans.StackPlan:
    raw = {"services": services or {"web": {"image": "msops/demo:1.0.0", "replicas": 2}}}
    raw.update(sections)
    return plans.build(spec.load(raw, "dev"), stack="dev")


def labels(args: dict[str, Any]) -> dict[str, Any]:
    return {item["label"]: item["value"] for item in args["labels"]}


def replica(plan: plans.StackPlan, index: int = 1, name: str = "web") -> translate.Args:
    return translate.replica(
        plan,
        plan.workload(name),
        index,
        component=f"dev-{name}",
        image=IMAGE,
        image_id="sha256:abc",
        network_name=NETWORK,
        envs=["A=1"],
    )


def lb(plan: plans.StackPlan, name: str = "web") -> translate.Args:
    return translate.load_balancer(
        plan,
        plan.workload(name),
        component=f"dev-{name}",
        image=IMAGE,
        network_name=NETWORK,
    )


# --- replicas -----------------------------------------------------------------------------------


def test_replica_has_no_fixed_name_so_rollouts_create_before_delete() -> None:
    args = replica(plan_of()).args
    assert "name" not in args, args


def test_replica_resource_names_count_from_one() -> None:
    assert [replica(plan_of(), i).name for i in (1, 2)] == ["dev-web-1", "dev-web-2"]


def test_replica_is_read_only_non_root_without_capabilities() -> None:
    args = replica(plan_of()).args
    assert (args["read_only"], args["user"], args["capabilities"]) == (
        True,
        "10001",
        {"drops": ["ALL"]},
    )


def test_replica_limits_come_from_the_spec_in_provider_units() -> None:
    services = {
        "web": {
            "image": "msops/demo:1.0.0",
            "resources": {
                "cpuRequest": "250m",
                "cpuLimit": "1500m",
                "memoryRequest": "100Mi",
                "memoryLimit": "1Gi",
            },
        }
    }
    args = replica(plan_of(services)).args
    assert (args["cpus"], args["memory"], args["memory_reservation"], args["cpu_shares"]) == (
        "1.5",
        1024,
        100,
        256,
    )


def test_replica_health_check_times_are_go_durations() -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "health": {"interval": "1m30s"}}}
    check = replica(plan_of(services)).args["healthcheck"]
    assert (check["interval"], check["timeout"], check["start_period"]) == ("1m30s", "3s", "5s")


def test_replica_health_check_is_readiness_on_its_port() -> None:
    health = {"readinessPath": "/ready"}
    services = {"web": {"image": "msops/demo:1.0.0", "port": 9000, "health": health}}
    test = replica(plan_of(services)).args["healthcheck"]["tests"]
    assert "http://127.0.0.1:9000/ready" in test[-1], test


def test_replica_waits_at_least_the_providers_minimum() -> None:
    assert replica(plan_of()).args["wait_timeout"] == 60


def test_replica_wait_covers_a_slow_start_and_every_retry() -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "health": {"startPeriod": "2m"}}}
    # 120 s start + (3 retries + 1) * (10 s interval + 3 s timeout)
    assert replica(plan_of(services)).args["wait_timeout"] == 172


def test_replica_labels_carry_role_and_version() -> None:
    got = labels(replica(plan_of()).args)
    assert (got[LABEL_ROLE], got[LABEL_VERSION]) == ("replica", "1.0.0")


def test_replica_env_is_marked_secret_only_with_a_secret_variable() -> None:
    plain = replica(plan_of()).options["additional_secret_outputs"]
    services = {"web": {"image": "msops/demo:1.0.0", "secretEnv": {"TOKEN": "token"}}}
    secret = replica(plan_of(services, secrets={"token": "[secret]"})).options
    assert (plain, secret["additional_secret_outputs"]) == (None, ["envs"])


def test_replica_names_its_secret_variables_in_a_label() -> None:
    services = {
        "web": {"image": "msops/demo:1.0.0", "secretEnv": {"TOKEN": "token", "A_KEY": "token"}}
    }
    got = labels(replica(plan_of(services, secrets={"token": "[secret]"})).args)
    assert got[LABEL_SECRET_ENV] == "A_KEY,TOKEN", got


def test_a_replica_without_secrets_has_no_secret_label() -> None:
    assert LABEL_SECRET_ENV not in labels(replica(plan_of()).args)


def test_replica_env_numbers_the_replica_and_keeps_the_specs_values() -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "env": {"PORT": "9999"}}}
    env = translate.replica_env(plan_of(services).workload("web"), 2)
    assert (env["REPLICA_ID"], env["PORT"], env["SERVICE_NAME"]) == ("web-2", "9999", "web")


# --- load balancer ------------------------------------------------------------------------------


def test_published_lb_is_deleted_before_its_replacement() -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "lb": {"port": 8000}}}
    assert lb(plan_of(services)).options["delete_before_replace"] is True


def test_unpublished_lb_publishes_nothing() -> None:
    args = lb(plan_of()).args
    assert args["ports"] is None


def test_exposed_lb_binds_every_interface() -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "lb": {"port": 8000}, "exposed": True}}
    assert lb(plan_of(services)).args["ports"] == [
        {"internal": 8080, "external": 8000, "ip": "0.0.0.0"}
    ]


def test_lb_answers_to_its_alias() -> None:
    assert lb(plan_of()).args["networks_advanced"] == [{"name": NETWORK, "aliases": ["web-lb"]}]


def test_a_service_scaled_to_zero_has_no_lb() -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "replicas": 0}}
    assert plan_of(services).workload("web").lb is None


@pytest.mark.parametrize(
    ("lb_config", "url"),
    [({"port": 8000}, "http://127.0.0.1:8000"), ({}, "http://web-lb:8080")],
)
def test_lb_url_is_the_published_port_or_the_alias(lb_config: dict[str, Any], url: str) -> None:
    services = {"web": {"image": "msops/demo:1.0.0", "lb": lb_config}}
    assert translate.lb_url(plan_of(services).workload("web")) == url


# --- database -----------------------------------------------------------------------------------


def database(plan: plans.StackPlan) -> translate.Args:
    (db,) = plan.databases
    return translate.database(
        plan, db, component="dev-main", image=IMAGE, network_name=NETWORK, volume_name="v", envs=[]
    )


def db_plan() -> plans.StackPlan:
    services = {"web": {"image": "msops/demo:1.0.0", "database": "main"}}
    return plan_of(services, databases={"main": {}})


def test_database_volume_is_protected_and_retained() -> None:
    (db,) = db_plan().databases
    volume = translate.database_volume(db_plan(), db, component="dev-main")
    assert volume.options == {"protect": True, "retain_on_delete": True}


def test_database_volume_name_is_fixed_per_project_and_stack() -> None:
    (db,) = db_plan().databases
    assert translate.database_volume(db_plan(), db, component="x").args["name"] == (
        "msops-dev-main-pgdata"
    )


def test_database_is_never_two_servers_on_one_volume() -> None:
    assert database(db_plan()).options["delete_before_replace"] is True


def test_database_health_check_is_pg_isready_over_tcp() -> None:
    test = database(db_plan()).args["healthcheck"]["tests"]
    assert test[:5] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-p"], test


def test_database_root_start_is_a_reviewed_waiver() -> None:
    got = labels(database(db_plan()).args)
    assert f"{WAIVER_PREFIX}containers-non-root" in got, got


def test_database_env_points_pgdata_below_the_mount() -> None:
    (db,) = db_plan().databases
    env = translate.database_env(db, "pw")
    assert env["PGDATA"].startswith(db.data_mount + "/"), env


# --- monitoring ---------------------------------------------------------------------------------


def test_grafana_has_one_dashboard_per_service() -> None:
    services = {
        "web": {"image": "msops/demo:1.0.0"},
        "api": {"image": "msops/demo:1.0.0", "replicas": 0},
    }
    files = [u["file"] for u in translate.grafana_uploads(plan_of(services))]
    assert [f for f in files if f.endswith(".json")] == [
        f"{translate.GRAFANA_DASHBOARDS}/web.json",
        f"{translate.GRAFANA_DASHBOARDS}/api.json",
    ]


def test_grafana_home_dashboard_is_the_first_service() -> None:
    settings = translate.grafana_settings(plan_of(), "pw")
    assert settings["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith("/web.json")


def test_prometheus_keeps_its_tsdb_on_a_retained_volume() -> None:
    volume = translate.prometheus_volume(plan_of(), component="dev-monitoring")
    assert (volume.args["name"], volume.options) == (
        "msops-dev-prometheus-data",
        {"retain_on_delete": True},
    )


def test_monitoring_urls_use_the_bind_address() -> None:
    plan = plan_of(target={"bindAddress": "10.0.0.5"})
    assert translate.monitoring_urls(plan) == ("http://10.0.0.5:9090", "http://10.0.0.5:3000")


# --- config problems ----------------------------------------------------------------------------


def test_a_service_named_after_another_services_lb_is_a_problem() -> None:
    services = {"web": {"image": "msops/demo:1.0.0"}, "web-lb": {"image": "msops/demo:1.0.0"}}
    (problem,) = translate.config_problems(plan_of(services))
    assert "msops:services.web-lb" in problem and "rename one" in problem


def test_distinct_names_are_no_problem() -> None:
    assert translate.config_problems(db_plan()) == []


# --- discovery ----------------------------------------------------------------------------------


def test_lb_config_depends_only_on_the_service_not_on_its_replicas() -> None:
    two = translate.lb_conf(plan_of().workload("web"))
    services = {"web": {"image": "msops/demo:2.0.0", "replicas": 7}}
    assert translate.lb_conf(plan_of(services).workload("web")) == two


def test_lb_config_asks_dockers_dns_for_the_service_alias() -> None:
    conf = translate.lb_conf(plan_of().workload("web"))
    assert "resolver 127.0.0.11 " in conf and "set $app web:8080;" in conf, conf


def test_prometheus_config_is_the_same_at_any_replica_count() -> None:
    services = {"web": {"image": "msops/demo:2.0.0", "replicas": 7}}
    assert translate.prometheus_config(plan_of(services)) == translate.prometheus_config(plan_of())


def test_grafana_lets_visitors_in_only_when_the_stack_says_so() -> None:
    closed = translate.grafana_settings(plan_of(), "pw")
    opened = translate.grafana_settings(plan_of(monitoring={"grafanaAnonymous": True}), "pw")
    assert (closed["GF_AUTH_ANONYMOUS_ENABLED"], opened["GF_AUTH_ANONYMOUS_ENABLED"]) == (
        "false",
        "true",
    )
