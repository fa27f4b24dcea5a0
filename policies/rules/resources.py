"""Resources: every container has a CPU limit and a memory limit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, Severity

from .base import Problem, ResourcePolicy, Settings, flag, schema
from .containers import containers
from .view import number

# Where each backend keeps the limits, as a person fixing the resource would write them.
_LIMIT_FIELDS = {
    "docker": ("cpus", "memory"),
    "swarm": ("taskSpec.resources.limits.nanoCpus", "taskSpec.resources.limits.memoryBytes"),
    "kubernetes": ("resources.limits.cpu", "resources.limits.memory"),
}


def _positive_quantity(value: Any) -> bool:
    """A set limit: a positive number, or a Kubernetes quantity such as '500m' or '256Mi'."""
    amount = number(value)
    if amount is not None:
        return amount > 0
    return isinstance(value, str) and bool(re.match(r"^[0-9.]*[1-9][0-9.]*[A-Za-z]*$", value))


def missing_limits(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every container without the CPU or memory limit the config requires."""
    for container in containers(args.resource_type, args.props):
        cpu_field, memory_field = _LIMIT_FIELDS[container.backend]
        missing = []
        if cfg["requireCpuLimit"] and not _positive_quantity(container.get("cpu_limit")):
            missing.append(f"CPU limit ({cpu_field})")
        if cfg["requireMemoryLimit"] and not _positive_quantity(container.get("memory_limit")):
            missing.append(f"memory limit ({memory_field})")
        if missing:
            yield Problem(
                f"{container.where} has no {' and no '.join(missing)}",
                "set msops:services.<name>.resources.cpuLimit and memoryLimit for a "
                f"service, or {cpu_field} and {memory_field} on the resource.",
            )


RESOURCE_LIMITS = ResourcePolicy(
    name="resource-limits",
    description="Every container has a CPU limit and a memory limit.",
    why="a container without CPU and memory limits can starve every other container on the "
    "host, and a memory leak takes the node down instead of one container.",
    check=missing_limits,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.MEDIUM,
    config_schema=schema(
        requireCpuLimit=flag(True, "Require a CPU limit. Default: true."),
        requireMemoryLimit=flag(True, "Require a memory limit. Default: true."),
    ),
    remediation_steps="Set resources.cpuLimit and memoryLimit on the service.",
)
