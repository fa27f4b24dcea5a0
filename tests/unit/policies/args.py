"""Policy arguments built by hand, one resource at a time, and a report that collects.

The pattern is pulumi-policy-aws's `createResourceValidationArgs`: a test names the resource
type and only the properties the policy reads, calls the policy's own `validate` with a
`report` that records what it is told, and asserts on that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components.vocabulary import LABEL_ROLE, LABEL_SERVICE, ROLE_REPLICA
from policies.rules.view import DOCKER_CONTAINER, DOCKER_SERVICE, K8S_DEPLOYMENT

COMPLIANT_IMAGE = "ghcr.io/msops/demo:1.0.0"


def urn(resource_type: str, name: str) -> str:
    return f"urn:pulumi:test::msops::{resource_type}::{name}"


def options(protect: bool = False, secret_outputs: Sequence[str] = ()) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), list(secret_outputs)
    )


def resource_args(
    resource_type: str,
    props: dict[str, Any],
    *,
    name: str = "test",
    config: dict[str, Any] | None = None,
    protect: bool = False,
    secret_outputs: Sequence[str] = (),
) -> ResourceValidationArgs:
    """What the engine hands a resource policy, for one resource with just these props."""
    opts = options(protect, secret_outputs)
    return ResourceValidationArgs(
        resource_type, props, urn(resource_type, name), name, opts, None, config or {}, {}
    )


def resource(resource_type: str, props: dict[str, Any], name: str = "test") -> PolicyResource:
    """One resource of a stack, as a stack policy sees it."""
    return PolicyResource(
        resource_type, props, urn(resource_type, name), name, options(), None, None, [], {}
    )


def stack_args(
    resources: Sequence[PolicyResource],
    config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> StackValidationArgs:
    return StackValidationArgs(list(resources), config or {}, tags or {})


@dataclass(frozen=True)
class Reported:
    message: str
    urn: str | None


def run(
    policy: ResourceValidationPolicy | StackValidationPolicy,
    args: ResourceValidationArgs | StackValidationArgs,
) -> list[Reported]:
    """Everything the policy's validate function reports for `args`."""
    found: list[Reported] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(Reported(message, urn))

    policy.validate(args, report)  # type: ignore[arg-type]
    return found


def where(args: ResourceValidationArgs | StackValidationArgs) -> str:
    """The resource(s) under test, for a failure message."""
    if isinstance(args, ResourceValidationArgs):
        return args.urn
    return ", ".join(r.urn for r in args.resources)


def passes(policy: Any, args: Any) -> None:
    found = run(policy, args)
    assert found == [], f"{policy.name} reported on {where(args)}: {found}"


def fails(policy: Any, args: Any, *fragments: str) -> Reported:
    """The one violation the policy reports, which must contain every fragment."""
    found = run(policy, args)
    assert len(found) == 1, f"{policy.name} on {where(args)}: expected one violation, got {found}"
    missing = [f for f in fragments if f not in found[0].message]
    assert missing == [], f"{policy.name} on {where(args)}: {missing} not in {found[0].message!r}"
    return found[0]


# --- one compliant resource per backend, to break one property at a time -------------------------


def docker_labels(**labels: str) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in labels.items()]


def docker_container(**props: Any) -> dict[str, Any]:
    """A docker replica container that passes every policy."""
    base: dict[str, Any] = {
        "image": COMPLIANT_IMAGE,
        "user": "10001:10001",
        "cpus": 0.5,
        "memory": 256,
        "healthcheck": {"tests": ["CMD", "/healthz"]},
        "envs": ["LOG_LEVEL=info"],
        "ports": [{"internal": 8000, "external": 8000, "ip": "127.0.0.1"}],
        "labels": docker_labels(**{LABEL_ROLE: ROLE_REPLICA, LABEL_SERVICE: "web"}),
    }
    base.update(props)
    return base


def swarm_service(**container_spec: Any) -> dict[str, Any]:
    """A swarm service (taskSpec.containerSpec) that passes every policy."""
    spec: dict[str, Any] = {
        "image": COMPLIANT_IMAGE,
        "user": "10001",
        "healthcheck": {"tests": ["CMD", "/healthz"]},
        "env": {"LOG_LEVEL": "info"},
    }
    spec.update(container_spec)
    return {
        "taskSpec": {
            "containerSpec": spec,
            "resources": {"limits": {"nanoCpus": 500_000_000, "memoryBytes": 268_435_456}},
        },
        "mode": {"replicated": {"replicas": 2}},
        "labels": docker_labels(**{LABEL_SERVICE: "web"}),
    }


def k8s_container(**fields: Any) -> dict[str, Any]:
    """A Kubernetes container that passes every policy."""
    base: dict[str, Any] = {
        "name": "web",
        "image": COMPLIANT_IMAGE,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8000}},
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
    }
    base.update(fields)
    return base


POD_LABELS = {"app.kubernetes.io/name": "web"}


def deployment(
    *containers: dict[str, Any], replicas: int | None = 3, **spec: Any
) -> dict[str, Any]:
    """A Deployment of `containers` (one compliant container by default)."""
    return {
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(POD_LABELS)},
            "template": {
                "metadata": {"labels": dict(POD_LABELS)},
                "spec": {"containers": list(containers) or [k8s_container()]},
            },
            **spec,
        },
    }


# A policy's pass test runs on each: one compliant resource per backend (never mutated).
every_backend = pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (DOCKER_CONTAINER, docker_container()),
        (DOCKER_SERVICE, swarm_service()),
        (K8S_DEPLOYMENT, deployment()),
    ],
    ids=["docker", "swarm", "kubernetes"],
)
