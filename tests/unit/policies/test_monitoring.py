"""services-monitored: on the smallest stacks that show it, and on the committed stacks."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from pulumi_policy import PolicyResource

from components.vocabulary import WAIVER_PREFIX
from policies.rules import monitoring, view
from tests.graphs import stack_values
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    CONTAINER,
    DEPLOYMENT,
    K8S_SERVICE,
    STACKS,
    SWARM_SERVICE,
    check,
    docker_replicas,
    edit,
    one,
    show,
    synth_config,
)

pytestmark = pytest.mark.timeout(120)

POLICY = monitoring.SERVICES_MONITORED
SERVICE_MONITOR = view.K8S_SERVICE_MONITOR
POD_MONITOR = view.K8S_POD_MONITOR


def prometheus_config(job: dict[str, Any]) -> str:
    return yaml.safe_dump({"global": {"scrape_interval": "15s"}, "scrape_configs": [job]})


def prometheus_container(job: dict[str, Any]) -> PolicyResource:
    """The docker Prometheus container, with its config uploaded."""
    upload = {"file": "/etc/prometheus/prometheus.yml", "content": prometheus_config(job)}
    return args.resource(CONTAINER, {"uploads": [upload]}, name="prometheus")


WEB_JOB = {"job_name": "web", "static_configs": [{"targets": ["web:8000"]}]}


def replica() -> PolicyResource:
    return args.resource(CONTAINER, args.docker_container(), name="web-1")


def k8s_service(namespace: str = "apps") -> PolicyResource:
    props = {
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"selector": dict(args.POD_LABELS), "ports": [{"port": 8000}]},
    }
    return args.resource(K8S_SERVICE, props)


def monitor(
    kind: str, selector: dict[str, Any], namespace: str = "apps", **spec: Any
) -> PolicyResource:
    props = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"matchLabels": selector}, **spec},
    }
    return args.resource(kind, props)


def web_deployment() -> PolicyResource:
    return args.resource(DEPLOYMENT, args.deployment())


# --- single resources ----------------------------------------------------------------------------


def test_docker_service_in_the_scrape_config_passes() -> None:
    args.passes(POLICY, args.stack_args([replica(), prometheus_container(WEB_JOB)]))


def test_docker_service_in_a_stack_without_prometheus_fails_on_its_replica() -> None:
    web = replica()
    found = args.fails(POLICY, args.stack_args([web]), "the stack has no Prometheus config")
    assert found.urn == web.urn, found
    assert "Fix: turn on msops:monitoring.enabled" in found.message, found.message


def test_docker_service_missing_from_the_scrape_config_fails() -> None:
    other = {**WEB_JOB, "job_name": "api"}
    stack = args.stack_args([replica(), prometheus_container(other)])
    args.fails(POLICY, stack, "no scrape job named 'web'")


def test_scrape_job_without_targets_fails() -> None:
    stack = args.stack_args([replica(), prometheus_container({"job_name": "web"})])
    args.fails(POLICY, stack, "the scrape job of service 'web' has no targets")


def test_swarm_service_scraped_through_dns_discovery_passes() -> None:
    job = {"job_name": "web", "dns_sd_configs": [{"names": ["tasks.web"], "port": 8000}]}
    data = base64.b64encode(prometheus_config(job).encode()).decode()
    config = args.resource(view.DOCKER_SERVICE_CONFIG, {"data": data}, name="prometheus")
    stack = args.stack_args([args.resource(SWARM_SERVICE, args.swarm_service()), config])
    args.passes(POLICY, stack)


def test_deployment_behind_a_service_monitor_passes() -> None:
    stack = [web_deployment(), k8s_service(), monitor(SERVICE_MONITOR, {"app": "web"})]
    args.passes(POLICY, args.stack_args(stack))


def test_deployment_without_a_monitor_fails_on_the_deployment() -> None:
    deployment = web_deployment()
    found = args.fails(POLICY, args.stack_args([deployment, k8s_service()]), "selected by no")
    assert found.urn == deployment.urn, found
    assert "add a ServiceMonitor whose selector matches" in found.message, found.message


def test_deployment_selected_by_a_pod_monitor_passes() -> None:
    stack = [web_deployment(), monitor(POD_MONITOR, dict(args.POD_LABELS))]
    args.passes(POLICY, args.stack_args(stack))


def test_monitor_in_another_namespace_does_not_watch_the_deployment() -> None:
    stack = [web_deployment(), k8s_service(), monitor(SERVICE_MONITOR, {"app": "web"}, "mon")]
    args.fails(POLICY, args.stack_args(stack), "selected by no ServiceMonitor")


def test_monitor_watching_any_namespace_covers_the_deployment() -> None:
    watcher = monitor(SERVICE_MONITOR, {"app": "web"}, "mon", namespaceSelector={"any": True})
    args.passes(POLICY, args.stack_args([web_deployment(), k8s_service(), watcher]))


def test_waiver_on_the_deployment_exempts_it() -> None:
    props = args.deployment()
    props["metadata"]["annotations"] = {f"{WAIVER_PREFIX}services-monitored": "a batch worker"}
    args.passes(POLICY, args.stack_args([args.resource(DEPLOYMENT, props)]))


# --- committed stacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_monitored_services_pass(stack: str, stack_graph: Any) -> None:
    found = check(stack_graph(stack), "services-monitored")
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_service_without_monitoring_is_a_violation(stack: str) -> None:
    values = stack_values(stack)
    values["msops:monitoring"]["enabled"] = False
    found = check(synth_config(values, stack), "services-monitored")
    assert len(found) >= 1, show(found)
    assert all(v.level == "advisory" for v in found), show(found)
    assert "an outage is found by its users" in found[0].message
    assert "turn on msops:monitoring.enabled" in found[0].message


def test_docker_service_missing_from_the_scrape_config_is_a_violation(stack_graph: Any) -> None:
    graph = stack_graph("dev")
    prometheus = one(graph, CONTAINER, "dev-monitoring-prometheus")

    def change(inputs: dict[str, Any]) -> None:
        for upload in inputs["uploads"]:
            upload["content"] = upload["content"].replace("job_name: web", "job_name: api")

    found = check(edit(graph, prometheus.urn, change), "services-monitored")
    assert len(found) == 1 and "no scrape job named 'web'" in found[0].message, show(found)
    assert found[0].urn == docker_replicas(graph)[0].urn


def test_servicemonitor_that_selects_nothing_is_a_violation(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    monitor = one(graph, view.K8S_SERVICE_MONITOR, "web-servicemonitor")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"

    found = check(edit(graph, monitor.urn, change), "services-monitored")
    assert len(found) == 1 and "selected by no ServiceMonitor" in found[0].message, show(found)
