"""Exposure: nothing listens beyond loopback, or outside the cluster, unless marked exposed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, Severity

from components.vocabulary import EXPOSED_MARK

from .base import Problem, ResourcePolicy, Settings, schema, string_list
from .view import DOCKER_CONTAINER, K8S_SERVICE, get, is_exposed, items

# --- docker-ports-loopback ------------------------------------------------------------------------


def _loopback(address: str, allowed: set[str]) -> bool:
    if address in allowed or address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def public_ports(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every port a docker container publishes beyond loopback, unless its service is exposed."""
    if is_exposed(args.resource_type, args.props):
        return
    allowed = {str(a) for a in cfg["allowedAddresses"]}
    for port in items(args.props.get("ports")):
        address = get(port, "ip")
        address = "0.0.0.0" if address is None or address == "" else str(address)
        if _loopback(address, allowed):
            continue
        external = get(port, "external")
        shown = f"host port {external}" if external is not None else "a host port"
        yield Problem(
            f"publishes {shown} on {address}",
            "leave msops:target.bindAddress at 127.0.0.1, or mark the service "
            f"msops:services.<name>.exposed: true (the backend then labels the LB "
            f"`{EXPOSED_MARK}=true`).",
        )


DOCKER_PORTS_LOOPBACK = ResourcePolicy(
    name="docker-ports-loopback",
    description="Docker containers publish ports on 127.0.0.1 unless their service is exposed.",
    why="a port bound to every interface is reachable from the whole network, which for a dev "
    "machine means the office or café Wi-Fi.",
    check=public_ports,
    applies_to=[DOCKER_CONTAINER],
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=schema(
        allowedAddresses=string_list([], "Host addresses besides loopback that ports may bind to."),
    ),
    remediation_steps="Bind to 127.0.0.1 or mark the service exposed.",
)

# --- k8s-loadbalancer-exposed ---------------------------------------------------------------------


def unmarked_outside_services(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """A Kubernetes Service reachable from outside the cluster that is not marked exposed."""
    kind = get(args.props, "spec", "type")
    if kind not in [str(t) for t in cfg["exposingTypes"]]:
        return
    if is_exposed(args.resource_type, args.props):
        return
    yield Problem(
        f'Service of type {kind} is not marked {EXPOSED_MARK}: "true"',
        "keep it ClusterIP (reach it through an Ingress or a port-forward), or mark the "
        f"service msops:services.<name>.exposed: true, which annotates it {EXPOSED_MARK}.",
    )


K8S_LOADBALANCER_EXPOSED = ResourcePolicy(
    name="k8s-loadbalancer-exposed",
    description="A Kubernetes Service is of type LoadBalancer or NodePort only when its "
    "service is marked exposed.",
    why="a LoadBalancer or NodePort Service puts the service on the internet or on every node, "
    "which must be a decision, not a default.",
    check=unmarked_outside_services,
    applies_to=[K8S_SERVICE],
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=schema(
        exposingTypes=string_list(
            ["LoadBalancer", "NodePort"],
            "Service types that make a service reachable from outside.",
        ),
    ),
    remediation_steps="Use ClusterIP, or mark the service exposed.",
)
