"""The kubernetes translator as plain functions: a plan in, provider arguments out, no Pulumi."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest

from components import plan as plans
from components import spec as specs
from components.artifacts import grafana
from components.backends.kubernetes import translate
from components.plan import model

NS = "ns-output"
WEB = {
    "image": "ghcr.io/msops/demo:1.0.0",
    "replicas": 3,
    "port": 8080,
    "health": {
        "path": "/live",
        "readinessPath": "/ready",
        "interval": "1m30s",
        "timeout": "500ms",
        "retries": 4,
        "startPeriod": "2500ms",
    },
    "resources": {
        "cpuRequest": "250m",
        "cpuLimit": "1",
        "memoryRequest": "256Mi",
        "memoryLimit": "512Mi",
    },
}
BASE: dict[str, Any] = {
    "backend": "kubernetes",
    "target": {"namespace": "msops-prod"},
    "services": {"web": WEB},
}


def plan_of(**changes: Any) -> model.StackPlan:
    """The base config with top-level sections replaced (`services=...`), planned for prod."""
    raw = copy.deepcopy(BASE) | copy.deepcopy(changes)
    return plans.build(specs.load(raw, "prod"), stack="prod")


def web(**changes: Any) -> dict[str, Any]:
    return {"web": copy.deepcopy(WEB) | changes}


def workload_of(plan: model.StackPlan) -> model.Workload:
    return plan.workload("web")


def deployment_spec(plan: model.StackPlan, env: list[dict[str, Any]] | None = None) -> Any:
    return translate.deployment(plan, workload_of(plan), namespace=NS, env=env or []).args["spec"]


def web_container(plan: model.StackPlan) -> dict[str, Any]:
    (container,) = deployment_spec(plan)["template"]["spec"]["containers"]
    return container


def with_database(**db: Any) -> model.StackPlan:
    return plan_of(
        services=web(database="main"),
        databases={"main": {"version": "16.4", "storage": "20Gi", **db}},
    )


def postgres(plan: model.StackPlan) -> dict[str, Any]:
    (db,) = plan.databases
    return translate.postgres_statefulset(
        plan, db, namespace=NS, service_name="main-svc", secret_name="main-secret"
    ).args


def postgres_container(plan: model.StackPlan) -> dict[str, Any]:
    (container,) = postgres(plan)["spec"]["template"]["spec"]["containers"]
    return container


# --- Deployment -----------------------------------------------------------------------------------


def test_replicas_are_set_without_autoscaling() -> None:
    assert deployment_spec(plan_of())["replicas"] == 3


def test_no_replicas_under_an_hpa() -> None:
    plan = plan_of(services=web(replicas=None, autoscaling={"min": 2, "max": 5}))
    assert "replicas" not in deployment_spec(plan)


def test_the_selector_leaves_out_the_version() -> None:
    spec = deployment_spec(plan_of())
    assert spec["selector"] == {
        "match_labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "prod"}
    }


def test_the_pod_template_carries_the_version_label_and_annotation() -> None:
    digest = "sha256:" + "ab" * 32
    plan = plan_of(services=web(image=f"ghcr.io/msops/demo@{digest}"))
    meta = deployment_spec(plan)["template"]["metadata"]
    assert meta["labels"]["app.kubernetes.io/version"] == "sha256-abababababab"
    assert meta["annotations"] == {"msops.dev/version": digest}


def test_the_rollout_comes_from_the_plan() -> None:
    rollout = {"maxSurge": "25%", "maxUnavailable": 1, "progressDeadline": 120, "historyLimit": 3}
    spec = deployment_spec(plan_of(services=web(rollout=rollout)))
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rolling_update": {"max_surge": "25%", "max_unavailable": 1},
    }
    assert (spec["progress_deadline_seconds"], spec["revision_history_limit"]) == (120, 3)


def test_probes_are_in_whole_seconds_rounded_up() -> None:
    container = web_container(plan_of())
    for probe in (container["liveness_probe"], container["readiness_probe"]):
        timing = (probe["period_seconds"], probe["timeout_seconds"], probe["failure_threshold"])
        assert timing == (90, 1, 4), probe


def test_only_liveness_waits_out_the_start_period() -> None:
    container = web_container(plan_of())
    assert container["liveness_probe"]["initial_delay_seconds"] == 3
    assert container["readiness_probe"]["initial_delay_seconds"] == 0


def test_probes_ask_the_named_port_at_their_paths() -> None:
    container = web_container(plan_of())
    assert container["liveness_probe"]["http_get"] == {"path": "/live", "port": "http"}
    assert container["readiness_probe"]["http_get"] == {"path": "/ready", "port": "http"}
    assert container["ports"] == [{"name": "http", "container_port": 8080, "protocol": "TCP"}]


def test_resources_keep_the_quantities_as_written() -> None:
    assert web_container(plan_of())["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_the_container_meets_the_restricted_pod_security_standard() -> None:
    assert web_container(plan_of(services=web(runAsUser=20000)))["security_context"] == {
        "run_as_non_root": True,
        "run_as_user": 20000,
        "read_only_root_filesystem": True,
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def test_the_pod_has_no_api_token_and_a_writable_tmp() -> None:
    pod = deployment_spec(plan_of())["template"]["spec"]
    assert pod["automount_service_account_token"] is False
    assert pod["volumes"] == [{"name": "tmp", "empty_dir": {}}]
    assert pod["containers"][0]["volume_mounts"] == [{"name": "tmp", "mount_path": "/tmp"}]


def test_the_env_is_placed_unchanged() -> None:
    env = [{"name": "A", "value": "1"}]
    (container,) = deployment_spec(plan_of(), env)["template"]["spec"]["containers"]
    assert container["env"] == env


# --- env ------------------------------------------------------------------------------------------


def test_plain_env_is_the_apps_conventions_then_the_spec_env() -> None:
    plan = plan_of(services=web(env={"LOG_LEVEL": "info"}))
    env = translate.container_env(workload_of(plan), secret_name=None)
    names = [e["name"] for e in env]
    assert names == ["PORT", "SERVICE_NAME", "APP_VERSION", "SCHEMA_VERSION", "LOG_LEVEL"]


def test_secret_env_is_a_secret_key_ref_into_the_env_secret() -> None:
    plan = plan_of(
        services=web(secretEnv={"API_TOKEN": "token"}, database="main"),
        secrets={"token": "t"},
        databases={"main": {"storage": "1Gi"}},
    )
    env = translate.container_env(workload_of(plan), secret_name="web-env-out")[4:]
    assert env == [
        {
            "name": var,
            "value_from": {"secret_key_ref": {"name": "web-env-out", "key": var}},
        }
        for var in ("API_TOKEN", "DATABASE_URL")
    ]


def test_the_env_secret_is_opaque_and_holds_the_values_given() -> None:
    plan = plan_of()
    spec = translate.env_secret(plan, workload_of(plan), namespace=NS, values={"K": "v-out"})
    assert (spec.name, spec.args["type"], spec.args["string_data"]) == (
        "web-env",
        "Opaque",
        {"K": "v-out"},
    )
    assert spec.args["metadata"]["namespace"] == NS


# --- Service, Ingress, URLs -----------------------------------------------------------------------


def test_an_exposed_service_is_a_marked_load_balancer() -> None:
    plan = plan_of(services=web(exposed=True))
    args = translate.service(plan, workload_of(plan), namespace=NS).args
    assert args["spec"]["type"] == "LoadBalancer"
    assert args["metadata"]["annotations"] == {"msops.dev/exposed": "true"}


def test_an_unexposed_service_is_an_unmarked_cluster_ip() -> None:
    plan = plan_of()
    args = translate.service(plan, workload_of(plan), namespace=NS).args
    assert args["spec"]["type"] == "ClusterIP"
    assert "annotations" not in args["metadata"]


def test_the_service_maps_port_80_to_the_named_port() -> None:
    plan = plan_of()
    args = translate.service(plan, workload_of(plan), namespace=NS).args
    assert args["spec"]["ports"] == [
        {"name": "http", "port": 80, "target_port": "http", "protocol": "TCP"}
    ]


def test_ingress_has_tls_and_its_class() -> None:
    route = {"host": "web.example.com", "path": "/app", "className": "nginx", "tlsSecret": "tls"}
    plan = plan_of(services=web(ingress=route))
    spec = translate.ingress(plan, workload_of(plan), namespace=NS, service_name="svc-out")
    assert spec is not None
    assert spec.args["spec"]["tls"] == [{"hosts": ["web.example.com"], "secret_name": "tls"}]
    assert spec.args["spec"]["ingress_class_name"] == "nginx"
    (path,) = spec.args["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"] == {"service": {"name": "svc-out", "port": {"name": "http"}}}


def test_ingress_without_tls_or_class_leaves_both_out() -> None:
    plan = plan_of(services=web(ingress={"host": "web.example.com"}))
    spec = translate.ingress(plan, workload_of(plan), namespace=NS, service_name="svc")
    assert spec is not None
    assert "tls" not in spec.args["spec"] and "ingress_class_name" not in spec.args["spec"]


def test_no_ingress_unless_planned() -> None:
    plan = plan_of()
    assert translate.ingress(plan, workload_of(plan), namespace=NS, service_name="svc") is None


@pytest.mark.parametrize(
    ("service", "url"),
    [
        ({}, "http://web.msops-prod.svc.cluster.local"),
        ({"exposed": True}, None),
        ({"ingress": {"host": "w.example", "path": "/a", "tlsSecret": "t"}}, "https://w.example/a"),
        ({"ingress": {"host": "w.example"}}, "http://w.example/"),
    ],
)
def test_url(service: dict[str, Any], url: str | None) -> None:
    plan = plan_of(services=web(**service))
    assert translate.url(plan, workload_of(plan)) == url, service


def test_a_load_balancer_url_is_its_first_address_else_the_fallback() -> None:
    assert translate.load_balancer_url([None, "1.2.3.4"], "fb") == "http://1.2.3.4"
    assert translate.load_balancer_url([], "fb") == "fb"


# --- HPA, PDB -------------------------------------------------------------------------------------


def test_the_hpa_targets_the_deployment_at_the_cpu_target() -> None:
    plan = plan_of(services=web(replicas=None, autoscaling={"min": 2, "max": 5, "targetCpu": 60}))
    spec = translate.autoscaler(plan, workload_of(plan), namespace=NS, deployment_name="dep-out")
    assert spec is not None
    args = spec.args["spec"]
    assert args["scale_target_ref"] == {
        "api_version": "apps/v1",
        "kind": "Deployment",
        "name": "dep-out",
    }
    assert (args["min_replicas"], args["max_replicas"]) == (2, 5)
    assert args["metrics"][0]["resource"]["target"]["average_utilization"] == 60


def test_no_hpa_without_autoscaling() -> None:
    plan = plan_of()
    assert translate.autoscaler(plan, workload_of(plan), namespace=NS, deployment_name="d") is None


@pytest.mark.parametrize(
    ("service", "has_pdb"),
    [
        ({"replicas": 1}, False),
        ({"replicas": 0}, False),
        ({"replicas": 2}, True),
        ({"replicas": None, "autoscaling": {"min": 1, "max": 3}}, True),
    ],
)
def test_a_pdb_only_for_two_or_more_replicas(service: dict[str, Any], has_pdb: bool) -> None:
    plan = plan_of(services=web(**service))
    spec = translate.disruption_budget(plan, workload_of(plan), namespace=NS)
    assert (spec is not None) is has_pdb, service


def test_the_pdb_allows_one_unavailable_and_evicts_unhealthy_pods() -> None:
    plan = plan_of()
    spec = translate.disruption_budget(plan, workload_of(plan), namespace=NS)
    assert spec is not None
    assert spec.args["spec"]["max_unavailable"] == 1
    assert spec.args["spec"]["unhealthy_pod_eviction_policy"] == "AlwaysAllow"
    assert "app.kubernetes.io/version" not in spec.args["spec"]["selector"]["match_labels"]


# --- monitoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["service_monitor", "prometheus_rule"])
def test_monitoring_objects_carry_the_release_label(kind: str) -> None:
    plan = plan_of(monitoring={"releaseLabel": "prom"})
    spec = getattr(translate, kind)(plan, workload_of(plan), namespace=NS)
    assert spec.args["metadata"]["labels"]["release"] == "prom", kind


def test_the_service_monitor_scrapes_the_named_port_at_the_interval() -> None:
    plan = plan_of(services=web(metricsPath="/prom"), monitoring={"scrapeInterval": "10s"})
    spec = translate.service_monitor(plan, workload_of(plan), namespace=NS).args["spec"]
    assert spec["endpoints"] == [{"port": "http", "path": "/prom", "interval": "10s"}]
    assert spec["jobLabel"] == "app.kubernetes.io/name"


def test_a_service_scaled_to_zero_still_gets_a_service_monitor() -> None:
    plan = plan_of(services=web(replicas=0))
    spec = translate.service_monitor(plan, workload_of(plan), namespace=NS)
    assert spec.name == "web-servicemonitor"


def test_the_prometheus_rule_holds_the_plans_thresholds() -> None:
    plan = plan_of(monitoring={"alerts": {"errorRate": 0.2}})
    spec = translate.prometheus_rule(plan, workload_of(plan), namespace=NS).args["spec"]
    assert "0.2" in str(spec["groups"]), spec


def test_the_dashboard_is_labelled_for_the_grafana_sidecar() -> None:
    plan = plan_of()
    spec = translate.dashboard(plan, workload_of(plan), namespace=NS)
    assert spec is not None
    assert spec.args["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert spec.args["data"] == {"web.json": grafana.render_dashboard(service="web")}


def test_no_dashboard_without_grafana() -> None:
    plan = plan_of(monitoring={"grafana": False})
    assert translate.dashboard(plan, workload_of(plan), namespace=NS) is None


# --- Postgres -------------------------------------------------------------------------------------


def test_the_statefulset_retains_its_claims_and_itself() -> None:
    spec = translate.postgres_statefulset(
        with_database(),
        with_database().databases[0],
        namespace=NS,
        service_name="s",
        secret_name="p",
    )
    policy = spec.args["spec"]["persistent_volume_claim_retention_policy"]
    assert policy == {"when_deleted": "Retain", "when_scaled": "Retain"}
    assert spec.options == {"retain_on_delete": True}


def test_the_namespace_of_a_stack_with_a_database_is_retained() -> None:
    # Deleting a namespace deletes what is in it: the retained StatefulSet and PVC with it.
    assert translate.namespace(with_database()).options == {"retain_on_delete": True}


def test_the_namespace_of_a_stack_without_a_database_is_deleted_with_it() -> None:
    assert translate.namespace(plan_of()).options == {}


def test_the_statefulset_claims_the_storage_as_written() -> None:
    (claim,) = postgres(with_database(storage="20Gi"))["spec"]["volume_claim_templates"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "20Gi"}}


def test_the_statefulset_is_governed_by_the_service_given() -> None:
    assert postgres(with_database())["spec"]["service_name"] == "main-svc"


def test_postgres_gets_its_password_from_the_secret_given() -> None:
    env = {e["name"]: e for e in postgres_container(with_database())["env"]}
    assert env["POSTGRES_PASSWORD"]["value_from"] == {
        "secret_key_ref": {"name": "main-secret", "key": "password"}
    }
    assert env["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"


def test_postgres_runs_as_its_uid_with_the_volume_owned_by_its_group() -> None:
    pod = postgres(with_database())["spec"]["template"]["spec"]
    context = pod["security_context"]
    assert (context["run_as_user"], context["run_as_group"], context["fs_group"]) == (70, 70, 70)
    assert pod["containers"][0]["security_context"]["read_only_root_filesystem"] is True


def test_postgres_readiness_is_pg_isready_with_the_plans_timing() -> None:
    probe = postgres_container(with_database(user="app"))["readiness_probe"]
    assert probe["exec_"]["command"][0] == "pg_isready"
    assert "app" in probe["exec_"]["command"]
    timing = (probe["period_seconds"], probe["timeout_seconds"], probe["failure_threshold"])
    assert timing == (5, 3, 10)
    assert "initial_delay_seconds" not in probe


def test_postgres_liveness_is_a_tcp_check_after_the_start_period() -> None:
    probe = postgres_container(with_database())["liveness_probe"]
    assert probe["tcp_socket"] == {"port": 5432}
    assert probe["initial_delay_seconds"] == 30


def test_postgres_resources_come_from_the_plan() -> None:
    assert postgres_container(with_database())["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_the_postgres_service_is_headless() -> None:
    plan = with_database()
    args = translate.postgres_service(plan, plan.databases[0], namespace=NS).args
    assert args["spec"]["cluster_ip"] == "None"
    assert args["metadata"]["labels"]["app.kubernetes.io/component"] == "database"


def test_the_postgres_secret_holds_the_password_given() -> None:
    plan = with_database()
    args = translate.postgres_secret(plan, plan.databases[0], namespace=NS, password="pw").args
    assert (args["type"], args["string_data"]) == ("Opaque", {"password": "pw"})


# --- stack, kube-prometheus-stack -----------------------------------------------------------------


def test_the_namespace_enforces_restricted() -> None:
    spec = translate.namespace(plan_of())
    labels = spec.args["metadata"]["labels"]
    assert spec.name == "msops-prod"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_provider_uses_the_kube_context_and_updates_in_place() -> None:
    args = translate.provider(plan_of(target={"kubeContext": "c1"}), component="prod").args
    assert args == {
        "context": "c1",
        "enable_secret_mutable": True,
        "enable_config_map_mutable": True,
    }


def test_the_release_installs_the_pinned_chart_named_after_the_release_label() -> None:
    plan = plan_of(
        monitoring={"installStack": True, "releaseLabel": "kps", "chartVersion": "1.2.3"}
    )
    spec = translate.kps_release(plan, namespace="mon-out")
    assert (spec.name, spec.args["name"], spec.args["version"]) == ("kps", "kps", "1.2.3")
    assert spec.args["repository_opts"] == {"repo": translate.KPS_REPO}
    assert spec.args["namespace"] == "mon-out"
    assert spec.args["atomic"] is True


def test_the_release_values_name_the_admin_secret_not_a_password() -> None:
    plan = plan_of(monitoring={"installStack": True})
    grafana_values = translate.kps_release(plan, namespace="m").args["values"]["grafana"]
    assert grafana_values["admin"]["existingSecret"] == "grafana-admin"
    assert grafana_values["sidecar"]["dashboards"]["label"] == "grafana_dashboard"


def test_the_release_values_turn_grafana_off_without_it() -> None:
    plan = plan_of(monitoring={"installStack": True, "grafana": False})
    assert translate.kps_release(plan, namespace="m").args["values"]["grafana"] == {
        "enabled": False
    }


def test_monitoring_urls_only_where_msops_installs_the_stack() -> None:
    assert translate.monitoring_urls(plan_of()) == (None, None)
    installed = plan_of(monitoring={"installStack": True, "releaseLabel": "kps"})
    assert translate.monitoring_urls(installed) == (
        "http://kps-prometheus.monitoring.svc.cluster.local:9090",
        "http://kps-grafana.monitoring.svc.cluster.local",
    )


def test_the_fullname_is_cut_like_the_chart() -> None:
    assert translate.kps_fullname("a" * 25 + "-b") == "a" * 25


# --- config problems ------------------------------------------------------------------------------


def test_a_good_config_has_no_problems() -> None:
    assert translate.config_problems(with_database()) == []


def test_a_stack_name_that_is_no_namespace_is_refused() -> None:
    raw = {k: v for k, v in BASE.items() if k != "target"}
    plan = plans.build(specs.load(raw, "Prod_EU"), stack="Prod_EU")
    (problem,) = translate.config_problems(plan)
    assert problem.startswith("msops:target.namespace:"), problem


def test_the_monitoring_namespace_is_refused_where_msops_installs_the_stack() -> None:
    plan = plan_of(target={"namespace": "monitoring"}, monitoring={"installStack": True})
    (problem,) = translate.config_problems(plan)
    assert "kube-prometheus-stack" in problem


def test_a_service_and_a_database_of_one_name_are_refused() -> None:
    plan = plan_of(services=web(database="web"), databases={"web": {"storage": "1Gi"}})
    (problem,) = translate.config_problems(plan)
    assert problem.startswith("msops:databases.web:")


def test_the_translator_imports_no_pulumi() -> None:
    code = (
        "import sys, components.backends.kubernetes.translate; "
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]", run.stdout


def test_installed_grafana_takes_the_same_settings_as_msops_own() -> None:
    from components.backends.common import grafana_ini

    plan = plan_of(monitoring={"installStack": True, "grafanaAnonymous": True})
    values = translate.kps_grafana_values(plan)
    assert values["grafana.ini"] == grafana_ini(plan), values
    assert values["grafana.ini"]["auth.anonymous"]["enabled"] == "true"
