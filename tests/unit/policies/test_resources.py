"""resource-limits: on single resources, and on the committed stacks."""

from __future__ import annotations

from typing import Any

import pytest

from policies.rules import resources
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

POLICY = resources.RESOURCE_LIMITS

# --- single resources ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (CONTAINER, args.docker_container()),
        (CONTAINER, args.docker_container(cpus=None, cpuQuota=50_000)),
        (SWARM_SERVICE, args.swarm_service()),
        (DEPLOYMENT, args.deployment()),
    ],
    ids=["docker", "docker-cpu-quota", "swarm", "kubernetes"],
)
def test_container_with_limits_passes(resource_type: str, props: dict[str, Any]) -> None:
    args.passes(POLICY, args.resource_args(resource_type, props))


def test_docker_container_without_limits_fails() -> None:
    props = args.docker_container(cpus=None, memory=None)
    found = args.fails(
        POLICY, args.resource_args(CONTAINER, props), "has no CPU limit (cpus) and no memory limit"
    )
    assert "Fix: set msops:services.<name>.resources.cpuLimit" in found.message, found.message


def test_swarm_service_without_memory_limit_fails() -> None:
    props = args.swarm_service()
    del props["taskSpec"]["resources"]["limits"]["memoryBytes"]
    resource = args.resource_args(SWARM_SERVICE, props)
    args.fails(POLICY, resource, "memory limit (taskSpec.resources.limits.memoryBytes)")


@pytest.mark.parametrize("cpu", ["0", "0m", 0, ""])
def test_kubernetes_zero_cpu_limit_fails(cpu: Any) -> None:
    container = args.k8s_container(resources={"limits": {"cpu": cpu, "memory": "256Mi"}})
    resource = args.resource_args(DEPLOYMENT, args.deployment(container))
    args.fails(POLICY, resource, "container 'web' has no CPU limit (resources.limits.cpu)")


def test_require_memory_limit_can_be_turned_off() -> None:
    props = args.docker_container(memory=None)
    resource = args.resource_args(CONTAINER, props, config={"requireMemoryLimit": False})
    args.passes(POLICY, resource)


# --- committed stacks ----------------------------------------------------------------------------

LIMIT_SITES = {
    "dev": (CONTAINER, "dev-web-1", lambda i: i.pop("cpus"), "cpus"),
    "staging": (
        SWARM_SERVICE,
        "web",
        lambda i: i["taskSpec"]["resources"]["limits"].pop("nanoCpus"),
        "taskSpec.resources.limits.nanoCpus",
    ),
    "prod": (
        DEPLOYMENT,
        "web",
        lambda i: k8s_container(i)["resources"]["limits"].pop("cpu"),
        "resources.limits.cpu",
    ),
}


@pytest.mark.parametrize("stack", STACKS)
def test_service_containers_with_limits_pass(stack: str, stack_graph: Any) -> None:
    type_, name, _, _ = LIMIT_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(stack_graph(stack), "resource-limits"), res.urn)
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_container_without_cpu_limit_is_a_violation(stack: str, stack_graph: Any) -> None:
    """Every service gets limits from the model's defaults, so the graph is edited to drop one."""
    type_, name, change, field = LIMIT_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(edit(stack_graph(stack), res.urn, change), "resource-limits"), res.urn)
    assert len(found) == 1, f"{res.urn}:\n{show(found)}"
    assert f"has no CPU limit ({field})" in found[0].message
    assert "starve every other container" in found[0].message
    assert "resources.cpuLimit and memoryLimit" in found[0].message


def test_cpu_limit_requirement_can_be_turned_off(stack_graph: Any) -> None:
    type_, name, change, _ = LIMIT_SITES["dev"]
    res = one(stack_graph("dev"), type_, name)
    config = {"resource-limits": {"requireCpuLimit": False}}
    found = on(
        check(edit(stack_graph("dev"), res.urn, change), "resource-limits", config=config), res.urn
    )
    assert found == [], show(found)
