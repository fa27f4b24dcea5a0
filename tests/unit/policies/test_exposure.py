"""Exposure policies: docker-ports-loopback and k8s-loadbalancer-exposed."""

from __future__ import annotations

from typing import Any

import pytest

from components.vocabulary import EXPOSED_MARK
from policies.rules import exposure
from tests.graphs import stack_values
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    CONTAINER,
    K8S_SERVICE,
    SWARM_SERVICE,
    add_docker_label,
    annotate,
    check,
    edit,
    on,
    one,
    show,
    synth_config,
)

pytestmark = pytest.mark.timeout(120)

LOOPBACK = exposure.DOCKER_PORTS_LOOPBACK
LOAD_BALANCER = exposure.K8S_LOADBALANCER_EXPOSED


def published(ip: str | None, external: int = 8000) -> list[dict[str, Any]]:
    port: dict[str, Any] = {"internal": 8000, "external": external}
    if ip is not None:
        port["ip"] = ip
    return [port]


def k8s_service(kind: str | None, **annotations: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web", "namespace": "apps"}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {"type": kind, "ports": [{"port": 80}]}}


# --- docker-ports-loopback: single resources -----------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_port_on_loopback_passes(ip: str) -> None:
    props = args.docker_container(ports=published(ip))
    args.passes(LOOPBACK, args.resource_args(CONTAINER, props))


@pytest.mark.parametrize(("ip", "shown"), [(None, "0.0.0.0"), ("", "0.0.0.0"), ("10.0.0.5", None)])
def test_port_beyond_loopback_fails(ip: str | None, shown: str | None) -> None:
    props = args.docker_container(ports=published(ip))
    detail = f"publishes host port 8000 on {shown or ip}"
    found = args.fails(LOOPBACK, args.resource_args(CONTAINER, props), detail)
    assert "Fix: leave msops:target.bindAddress at 127.0.0.1" in found.message, found.message


def test_container_marked_exposed_may_bind_every_interface() -> None:
    labels = args.docker_labels(**{EXPOSED_MARK: "true"})
    props = args.docker_container(ports=published("0.0.0.0"), labels=labels)
    args.passes(LOOPBACK, args.resource_args(CONTAINER, props))


def test_exposed_mark_other_than_true_does_not_count() -> None:
    labels = args.docker_labels(**{EXPOSED_MARK: "no"})
    props = args.docker_container(ports=published("0.0.0.0"), labels=labels)
    args.fails(LOOPBACK, args.resource_args(CONTAINER, props), "on 0.0.0.0")


def test_allowed_addresses_config_admits_an_address() -> None:
    props = args.docker_container(ports=published("10.0.0.5"))
    resource = args.resource_args(CONTAINER, props, config={"allowedAddresses": ["10.0.0.5"]})
    args.passes(LOOPBACK, resource)


def test_swarm_service_is_not_a_docker_container() -> None:
    """Swarm's routing mesh cannot bind an address; this policy is docker's only."""
    props = args.swarm_service()
    props["endpointSpec"] = {"ports": [{"targetPort": 8000, "publishedPort": 8000}]}
    args.passes(LOOPBACK, args.resource_args(SWARM_SERVICE, props))


# --- docker-ports-loopback: committed stacks -----------------------------------------------------


def test_ports_on_loopback_pass(stack_graph: Any) -> None:
    found = check(stack_graph("dev"), "docker-ports-loopback")
    assert found == [], show(found)


def test_ports_on_every_interface_are_a_violation() -> None:
    values = stack_values("dev")
    values["msops:target"] = {"bindAddress": "0.0.0.0"}
    graph = synth_config(values, "dev")
    found = check(graph, "docker-ports-loopback")
    names = sorted(graph.by_urn(v.urn).name for v in found)
    assert names == ["dev-monitoring-grafana", "dev-monitoring-prometheus", "dev-web-lb"], show(
        found
    )
    lb = next(v for v in found if graph.by_urn(v.urn).name == "dev-web-lb")
    assert "publishes host port 8000 on 0.0.0.0" in lb.message
    assert "reachable from the whole network" in lb.message
    assert "leave msops:target.bindAddress at 127.0.0.1" in lb.message


def test_lb_labelled_exposed_may_bind_every_interface(stack_graph: Any) -> None:
    """The exposed LB is edited to carry the label; see the next test for the backend's part."""
    graph = stack_graph("dev")
    lb = one(graph, CONTAINER, "dev-web-lb")

    def change(inputs: dict[str, Any]) -> None:
        inputs["ports"][0]["ip"] = "0.0.0.0"
        add_docker_label(EXPOSED_MARK, "true")(inputs)

    assert on(check(edit(graph, lb.urn, change), "docker-ports-loopback"), lb.urn) == []


def test_exposed_docker_service_passes() -> None:
    values = stack_values("dev")
    values["msops:services"]["web"]["exposed"] = True
    graph = synth_config(values, "dev")
    found = check(graph, "docker-ports-loopback")
    assert found == [], show(found)


# --- k8s-loadbalancer-exposed: single resources -------------------------------------------------


@pytest.mark.parametrize("kind", ["ClusterIP", None])
def test_cluster_internal_service_passes(kind: str | None) -> None:
    args.passes(LOAD_BALANCER, args.resource_args(K8S_SERVICE, k8s_service(kind)))


@pytest.mark.parametrize("kind", ["LoadBalancer", "NodePort"])
def test_unmarked_outside_service_fails(kind: str) -> None:
    resource = args.resource_args(K8S_SERVICE, k8s_service(kind))
    found = args.fails(LOAD_BALANCER, resource, f"Service of type {kind} is not marked")
    assert "Fix: keep it ClusterIP" in found.message, found.message


def test_load_balancer_marked_exposed_passes() -> None:
    props = k8s_service("LoadBalancer", **{EXPOSED_MARK: "true"})
    args.passes(LOAD_BALANCER, args.resource_args(K8S_SERVICE, props))


def test_load_balancer_labelled_exposed_passes() -> None:
    props = k8s_service("LoadBalancer")
    props["metadata"]["labels"] = {EXPOSED_MARK: "true"}
    args.passes(LOAD_BALANCER, args.resource_args(K8S_SERVICE, props))


def test_exposing_types_config_narrows_what_counts() -> None:
    resource = args.resource_args(
        K8S_SERVICE, k8s_service("NodePort"), config={"exposingTypes": ["LoadBalancer"]}
    )
    args.passes(LOAD_BALANCER, resource)


# --- k8s-loadbalancer-exposed: committed stacks ---------------------------------------------------


def test_cluster_ip_service_passes() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    found = check(synth_config(values, "prod"), "k8s-loadbalancer-exposed")
    assert found == [], show(found)


def test_exposed_kubernetes_service_passes(stack_graph: Any) -> None:
    found = check(stack_graph("prod"), "k8s-loadbalancer-exposed")
    assert found == [], show(found)


@pytest.mark.parametrize("kind", ["LoadBalancer", "NodePort"])
def test_unmarked_outside_service_is_a_violation(kind: str) -> None:
    """The backend only makes an exposed service a LoadBalancer, so the graph is edited."""
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    graph = synth_config(values, "prod")
    res = one(graph, K8S_SERVICE, "web")
    graph = edit(graph, res.urn, lambda i: i["spec"].update(type=kind))
    found = on(check(graph, "k8s-loadbalancer-exposed"), res.urn)
    assert len(found) == 1 and f"Service of type {kind} is not marked" in found[0].message, show(
        found
    )
    assert "must be a decision, not a default" in found[0].message
    assert "keep it ClusterIP" in found[0].message


def test_annotated_load_balancer_passes() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    graph = synth_config(values, "prod")
    res = one(graph, K8S_SERVICE, "web")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["type"] = "LoadBalancer"
        annotate(EXPOSED_MARK, "true")(inputs)

    assert on(check(edit(graph, res.urn, change), "k8s-loadbalancer-exposed"), res.urn) == []
