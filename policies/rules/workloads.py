"""The stack-wide view: which services a stack runs, with how many replicas, on every backend."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource, StackValidationArgs

from components.vocabulary import LABEL_ROLE, LABEL_SERVICE, ROLE_REPLICA

from .view import (
    DOCKER_CONTAINER,
    DOCKER_SERVICE,
    K8S_DEPLOYMENT,
    K8S_HPA,
    docker_labels,
    get,
    k8s_name,
    mapping,
    namespace,
    number,
    pod_template,
)


def of_type(args: StackValidationArgs, resource_type: str) -> list[PolicyResource]:
    return [r for r in args.resources if r.resource_type == resource_type]


def pod_labels(resource: PolicyResource) -> Mapping[str, Any]:
    template = pod_template(resource.resource_type, resource.props)
    return mapping(get(template, "metadata", "labels"))


def hpa_for(resource: PolicyResource, hpas: list[PolicyResource]) -> PolicyResource | None:
    """The HorizontalPodAutoscaler that scales `resource`, if any."""
    name, where = k8s_name(resource.props), namespace(resource.props)
    kind = resource.resource_type.rsplit(":", 1)[-1]
    for hpa in hpas:
        target = mapping(get(hpa.props, "spec", "scaleTargetRef"))
        if (
            target.get("kind") == kind
            and name is not None
            and target.get("name") == name
            and namespace(hpa.props) == where
        ):
            return hpa
    return None


def replica_groups(args: StackValidationArgs) -> Iterator[tuple[str, PolicyResource, int, str]]:
    """(service, resource to report on, fewest replicas, how that was read) of each service."""
    docker: dict[str, list[PolicyResource]] = {}
    for res in of_type(args, DOCKER_CONTAINER):
        labels = docker_labels(res.props.get("labels"))
        if labels.get(LABEL_ROLE) == ROLE_REPLICA and labels.get(LABEL_SERVICE):
            docker.setdefault(labels[LABEL_SERVICE], []).append(res)
    for service, found in docker.items():
        yield service, found[0], len(found), f"{len(found)} replica container(s)"
    yield from _swarm_groups(args)
    hpas = of_type(args, K8S_HPA)
    for res in of_type(args, K8S_DEPLOYMENT):
        hpa = hpa_for(res, hpas)
        if hpa is not None:
            count = number(get(hpa.props, "spec", "minReplicas"))
            how = "its HorizontalPodAutoscaler's minReplicas"
        else:
            count = number(get(res.props, "spec", "replicas"))
            how = "spec.replicas"
        yield str(k8s_name(res.props) or res.name), res, int(1 if count is None else count), how


def _swarm_groups(args: StackValidationArgs) -> Iterator[tuple[str, PolicyResource, int, str]]:
    for res in of_type(args, DOCKER_SERVICE):
        service = docker_labels(res.props.get("labels")).get(LABEL_SERVICE)
        mode = mapping(res.props.get("mode"))
        if not service or mode.get("global") is not None:
            continue
        count = number(get(mode, "replicated", "replicas"))
        yield service, res, int(1 if count is None else count), "mode.replicated.replicas"
