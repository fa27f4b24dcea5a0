"""The docker backend, proven on synthesized graphs: replicas, LB, database, monitoring, secrets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
import yaml

from components.backends.common import go_duration
from components.backends.docker import translate as backend
from components.spec import parse_duration
from components.vocabulary import LABEL_SECRET_ENV
from msops import synth
from tests.graphs import CONTAINER, labels, stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
PROVIDER = "pulumi:providers:docker"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"

DB_PASSWORD = "db-pass-Zq81xKv0"
API_KEY = "api-key-Wm47pLr2"


# --- helpers -----------------------------------------------------------------------------------


def containers(graph: synth.Graph, role: str, service: str | None = None) -> list[synth.Resource]:
    found = []
    for res in graph.of_type(CONTAINER):
        tags = labels(res)
        if tags.get("msops.role") == role and service in (None, tags.get("msops.service")):
            found.append(res)
    return found


def replicas(graph: synth.Graph, service: str = "web") -> list[synth.Resource]:
    return containers(graph, "replica", service)


def lb(graph: synth.Graph, service: str = "web") -> synth.Resource:
    (found,) = containers(graph, "lb", service)
    return found


def monitoring(graph: synth.Graph, component: str) -> list[synth.Resource]:
    return [r for r in containers(graph, "monitoring") if labels(r)["msops.component"] == component]


def upload(res: synth.Resource, path: str) -> str:
    for item in res.inputs.get("uploads", []):
        if item["file"] == path:
            return str(item["content"])
    raise AssertionError(f"{res.urn} uploads no {path}")


def lb_target(graph: synth.Graph, service: str = "web") -> tuple[str, str]:
    """What the LB proxies to (`$app`) and the resolver it asks, from its nginx.conf."""
    conf = upload(lb(graph, service), backend.LB_CONF)
    (target,) = re.findall(r"^\s*set \$app (\S+);", conf, flags=re.MULTILINE)
    (resolver,) = re.findall(r"^\s*resolver (\S+) ", conf, flags=re.MULTILINE)
    return target, resolver


def scrape_job(graph: synth.Graph, job: str = "web") -> dict[str, Any]:
    (server,) = monitoring(graph, "prometheus")
    config = yaml.safe_load(upload(server, backend.PROMETHEUS_CONFIG))
    for scrape in config["scrape_configs"]:
        if scrape["job_name"] == job:
            return dict(scrape)
    raise AssertionError(f"{server.urn}: no scrape job {job!r}")


def same_except_replicas(
    before: synth.Graph, after: synth.Graph, roles: tuple[str, ...] = ("replica",)
) -> list[str]:
    """URNs of the resources other than replicas (or `roles`) whose inputs or options differ."""
    old = {r.urn: r for r in before}
    return [
        r.urn
        for r in after
        if labels(r).get("msops.role") not in roles
        and r.urn in old
        and (r.inputs, r.options) != (old[r.urn].inputs, old[r.urn].options)
    ]


def auto_name_of(res: synth.Resource, names: list[str]) -> str:
    """The provider-assigned name ("<resource name>-<7 hex>") of `res` among `names`."""
    pattern = re.compile(rf"^{re.escape(res.name)}-[0-9a-f]{{7}}$")
    matches = [n for n in names if pattern.match(n)]
    assert len(matches) == 1, f"{res.urn}: expected one auto-name in {names}, found {matches}"
    return matches[0]


def web(values: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = values["msops:services"]["web"]
    return service


def dev_with(change: Callable[[dict[str, Any]], None]) -> synth.Graph:
    values = stack_values("dev")
    change(values)
    return synth_values(values)


def set_replicas(count: int) -> Callable[[dict[str, Any]], None]:
    def change(values: dict[str, Any]) -> None:
        web(values)["replicas"] = count

    return change


@pytest.fixture(scope="module")
def three() -> synth.Graph:
    return dev_with(set_replicas(3))


@pytest.fixture(scope="module")
def five() -> synth.Graph:
    return dev_with(set_replicas(5))


@pytest.fixture(scope="module")
def dev(stack_graph: Callable[[str], synth.Graph]) -> synth.Graph:
    return stack_graph("dev")


# --- replicas ----------------------------------------------------------------------------------


def test_service_runs_exactly_the_configured_number_of_replicas(three: synth.Graph) -> None:
    found = replicas(three)
    assert len(found) == 3, f"msops:services.web.replicas is 3, got {[r.urn for r in found]}"


def test_replicas_are_children_of_their_service_component(three: synth.Graph) -> None:
    (component,) = [r for r in three.of_type("msops:docker:Service") if r.name == "dev-web"]
    for res in replicas(three):
        assert res.parent == component.urn, f"{res.urn} has parent {res.parent}"


def test_replicas_join_the_stack_network_under_the_service_alias(three: synth.Graph) -> None:
    (network,) = three.of_type(NETWORK)
    for res in replicas(three):
        nets = res.inputs["networksAdvanced"]
        assert [n["name"] for n in nets] == [network.inputs["name"]], f"{res.urn}: {nets}"
        assert nets[0]["aliases"] == ["web"], f"{res.urn}: {nets}"
        assert network.urn in res.options["depends_on"], f"{res.urn} does not wait for the network"


def test_replicas_carry_the_healthcheck_of_the_spec(three: synth.Graph) -> None:
    for res in replicas(three):
        check = res.inputs["healthcheck"]
        assert check["tests"][0] == "CMD-SHELL", f"{res.urn}: {check}"
        # Readiness: the rollout waits until a new replica is ready for requests.
        assert "http://127.0.0.1:8080/readyz" in check["tests"][1], f"{res.urn}: {check}"
        assert (check["interval"], check["timeout"], check["retries"], check["startPeriod"]) == (
            "10s",
            "3s",
            3,
            "5s",
        ), f"{res.urn}: {check}"


def test_replica_healthcheck_follows_a_changed_health_section() -> None:
    def change(values: dict[str, Any]) -> None:
        web(values)["health"] = {
            "readinessPath": "/ready",
            "interval": "1m",
            "retries": 5,
            "timeout": "4s",
        }

    for res in replicas(dev_with(change)):
        check = res.inputs["healthcheck"]
        assert "http://127.0.0.1:8080/ready" in check["tests"][1], f"{res.urn}: {check}"
        # Go's spelling, which the provider reads back; "1m" would show as drift.
        assert (check["interval"], check["timeout"], check["retries"]) == ("1m0s", "4s", 5), (
            f"{res.urn}: {check}"
        )


def test_replicas_wait_for_health_so_an_unhealthy_replica_fails_the_update(
    three: synth.Graph,
) -> None:
    for res in replicas(three):
        assert res.inputs["wait"] is True, f"{res.urn} does not wait for health"
        assert res.inputs["waitTimeout"] >= 60, (
            f"{res.urn}: waitTimeout {res.inputs['waitTimeout']}"
        )


def test_replicas_replace_when_their_healthcheck_changes(three: synth.Graph) -> None:
    for res in replicas(three):
        assert "healthcheck" in res.options["replace_on_changes"], f"{res.urn}: {res.options}"


def test_replicas_run_non_root_read_only_without_capabilities(three: synth.Graph) -> None:
    for res in replicas(three):
        inputs = res.inputs
        assert inputs["user"] == "10001", f"{res.urn}: user {inputs.get('user')}"
        assert inputs["readOnly"] is True, f"{res.urn} has a writable root filesystem"
        assert "/tmp" in inputs["tmpfs"], f"{res.urn}: tmpfs {inputs.get('tmpfs')}"
        assert inputs["capabilities"] == {"drops": ["ALL"]}, f"{res.urn}: {inputs['capabilities']}"
        assert inputs["securityOpts"] == ["no-new-privileges:true"], f"{res.urn}"
        assert inputs["restart"] == "unless-stopped", f"{res.urn}: restart {inputs['restart']}"


def test_replicas_publish_no_port(three: synth.Graph) -> None:
    for res in replicas(three):
        assert not res.inputs.get("ports"), f"{res.urn} publishes {res.inputs['ports']}"


def test_replica_limits_come_from_the_spec_resources() -> None:
    def change(values: dict[str, Any]) -> None:
        web(values)["resources"] = {
            "cpuRequest": "250m",
            "cpuLimit": "1500m",
            "memoryRequest": "64Mi",
            "memoryLimit": "1Gi",
        }

    for res in replicas(dev_with(change)):
        inputs = res.inputs
        assert (inputs["memory"], inputs["memoryReservation"]) == (1024, 64), f"{res.urn}"
        assert (inputs["cpus"], inputs["cpuShares"]) == ("1.5", 256), f"{res.urn}"


def test_replicas_are_labelled_with_stack_service_version_and_index(three: synth.Graph) -> None:
    found = replicas(three)
    for res in found:
        tags = labels(res)
        assert (tags["msops.stack"], tags["msops.version"]) == ("dev", "1.0.0"), f"{res.urn}"
    indexes = sorted(labels(r)["msops.replica"] for r in found)
    assert indexes == ["1", "2", "3"], f"replica labels: {indexes}"


def test_replicas_are_auto_named_and_replaced_create_before_delete(three: synth.Graph) -> None:
    for res in replicas(three):
        assert "name" not in res.inputs, f"{res.urn} has a fixed name {res.inputs['name']!r}"
        assert res.options["delete_before_replace"] is False, f"{res.urn} is delete-before-replace"


def test_replicas_wait_for_their_database(three: synth.Graph) -> None:
    (database,) = [r for r in containers(three, "database") if r.name == "dev-main"]
    # api owns the database; that web does not wait for it: tests/unit/test_upstreams.py.
    for res in replicas(three, "api"):
        assert database.urn in res.options["depends_on"], f"{res.urn} does not wait for Postgres"


# --- load balancer -----------------------------------------------------------------------------


def test_lb_finds_the_replicas_through_the_service_alias(three: synth.Graph) -> None:
    assert lb_target(three) == ("web:8080", "127.0.0.11"), lb(three).urn


def test_every_replica_answers_to_the_service_alias(three: synth.Graph) -> None:
    for res in replicas(three):
        (attachment,) = res.inputs["networksAdvanced"]
        assert attachment["aliases"] == ["web"], res.urn


def test_lb_config_names_no_replica(three: synth.Graph) -> None:
    conf = upload(lb(three), backend.LB_CONF)
    named = [r.name for r in replicas(three) if r.name in conf]
    assert named == [], f"{lb(three).urn} names {named}"


def test_lb_checks_its_own_health_and_runs_as_nginx_uid(three: synth.Graph) -> None:
    balancer = lb(three)
    assert balancer.inputs["healthcheck"]["tests"][-1] == "http://127.0.0.1:8080/lb-healthz", (
        f"{balancer.urn}: {balancer.inputs['healthcheck']}"
    )
    assert balancer.inputs["user"] == "101", f"{balancer.urn}: user {balancer.inputs['user']}"
    assert balancer.inputs["capabilities"] == {"drops": ["ALL"]}, f"{balancer.urn}"


def test_published_lb_is_deleted_before_its_replacement_takes_the_port(
    three: synth.Graph,
) -> None:
    balancer = lb(three)
    assert balancer.options["delete_before_replace"] is True, f"{balancer.urn}: {balancer.options}"


def test_published_ports_bind_to_loopback_by_default(dev: synth.Graph) -> None:
    published = [r for r in dev.of_type(CONTAINER) if r.inputs.get("ports")]
    assert len(published) == 3, f"expected LB, Prometheus, Grafana: {[r.urn for r in published]}"
    for res in published:
        assert {p["ip"] for p in res.inputs["ports"]} == {"127.0.0.1"}, f"{res.urn}"


def test_lb_publishes_the_spec_port(dev: synth.Graph) -> None:
    balancer = lb(dev)
    assert balancer.inputs["ports"] == [{"ip": "127.0.0.1", "internal": 8080, "external": 8000}], (
        f"{balancer.urn}: {balancer.inputs['ports']}"
    )


def test_exposed_service_lb_binds_to_every_interface() -> None:
    graph = dev_with(lambda values: web(values).update(exposed=True))
    balancer = lb(graph)
    assert [p["ip"] for p in balancer.inputs["ports"]] == ["0.0.0.0"], f"{balancer.urn}"
    (server,) = monitoring(graph, "prometheus")
    assert [p["ip"] for p in server.inputs["ports"]] == ["127.0.0.1"], f"{server.urn}"


def test_bind_address_moves_every_published_port() -> None:
    graph = dev_with(lambda values: values.update({"msops:target": {"bindAddress": "10.9.8.7"}}))
    published = [r for r in graph.of_type(CONTAINER) if r.inputs.get("ports")]
    for res in published:
        assert {p["ip"] for p in res.inputs["ports"]} == {"10.9.8.7"}, f"{res.urn}"
    assert graph.outputs["services"]["web"]["url"] == "http://10.9.8.7:8000", graph.outputs


def test_lb_without_port_publishes_nothing_and_has_an_internal_url() -> None:
    graph = dev_with(lambda values: web(values).pop("lb"))
    balancer = lb(graph)
    assert not balancer.inputs.get("ports"), f"{balancer.urn} publishes {balancer.inputs['ports']}"
    assert balancer.options["delete_before_replace"] is False, f"{balancer.urn}"
    assert graph.outputs["services"]["web"]["url"] == "http://web-lb:8080", graph.outputs


def test_stack_outputs_give_the_published_lb_url(dev: synth.Graph) -> None:
    assert dev.outputs["services"]["web"]["url"] == "http://127.0.0.1:8000", dev.outputs


# --- scaling and rollout -----------------------------------------------------------------------


def test_scaling_changes_no_resource_but_the_replicas(
    three: synth.Graph, five: synth.Graph
) -> None:
    assert same_except_replicas(three, five) == []


def test_scaling_up_keeps_the_existing_replicas(three: synth.Graph, five: synth.Graph) -> None:
    before = {r.urn for r in replicas(three)}
    after = {r.urn for r in replicas(five)}
    assert before < after, f"scaling 3 -> 5 dropped {sorted(before - after)}"


def test_image_change_replaces_replicas_create_before_delete(
    three: synth.Graph,
) -> None:
    def change(values: dict[str, Any]) -> None:
        web(values).update(replicas=3, image="ghcr.io/msops/demo:1.1.0")
        web(values).pop("build")

    graph = dev_with(change)
    for res in replicas(graph):
        assert res.inputs["image"] == "ghcr.io/msops/demo:1.1.0", (
            f"{res.urn}: {res.inputs['image']}"
        )
        assert labels(res)["msops.version"] == "1.1.0", f"{res.urn}: {labels(res)}"
        assert "name" not in res.inputs, f"{res.urn} has a fixed name"
        assert res.options["delete_before_replace"] is False, f"{res.urn}"
    before = {r.urn: r.inputs["image"] for r in replicas(three)}
    assert set(before.values()) == {"msops/demo:1.0.0"}, f"before the change: {before}"


def test_image_change_changes_no_resource_but_the_replicas_and_the_migration(
    three: synth.Graph,
) -> None:
    def change(values: dict[str, Any]) -> None:
        web(values).update(replicas=3, image="ghcr.io/msops/demo:1.1.0")
        web(values).pop("build")

    # The built image goes and a pulled one comes: both are images, not running resources;
    # the new image runs its migration.
    assert same_except_replicas(three, dev_with(change), ("replica", "migration")) == []


def test_service_scaled_to_zero_has_no_lb_no_scrape_job_and_no_url() -> None:
    graph = dev_with(set_replicas(0))
    assert replicas(graph) == [], f"{[r.urn for r in replicas(graph)]}"
    lbs = containers(graph, "lb", "web")
    assert lbs == [], f"{[r.urn for r in lbs]}"
    (server,) = monitoring(graph, "prometheus")
    config = yaml.safe_load(upload(server, backend.PROMETHEUS_CONFIG))
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert jobs == ["api"], f"{server.urn}: {config['scrape_configs']}"
    assert graph.outputs["services"]["web"]["url"] is None, graph.outputs


# --- images ------------------------------------------------------------------------------------


def test_service_with_build_builds_its_image_from_the_local_context(dev: synth.Graph) -> None:
    (image,) = [r for r in dev.of_type(IMAGE) if r.name == "dev-web-image"]
    assert image.inputs["build"]["context"].endswith("/app"), f"{image.urn}: {image.inputs}"
    assert image.inputs["imageName"] == "msops/demo:1.0.0", f"{image.urn}: {image.inputs}"
    assert image.inputs["skipPush"] is True, f"{image.urn} would push"
    for res in replicas(dev):
        assert image.urn in res.options["depends_on"], f"{res.urn} does not use {image.urn}"


def test_service_without_build_pulls_its_pinned_image() -> None:
    def pull(values: dict[str, Any]) -> None:
        for svc in values["msops:services"].values():
            svc.pop("build")

    graph = dev_with(pull)
    assert graph.of_type(IMAGE) == [], f"{[r.urn for r in graph.of_type(IMAGE)]}"
    pulled = [r for r in graph.of_type(REMOTE_IMAGE) if r.inputs["name"] == "msops/demo:1.0.0"]
    assert len(pulled) == 1, f"{[r.inputs for r in graph.of_type(REMOTE_IMAGE)]}"
    assert pulled[0].inputs["keepLocally"] is True, f"{pulled[0].urn}"


def test_build_without_dockerfile_is_refused_with_the_key() -> None:
    with pytest.raises(pulumi.RunError, match=r"msops:services\.web\.build"):
        dev_with(lambda values: web(values).update(build="no-such-dir"))


# --- database ----------------------------------------------------------------------------------


def test_database_volume_is_protected_and_retained_on_delete(dev: synth.Graph) -> None:
    volumes = [r for r in dev.of_type(VOLUME) if labels(r).get("msops.database") == "main"]
    assert len(volumes) == 1, f"{[r.urn for r in dev.of_type(VOLUME)]}"
    (volume,) = volumes
    assert volume.options["protect"] is True, f"{volume.urn} is not protected"
    assert volume.options["retain_on_delete"] is True, f"{volume.urn} is not retained"
    assert volume.inputs["name"] == "msops-dev-main-pgdata", f"{volume.urn}: {volume.inputs}"


def test_a_generated_database_password_is_protected(dev: synth.Graph) -> None:
    # Kept by `msops destroy` with the volume, so the kept data opens with it again.
    (password,) = [r for r in dev.of_type(RANDOM_PASSWORD) if r.name == "main-db-password"]
    assert password.options["protect"] is True, f"{password.urn} is not protected"


def test_postgres_runs_the_pinned_image_on_its_volume_and_waits_for_health(
    dev: synth.Graph,
) -> None:
    (server,) = containers(dev, "database")
    assert server.inputs["image"] == "postgres:16.4-alpine", f"{server.urn}"
    assert [v["volumeName"] for v in server.inputs["volumes"]] == ["msops-dev-main-pgdata"]
    assert server.inputs["healthcheck"]["tests"][1] == "pg_isready", f"{server.urn}"
    assert server.inputs["wait"] is True, f"{server.urn} does not wait for health"
    assert server.inputs["networksAdvanced"][0]["aliases"] == ["main"], f"{server.urn}"
    assert server.options["delete_before_replace"] is True, f"{server.urn}"


def test_database_password_and_named_secret_never_appear_in_plain_text() -> None:
    def change(values: dict[str, Any]) -> None:
        values["msops:databases"]["main"]["password"] = DB_PASSWORD
        values["msops:secrets"] = {"api-key": API_KEY}
        values["msops:services"]["api"]["secretEnv"] = {"API_KEY": "api-key"}

    graph = dev_with(change)
    for res in graph:
        text = json.dumps(res.inputs)
        for secret in (DB_PASSWORD, API_KEY):
            assert secret not in text, f"{res.urn} holds a secret in plain text"
    outputs = json.dumps(graph.outputs)
    assert DB_PASSWORD not in outputs and API_KEY not in outputs, "a stack output leaks a secret"
    expected = {"database": {"POSTGRES_PASSWORD"}, "replica": {"API_KEY", "DATABASE_URL"}}
    for role, res in [
        *[("replica", r) for r in replicas(graph) if r.name.startswith("dev-api-")],
        *[("database", r) for r in containers(graph, "database")],
    ]:
        secret_items = [e for e in res.inputs["envs"] if e == synth.SECRET]
        named = set(labels(res)[LABEL_SECRET_ENV].split(","))
        # Each secret variable is its own secret item, named by the label; the rest is plain.
        assert (len(secret_items), named) == (len(expected[role]), expected[role]), res.urn


def test_the_plain_variables_of_a_container_with_secrets_stay_readable() -> None:
    def change(values: dict[str, Any]) -> None:
        values["msops:secrets"] = {"api-key": API_KEY}
        web(values)["secretEnv"] = {"API_KEY": "api-key"}

    for res in replicas(dev_with(change)):
        assert "LOG_LEVEL=info" in res.inputs["envs"], f"{res.urn}: {res.inputs['envs']}"


# --- monitoring --------------------------------------------------------------------------------


def test_prometheus_loads_the_alert_rules_of_every_service(dev: synth.Graph) -> None:
    (server,) = monitoring(dev, "prometheus")
    config = yaml.safe_load(upload(server, backend.PROMETHEUS_CONFIG))
    assert config["rule_files"] == [backend.PROMETHEUS_RULES], f"{server.urn}: {config}"
    rules = yaml.safe_load(upload(server, backend.PROMETHEUS_RULES))
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert alerts == {"TargetDown", "HighErrorRate", "HighLatency"}, f"{server.urn}: {alerts}"


def test_prometheus_keeps_its_data_on_a_retained_volume(dev: synth.Graph) -> None:
    (server,) = monitoring(dev, "prometheus")
    (volume,) = [r for r in dev.of_type(VOLUME) if labels(r).get("msops.role") == "monitoring"]
    assert volume.options["retain_on_delete"] is True, f"{volume.urn} is not retained"
    mounts = server.inputs["volumes"]
    assert mounts == [{"volumeName": volume.inputs["name"], "containerPath": "/prometheus"}], (
        f"{server.urn}: {mounts}"
    )


def test_prometheus_finds_every_replica_through_the_service_alias(three: synth.Graph) -> None:
    job = scrape_job(three)
    assert job["dns_sd_configs"] == [
        {"names": ["web"], "type": "A", "port": 8080, "refresh_interval": "5s"}
    ], job


def test_grafana_gets_a_datasource_and_a_dashboard_per_service(dev: synth.Graph) -> None:
    (server,) = monitoring(dev, "grafana")
    datasource = yaml.safe_load(upload(server, backend.GRAFANA_DATASOURCES))
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090", f"{server.urn}"
    dashboard = json.loads(upload(server, f"{backend.GRAFANA_DASHBOARDS}/web.json"))
    assert dashboard["uid"] == "msops-web", f"{server.urn}: {dashboard['uid']}"


def test_grafana_admin_password_is_generated_and_secret(dev: synth.Graph) -> None:
    (server,) = monitoring(dev, "grafana")
    envs = server.inputs["envs"]
    assert synth.SECRET in envs, f"{server.urn}: envs hold the password in clear"
    assert not [e for e in envs if e.startswith("GF_SECURITY_ADMIN_PASSWORD=")], server.urn
    assert labels(server)[LABEL_SECRET_ENV] == "GF_SECURITY_ADMIN_PASSWORD", server.urn
    generated = [r for r in dev.of_type("random:index/randomPassword:RandomPassword")]
    assert any(r.urn in server.options["depends_on"] for r in generated), (
        f"{server.urn} does not use a generated password"
    )


def test_monitoring_urls_are_stack_outputs(dev: synth.Graph) -> None:
    assert (dev.outputs["prometheusUrl"], dev.outputs["grafanaUrl"]) == (
        "http://127.0.0.1:9090",
        "http://127.0.0.1:3000",
    ), dev.outputs


def test_monitoring_disabled_runs_no_prometheus_or_grafana() -> None:
    graph = dev_with(lambda values: values.update({"msops:monitoring": {"enabled": False}}))
    assert containers(graph, "monitoring") == [], (
        f"{[r.urn for r in containers(graph, 'monitoring')]}"
    )
    assert graph.of_type("msops:docker:Monitoring") == [], "a Monitoring component remains"
    assert graph.outputs["prometheusUrl"] is None, graph.outputs
    assert graph.outputs["grafanaUrl"] is None, graph.outputs


def test_grafana_disabled_keeps_prometheus() -> None:
    graph = dev_with(lambda values: values.update({"msops:monitoring": {"grafana": False}}))
    assert monitoring(graph, "grafana") == [], "msops:monitoring.grafana is false, Grafana remains"
    assert len(monitoring(graph, "prometheus")) == 1, "Prometheus went with Grafana"
    assert graph.outputs["grafanaUrl"] is None, graph.outputs


# --- platform ----------------------------------------------------------------------------------


def test_every_resource_has_a_component_parent(dev: synth.Graph) -> None:
    components = {r.urn for r in dev if r.is_component}
    for res in dev:
        if res.type == "msops:index:Platform":
            assert res.parent.endswith(f"pulumi:pulumi:Stack::msops-{dev.stack}"), f"{res.urn}"
        else:
            assert res.parent in components, f"{res.urn} has parent {res.parent!r}"


def test_docker_resources_use_the_default_provider_without_docker_host(dev: synth.Graph) -> None:
    assert dev.of_type(PROVIDER) == [], "an explicit provider without msops:target.dockerHost"


def test_docker_host_routes_every_docker_resource_through_one_provider() -> None:
    graph = dev_with(
        lambda values: values.update({"msops:target": {"dockerHost": "ssh://ops@build-host"}})
    )
    (provider,) = graph.of_type(PROVIDER)
    assert provider.inputs["host"] == "ssh://ops@build-host", f"{provider.urn}: {provider.inputs}"
    for res in graph:
        if res.custom and res.type.startswith("docker:"):
            assert res.options["provider"].startswith(provider.urn), (
                f"{res.urn} uses {res.options['provider']!r}"
            )


def test_a_service_named_like_a_monitoring_alias_is_refused() -> None:
    def change(values: dict[str, Any]) -> None:
        values["msops:services"]["prometheus"] = {"image": "ghcr.io/msops/demo:1.0.0"}

    with pytest.raises(pulumi.RunError, match=r"msops:services\.prometheus"):
        dev_with(change)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10s", "10s"), ("1m", "1m0s"), ("1m30s", "1m30s"), ("2h", "2h0m0s"), ("500ms", "500ms")],
)
def test_durations_are_written_as_go_prints_them(text: str, expected: str) -> None:
    assert go_duration(parse_duration(text)) == expected, f"go_duration({text!r})"


def test_a_service_named_like_the_monitoring_alias_is_a_config_error() -> None:
    values = stack_values("dev")
    values["msops:services"]["prometheus"] = {"image": "ghcr.io/acme/prom-proxy:1.0.0"}
    with pytest.raises(pulumi.RunError) as info:
        synth_values(values)
    message = str(info.value)
    assert "msops:services.prometheus" in message and "rename one" in message
    assert "nothing was deployed" in message


def test_grafana_admin_password_is_exported_only_as_a_secret(stack_graph: Callable) -> None:
    assert stack_graph("dev").outputs["grafanaAdminPassword"] == synth.SECRET


def test_each_image_is_pulled_once_per_stack() -> None:
    values = stack_values("dev")
    web = values["msops:services"]["web"]
    values["msops:services"]["orders"] = {**web, "lb": {"port": 8001}}
    for svc in values["msops:services"].values():
        svc.pop("build", None)
    pulls = [
        r.inputs["name"]
        for r in synth_values(values).of_type("docker:index/remoteImage:RemoteImage")
    ]
    assert sorted(pulls) == sorted(set(pulls)), pulls
    assert "nginx:1.27.3-alpine" in pulls
