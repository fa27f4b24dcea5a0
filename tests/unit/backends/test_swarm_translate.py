"""The swarm translator as plain functions: plan in, provider arguments out, no Pulumi mocks."""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import pytest
import yaml

from components import plan as plans
from components import spec
from components.backends.common import Args, grafana_env, grafana_ini
from components.backends.swarm import translate
from components.vocabulary import LABEL_DATABASE, LABEL_STACK, LABEL_VERSION, WAIVER_PREFIX

STACK = "staging"
NETWORK_ID = "net-id"
WEB = {"image": "ghcr.io/msops/demo:1.0.0", "replicas": 2, "port": 8080, "lb": {"port": 8000}}


def plan_of(
    services: dict[str, Any] | None = None, *, stack: str = STACK, **sections: Any
) -> plans.StackPlan:
    raw: dict[str, Any] = {"backend": "swarm", "services": services or {"web": WEB}}
    raw.update(sections)
    return plans.build(spec.load(raw, stack), stack=stack)


def with_db(**db: Any) -> plans.StackPlan:
    return plan_of({"web": {**WEB, "database": "main"}}, databases={"main": db})


def monitored(services: dict[str, Any] | None = None, *, stack: str = STACK) -> plans.StackPlan:
    return plan_of(services, stack=stack, monitoring={"enabled": True, "grafana": True})


def service(plan: plans.StackPlan, name: str = "web", **env: Any) -> Args:
    return translate.service(plan, plan.workload(name), network_id=NETWORK_ID, env=env, secrets=[])


def database(plan: plans.StackPlan, name: str = "main") -> Args:
    db = plan.database(name)
    assert db is not None, f"no database {name!r} in the plan"
    mount = translate.database_secret_mount("s-id", "s")
    return translate.database(plan, db, network_id=NETWORK_ID, volume_name="vol", secrets=[mount])


def prometheus(plan: plans.StackPlan) -> Args:
    return translate.prometheus(
        plan, component=STACK, network_id=NETWORK_ID, configs=[], volume_name="prom-vol"
    )


def grafana(plan: plans.StackPlan) -> Args:
    return translate.grafana(
        plan,
        component=STACK,
        network_id=NETWORK_ID,
        configs=[],
        admin_secret_id="a-id",
        admin_secret_name="a",
    )


def container(args: Args) -> dict[str, Any]:
    spec_: dict[str, Any] = args.args["task_spec"]["container_spec"]
    return spec_


def labels(items: list[dict[str, str]]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items}


def configs(files: list[tuple[Args, str]]) -> dict[str, str]:
    """Each config's mount path and its decoded content."""
    return {path: base64.b64decode(a.args["data"]).decode() for a, path in files}


# --- update, rollback, converge -------------------------------------------------------------------


def test_update_goes_one_task_at_a_time_new_task_first() -> None:
    update = service(plan_of()).args["update_config"]
    assert (update["parallelism"], update["order"]) == (1, "start-first"), update


def test_a_failed_update_rolls_back_and_tolerates_no_failure() -> None:
    update = service(plan_of()).args["update_config"]
    assert (update["failure_action"], update["max_failure_ratio"]) == ("rollback", "0.0"), update


def test_a_failed_rollback_pauses_for_a_person() -> None:
    rollback = service(plan_of()).args["rollback_config"]
    assert (rollback["failure_action"], rollback["delay"]) == ("pause", "0s"), rollback


def test_monitor_window_is_the_start_period_plus_every_retry() -> None:
    health = {"interval": "10s", "retries": 3, "startPeriod": "15s"}
    args = service(plan_of({"web": {**WEB, "health": health}})).args
    assert args["update_config"]["monitor"] == "45s", args["update_config"]
    assert args["rollback_config"]["monitor"] == "45s", args["rollback_config"]


def test_converge_timeout_is_the_progress_deadline() -> None:
    plan = plan_of({"web": {**WEB, "rollout": {"progressDeadline": 90}}})
    assert service(plan).args["converge_config"] == {"delay": "5s", "timeout": "1m30s"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (10, "10s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (1.5, "1.5s"),
    ],
)
def test_durations_are_written_as_the_provider_reads_them_back(seconds: float, text: str) -> None:
    assert translate.duration(seconds) == text


def test_healthcheck_durations_are_provider_strings() -> None:
    health = {"interval": "90s", "timeout": "2s", "startPeriod": "1m"}
    check = container(service(plan_of({"web": {**WEB, "health": health}})))["healthcheck"]
    assert (check["interval"], check["timeout"], check["start_period"]) == ("1m30s", "2s", "1m")


def test_healthcheck_probes_the_liveness_path_with_a_shell_fallback_chain() -> None:
    check = container(service(plan_of({"web": {**WEB, "health": {"path": "/live"}}})))
    kind, command = check["healthcheck"]["tests"]
    assert kind == "CMD-SHELL", command
    assert command.startswith("wget -q -O /dev/null http://127.0.0.1:8080/live || curl"), command


# --- the service ----------------------------------------------------------------------------------


def test_replicas_are_the_desired_replicas() -> None:
    assert service(plan_of()).args["mode"] == {"replicated": {"replicas": 2}}


def test_published_port_goes_through_the_routing_mesh() -> None:
    (port,) = service(plan_of()).args["endpoint_spec"]["ports"]
    assert (port["published_port"], port["target_port"], port["publish_mode"]) == (
        8000,
        8080,
        "ingress",
    )


def test_a_service_without_lb_port_publishes_nothing() -> None:
    plan = plan_of({"web": {"image": "ghcr.io/msops/demo:1.0.0", "port": 8080}})
    assert service(plan).args["endpoint_spec"] == {"mode": "vip"}


def test_container_runs_as_its_uid_and_group_read_only_without_capabilities() -> None:
    spec_ = container(service(plan_of({"web": {**WEB, "runAsUser": 20000}})))
    assert (spec_["user"], spec_["read_only"], spec_["cap_drops"]) == ("20000:20000", True, ["ALL"])


def test_resources_are_nano_cpus_and_bytes() -> None:
    res = {"cpuRequest": "250m", "cpuLimit": "1500m", "memoryRequest": "64Mi", "memoryLimit": "1Gi"}
    got = service(plan_of({"web": {**WEB, "resources": res}})).args["task_spec"]["resources"]
    assert got == {
        "limits": {"nano_cpus": 1_500_000_000, "memory_bytes": 1024**3},
        "reservation": {"nano_cpus": 250_000_000, "memory_bytes": 64 * 1024**2},
    }


def test_labels_carry_the_pinned_version_the_digest_first() -> None:
    digest = "sha256:" + "a" * 64
    plan = plan_of({"web": {**WEB, "image": f"ghcr.io/msops/demo:1.0.0@{digest}"}})
    assert labels(service(plan).args["labels"])[LABEL_VERSION] == digest


def test_env_is_placed_unchanged() -> None:
    assert container(service(plan_of(), TOKEN="an-output"))["env"] == {"TOKEN": "an-output"}


def test_joins_the_overlay_by_network_id_under_its_own_name() -> None:
    (attachment,) = service(plan_of()).args["task_spec"]["networks_advanceds"]
    assert attachment == {"name": NETWORK_ID, "aliases": ["web"]}


def test_no_unset_block_reaches_the_provider() -> None:
    spec_ = container(service(plan_of()))
    assert "secrets" not in spec_ and None not in spec_.values(), spec_


def test_the_task_spec_is_not_hidden_even_with_secret_env() -> None:
    # Its env names files only, so there is nothing to hide, and the policies read it whole.
    assert "additional_secret_outputs" not in service(with_db()).options


def test_the_service_env_names_each_secret_by_its_file() -> None:
    env = translate.service_env(with_db().workload("web"))
    assert env["DATABASE_URL_FILE"] == "/run/secrets/DATABASE_URL", env
    assert "DATABASE_URL" not in env, env


def test_fixed_name_means_delete_before_replace() -> None:
    assert service(plan_of()).options["delete_before_replace"] is True


def test_url_is_the_published_port_on_the_public_host() -> None:
    assert translate.service_url(plan_of().workload("web"), "mgr") == "http://mgr:8000"


def test_url_of_an_unpublished_service_is_its_alias_on_the_overlay() -> None:
    plan = plan_of({"web": {"image": "ghcr.io/msops/demo:1.0.0", "port": 8080}})
    assert translate.service_url(plan.workload("web"), "mgr") == "http://web:8080"


# --- secrets --------------------------------------------------------------------------------------


def test_secret_env_var_is_a_file_only_the_service_user_reads() -> None:
    workload = plan_of({"web": {**WEB, "runAsUser": 20000}}).workload("web")
    mount = translate.service_secret_mount(workload, "API_TOKEN", "id-1", "name-1")
    assert mount == {
        "secret_id": "id-1",
        "secret_name": "name-1",
        "file_name": "/run/secrets/API_TOKEN",
        "file_uid": "20000",
        "file_gid": "20000",
        "file_mode": 0o400,
    }


def test_secret_resource_is_named_after_service_and_variable() -> None:
    plan = plan_of()
    secret = translate.service_secret(plan, plan.workload("web"), "API_TOKEN", data="x")
    assert secret.name == "web-api-token", secret


def test_secret_data_is_placed_unchanged() -> None:
    plan = plan_of()
    secret = translate.service_secret(plan, plan.workload("web"), "API_TOKEN", data="an-output")
    assert secret.args["data"] == "an-output"


# --- Postgres -------------------------------------------------------------------------------------


def test_database_is_pinned_to_its_labelled_node() -> None:
    placement = database(with_db()).args["task_spec"]["placement"]
    assert placement == {"constraints": ["node.labels.msops.db.main == true"]}


def test_database_reads_its_password_from_a_root_owned_file() -> None:
    spec_ = container(database(with_db()))
    (mount,) = spec_["secrets"]
    assert spec_["env"]["POSTGRES_PASSWORD_FILE"] == mount["file_name"], spec_
    assert (mount["file_uid"], mount["file_gid"]) == ("0", "0"), mount


def test_database_env_holds_no_password() -> None:
    assert "POSTGRES_PASSWORD" not in container(database(with_db()))["env"]


def test_database_updates_stop_the_old_server_first() -> None:
    args = database(with_db()).args
    assert (args["update_config"]["order"], args["rollback_config"]["order"]) == (
        "stop-first",
        "stop-first",
    )


def test_database_monitor_covers_initdb_and_every_retry() -> None:
    assert database(with_db()).args["update_config"]["monitor"] == "1m20s"


def test_database_healthcheck_is_pg_isready_over_tcp() -> None:
    tests = container(database(with_db(user="ledger")))["healthcheck"]["tests"]
    assert tests == [
        "CMD",
        "pg_isready",
        "-h",
        "127.0.0.1",
        "-p",
        "5432",
        "-U",
        "ledger",
        "-d",
        "main",
    ]


def test_database_data_is_on_the_volume_below_pgdata() -> None:
    spec_ = container(database(with_db()))
    assert spec_["mounts"] == [
        {"type": "volume", "source": "vol", "target": "/var/lib/postgresql/data"}
    ]
    assert spec_["env"]["PGDATA"] == "/var/lib/postgresql/data/pgdata", spec_["env"]


def test_database_carries_its_non_root_waiver() -> None:
    assert f"{WAIVER_PREFIX}containers-non-root" in labels(database(with_db()).args["labels"])


def test_database_volume_is_protected_retained_and_fixed_name() -> None:
    plan = with_db()
    db = plan.database("main")
    assert db is not None
    volume = translate.database_volume(plan, db)
    assert volume.args["name"] == "msops-staging-main-pgdata", volume
    assert volume.options == {"protect": True, "retain_on_delete": True}


def test_database_volume_labels_keep_stack_then_database() -> None:
    plan = with_db()
    db = plan.database("main")
    assert db is not None
    assert [item["label"] for item in translate.database_volume(plan, db).args["labels"]] == [
        LABEL_STACK,
        LABEL_DATABASE,
    ]


# --- monitoring -----------------------------------------------------------------------------------


def test_prometheus_has_a_dns_sd_job_per_scraped_service() -> None:
    api = {"image": "ghcr.io/msops/demo:1.0.0", "port": 9000, "metricsPath": "/prom"}
    config = yaml.safe_load(translate.prometheus_config(monitored({"web": WEB, "api": api})))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["api"]["metrics_path"] == "/prom", jobs
    assert jobs["api"]["dns_sd_configs"] == [
        {"names": ["tasks.staging_api"], "type": "A", "port": 9000, "refresh_interval": "5s"}
    ], jobs


def test_a_service_scaled_to_zero_is_not_scraped() -> None:
    worker = {"image": "ghcr.io/msops/demo:1.0.0", "replicas": 0}
    config = yaml.safe_load(translate.prometheus_config(monitored({"web": WEB, "worker": worker})))
    assert [job["job_name"] for job in config["scrape_configs"]] == ["web"], config


def test_prometheus_labels_its_series_with_the_stack() -> None:
    config = yaml.safe_load(translate.prometheus_config(monitored()))
    assert config["global"]["external_labels"] == {"stack": STACK}, config


def test_prometheus_stays_on_the_managers_and_stops_first() -> None:
    args = prometheus(monitored()).args
    assert args["task_spec"]["placement"] == {"constraints": ["node.role == manager"]}
    assert args["update_config"]["order"] == "stop-first", args["update_config"]


def test_prometheus_keeps_its_data_on_the_volume() -> None:
    mounts = container(prometheus(monitored()))["mounts"]
    assert mounts[0] == {"type": "volume", "source": "prom-vol", "target": "/prometheus"}, mounts


def test_prometheus_files_are_mounted_where_its_args_point() -> None:
    plan = monitored()
    files = translate.prometheus_configs(plan, component=STACK)
    args = container(prometheus(plan))["args"]
    assert [path for _, path in files] == [
        translate.PROMETHEUS_CONFIG_PATH,
        translate.PROMETHEUS_RULES_PATH,
    ]
    assert f"--config.file={translate.PROMETHEUS_CONFIG_PATH}" in args, args


def test_monitoring_service_names_carry_the_stack_prefix() -> None:
    plan = monitored()
    assert (prometheus(plan).args["name"], grafana(plan).args["name"]) == (
        "staging_msops-prometheus",
        "staging_msops-grafana",
    )


def test_grafana_reads_prometheus_at_its_service_name() -> None:
    files = configs(translate.grafana_configs(monitored(), component=STACK))
    datasource = yaml.safe_load(files["/etc/grafana/provisioning/datasources/msops.yaml"])
    assert datasource["datasources"][0]["url"] == "http://staging_msops-prometheus:9090"


def test_grafana_gets_a_dashboard_per_service() -> None:
    api = {"image": "ghcr.io/msops/demo:1.0.0", "replicas": 0}
    files = configs(translate.grafana_configs(monitored({"web": WEB, "api": api}), component="s"))
    dashboards = sorted(p for p in files if p.startswith(translate.GRAFANA_DASHBOARDS_PATH))
    assert dashboards == ["/etc/grafana/dashboards/api.json", "/etc/grafana/dashboards/web.json"]


def test_grafana_allows_no_anonymous_viewing_on_swarm() -> None:
    assert container(grafana(monitored()))["env"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_grafana_admin_password_is_a_file_not_env() -> None:
    spec_ = container(grafana(monitored()))
    (mount,) = spec_["secrets"]
    assert spec_["env"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == mount["file_name"], spec_
    assert "GF_SECURITY_ADMIN_PASSWORD" not in spec_["env"], spec_


def test_grafana_may_run_anywhere_and_starts_first() -> None:
    args = grafana(monitored()).args
    assert args["task_spec"]["placement"] == {}, args["task_spec"]
    assert args["update_config"]["order"] == "start-first", args["update_config"]


def test_a_changed_config_gets_a_new_name_of_at_most_64_characters() -> None:
    plan = plan_of(stack="s" * 80)
    one, two = (translate.config_name(plan, "prometheus-rules", d) for d in ("a", "b"))
    assert one != two and len(one) <= translate.MAX_CONFIG_NAME, (one, two)


def test_monitoring_urls_use_the_public_host() -> None:
    assert translate.monitoring_urls(monitored(), "mgr") == ("http://mgr:9090", "http://mgr:3000")


# --- the mesh warning -----------------------------------------------------------------------------


def test_mesh_warning_names_every_port_opened_beyond_the_bind_address() -> None:
    warning = translate.mesh_warning(monitored(), "mgr")
    assert warning is not None
    assert (
        "services.web.lb.port 8000, monitoring.prometheusPort 9090, monitoring.grafanaPort 3000"
        in (warning)
    ), warning


def test_an_exposed_service_is_not_warned_about() -> None:
    plan = plan_of({"web": {**WEB, "exposed": True}}, monitoring={"enabled": False})
    assert translate.mesh_warning(plan, "mgr") is None


# --- names and their problems ---------------------------------------------------------------------


def test_swarm_name_is_the_stack_as_a_dns_label_then_the_name() -> None:
    assert translate.swarm_name(plan_of(stack="Prod.EU"), "web") == "prod-eu_web"


def test_a_name_over_63_characters_is_refused_with_its_key() -> None:
    (problem,) = translate.config_problems(plan_of({"w" * 60: WEB}))
    assert problem.startswith(f"msops:services.{'w' * 60}: swarm service name"), problem


def test_a_name_kept_for_monitoring_is_refused() -> None:
    problems = translate.config_problems(plan_of({"msops-prometheus": WEB}))
    assert problems and problems[0].startswith("msops:services.msops-prometheus:"), problems


def test_a_name_shared_by_a_service_and_a_database_is_refused() -> None:
    plan = plan_of({"main": WEB}, databases={"main": {}})
    assert [p.split(":")[1] for p in translate.config_problems(plan)] == ["databases.main"]


def test_an_external_database_takes_no_name() -> None:
    plan = plan_of({"main": WEB}, databases={"main": {"externalUrl": "postgresql://h/main"}})
    assert translate.config_problems(plan) == []


def test_monitoring_names_that_would_be_too_long_are_refused() -> None:
    plan = monitored(stack="s" * 50)
    assert [p for p in translate.config_problems(plan) if p.startswith("msops:monitoring:")], plan


# --- purity ---------------------------------------------------------------------------------------


def test_the_translator_imports_no_pulumi() -> None:
    code = (
        "import sys, components.backends.swarm.translate; "
        "print(any(m.startswith('pulumi') for m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "False", run.stdout + run.stderr


def test_grafana_settings_are_the_docker_backends_but_the_password_file() -> None:
    plan = monitored()
    expected = grafana_env(grafana_ini(plan, translate.GRAFANA_DASHBOARDS_PATH))
    assert container(grafana(plan))["env"] == {
        **expected,
        "GF_SECURITY_ADMIN_PASSWORD__FILE": translate.GRAFANA_ADMIN_FILE,
    }
