"""The swarm backend under mocks: update and rollback policy, secrets, Postgres, monitoring."""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import plan as plans
from components import spec as specs
from components.backends.common import http_check_command
from components.backends.swarm import translate
from components.plan import builder
from msops import synth
from tests.graphs import stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

STACK = "staging"
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
PROVIDER = "pulumi:providers:docker"
# Go's time.ParseDuration grammar, without a sign: what Docker accepts for every duration.
DOCKER_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$")
DURATION_KEYS = {
    "updateConfig": ("delay", "monitor"),
    "rollbackConfig": ("delay", "monitor"),
    "convergeConfig": ("delay", "timeout"),
}
HEALTH_DURATIONS = ("interval", "timeout", "startPeriod")
DB_PASSWORD = "pg-pass-7f3a9c21"
API_TOKEN = "tok-swarm-5b8e1d44"
TOOL_TIMEOUT = 60


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def no_docker_host() -> Iterator[None]:
    """Synthesize as if DOCKER_HOST were unset, since URLs shown depend on it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DOCKER_HOST", raising=False)
        yield


def spec_of(values: dict[str, Any]) -> specs.StackConfig:
    return specs.load(specs.raw_config(values), STACK)


def parent_of(graph: synth.Graph, res: synth.Resource) -> synth.Resource:
    return graph.by_urn(res.parent)


def app_services(graph: synth.Graph) -> dict[str, synth.Resource]:
    """Each stack service's docker.Service, by service name."""
    found = {}
    for res in graph.of_type(SERVICE):
        parent = parent_of(graph, res)
        if parent.type == "msops:swarm:Service":
            found[parent.name] = res
    return found


def only(graph: synth.Graph, type_: str, parent_type: str, suffix: str = "") -> synth.Resource:
    matches = [
        r
        for r in graph.of_type(type_)
        if parent_of(graph, r).type == parent_type and r.name.endswith(suffix)
    ]
    assert len(matches) == 1, f"expected one {type_} ending {suffix!r} under {parent_type}: " + str(
        [r.urn for r in matches]
    )
    return matches[0]


def container(res: synth.Resource) -> dict[str, Any]:
    spec: dict[str, Any] = res.inputs["taskSpec"]["containerSpec"]
    return spec


def decoded(res: synth.Resource) -> str:
    return base64.b64decode(res.inputs["data"]).decode()


def prometheus_config(graph: synth.Graph) -> str:
    return decoded(only(graph, CONFIG, "msops:swarm:Monitoring", "-prometheus-config"))


def rules_text(graph: synth.Graph) -> str:
    return decoded(only(graph, CONFIG, "msops:swarm:Monitoring", "-prometheus-rules"))


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths at which two input trees differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if key not in old or key not in new:
                out.append(sub)
            else:
                out.extend(differences(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [path]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> synth.Graph:
    """The committed staging stack, synthesized with DOCKER_HOST unset."""
    with no_docker_host():
        return synth.synth(STACK)


@pytest.fixture(scope="module")
def spec() -> specs.StackConfig:
    return spec_of(stack_values(STACK))


@pytest.fixture(scope="module")
def plan(spec: specs.StackConfig) -> plans.StackPlan:
    return plans.build(spec, stack=STACK)


@pytest.fixture(scope="module")
def secret_graph() -> synth.Graph:
    """Staging with a known database password and a named secret passed as secretEnv."""
    values = stack_values(STACK)
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    values["msops:secrets"] = {"apiToken": API_TOKEN}
    values["msops:services"]["api"]["secretEnv"] = {"API_TOKEN": "apiToken"}
    with no_docker_host():
        return synth_values(values, STACK)


@pytest.fixture(scope="module")
def remote_graph() -> synth.Graph:
    """Staging pointed at a remote manager through msops:target.dockerHost."""
    values = stack_values(STACK)
    values["msops:target"] = {"dockerHost": "ssh://ops@manager-1.example.net"}
    with no_docker_host():
        return synth_values(values, STACK)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed, and these tests check the rendered Prometheus files "
            "with it; install it with `apt-get install prometheus`"
        )
    return path


# --- update, rollback, replicas, health, ports -------------------------------------------------


def test_every_stack_service_has_a_swarm_service(
    graph: synth.Graph, spec: specs.StackConfig
) -> None:
    assert set(app_services(graph)) == set(spec.services), [r.urn for r in graph.of_type(SERVICE)]


def test_service_name_is_fixed_and_stack_scoped(graph: synth.Graph) -> None:
    for name, res in app_services(graph).items():
        assert res.inputs["name"] == f"{STACK}_{name}", res.urn


def test_update_config_is_one_at_a_time_start_first_with_rollback(graph: synth.Graph) -> None:
    for res in app_services(graph).values():
        update = res.inputs["updateConfig"]
        assert update["parallelism"] == 1, res.urn
        assert update["order"] == "start-first", res.urn
        assert update["failureAction"] == "rollback", res.urn
        assert isinstance(update["maxFailureRatio"], str), res.urn
        assert float(update["maxFailureRatio"]) == 0, res.urn


def test_update_monitor_covers_every_health_retry(
    graph: synth.Graph, spec: specs.StackConfig
) -> None:
    for name, res in app_services(graph).items():
        health = spec.services[name].health
        needed = specs.parse_duration(health.interval) * health.retries
        monitor = res.inputs["updateConfig"]["monitor"]
        assert specs.parse_duration(monitor) >= needed, f"{res.urn}: monitor {monitor}"


def test_rollback_config_is_one_at_a_time_and_pauses_on_failure(graph: synth.Graph) -> None:
    for res in app_services(graph).values():
        rollback = res.inputs["rollbackConfig"]
        assert rollback["parallelism"] == 1, res.urn
        assert rollback["order"] == "start-first", res.urn
        assert rollback["failureAction"] == "pause", res.urn
        assert rollback["monitor"] == res.inputs["updateConfig"]["monitor"], res.urn


def test_converge_config_makes_pulumi_wait(graph: synth.Graph, spec: specs.StackConfig) -> None:
    for name, res in app_services(graph).items():
        timeout = res.inputs["convergeConfig"]["timeout"]
        deadline = spec.services[name].rollout.progress_deadline
        assert specs.parse_duration(timeout) == deadline, f"{res.urn}: timeout {timeout}"


def test_replicas_are_the_desired_replicas(graph: synth.Graph, spec: specs.StackConfig) -> None:
    for name, res in app_services(graph).items():
        replicas = res.inputs["mode"]["replicated"]["replicas"]
        assert replicas == spec.services[name].desired_replicas, res.urn


def test_healthcheck_timing_comes_from_the_spec(
    graph: synth.Graph, spec: specs.StackConfig
) -> None:
    for name, res in app_services(graph).items():
        health = spec.services[name].health
        check = container(res)["healthcheck"]
        assert check["retries"] == health.retries, res.urn
        for key, wanted in (
            ("interval", health.interval),
            ("timeout", health.timeout),
            ("startPeriod", health.start_period),
        ):
            got = specs.parse_duration(check[key])
            assert got == specs.parse_duration(wanted), f"{res.urn}: {key} {check[key]}"


def test_healthcheck_probes_the_liveness_path_on_the_service_port(
    graph: synth.Graph, spec: specs.StackConfig
) -> None:
    for name, res in app_services(graph).items():
        svc = spec.services[name]
        tests = container(res)["healthcheck"]["tests"]
        assert tests[0] == "CMD-SHELL", res.urn
        assert f"http://127.0.0.1:{svc.port}{svc.health.path}" in tests[1], res.urn


def test_lb_port_is_published_through_the_routing_mesh(
    graph: synth.Graph, spec: specs.StackConfig
) -> None:
    for name, res in app_services(graph).items():
        svc = spec.services[name]
        if svc.lb.port is None:
            # api: reached on the overlay network only.
            assert res.inputs["endpointSpec"] == {"mode": "vip"}, res.urn
            continue
        ports = res.inputs["endpointSpec"]["ports"]
        assert [(p["publishedPort"], p["targetPort"], p["publishMode"]) for p in ports] == [
            (svc.lb.port, svc.port, "ingress")
        ], res.urn


def test_service_without_lb_port_publishes_nothing() -> None:
    values = stack_values(STACK)
    del values["msops:services"]["web"]["lb"]
    with no_docker_host():
        res = app_services(synth_values(values, STACK))["web"]
    assert "ports" not in res.inputs["endpointSpec"], res.urn


def test_container_is_hardened(graph: synth.Graph, spec: specs.StackConfig) -> None:
    for name, res in app_services(graph).items():
        uid = spec.services[name].run_as_user
        spec_ = container(res)
        assert spec_["user"] == f"{uid}:{uid}", res.urn
        assert spec_["readOnly"] is True, res.urn
        assert spec_["capDrops"] == ["ALL"], res.urn


def test_image_is_the_pin_and_labels_carry_its_version(
    graph: synth.Graph, spec: specs.StackConfig
) -> None:
    for name, res in app_services(graph).items():
        image = spec.services[name].image
        labels = {item["label"]: item["value"] for item in res.inputs["labels"]}
        assert container(res)["image"] == image, res.urn
        assert labels["msops.version"] == image.rsplit(":", 1)[1], res.urn


def test_resources_follow_the_spec(graph: synth.Graph, spec: specs.StackConfig) -> None:
    for name, res in app_services(graph).items():
        wanted = spec.services[name].resources
        got = res.inputs["taskSpec"]["resources"]
        assert got["limits"] == {
            "nanoCpus": round(specs.cpus(wanted.cpu_limit) * 1e9),
            "memoryBytes": specs.bytes_of(wanted.memory_limit),
        }, res.urn
        assert got["reservation"] == {
            "nanoCpus": round(specs.cpus(wanted.cpu_request) * 1e9),
            "memoryBytes": specs.bytes_of(wanted.memory_request),
        }, res.urn


def test_every_duration_is_a_docker_duration_string(graph: synth.Graph) -> None:
    checked = 0
    for res in graph.of_type(SERVICE):
        values = [
            (f"{block}.{key}", res.inputs[block][key])
            for block, keys in DURATION_KEYS.items()
            for key in keys
        ]
        health = container(res)["healthcheck"]
        values += [(f"healthcheck.{key}", health[key]) for key in HEALTH_DURATIONS]
        for where, value in values:
            assert isinstance(value, str), f"{res.urn}: {where} is {value!r}, not a string"
            assert DOCKER_DURATION.match(value), f"{res.urn}: {where} {value!r}"
            checked += 1
    assert checked >= 4 * 9, f"only {checked} durations found"


def test_scaling_changes_only_the_replicas_of_the_service(graph: synth.Graph) -> None:
    values = stack_values(STACK)
    values["msops:services"]["web"]["replicas"] = 5
    with no_docker_host():
        scaled = synth_values(values, STACK)
    before = {r.urn: r.inputs for r in graph}
    after = {r.urn: r.inputs for r in scaled}
    assert set(after) == set(before), "scaling added or removed resources"
    changed = {urn: differences(before[urn], after[urn]) for urn in before}
    changed = {urn: paths for urn, paths in changed.items() if paths}
    web = app_services(graph)["web"].urn
    assert changed == {web: ["mode.replicated.replicas"]}, changed


def test_services_join_the_overlay_under_their_own_name(graph: synth.Graph) -> None:
    (network,) = graph.of_type(NETWORK)
    for name, res in app_services(graph).items():
        (attachment,) = res.inputs["taskSpec"]["networksAdvanceds"]
        assert attachment["name"] == f"{network.name}-id", res.urn
        assert attachment["aliases"] == [name], res.urn


def test_network_is_an_attachable_overlay(graph: synth.Graph) -> None:
    (network,) = graph.of_type(NETWORK)
    assert network.inputs["driver"] == "overlay", network.urn
    assert network.inputs["attachable"] is True, network.urn


# --- secrets -----------------------------------------------------------------------------------


def test_no_secret_appears_in_plain_text(secret_graph: synth.Graph) -> None:
    dumped = json.dumps([r.inputs for r in secret_graph]) + json.dumps(secret_graph.outputs)
    url = f"postgresql://app:{DB_PASSWORD}@main:5432/main"
    for plain in (DB_PASSWORD, API_TOKEN, url):
        encoded = base64.b64encode(plain.encode()).decode()
        assert plain not in dumped, f"{plain!r} is in the graph"
        assert encoded not in dumped, f"base64 of {plain!r} is in the graph"


def test_secret_env_values_are_not_in_the_service_env(secret_graph: synth.Graph) -> None:
    env = container(app_services(secret_graph)["api"])["env"]
    assert "API_TOKEN" not in env and "DATABASE_URL" not in env, env


def test_secret_env_values_are_docker_secret_files(secret_graph: synth.Graph) -> None:
    res = app_services(secret_graph)["api"]
    mounted = {s["fileName"]: s for s in container(res)["secrets"]}
    assert set(mounted) == {"/run/secrets/API_TOKEN", "/run/secrets/DATABASE_URL"}, res.urn
    secrets = [r for r in secret_graph.of_type(SECRET) if r.parent == res.parent]
    assert {r.inputs["data"] for r in secrets} == {synth.SECRET}, [r.urn for r in secrets]
    assert {f"{r.name}-id" for r in secrets} == {s["secretId"] for s in mounted.values()}, res.urn


def test_each_secret_is_named_by_its_file_variable(secret_graph: synth.Graph) -> None:
    res = app_services(secret_graph)["api"]
    env = container(res)["env"]
    mounted = {s["fileName"] for s in container(res)["secrets"]}
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert files == {
        "API_TOKEN_FILE": "/run/secrets/API_TOKEN",
        "DATABASE_URL_FILE": "/run/secrets/DATABASE_URL",
    }, res.urn
    assert set(files.values()) <= mounted, res.urn


def test_a_service_with_secrets_is_not_marked_secret_as_a_whole(secret_graph: synth.Graph) -> None:
    # Nothing secret is left in the task spec, so the policies may read every variable of it.
    res = app_services(secret_graph)["api"]
    assert "taskSpec" not in res.options["additional_secret_outputs"], res.urn


# --- Postgres ----------------------------------------------------------------------------------


def postgres(graph: synth.Graph) -> synth.Resource:
    return only(graph, SERVICE, "msops:swarm:Postgres")


def test_postgres_is_pinned_to_the_labelled_node(graph: synth.Graph) -> None:
    res = postgres(graph)
    constraints = res.inputs["taskSpec"]["placement"]["constraints"]
    assert constraints == ["node.labels.msops.db.main == true"], res.urn


def test_postgres_runs_one_replica_stopping_the_old_one_first(graph: synth.Graph) -> None:
    res = postgres(graph)
    assert res.inputs["mode"]["replicated"]["replicas"] == 1, res.urn
    assert res.inputs["updateConfig"]["order"] == "stop-first", res.urn
    assert res.inputs["rollbackConfig"]["order"] == "stop-first", res.urn


def test_postgres_volume_is_protected_and_retained(graph: synth.Graph) -> None:
    volume = only(graph, VOLUME, "msops:swarm:Postgres")
    assert volume.options["protect"] is True, volume.urn
    assert volume.options["retain_on_delete"] is True, volume.urn


def test_postgres_data_lives_on_the_volume(graph: synth.Graph, plan: plans.StackPlan) -> None:
    volume = only(graph, VOLUME, "msops:swarm:Postgres")
    res = postgres(graph)
    mounts = container(res)["mounts"]
    db = plan.database("main")
    assert db is not None
    assert [(m["type"], m["source"], m["target"]) for m in mounts] == [
        ("volume", volume.inputs["name"], db.data_mount)
    ], res.urn
    assert container(res)["env"]["PGDATA"].startswith(db.data_mount + "/"), res.urn


def test_postgres_password_comes_from_a_docker_secret(secret_graph: synth.Graph) -> None:
    res = postgres(secret_graph)
    secret = only(secret_graph, SECRET, "msops:swarm:Postgres")
    env = container(res)["env"]
    (mounted,) = container(res)["secrets"]
    assert "POSTGRES_PASSWORD" not in env, res.urn
    assert env["POSTGRES_PASSWORD_FILE"] == mounted["fileName"], res.urn
    assert mounted["secretId"] == f"{secret.name}-id", res.urn
    assert secret.inputs["data"] == synth.SECRET, secret.urn


def test_postgres_healthcheck_uses_pg_isready(graph: synth.Graph) -> None:
    res = postgres(graph)
    tests = container(res)["healthcheck"]["tests"]
    assert tests[:2] == ["CMD", "pg_isready"], res.urn


def test_apps_wait_for_their_database(graph: synth.Graph) -> None:
    api = app_services(graph)["api"]
    assert postgres(graph).urn in api.options["depends_on"], api.urn


def test_external_database_runs_no_postgres() -> None:
    values = stack_values(STACK)
    values["msops:databases"]["main"] = {"externalUrl": "postgresql://u:p@db.example:5432/main"}
    with no_docker_host():
        graph = synth_values(values, STACK)
    assert graph.of_type("msops:swarm:Postgres") == [], [r.urn for r in graph]


# --- monitoring --------------------------------------------------------------------------------


def test_prometheus_discovers_every_task_through_swarm_dns(graph: synth.Graph) -> None:
    config = yaml.safe_load(prometheus_config(graph))
    services = app_services(graph)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(services), config
    for name, res in services.items():
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [f"tasks.{res.inputs['name']}"], res.urn
        assert sd["port"] == int(container(res)["env"]["PORT"]), res.urn


def test_prometheus_config_passes_promtool(
    graph: synth.Graph, promtool: str, tmp_path: Path
) -> None:
    config = yaml.safe_load(prometheus_config(graph))
    (tmp_path / "rules.yml").write_text(rules_text(graph))
    assert config["rule_files"] == [translate.PROMETHEUS_RULES_PATH], config
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    run = run_tool(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_pass_promtool(graph: synth.Graph, promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(rules_text(graph))
    run = run_tool(promtool, "check", "rules", str(tmp_path / "rules.yml"))
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_are_the_docker_backends_rules(graph: synth.Graph) -> None:
    values = stack_values(STACK)
    values["msops:backend"] = "docker"
    docker_graph = synth_values(values, STACK)
    uploads = [
        upload["content"]
        for res in docker_graph
        for upload in res.inputs.get("uploads", [])
        if upload["file"].endswith(".rules.yml")
    ]
    assert uploads == [rules_text(graph)], "swarm and docker rules differ for one spec"


def test_a_service_scaled_to_zero_is_neither_scraped_nor_alerted_on() -> None:
    values = stack_values(STACK)
    values["msops:services"]["worker"] = copy.deepcopy(values["msops:services"]["web"])
    values["msops:services"]["worker"]["replicas"] = 0
    del values["msops:services"]["worker"]["lb"]
    with no_docker_host():
        graph = synth_values(values, STACK)
    jobs = [job["job_name"] for job in yaml.safe_load(prometheus_config(graph))["scrape_configs"]]
    groups = [group["name"] for group in yaml.safe_load(rules_text(graph))["groups"]]
    assert jobs == ["web", "api"], jobs
    assert groups == ["msops-web", "msops-api"], groups


def test_a_changed_config_gets_a_new_name_and_rolls_prometheus(graph: synth.Graph) -> None:
    values = stack_values(STACK)
    values["msops:monitoring"]["alerts"]["errorRate"] = 0.2
    with no_docker_host():
        changed = synth_values(values, STACK)
    before = only(graph, CONFIG, "msops:swarm:Monitoring", "-prometheus-rules")
    after = only(changed, CONFIG, "msops:swarm:Monitoring", "-prometheus-rules")
    assert before.urn == after.urn
    assert before.inputs["name"] != after.inputs["name"], after.urn
    server = only(changed, SERVICE, "msops:swarm:Monitoring", "-prometheus")
    names = [c["configName"] for c in container(server)["configs"]]
    assert after.inputs["name"] in names, server.urn


def test_monitoring_ports_are_published(
    graph: synth.Graph, spec: specs.StackConfig, plan: plans.StackPlan
) -> None:
    assert plan.monitoring is not None and plan.monitoring.grafana is not None
    for suffix, port, target in (
        ("-prometheus", spec.monitoring.prometheus_port, plan.monitoring.prometheus.port),
        ("-grafana", spec.monitoring.grafana_port, plan.monitoring.grafana.port),
    ):
        res = only(graph, SERVICE, "msops:swarm:Monitoring", suffix)
        ports = res.inputs["endpointSpec"]["ports"]
        assert [(p["publishedPort"], p["targetPort"]) for p in ports] == [(port, target)], res.urn


def test_grafana_reads_prometheus_through_its_service_name(
    graph: synth.Graph, plan: plans.StackPlan
) -> None:
    assert plan.monitoring is not None
    datasource = yaml.safe_load(
        decoded(only(graph, CONFIG, "msops:swarm:Monitoring", "-grafana-datasource"))
    )
    prom = only(graph, SERVICE, "msops:swarm:Monitoring", "-prometheus")
    url = datasource["datasources"][0]["url"]
    assert url == f"http://{prom.inputs['name']}:{plan.monitoring.prometheus.port}", url


def test_grafana_gets_a_dashboard_per_service(graph: synth.Graph, spec: specs.StackConfig) -> None:
    res = only(graph, SERVICE, "msops:swarm:Monitoring", "-grafana")
    files = {c["fileName"] for c in container(res)["configs"]}
    for name in spec.services:
        assert f"{translate.GRAFANA_DASHBOARDS_PATH}/{name}.json" in files, res.urn


def test_grafana_admin_password_is_a_docker_secret(graph: synth.Graph) -> None:
    res = only(graph, SERVICE, "msops:swarm:Monitoring", "-grafana")
    (mounted,) = container(res)["secrets"]
    env = container(res)["env"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == mounted["fileName"], res.urn
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, res.urn


def test_grafana_admin_password_is_a_secret_stack_output(graph: synth.Graph) -> None:
    assert graph.outputs["grafanaAdminPassword"] == synth.SECRET, graph.outputs


def test_monitoring_off_registers_no_monitoring() -> None:
    values = stack_values(STACK)
    values["msops:monitoring"] = {"enabled": False}
    with no_docker_host():
        graph = synth_values(values, STACK)
    assert graph.of_type("msops:swarm:Monitoring") == [], [r.urn for r in graph]
    assert graph.outputs["prometheusUrl"] is None, graph.outputs
    assert graph.outputs["grafanaUrl"] is None, graph.outputs


# --- platform, provider, URLs ------------------------------------------------------------------


def test_no_orphans(graph: synth.Graph) -> None:
    components = {r.urn for r in graph if r.is_component}
    orphans = [
        r.urn for r in graph if r.type != "msops:index:Platform" and r.parent not in components
    ]
    assert orphans == []


def test_components_use_swarm_type_tokens(graph: synth.Graph) -> None:
    types = {r.type for r in graph if r.is_component}
    assert types == {
        "msops:index:Platform",
        "msops:swarm:Platform",
        "msops:swarm:Service",
        "msops:swarm:Postgres",
        "msops:swarm:Monitoring",
    }, types


def test_default_provider_without_docker_host(graph: synth.Graph) -> None:
    assert graph.of_type(PROVIDER) == [], [r.urn for r in graph.of_type(PROVIDER)]


def test_docker_host_gets_an_explicit_provider(remote_graph: synth.Graph) -> None:
    (provider,) = remote_graph.of_type(PROVIDER)
    assert provider.inputs["host"] == "ssh://ops@manager-1.example.net", provider.urn
    for res in remote_graph:
        if res.type.startswith("docker:"):
            assert res.options["provider"].startswith(provider.urn + "::"), res.urn


def test_urls_show_the_manager_host(remote_graph: synth.Graph) -> None:
    outputs = remote_graph.outputs
    assert outputs["services"]["web"]["url"] == "http://manager-1.example.net:8000", outputs
    assert outputs["prometheusUrl"] == "http://manager-1.example.net:9090", outputs
    assert outputs["grafanaUrl"] == "http://manager-1.example.net:3000", outputs


def test_urls_default_to_the_bind_address(graph: synth.Graph) -> None:
    assert graph.outputs["services"]["web"]["url"] == "http://127.0.0.1:8000", graph.outputs


def test_a_name_shared_by_a_service_and_a_database_is_refused() -> None:
    values = stack_values(STACK)
    values["msops:databases"]["web"] = {"version": "16.4"}
    with pytest.raises(pulumi.RunError, match=r"msops:databases\.web"):
        synth_values(values, STACK)


def test_names_kept_for_monitoring_are_refused() -> None:
    values = stack_values(STACK)
    values["msops:services"]["msops-prometheus"] = values["msops:services"].pop("web")
    with pytest.raises(pulumi.RunError, match=r"msops:services\.msops-prometheus"):
        synth_values(values, STACK)


# --- helpers, on their own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10, "10s"),
        (35, "35s"),
        (60, "1m"),
        (90, "1m30s"),
        (600, "10m"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
    ],
)
def test_docker_duration_reads_back_unchanged(seconds: float, text: str) -> None:
    assert translate.duration(seconds) == text


@pytest.mark.parametrize(
    ("docker_host", "environ", "host"),
    [
        ("ssh://ops@10.1.2.3", {}, "10.1.2.3"),
        ("tcp://swarm.example:2376", {}, "swarm.example"),
        (None, {"DOCKER_HOST": "ssh://me@mgr.example"}, "mgr.example"),
        (None, {"DOCKER_HOST": "unix:///var/run/docker.sock"}, "127.0.0.1"),
        (None, {}, "127.0.0.1"),
    ],
)
def test_public_host(
    plan: plans.StackPlan, docker_host: str | None, environ: dict[str, str], host: str
) -> None:
    target = dataclasses.replace(plan.target, docker_host=docker_host)
    assert translate.public_host(target, environ) == host


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    # Port 0: the kernel picks a free port as it binds, so no other test can take it first.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def python_only_path(tmp_path: Path) -> str:
    """A PATH with a shell's basics and python3, but no wget or curl, as in python:slim."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = shutil.which("python3")
    assert python is not None, "python3 is not on PATH"
    (bin_dir / "python3").symlink_to(python)
    return str(bin_dir)


@pytest.mark.parametrize(("path", "healthy"), [("/healthz", True), ("/broken", False)])
def test_health_command_works_without_wget_or_curl(
    health_server: int, tmp_path: Path, path: str, healthy: bool
) -> None:
    check = builder.health_check(
        path, health_server, interval=10, timeout=3, retries=3, start_period=0
    )
    kind, command = http_check_command(check)
    assert kind == "CMD-SHELL"
    env = {**os.environ, "PATH": python_only_path(tmp_path)}
    run = subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )
    # Docker reads 0 as healthy and 1 as unhealthy; every other code is reserved.
    wanted = 0 if healthy else 1
    assert run.returncode == wanted, f"`{command}` exited {run.returncode}: {run.stderr}"
