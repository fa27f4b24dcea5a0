"""The neutral view of a resource: its props read safely, its type, its labels and waivers.

Docker containers and volumes, swarm services and Kubernetes objects keep the same facts in
different places; the policies read them through these functions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from components.vocabulary import EXPOSED_MARK, WAIVER_PREFIX

# --- resource types -------------------------------------------------------------------------------

DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_SERVICE = "docker:index/service:Service"
DOCKER_VOLUME = "docker:index/volume:Volume"
DOCKER_REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DOCKER_IMAGE = "docker:index/image:Image"
DOCKER_SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
K8S_DEPLOYMENT = "kubernetes:apps/v1:Deployment"
K8S_STATEFULSET = "kubernetes:apps/v1:StatefulSet"
K8S_SERVICE = "kubernetes:core/v1:Service"
K8S_PVC = "kubernetes:core/v1:PersistentVolumeClaim"
K8S_PDB = "kubernetes:policy/v1:PodDisruptionBudget"
K8S_HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
K8S_SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
K8S_POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"

# Where each workload kind keeps its pod template ({metadata, spec}); () is the Pod itself.
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    K8S_DEPLOYMENT: ("spec", "template"),
    K8S_STATEFULSET: ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
    "kubernetes:core/v1:Pod": (),
}
# Workloads that serve until stopped; probes mean nothing to a Job that runs to completion.
LONG_RUNNING = {
    K8S_DEPLOYMENT,
    K8S_STATEFULSET,
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
}


# --- small readers --------------------------------------------------------------------------------


def get(obj: Any, *path: str | int) -> Any:
    """The value at `path` in nested mappings and lists; None where a step is missing.

    Under the engine the props are proxies that raise UnknownValueError for a value unknown
    during preview; that propagates, and the engine reports the policy as not run.
    """
    for step in path:
        if isinstance(step, int):
            if not is_list(obj) or step >= len(obj):
                return None
            obj = obj[step]
        else:
            if not isinstance(obj, Mapping) or step not in obj:
                return None
            obj = obj[step]
    return obj


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def items(value: Any) -> list[Any]:
    return list(value) if is_list(value) else []


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def peek(obj: Any, *path: str | int) -> Any:
    """Like get, but a value unknown during preview reads as None instead of raising.

    For values that only inform (label values, env values): one unknown image ID in a label
    must not stop every container policy from running during a preview.
    """
    try:
        return get(obj, *path)
    except UnknownValueError:
        return None


def known_items(value: Any) -> list[tuple[str, Any]]:
    """A mapping's items, with values unknown during preview as None."""
    entries = mapping(value)
    return [(str(k), peek(entries, k)) for k in entries]


def number(value: Any) -> float | None:
    """A number from an int, a float (the engine sends config numbers as floats) or a string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in items(value))


def is_truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


# --- labels, annotations and waivers --------------------------------------------------------------


def docker_labels(value: Any) -> dict[str, str]:
    """Docker's `labels` list of {label, value} as a dict."""
    out: dict[str, str] = {}
    for item in items(value):
        key = get(item, "label")
        if isinstance(key, str):
            val = peek(item, "value")
            out[key] = "" if val is None else str(val)
    return out


def k8s_marks(metadata: Any) -> dict[str, str]:
    """Labels and annotations of Kubernetes metadata together; annotations win on a clash."""
    out = {k: str(v) for k, v in known_items(get(metadata, "labels"))}
    out.update({k: str(v) for k, v in known_items(get(metadata, "annotations"))})
    return out


def marks(resource_type: str, props: Mapping[str, Any]) -> dict[str, str]:
    """Every label/annotation of a resource that may carry a waiver or an `exposed` mark."""
    if resource_type in (DOCKER_CONTAINER, DOCKER_VOLUME):
        return docker_labels(props.get("labels"))
    if resource_type == DOCKER_SERVICE:
        found = docker_labels(get(props, "taskSpec", "containerSpec", "labels"))
        found.update(docker_labels(props.get("labels")))
        return found
    if resource_type.startswith("kubernetes:"):
        found = {}
        path = POD_TEMPLATE_PATHS.get(resource_type)
        if path:
            found.update(k8s_marks(get(props, *path, "metadata")))
        found.update(k8s_marks(props.get("metadata")))
        return found
    return {}


def is_exposed(resource_type: str, props: Mapping[str, Any]) -> bool:
    """Whether the resource is marked exposed (`"true"`), on itself or on its pod template: what
    a service marked `exposed` publishes may listen beyond loopback, or be a LoadBalancer."""
    return is_truthy(marks(resource_type, props).get(EXPOSED_MARK))


def waived(
    policy: str, resource_type: str, props: Mapping[str, Any], cfg: Mapping[str, Any]
) -> bool:
    """True when the resource carries a waiver of `policy` with a reason, and waivers are on."""
    if not cfg.get("allowWaivers", True):
        return False
    reason = marks(resource_type, props).get(WAIVER_PREFIX + policy, "")
    return bool(reason.strip())


# --- Kubernetes objects ---------------------------------------------------------------------------


def pod_template(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    path = POD_TEMPLATE_PATHS[resource_type]
    return mapping(get(props, *path)) if path else props


def namespace(props: Mapping[str, Any]) -> str:
    return str(get(props, "metadata", "namespace") or "default")


def k8s_name(props: Mapping[str, Any]) -> Any:
    return get(props, "metadata", "name")


def k8s_labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(get(props, "metadata", "labels"))


def selects(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Kubernetes LabelSelector semantics: matchLabels and matchExpressions, all must hold."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in items(selector.get("matchExpressions")):
        key, op = get(expr, "key"), get(expr, "operator")
        values = [str(v) for v in items(get(expr, "values"))]
        present = key in labels
        if op == "In" and not (present and str(labels[key]) in values):
            return False
        if op == "NotIn" and present and str(labels[key]) in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
