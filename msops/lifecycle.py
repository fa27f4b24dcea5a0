"""Refresh and destroy as plain data: the engine's steps, and what a destroy leaves standing."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from components.plan.model import StackPlan
    from msops.synth import Graph, Resource

DOCKER_VOLUME = "docker:index/volume:Volume"
K8S_NAMESPACE = "kubernetes:core/v1:Namespace"
K8S_STATEFULSET = "kubernetes:apps/v1:StatefulSet"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"


@dataclass(frozen=True)
class StepRecord:
    """One resource's step in an engine run, as the engine's events describe it.

    `op` is the step's result (a refresh reports `same`, `update` or `delete`); outputs are
    the resource's state before and after, with secrets shown as "[secret]"; `detailed_diff`
    maps a property path to its kind of change, where the engine sent one.
    """

    op: str
    urn: str
    type: str
    old_outputs: Mapping[str, Any] | None = None
    new_outputs: Mapping[str, Any] | None = None
    diffs: tuple[str, ...] = ()
    detailed_diff: Mapping[str, str] = field(default_factory=dict)
    protect: bool = False
    retain_on_delete: bool = False

    @property
    def name(self) -> str:
        """The resource's logical name, the last part of its URN."""
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class EngineRun:
    """A refresh or destroy (or its preview): change counts by operation, and every step."""

    changes: Mapping[str, int]
    steps: tuple[StepRecord, ...] = ()


# --- what a destroy keeps -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    """A resource `msops destroy` leaves in place, and the commands that remove it on purpose.

    `protected`: it stays in Pulumi's state as well (the destroy skips protected resources);
    `retained`: Pulumi forgets it, but the object stays on the Docker host or in the cluster.
    """

    urn: str
    type: str
    # The object's own name: the volume, the StatefulSet, the namespace.
    name: str
    how: Literal["protected", "retained"]
    what: str
    removal: tuple[str, ...]


def kept_by_destroy(graph: Graph, plan: StackPlan) -> list[Kept]:
    """Every resource of the synthesized graph that a destroy keeps, in URN order.

    Read from the options the program registers (`protect`, `retain_on_delete`), so what the
    backends protect and what this lists cannot drift apart.
    """
    kept = []
    for res in graph:
        protect = bool(res.options.get("protect"))
        retain = bool(res.options.get("retain_on_delete"))
        if not (protect or retain):
            continue
        how: Literal["protected", "retained"] = "protected" if protect else "retained"
        name = _object_name(res)
        kept.append(
            Kept(
                urn=res.urn,
                type=res.type,
                name=name,
                how=how,
                what=_what(res, name),
                removal=removal_commands(res, name, how, plan),
            )
        )
    return kept


def _object_name(res: Resource) -> str:
    inputs = res.inputs
    metadata = inputs.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("name"):
        return str(metadata["name"])
    return str(inputs.get("name") or res.name)


def _what(res: Resource, name: str) -> str:
    if res.type == DOCKER_VOLUME:
        return f"Docker volume {name}"
    if res.type == K8S_STATEFULSET:
        return f"StatefulSet {name} and its PersistentVolumeClaim data-{name}-0"
    if res.type == K8S_NAMESPACE:
        return f"namespace {name}, where the retained database runs"
    if res.type == RANDOM_PASSWORD:
        return f"the generated password {res.name}, so a later `msops up` opens the kept data"
    return f"{res.type} {name}"


def _docker(plan: StackPlan) -> str:
    host = plan.target.docker_host
    return f"DOCKER_HOST={shlex.quote(host)} docker" if host else "docker"


def _kubectl(plan: StackPlan) -> str:
    context = plan.target.kube_context
    return f"kubectl --context {shlex.quote(context)}" if context else "kubectl"


def removal_commands(
    res: Resource, name: str, how: Literal["protected", "retained"], plan: StackPlan
) -> tuple[str, ...]:
    """The commands, in order, that remove a kept resource (and its data) on purpose."""
    stack = shlex.quote(plan.stack)
    forget: tuple[str, ...] = ()
    if how == "protected":
        # Unprotected, the next destroy drops it from the state; `retain_on_delete` means
        # Pulumi never deletes the object itself, which the command after does.
        forget = (
            f"pulumi state unprotect --stack {stack} --yes {shlex.quote(res.urn)}",
            f"msops destroy {stack} --yes",
        )
    if res.type == DOCKER_VOLUME:
        where = "  # on the swarm node that holds it" if plan.backend == "swarm" else ""
        return (*forget, f"{_docker(plan)} volume rm {shlex.quote(name)}{where}")
    namespace = shlex.quote(plan.target.namespace)
    if res.type == K8S_STATEFULSET:
        return (
            *forget,
            f"{_kubectl(plan)} -n {namespace} delete statefulset {shlex.quote(name)}",
            f"{_kubectl(plan)} -n {namespace} delete pvc {shlex.quote(f'data-{name}-0')}",
        )
    if res.type == K8S_NAMESPACE:
        return (*forget, f"{_kubectl(plan)} delete namespace {shlex.quote(name)}")
    return forget
