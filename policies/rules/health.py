"""Health: every long-running container has readiness and liveness checks."""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, Severity

from .base import Problem, ResourcePolicy, Settings, flag, schema
from .containers import Container, containers


def _docker_health(container: Container) -> Problem | None:
    """A docker or swarm container without a health check (one check: ready and alive)."""
    ready = container.get("readiness")
    # None: it runs to completion, and has nothing to check.
    if ready or ready is None:
        return None
    field = "healthcheck" if container.backend == "docker" else "taskSpec.containerSpec.healthcheck"
    return Problem(
        f"{container.where} has no health check",
        f"set `{field}` with a test command that fails when the process cannot "
        "serve (msops:services.<name>.health sets it for a service).",
    )


def _k8s_probes(container: Container, require_liveness: bool) -> Problem | None:
    """A Kubernetes container missing a probe it needs."""
    missing = []
    if container.get("readiness") is False:
        missing.append("readinessProbe")
    if container.get("liveness") is False and require_liveness:
        missing.append("livenessProbe")
    if not missing:
        return None
    return Problem(
        f"{container.where} has no {' and no '.join(missing)}",
        "add a readinessProbe on the path that checks dependencies and a "
        "livenessProbe on the path that checks the process itself "
        "(msops:services.<name>.health sets both for a service).",
    )


def unprobed_containers(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every long-running container without the health checks it needs."""
    for container in containers(args.resource_type, args.props):
        if container.backend == "kubernetes":
            problem = _k8s_probes(container, bool(cfg["requireLiveness"]))
        else:
            problem = _docker_health(container)
        if problem is not None:
            yield problem


HEALTH_CHECKS = ResourcePolicy(
    name="health-checks",
    description="Every long-running container has readiness and liveness checks "
    "(a health check on Docker and Swarm).",
    why="without health checks a rollout cannot tell a broken replica from a working one: "
    "traffic reaches replicas that are not ready and hung ones are never restarted.",
    check=unprobed_containers,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.MEDIUM,
    config_schema=schema(
        requireLiveness=flag(
            True,
            "Kubernetes: require a livenessProbe as well as a readinessProbe. Default: true.",
        ),
    ),
    remediation_steps="Add a health check, or readiness and liveness probes.",
)
