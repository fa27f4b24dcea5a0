"""health-checks: on single resources, and on the committed stacks."""

from __future__ import annotations

from typing import Any

import pytest

from policies.rules import health
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    CONTAINER,
    DEPLOYMENT,
    STACKS,
    SWARM_SERVICE,
    check,
    edit,
    k8s_container,
    on,
    one,
    show,
)

pytestmark = pytest.mark.timeout(120)

POLICY = health.HEALTH_CHECKS

# --- single resources ----------------------------------------------------------------------------


@args.every_backend
def test_probed_container_passes(resource_type: str, props: dict[str, Any]) -> None:
    args.passes(POLICY, args.resource_args(resource_type, props))


@pytest.mark.parametrize("healthcheck", [None, {"tests": ["NONE"]}, {"tests": []}])
def test_docker_container_without_health_check_fails(healthcheck: Any) -> None:
    props = args.docker_container(healthcheck=healthcheck)
    found = args.fails(POLICY, args.resource_args(CONTAINER, props), "the container has no health")
    assert "Fix: set `healthcheck` with a test command" in found.message, found.message


def test_swarm_service_without_health_check_fails() -> None:
    props = args.swarm_service()
    del props["taskSpec"]["containerSpec"]["healthcheck"]
    found = args.fails(POLICY, args.resource_args(SWARM_SERVICE, props), "has no health check")
    assert "set `taskSpec.containerSpec.healthcheck`" in found.message, found.message


def test_kubernetes_container_without_probes_fails() -> None:
    container = args.k8s_container(readinessProbe=None, livenessProbe=None)
    resource = args.resource_args(DEPLOYMENT, args.deployment(container))
    found = args.fails(POLICY, resource, "has no readinessProbe and no livenessProbe")
    assert "Fix: add a readinessProbe" in found.message, found.message


def test_require_liveness_off_accepts_readiness_alone() -> None:
    container = args.k8s_container(livenessProbe=None)
    props = args.deployment(container)
    resource = args.resource_args(DEPLOYMENT, props, config={"requireLiveness": False})
    args.passes(POLICY, resource)


def test_job_needs_no_probes() -> None:
    """A Job runs to completion; readiness and liveness mean nothing to it."""
    container = args.k8s_container(readinessProbe=None, livenessProbe=None)
    props = {"spec": {"template": {"spec": {"containers": [container]}}}}
    args.passes(POLICY, args.resource_args("kubernetes:batch/v1:Job", props))


def test_init_container_needs_no_probes() -> None:
    props = args.deployment()
    init = args.k8s_container(name="migrate", readinessProbe=None, livenessProbe=None)
    props["spec"]["template"]["spec"]["initContainers"] = [init]
    args.passes(POLICY, args.resource_args(DEPLOYMENT, props))


# --- committed stacks ----------------------------------------------------------------------------

HEALTH_SITES = {
    "dev": (CONTAINER, "dev-web-1", lambda i: i.pop("healthcheck"), "has no health check"),
    "staging": (
        SWARM_SERVICE,
        "web",
        lambda i: i["taskSpec"]["containerSpec"].pop("healthcheck"),
        "has no health check",
    ),
    "prod": (
        DEPLOYMENT,
        "web",
        lambda i: k8s_container(i).pop("readinessProbe"),
        "has no readinessProbe",
    ),
}


@pytest.mark.parametrize("stack", STACKS)
def test_service_with_health_checks_passes(stack: str, stack_graph: Any) -> None:
    type_, name, _, _ = HEALTH_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(stack_graph(stack), "health-checks"), res.urn)
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_service_without_health_check_is_a_violation(stack: str, stack_graph: Any) -> None:
    """The backends always probe a service, so the graph is edited to drop the check."""
    type_, name, change, detail = HEALTH_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(edit(stack_graph(stack), res.urn, change), "health-checks"), res.urn)
    assert len(found) == 1 and detail in found[0].message, f"{res.urn}:\n{show(found)}"
    assert "cannot tell a broken replica from a working one" in found[0].message
    assert "msops:services.<name>.health" in found[0].message


def test_disabled_docker_health_check_is_a_violation(stack_graph: Any) -> None:
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    graph = edit(stack_graph("dev"), res.urn, lambda i: i["healthcheck"].update(tests=["NONE"]))
    found = on(check(graph, "health-checks"), res.urn)
    assert len(found) == 1, show(found)


def test_liveness_requirement_can_be_turned_off(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), DEPLOYMENT, "web")
    graph = edit(stack_graph("prod"), res.urn, lambda i: k8s_container(i).pop("livenessProbe"))
    config = {"health-checks": {"requireLiveness": False}}
    assert len(on(check(graph, "health-checks"), res.urn)) == 1
    found = on(check(graph, "health-checks", config=config), res.urn)
    assert found == [], show(found)
