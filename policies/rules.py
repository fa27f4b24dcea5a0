"""msops' policies as plain functions, for `pulumi preview --policy-pack` and `msops check`."""

from __future__ import annotations

import base64
import binascii
import contextvars
import copy
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

if TYPE_CHECKING:
    # Only for annotations: the published pack carries this module without the msops package.
    from msops.synth import Graph, Resource

# --- marks the backends put on resources --------------------------------------------------------

# `msops.dev/policy-waiver.<policy>: <reason>` on a resource (a docker/swarm label, a Kubernetes
# annotation) waives that one policy for it; the reason is required and shows in reviews.
WAIVER_PREFIX = "msops.dev/policy-waiver."
# A docker container labelled `msops.exposed=true` (the LB of a service marked `exposed`) may
# publish on any address.
DOCKER_EXPOSED_LABEL = "msops.exposed"
# A Kubernetes Service annotated (or labelled) `msops.dev/exposed: "true"` may be a LoadBalancer.
K8S_EXPOSED_KEY = "msops.dev/exposed"
# A stack tag that names the environment explicitly; when present it decides "is this prod".
ENVIRONMENT_TAG = "msops:environment"
# How msops' offline synth shows a secret value (the engine itself hands policies plaintext).
SECRET_MARK = "[secret]"

# --- resource types -----------------------------------------------------------------------------

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
_POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    K8S_DEPLOYMENT: ("spec", "template"),
    K8S_STATEFULSET: ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
    "kubernetes:core/v1:Pod": (),
}
# Workloads that serve until stopped; probes mean nothing to a Job that runs to completion.
_LONG_RUNNING = {
    K8S_DEPLOYMENT,
    K8S_STATEFULSET,
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
}

LEVELS = ("advisory", "mandatory", "remediate", "disabled")

_STACK: contextvars.ContextVar[str | None] = contextvars.ContextVar("msops_stack", default=None)


@dataclass(frozen=True)
class Violation:
    """One policy violation: which policy, how hard it blocks, on what, and what to do."""

    policy: str
    level: str
    urn: str
    message: str


class PolicyConfigError(ValueError):
    """A policy config (`--policy-pack-config` / `msops check --policy-config`) that is wrong."""


# --- small readers ------------------------------------------------------------------------------


def _get(obj: Any, *path: str | int) -> Any:
    """The value at `path` in nested mappings and lists; None where a step is missing.

    Under the engine the props are proxies that raise UnknownValueError for a value unknown
    during preview; that propagates, and the engine reports the policy as not run.
    """
    for step in path:
        if isinstance(step, int):
            if not _is_list(obj) or step >= len(obj):
                return None
            obj = obj[step]
        else:
            if not isinstance(obj, Mapping) or step not in obj:
                return None
            obj = obj[step]
    return obj


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _items(value: Any) -> list[Any]:
    return list(value) if _is_list(value) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _peek(obj: Any, *path: str | int) -> Any:
    """Like _get, but a value unknown during preview reads as None instead of raising.

    For values that only inform (label values, env values): one unknown image ID in a label
    must not stop every container policy from running during a preview.
    """
    try:
        return _get(obj, *path)
    except UnknownValueError:
        return None


def _known_items(value: Any) -> list[tuple[str, Any]]:
    """A mapping's items, with values unknown during preview as None."""
    mapping = _mapping(value)
    return [(str(k), _peek(mapping, k)) for k in mapping]


def _number(value: Any) -> float | None:
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


def _docker_labels(value: Any) -> dict[str, str]:
    """Docker's `labels` list of {label, value} as a dict."""
    out: dict[str, str] = {}
    for item in _items(value):
        key = _get(item, "label")
        if isinstance(key, str):
            val = _peek(item, "value")
            out[key] = "" if val is None else str(val)
    return out


def _k8s_marks(metadata: Any) -> dict[str, str]:
    """Labels and annotations of Kubernetes metadata together; annotations win on a clash."""
    out = {k: str(v) for k, v in _known_items(_get(metadata, "labels"))}
    out.update({k: str(v) for k, v in _known_items(_get(metadata, "annotations"))})
    return out


def _marks(resource_type: str, props: Mapping[str, Any]) -> dict[str, str]:
    """Every label/annotation of a resource that may carry a waiver or an `exposed` mark."""
    if resource_type in (DOCKER_CONTAINER, DOCKER_VOLUME):
        return _docker_labels(props.get("labels"))
    if resource_type == DOCKER_SERVICE:
        marks = _docker_labels(_get(props, "taskSpec", "containerSpec", "labels"))
        marks.update(_docker_labels(props.get("labels")))
        return marks
    if resource_type.startswith("kubernetes:"):
        marks = {}
        path = _POD_TEMPLATE_PATHS.get(resource_type)
        if path:
            marks.update(_k8s_marks(_get(props, *path, "metadata")))
        marks.update(_k8s_marks(props.get("metadata")))
        return marks
    return {}


def _waived(
    policy: str, resource_type: str, props: Mapping[str, Any], cfg: Mapping[str, Any]
) -> bool:
    """True when the resource carries a waiver of `policy` with a reason, and waivers are on."""
    if not cfg.get("allowWaivers", True):
        return False
    reason = _marks(resource_type, props).get(WAIVER_PREFIX + policy, "")
    return bool(reason.strip())


def _is_truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


# --- one view of a container on every backend ---------------------------------------------------


@dataclass(frozen=True)
class _Env:
    name: str
    value: Any
    # Set by reference (Kubernetes valueFrom), so the manifest never holds the value.
    by_reference: bool = False


@dataclass(frozen=True)
class _Unknown:
    """A field whose value is unknown during preview; only a policy that reads it stops."""

    error: UnknownValueError


def _lazy(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except UnknownValueError as exc:
        return _Unknown(exc)


@dataclass(frozen=True)
class _Container:
    """What the container policies need, read from a docker, swarm or Kubernetes resource.

    Read fields with `get`: it raises the engine's UnknownValueError for a field unknown during
    preview, which the engine reports as "can't run policy during preview".
    """

    backend: str
    where: str
    image: Any = None
    user: Any = None
    run_as_user: Any = None
    run_as_non_root: Any = None
    privileged: Any = False
    cap_adds: Any = ()
    cpu_limit: Any = None
    memory_limit: Any = None
    # None: not applicable (an init container, a Job); else whether the check is there.
    readiness: Any = None
    liveness: Any = None
    # None: the whole environment is one secret value, so no single variable can be read.
    env: Any = None
    env_secret: bool = False

    def get(self, field: str) -> Any:
        value = getattr(self, field)
        if isinstance(value, _Unknown):
            raise value.error
        return value


def _containers(resource_type: str, props: Mapping[str, Any], opts: Any) -> list[_Container]:
    secret_props = set(_items(getattr(opts, "additional_secret_outputs", None)))
    if resource_type == DOCKER_CONTAINER:
        return [_docker_container(props, "envs" in secret_props)]
    if resource_type == DOCKER_SERVICE:
        return [_swarm_container(props, "taskSpec" in secret_props)]
    if resource_type in _POD_TEMPLATE_PATHS:
        return _k8s_containers(resource_type, props, "spec" in secret_props)
    return []


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in _items(value))


def _docker_env(envs: Any) -> tuple[_Env, ...] | None:
    if envs == SECRET_MARK:
        return None
    out = []
    for index in range(len(envs) if _is_list(envs) else 0):
        item = _peek(envs, index)
        if isinstance(item, str):
            name, _, value = item.partition("=")
            out.append(_Env(name, value))
    return tuple(out)


def _docker_cpu(props: Mapping[str, Any]) -> Any:
    cpus = props.get("cpus")
    if _number(cpus) is None and (_number(props.get("cpuQuota")) or 0) > 0:
        return props.get("cpuQuota")
    return cpus


def _docker_container(props: Mapping[str, Any], env_secret: bool) -> _Container:
    health = _lazy(lambda: _health_tests(_get(props, "healthcheck", "tests")))
    return _Container(
        backend="docker",
        where="the container",
        image=_lazy(lambda: props.get("image")),
        user=_lazy(lambda: props.get("user")),
        privileged=_lazy(lambda: props.get("privileged") is True),
        cap_adds=_lazy(lambda: _strings(_get(props, "capabilities", "adds"))),
        cpu_limit=_lazy(lambda: _docker_cpu(props)),
        memory_limit=_lazy(lambda: props.get("memory")),
        readiness=health,
        liveness=health,
        env=_lazy(lambda: _docker_env(props.get("envs"))),
        env_secret=env_secret,
    )


def _health_tests(tests: Any) -> bool:
    items = _strings(tests)
    return bool(items) and items[0].upper() != "NONE"


def _env_map(env_map: Any) -> tuple[_Env, ...] | None:
    if env_map == SECRET_MARK:
        return None
    return tuple(_Env(k, v) for k, v in _known_items(env_map))


def _swarm_container(props: Mapping[str, Any], env_secret: bool) -> _Container:
    spec = _mapping(_get(props, "taskSpec", "containerSpec"))
    limits = _mapping(_get(props, "taskSpec", "resources", "limits"))
    health = _lazy(lambda: _health_tests(_get(spec, "healthcheck", "tests")))
    return _Container(
        backend="swarm",
        where="taskSpec.containerSpec",
        image=_lazy(lambda: spec.get("image")),
        user=_lazy(lambda: spec.get("user")),
        # Swarm has no privileged mode; capabilities are the way to get the same power.
        privileged=False,
        cap_adds=_lazy(lambda: _strings(spec.get("capAdds"))),
        cpu_limit=_lazy(lambda: limits.get("nanoCpus")),
        memory_limit=_lazy(lambda: limits.get("memoryBytes")),
        readiness=health,
        liveness=health,
        env=_lazy(lambda: _env_map(spec.get("env"))),
        env_secret=env_secret,
    )


def _pod_template(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    path = _POD_TEMPLATE_PATHS[resource_type]
    return _mapping(_get(props, *path)) if path else props


def _k8s_env(item: Any) -> tuple[_Env, ...]:
    return tuple(
        _Env(
            str(_get(e, "name")),
            _peek(e, "value"),
            by_reference=_get(e, "valueFrom") is not None,
        )
        for e in _items(_get(item, "env"))
    )


def _k8s_containers(
    resource_type: str, props: Mapping[str, Any], env_secret: bool
) -> list[_Container]:
    pod = _mapping(_get(_pod_template(resource_type, props), "spec"))
    pod_security = _mapping(pod.get("securityContext"))
    probed = resource_type in _LONG_RUNNING
    return [
        _k8s_container(item, key == "initContainers", pod_security, probed, env_secret)
        for key in ("initContainers", "containers")
        for item in _items(pod.get(key))
    ]


def _k8s_container(
    item: Any, init: bool, pod_security: Mapping[str, Any], probed: bool, env_secret: bool
) -> _Container:
    security = _mapping(_get(item, "securityContext"))
    limits = _mapping(_get(item, "resources", "limits"))
    main = probed and not init
    return _Container(
        backend="kubernetes",
        where=f"{'init container' if init else 'container'} {_peek(item, 'name')!r}",
        image=_lazy(lambda: _get(item, "image")),
        run_as_user=_lazy(lambda: security.get("runAsUser", pod_security.get("runAsUser"))),
        run_as_non_root=_lazy(
            lambda: security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
        ),
        privileged=_lazy(lambda: security.get("privileged") is True),
        cap_adds=_lazy(lambda: _strings(_get(security, "capabilities", "add"))),
        cpu_limit=_lazy(lambda: limits.get("cpu")),
        memory_limit=_lazy(lambda: limits.get("memory")),
        readiness=(_get(item, "readinessProbe") is not None) if main else None,
        liveness=(_get(item, "livenessProbe") is not None) if main else None,
        env=_lazy(lambda: _k8s_env(item)),
        env_secret=env_secret,
    )


# --- config -------------------------------------------------------------------------------------

_WAIVERS_PROPERTY = {
    "type": "boolean",
    "default": True,
    "description": f"Let a `{WAIVER_PREFIX}<policy>: <reason>` label or annotation exempt a "
    "resource. Default: true.",
}


def _schema(**properties: dict[str, Any]) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties={**properties, "allowWaivers": _WAIVERS_PROPERTY})


def _defaults(policy: Policy) -> dict[str, Any]:
    schema = policy.config_schema
    if schema is None:
        return {}
    return {k: copy.deepcopy(v["default"]) for k, v in schema.properties.items() if "default" in v}


def _settings(
    policy_name: str, args: ResourceValidationArgs | StackValidationArgs
) -> dict[str, Any]:
    """The policy's config: its schema defaults, overridden by what the pack config sets."""
    settings = _defaults(_BY_NAME[policy_name])
    settings.update(dict(args.get_config() or {}))
    return settings


def _type_problems(schema: Mapping[str, Any], value: Any, where: str) -> list[str]:
    """Problems of `value` against the JSON-schema subset the policies' config uses."""
    kind = schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: (
            not isinstance(v, bool)
            and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
        ),
        "number": lambda v: not isinstance(v, bool) and isinstance(v, int | float),
        "string": lambda v: isinstance(v, str),
        "array": _is_list,
    }
    if kind in checks and not checks[kind](value):
        return [f"{where}: got {value!r}; expected {'an' if kind == 'integer' else 'a'} {kind}"]
    problems = []
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        problems.append(f"{where}: got {value!r}; it must be at least {schema['minimum']}")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        problems.append(f"{where}: got {value!r}; expected one of {allowed}")
    if kind == "array" and "items" in schema:
        for index, item in enumerate(value):
            problems += _type_problems(schema["items"], item, f"{where}[{index}]")
    if schema.get("format") == "regex" and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as exc:
            problems.append(f"{where}: {value!r} is not a regular expression ({exc})")
    return problems


def resolve_config(
    config: Mapping[str, Any] | None,
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each policy's enforcement level and settings under a pack config, or PolicyConfigError.

    The format is the one `pulumi preview --policy-pack-config` reads: `{"<policy>": "disabled"}`
    or `{"<policy>": {"enforcementLevel": "advisory", "<property>": value}}`, and `"all"` to set
    every policy's level. Unlike the engine, unknown policies and properties are errors here, so a
    misspelt key is never silently ignored.
    """
    resolved = {p.name: (_level_name(p.enforcement_level), _defaults(p)) for p in ALL}
    problems: list[str] = []
    entries = dict(config or {})
    all_entry = entries.pop("all", None)
    if all_entry is not None:
        level = all_entry if isinstance(all_entry, str) else _get(all_entry, "enforcementLevel")
        extra = set(_mapping(all_entry)) - {"enforcementLevel"}
        if level not in LEVELS or extra:
            problems.append(
                f"all: got {all_entry!r}; 'all' takes only an enforcement level, one of "
                f"{', '.join(LEVELS)}"
            )
        else:
            resolved = {name: (level, settings) for name, (_, settings) in resolved.items()}
    for name, entry in entries.items():
        if name not in _BY_NAME:
            problems.append(f"{name}: no such policy; the policies are {', '.join(_BY_NAME)}")
            continue
        level, settings = resolved[name]
        if isinstance(entry, str):
            entry = {"enforcementLevel": entry}
        if not isinstance(entry, Mapping):
            problems.append(f"{name}: got {entry!r}; expected a level or an object of settings")
            continue
        schema = _BY_NAME[name].config_schema
        properties = schema.properties if schema else {}
        for key, value in entry.items():
            if key == "enforcementLevel":
                if value not in LEVELS:
                    problems.append(
                        f"{name}.enforcementLevel: got {value!r}; expected one of "
                        f"{', '.join(LEVELS)}"
                    )
                else:
                    level = value
            elif key not in properties:
                allowed = ", ".join(["enforcementLevel", *properties])
                problems.append(f"{name}.{key}: unknown setting; the settings are {allowed}")
            else:
                found = _type_problems(properties[key], value, f"{name}.{key}")
                problems += found
                if not found:
                    settings = {**settings, key: value}
        resolved[name] = (level, settings)
    if problems:
        raise PolicyConfigError("the policy config has problems:\n" + "\n".join(problems))
    return resolved


def read_policy_config(path: str | Path) -> dict[str, Any]:
    """Read and check a policy config JSON file (the one `--policy-pack-config` takes)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PolicyConfigError(f"cannot read the policy config: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyConfigError("the policy config must be a JSON object keyed by policy name")
    resolve_config(data)
    return data


def _level_name(level: EnforcementLevel | None) -> str:
    return (level or EnforcementLevel.ADVISORY).value


# --- messages -----------------------------------------------------------------------------------

WHY: dict[str, str] = {
    "images-pinned": "a moving tag such as ':latest' changes under you: replicas pulled at "
    "different times run different code, and a rollback re-applies the same tag and gets the "
    "new image again.",
    "no-privileged-containers": "a privileged container (or one given ALL or SYS_ADMIN "
    "capabilities) can take over the host, so one compromised process owns the machine.",
    "containers-non-root": "a process running as root inside the container is root on the host "
    "the moment it escapes, and can rewrite everything the image holds.",
    "resource-limits": "a container without CPU and memory limits can starve every other "
    "container on the host, and a memory leak takes the node down instead of one container.",
    "health-checks": "without health checks a rollout cannot tell a broken replica from a "
    "working one: traffic reaches replicas that are not ready and hung ones are never restarted.",
    "prod-min-replicas": "with a single replica, every deploy, node drain or crash is an outage "
    "of the whole service.",
    "pdb-required": "without a PodDisruptionBudget a node drain or cluster upgrade may evict "
    "every replica of the Deployment at once.",
    "services-monitored": "a service nobody scrapes has no metrics, no alerts and no dashboard, "
    "so an outage is found by its users.",
    "database-storage-retained": "deleting or replacing the resource would delete the "
    "database's data with it, and a `pulumi destroy` or a rename cannot be undone.",
    "no-plaintext-secret-env": "a plain value is stored unencrypted in the stack config, the "
    "Pulumi state and its history, and shows in `docker inspect` or the manifest.",
    "docker-ports-loopback": "a port bound to every interface is reachable from the whole "
    "network, which for a dev machine means the office or café Wi-Fi.",
    "k8s-loadbalancer-exposed": "a LoadBalancer or NodePort Service puts the service on the "
    "internet or on every node, which must be a decision, not a default.",
}

WAIVER_HINT = (
    "If the exception is deliberate, waive it on that resource with the label or annotation "
    "`{prefix}{policy}: <reason>`."
)


def _say(policy: str, detail: str, fix: str, waivable: bool = False) -> str:
    """A violation message: what is wrong, why the rule exists, and how to fix it."""
    text = f"{detail}. Why: {WHY[policy]} Fix: {fix}"
    if waivable:
        text += " " + WAIVER_HINT.format(prefix=WAIVER_PREFIX, policy=policy)
    return text


# --- resource policies --------------------------------------------------------------------------


def _image_problem(ref: str, forbidden: Sequence[str]) -> str | None:
    if ref.startswith("sha256:") or "@" in ref:
        # An image ID or a digest: immutable.
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {ref!r} has no tag, so it means ':latest'"
    tag = last.split(":", 1)[1]
    if tag in forbidden:
        return f"image {ref!r} uses the moving tag ':{tag}'"
    return None


def validate_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every image reference is a fixed version: an allowed tag, or a digest."""
    name = "images-pinned"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    refs: list[tuple[str, Any]] = []
    if args.resource_type == DOCKER_REMOTE_IMAGE:
        refs.append(("name", args.props.get("name")))
    elif args.resource_type == DOCKER_IMAGE:
        refs.append(("imageName", args.props.get("imageName")))
    else:
        containers = _containers(args.resource_type, args.props, args.opts)
        refs += [(c.where, c.get("image")) for c in containers]
    forbidden = [str(t) for t in cfg["forbiddenTags"]]
    for where, ref in refs:
        if not isinstance(ref, str) or ref == SECRET_MARK:
            continue
        problem = _image_problem(ref, forbidden)
        if problem:
            report(
                _say(
                    name,
                    f"{where}: {problem}",
                    "pin an exact version (':1.2.3') or a digest ('@sha256:...') in "
                    "msops:services.<name>.image, or in the resource's image reference.",
                ),
                None,
            )


def _capability(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def validate_no_privileged(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No container runs privileged or is given host-level capabilities."""
    name = "no-privileged-containers"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    forbidden = {_capability(str(c)) for c in cfg["forbiddenCapabilities"]}
    for container in _containers(args.resource_type, args.props, args.opts):
        if container.get("privileged"):
            report(
                _say(
                    name,
                    f"{container.where} runs privileged",
                    "remove `privileged` and add only the capabilities the process needs.",
                ),
                None,
            )
        added = sorted(c for c in container.get("cap_adds") if _capability(c) in forbidden)
        if added:
            report(
                _say(
                    name,
                    f"{container.where} adds the capabilities {', '.join(added)}",
                    "drop ALL capabilities and add back only the narrow ones the process "
                    "needs (for example NET_BIND_SERVICE).",
                ),
                None,
            )


def _is_root_user(user: Any) -> bool:
    if not isinstance(user, str) or not user.strip():
        return True
    return user.split(":", 1)[0].strip() in ("root", "0")


def validate_non_root(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container runs as a non-root user, stated explicitly."""
    name = "containers-non-root"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    for container in _containers(args.resource_type, args.props, args.opts):
        if container.backend == "kubernetes":
            uid = _number(container.get("run_as_user"))
            if uid == 0:
                detail = f"{container.where} sets runAsUser: 0 (root)"
            elif uid is not None or container.get("run_as_non_root") is True:
                continue
            else:
                detail = (
                    f"{container.where} sets neither runAsNonRoot: true nor a runAsUser above 0"
                )
            fix = (
                "set securityContext.runAsNonRoot: true and a runAsUser above 0 on the pod or "
                "the container (msops:services.<name>.runAsUser sets it for a service)."
            )
        else:
            user = container.get("user")
            if not _is_root_user(user):
                continue
            shown = user if isinstance(user, str) and user else None
            detail = (
                f"{container.where} runs as {shown!r}"
                if shown
                else f"{container.where} sets no user, so it runs as the image's default, root"
            )
            field = "user" if container.backend == "docker" else "taskSpec.containerSpec.user"
            fix = (
                f"set `{field}` to a uid above 0 ('10001' or '10001:10001'); "
                "msops:services.<name>.runAsUser sets it for a service."
            )
        report(_say(name, detail, fix, waivable=True), None)


def validate_resource_limits(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container has a CPU limit and a memory limit."""
    name = "resource-limits"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    fields = {
        "docker": ("cpus", "memory"),
        "swarm": ("taskSpec.resources.limits.nanoCpus", "taskSpec.resources.limits.memoryBytes"),
        "kubernetes": ("resources.limits.cpu", "resources.limits.memory"),
    }
    for container in _containers(args.resource_type, args.props, args.opts):
        cpu_field, memory_field = fields[container.backend]
        missing = []
        if cfg["requireCpuLimit"] and not _positive_quantity(container.get("cpu_limit")):
            missing.append(f"CPU limit ({cpu_field})")
        if cfg["requireMemoryLimit"] and not _positive_quantity(container.get("memory_limit")):
            missing.append(f"memory limit ({memory_field})")
        if missing:
            report(
                _say(
                    name,
                    f"{container.where} has no {' and no '.join(missing)}",
                    "set msops:services.<name>.resources.cpuLimit and memoryLimit for a "
                    f"service, or {cpu_field} and {memory_field} on the resource.",
                ),
                None,
            )


def _positive_quantity(value: Any) -> bool:
    """A set limit: a positive number, or a Kubernetes quantity such as '500m' or '256Mi'."""
    number = _number(value)
    if number is not None:
        return number > 0
    return isinstance(value, str) and bool(re.match(r"^[0-9.]*[1-9][0-9.]*[A-Za-z]*$", value))


def validate_health_checks(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every long-running container has readiness and liveness checks (Docker: a health check)."""
    name = "health-checks"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    for container in _containers(args.resource_type, args.props, args.opts):
        if container.backend != "kubernetes":
            if not container.get("readiness"):
                field = (
                    "healthcheck"
                    if container.backend == "docker"
                    else ("taskSpec.containerSpec.healthcheck")
                )
                report(
                    _say(
                        name,
                        f"{container.where} has no health check",
                        f"set `{field}` with a test command that fails when the process cannot "
                        "serve (msops:services.<name>.health sets it for a service).",
                    ),
                    None,
                )
            continue
        missing = []
        if container.get("readiness") is False:
            missing.append("readinessProbe")
        if container.get("liveness") is False and cfg["requireLiveness"]:
            missing.append("livenessProbe")
        if missing:
            report(
                _say(
                    name,
                    f"{container.where} has no {' and no '.join(missing)}",
                    "add a readinessProbe on the path that checks dependencies and a "
                    "livenessProbe on the path that checks the process itself "
                    "(msops:services.<name>.health sets both for a service).",
                ),
                None,
            )


def _is_secret_name(name: str, words: set[str]) -> bool:
    parts = [p for chunk in re.split(r"[^A-Za-z0-9]+", name) for p in _camel_parts(chunk)]
    return any(p.upper() in words for p in parts)


def _camel_parts(chunk: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[0-9]+", chunk) or [chunk]


def _plain_secret(env: _Env, words: set[str]) -> bool:
    """True when a secret-looking variable holds a literal value in the resource."""
    if env.by_reference or not _is_secret_name(env.name, words):
        return False
    value = env.value
    if value is None or value == SECRET_MARK or not isinstance(value, str) or not value:
        return False
    parts = re.split(r"[^A-Za-z0-9]+", env.name.upper())
    # NAME_FILE=/run/secrets/name is how Docker images take a secret without holding it.
    return not (parts[-1] == "FILE" and value.startswith("/"))


def validate_no_plaintext_secret_env(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No environment variable named like a secret carries a plain value."""
    name = "no-plaintext-secret-env"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    words = {str(w).upper() for w in cfg["secretWords"]}
    for container in _containers(args.resource_type, args.props, args.opts):
        # The resource declares the property secret (additionalSecretOutputs): Pulumi encrypts
        # it, and under the engine that declaration is the only mark a policy can see.
        if container.env_secret or container.get("env") is None:
            continue
        for env in container.get("env"):
            if not _plain_secret(env, words):
                continue
            if container.backend == "kubernetes":
                fix = (
                    "take the value from a Secret with valueFrom.secretKeyRef "
                    "(msops:services.<name>.secretEnv does this for a service)."
                )
            else:
                fix = (
                    "move it to msops:services.<name>.secretEnv and set it with "
                    "`pulumi config set --secret`."
                )
                if container.backend == "swarm":
                    fix = fix[:-1] + (
                        f", or mount it as a Docker secret and pass "
                        f"{env.name}_FILE=/run/secrets/<name>."
                    )
            report(
                _say(name, f"{container.where} sets {env.name} to a plain value", fix),
                None,
            )


def _loopback(address: str, allowed: set[str]) -> bool:
    if address in allowed or address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_docker_ports_loopback(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A docker container publishes ports on 127.0.0.1 only, unless its service is exposed."""
    name = "docker-ports-loopback"
    if args.resource_type != DOCKER_CONTAINER:
        return
    cfg = _settings(name, args)
    labels = _docker_labels(args.props.get("labels"))
    if _waived(name, args.resource_type, args.props, cfg) or _is_truthy(
        labels.get(DOCKER_EXPOSED_LABEL)
    ):
        return
    allowed = {str(a) for a in cfg["allowedAddresses"]}
    for port in _items(args.props.get("ports")):
        address = _get(port, "ip")
        address = "0.0.0.0" if address is None or address == "" else str(address)
        if _loopback(address, allowed):
            continue
        external = _get(port, "external")
        shown = f"host port {external}" if external is not None else "a host port"
        report(
            _say(
                name,
                f"publishes {shown} on {address}",
                "leave msops:target.bindAddress at 127.0.0.1, or mark the service "
                f"msops:services.<name>.exposed: true (the backend then labels the LB "
                f"`{DOCKER_EXPOSED_LABEL}=true`).",
            ),
            None,
        )


def validate_k8s_loadbalancer_exposed(
    args: ResourceValidationArgs, report: ReportViolation
) -> None:
    """A Kubernetes Service reachable from outside the cluster is one marked exposed."""
    name = "k8s-loadbalancer-exposed"
    if args.resource_type != K8S_SERVICE:
        return
    cfg = _settings(name, args)
    kind = _get(args.props, "spec", "type")
    if kind not in [str(t) for t in cfg["exposingTypes"]]:
        return
    marks = _k8s_marks(args.props.get("metadata"))
    if _waived(name, args.resource_type, args.props, cfg) or _is_truthy(marks.get(K8S_EXPOSED_KEY)):
        return
    report(
        _say(
            name,
            f'Service of type {kind} is not marked {K8S_EXPOSED_KEY}: "true"',
            "keep it ClusterIP (reach it through an Ingress or a port-forward), or mark the "
            f"service msops:services.<name>.exposed: true, which annotates it {K8S_EXPOSED_KEY}.",
        ),
        None,
    )


def validate_database_storage(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Database storage survives a delete: protected volumes, PVCs retained by StatefulSets."""
    name = "database-storage-retained"
    cfg = _settings(name, args)
    if _waived(name, args.resource_type, args.props, cfg):
        return
    props = args.props
    if args.resource_type == DOCKER_VOLUME:
        labels = _docker_labels(props.get("labels"))
        is_database = "msops.database" in labels or labels.get("msops.role") == "database"
        if is_database and not args.opts.protect:
            report(
                _say(
                    name,
                    "database volume is not protected",
                    "create the volume with ResourceOptions(protect=True, "
                    "retain_on_delete=True); pulumi-policy shows policies `protect` but not "
                    "`retainOnDelete`, so protect is what this policy checks.",
                ),
                None,
            )
    elif args.resource_type == K8S_STATEFULSET:
        claims = _items(_get(props, "spec", "volumeClaimTemplates"))
        when_deleted = _get(props, "spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted")
        # Kubernetes' default is Retain; only an explicit Delete throws the data away.
        if claims and when_deleted == "Delete":
            report(
                _say(
                    name,
                    "StatefulSet deletes its PersistentVolumeClaims with it "
                    "(persistentVolumeClaimRetentionPolicy.whenDeleted: Delete)",
                    "set spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Retain.",
                ),
                None,
            )
    elif args.resource_type == K8S_PVC and not args.opts.protect:
        report(
            _say(
                name,
                "PersistentVolumeClaim is not protected",
                "create it with ResourceOptions(protect=True, retain_on_delete=True), or let "
                "a StatefulSet's volumeClaimTemplates own it.",
            ),
            None,
        )


# --- stack policies -----------------------------------------------------------------------------


def _current_stack() -> str | None:
    """The stack being checked: set by `evaluate`, or by the engine in PULUMI_STACK."""
    return _STACK.get() or os.environ.get("PULUMI_STACK") or None


def _prod_reason(args: StackValidationArgs, cfg: Mapping[str, Any]) -> str | None:
    """Why this stack counts as prod, or None. An environment tag, when set, decides alone."""
    pattern = re.compile(str(cfg["prodStackPattern"]))
    tag = args.stack_tags.get(ENVIRONMENT_TAG)
    if tag is not None:
        return f"its {ENVIRONMENT_TAG} tag {tag!r} matches" if pattern.search(tag) else None
    stack = _current_stack()
    if stack is not None and pattern.search(stack):
        return f"stack {stack!r} matches"
    return None


def _namespace(props: Mapping[str, Any]) -> str:
    return str(_get(props, "metadata", "namespace") or "default")


def _k8s_name(props: Mapping[str, Any]) -> Any:
    return _get(props, "metadata", "name")


def _selects(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Kubernetes LabelSelector semantics: matchLabels and matchExpressions, all must hold."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in _mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in _items(selector.get("matchExpressions")):
        key, op = _get(expr, "key"), _get(expr, "operator")
        values = [str(v) for v in _items(_get(expr, "values"))]
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


def _pod_labels(resource: PolicyResource) -> Mapping[str, Any]:
    template = _pod_template(resource.resource_type, resource.props)
    return _mapping(_get(template, "metadata", "labels"))


def _hpa_for(resource: PolicyResource, hpas: list[PolicyResource]) -> PolicyResource | None:
    name, namespace = _k8s_name(resource.props), _namespace(resource.props)
    kind = resource.resource_type.rsplit(":", 1)[-1]
    for hpa in hpas:
        target = _mapping(_get(hpa.props, "spec", "scaleTargetRef"))
        if (
            target.get("kind") == kind
            and name is not None
            and target.get("name") == name
            and _namespace(hpa.props) == namespace
        ):
            return hpa
    return None


def _of_type(args: StackValidationArgs, resource_type: str) -> list[PolicyResource]:
    return [r for r in args.resources if r.resource_type == resource_type]


def _waived_resource(policy: str, resource: PolicyResource, cfg: Mapping[str, Any]) -> bool:
    return _waived(policy, resource.resource_type, resource.props, cfg)


def _replica_groups(args: StackValidationArgs) -> Iterator[tuple[str, PolicyResource, int, str]]:
    """(service, resource to report on, fewest replicas, how that was read) of each service."""
    docker: dict[str, list[PolicyResource]] = {}
    for res in _of_type(args, DOCKER_CONTAINER):
        labels = _docker_labels(res.props.get("labels"))
        if labels.get("msops.role") == "replica" and labels.get("msops.service"):
            docker.setdefault(labels["msops.service"], []).append(res)
    for service, containers in docker.items():
        yield service, containers[0], len(containers), f"{len(containers)} replica container(s)"
    for res in _of_type(args, DOCKER_SERVICE):
        swarm_service = _docker_labels(res.props.get("labels")).get("msops.service")
        mode = _mapping(res.props.get("mode"))
        if not swarm_service or mode.get("global") is not None:
            continue
        count = _number(_get(mode, "replicated", "replicas"))
        count = 1 if count is None else count
        yield swarm_service, res, int(count), "mode.replicated.replicas"
    hpas = _of_type(args, K8S_HPA)
    for res in _of_type(args, K8S_DEPLOYMENT):
        hpa = _hpa_for(res, hpas)
        if hpa is not None:
            count = _number(_get(hpa.props, "spec", "minReplicas"))
            how = "its HorizontalPodAutoscaler's minReplicas"
        else:
            count = _number(_get(res.props, "spec", "replicas"))
            how = "spec.replicas"
        yield str(_k8s_name(res.props) or res.name), res, int(1 if count is None else count), how


def validate_prod_min_replicas(args: StackValidationArgs, report: ReportViolation) -> None:
    """In a prod stack every service runs at least `minReplicas` replicas (HPA: its minimum)."""
    name = "prod-min-replicas"
    cfg = _settings(name, args)
    reason = _prod_reason(args, cfg)
    if reason is None:
        return
    minimum = int(_number(cfg["minReplicas"]) or 0)
    for service, res, count, how in _replica_groups(args):
        if count >= minimum or _waived_resource(name, res, cfg):
            continue
        report(
            _say(
                name,
                f"service {service!r} runs {count} replica(s) ({how}) in a prod stack "
                f"({reason} prodStackPattern {cfg['prodStackPattern']!r}); "
                f"prod needs at least {minimum}",
                f"set msops:services.{service}.replicas (or autoscaling.min) to {minimum} or more.",
            ),
            res.urn,
        )


def validate_pdb_required(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every Deployment that can run several replicas is covered by a PodDisruptionBudget."""
    name = "pdb-required"
    cfg = _settings(name, args)
    threshold = int(_number(cfg["minReplicas"]) or 0)
    pdbs = _of_type(args, K8S_PDB)
    hpas = _of_type(args, K8S_HPA)
    for res in _of_type(args, K8S_DEPLOYMENT):
        hpa = _hpa_for(res, hpas)
        if hpa is not None:
            most = _number(_get(hpa.props, "spec", "maxReplicas"))
        else:
            most = _number(_get(res.props, "spec", "replicas"))
        most = 1 if most is None else most
        if most < threshold or _waived_resource(name, res, cfg):
            continue
        labels, namespace = _pod_labels(res), _namespace(res.props)
        covered = any(
            _namespace(p.props) == namespace and _selects(_get(p.props, "spec", "selector"), labels)
            for p in pdbs
        )
        if not covered:
            report(
                _say(
                    name,
                    f"Deployment {_k8s_name(res.props) or res.name!r} can run {int(most)} "
                    "replicas but no PodDisruptionBudget selects its pods",
                    "add a PodDisruptionBudget with maxUnavailable: 1 whose selector matches the "
                    "pod template's labels (the msops kubernetes backend creates one for every "
                    "service with 2 or more replicas).",
                ),
                res.urn,
            )


@dataclass(frozen=True)
class _ScrapeJob:
    targets: tuple[str, ...]
    dns_names: tuple[str, ...]


def _scrape_jobs(args: StackValidationArgs) -> dict[str, _ScrapeJob] | None:
    """Scrape jobs of every Prometheus config in the stack by job name; None when there is none."""
    texts: list[str] = []
    for res in _of_type(args, DOCKER_CONTAINER):
        for upload in _items(res.props.get("uploads")):
            content = _get(upload, "content")
            if isinstance(content, str):
                texts.append(content)
            encoded = _get(upload, "contentBase64")
            if isinstance(encoded, str):
                texts.append(_b64(encoded))
    for res in _of_type(args, DOCKER_SERVICE_CONFIG):
        data = res.props.get("data")
        if isinstance(data, str):
            texts.append(_b64(data))
    jobs: dict[str, _ScrapeJob] | None = None
    for text in texts:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if not isinstance(doc, Mapping) or "scrape_configs" not in doc:
            continue
        jobs = jobs or {}
        for job in _items(doc.get("scrape_configs")):
            job_name = _get(job, "job_name")
            if not isinstance(job_name, str):
                continue
            targets = [
                str(t)
                for static in _items(_get(job, "static_configs"))
                for t in _items(_get(static, "targets"))
            ]
            names = [
                str(n)
                for dns in _items(_get(job, "dns_sd_configs"))
                for n in _items(_get(dns, "names"))
            ]
            jobs[job_name] = _ScrapeJob(tuple(targets), tuple(names))
    return jobs


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def validate_services_monitored(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every service is scraped: a ServiceMonitor/PodMonitor, or a job in the Prometheus config."""
    name = "services-monitored"
    cfg = _settings(name, args)
    jobs = _scrape_jobs(args)
    for service, res, _count, _how in _replica_groups(args):
        if res.resource_type == K8S_DEPLOYMENT or _waived_resource(name, res, cfg):
            continue
        job = (jobs or {}).get(service)
        if job is None:
            detail = (
                f"service {service!r} has no scrape job named {service!r} in the stack's "
                "Prometheus config"
                if jobs is not None
                else f"service {service!r} is not scraped: the stack has no Prometheus config"
            )
        elif not job.targets and not job.dns_names:
            detail = f"the scrape job of service {service!r} has no targets"
        else:
            continue
        report(
            _say(
                name,
                detail,
                "turn on msops:monitoring.enabled, which adds a scrape job for every service.",
            ),
            res.urn,
        )
    services = _of_type(args, K8S_SERVICE)
    monitors = _of_type(args, K8S_SERVICE_MONITOR)
    pod_monitors = _of_type(args, K8S_POD_MONITOR)
    for res in _of_type(args, K8S_DEPLOYMENT):
        if _waived_resource(name, res, cfg):
            continue
        labels, namespace = _pod_labels(res), _namespace(res.props)
        fronting = [
            s
            for s in services
            if _namespace(s.props) == namespace
            and _mapping(_get(s.props, "spec", "selector"))
            and _selects({"matchLabels": _get(s.props, "spec", "selector")}, labels)
        ]
        monitored = any(
            _watches(m, namespace)
            and _selects(_get(m.props, "spec", "selector"), _k8s_labels(s.props))
            for s in fronting
            for m in monitors
        ) or any(
            _watches(p, namespace) and _selects(_get(p.props, "spec", "selector"), labels)
            for p in pod_monitors
        )
        if not monitored:
            report(
                _say(
                    name,
                    f"Deployment {_k8s_name(res.props) or res.name!r} is selected by no "
                    "ServiceMonitor (through a Service) or PodMonitor",
                    "turn on msops:monitoring.enabled, or add a ServiceMonitor whose selector "
                    "matches the labels of the Service in front of the Deployment.",
                ),
                res.urn,
            )


def _k8s_labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_get(props, "metadata", "labels"))


def _watches(monitor: PolicyResource, namespace: str) -> bool:
    """Whether a Service/PodMonitor looks in `namespace`: its own, unless namespaceSelector says."""
    selector = _mapping(_get(monitor.props, "spec", "namespaceSelector"))
    if selector.get("any") is True:
        return True
    names = _items(selector.get("matchNames"))
    if names:
        return namespace in names
    return _namespace(monitor.props) == namespace


# --- the policies -------------------------------------------------------------------------------

_STRINGS = {"type": "array", "items": {"type": "string"}}

ALL: list[Policy] = [
    ResourceValidationPolicy(
        name="images-pinned",
        description="Container images are pinned to an exact tag or a digest, never ':latest'.",
        validate=validate_images_pinned,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=_schema(
            forbiddenTags={
                **_STRINGS,
                "default": ["latest"],
                "description": "Tags that move and so do not count as pinned.",
            }
        ),
        remediation_steps="Pin an exact version (':1.2.3') or a digest ('@sha256:...').",
    ),
    ResourceValidationPolicy(
        name="no-privileged-containers",
        description="No container runs privileged or is given ALL or SYS_ADMIN capabilities.",
        validate=validate_no_privileged,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.CRITICAL,
        config_schema=_schema(
            forbiddenCapabilities={
                **_STRINGS,
                "default": ["ALL", "SYS_ADMIN"],
                "description": "Added capabilities that amount to a privileged container.",
            }
        ),
        remediation_steps="Drop privileged mode; drop ALL capabilities and add back narrow ones.",
    ),
    ResourceValidationPolicy(
        name="containers-non-root",
        description="Every container runs as an explicitly set non-root user.",
        validate=validate_non_root,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=_schema(),
        remediation_steps="Set the container user (docker/swarm) or runAsNonRoot and runAsUser "
        "(Kubernetes); waive a deliberate exception with a reason.",
    ),
    ResourceValidationPolicy(
        name="resource-limits",
        description="Every container has a CPU limit and a memory limit.",
        validate=validate_resource_limits,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.MEDIUM,
        config_schema=_schema(
            requireCpuLimit={
                "type": "boolean",
                "default": True,
                "description": "Require a CPU limit. Default: true.",
            },
            requireMemoryLimit={
                "type": "boolean",
                "default": True,
                "description": "Require a memory limit. Default: true.",
            },
        ),
        remediation_steps="Set resources.cpuLimit and memoryLimit on the service.",
    ),
    ResourceValidationPolicy(
        name="health-checks",
        description="Every long-running container has readiness and liveness checks "
        "(a health check on Docker and Swarm).",
        validate=validate_health_checks,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.MEDIUM,
        config_schema=_schema(
            requireLiveness={
                "type": "boolean",
                "default": True,
                "description": "Kubernetes: require a livenessProbe as well as a readinessProbe. "
                "Default: true.",
            }
        ),
        remediation_steps="Add a health check, or readiness and liveness probes.",
    ),
    StackValidationPolicy(
        name="prod-min-replicas",
        description="In a prod stack every service runs at least minReplicas replicas.",
        validate=validate_prod_min_replicas,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=_schema(
            minReplicas={
                "type": "integer",
                "minimum": 1,
                "default": 2,
                "description": "Fewest replicas (or HPA minReplicas) a prod service may run.",
            },
            prodStackPattern={
                "type": "string",
                "format": "regex",
                "default": "^prod",
                "description": "A stack whose name matches this regular expression is prod, "
                f"unless the stack has a {ENVIRONMENT_TAG} tag, which is matched instead.",
            },
        ),
        remediation_steps="Raise replicas (or autoscaling.min) to minReplicas.",
    ),
    StackValidationPolicy(
        name="pdb-required",
        description="Every Deployment that can run 2 or more replicas has a PodDisruptionBudget.",
        validate=validate_pdb_required,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.MEDIUM,
        config_schema=_schema(
            minReplicas={
                "type": "integer",
                "minimum": 1,
                "default": 2,
                "description": "A Deployment that can run this many replicas needs a PDB.",
            }
        ),
        remediation_steps="Add a PodDisruptionBudget selecting the Deployment's pods.",
    ),
    StackValidationPolicy(
        name="services-monitored",
        description="Every service is scraped by Prometheus: a ServiceMonitor or a scrape job.",
        validate=validate_services_monitored,
        enforcement_level=EnforcementLevel.ADVISORY,
        severity=Severity.MEDIUM,
        config_schema=_schema(),
        remediation_steps="Turn on msops:monitoring.enabled.",
    ),
    ResourceValidationPolicy(
        name="database-storage-retained",
        description="Database storage survives a delete: volumes are protected and "
        "StatefulSets retain their claims.",
        validate=validate_database_storage,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.CRITICAL,
        config_schema=_schema(),
        remediation_steps="Protect database volumes; keep whenDeleted: Retain on StatefulSets.",
    ),
    ResourceValidationPolicy(
        name="no-plaintext-secret-env",
        description="No environment variable named like a secret carries a plain value.",
        validate=validate_no_plaintext_secret_env,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=_schema(
            secretWords={
                **_STRINGS,
                "default": ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "APIKEY"],
                "description": "A variable is secret-looking when one of the words of its name "
                "(split at '_', '-', '.' and camelCase) is one of these.",
            }
        ),
        remediation_steps="Use secretEnv (a Pulumi secret), valueFrom.secretKeyRef, or *_FILE.",
    ),
    ResourceValidationPolicy(
        name="docker-ports-loopback",
        description="Docker containers publish ports on 127.0.0.1 unless their service is exposed.",
        validate=validate_docker_ports_loopback,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=_schema(
            allowedAddresses={
                **_STRINGS,
                "default": [],
                "description": "Host addresses besides loopback that ports may bind to.",
            }
        ),
        remediation_steps="Bind to 127.0.0.1 or mark the service exposed.",
    ),
    ResourceValidationPolicy(
        name="k8s-loadbalancer-exposed",
        description="A Kubernetes Service is of type LoadBalancer or NodePort only when its "
        "service is marked exposed.",
        validate=validate_k8s_loadbalancer_exposed,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=_schema(
            exposingTypes={
                **_STRINGS,
                "default": ["LoadBalancer", "NodePort"],
                "description": "Service types that make a service reachable from outside.",
            }
        ),
        remediation_steps="Use ClusterIP, or mark the service exposed.",
    ),
]

_BY_NAME: dict[str, Policy] = {p.name: p for p in ALL}


# --- running the pack on a synthesized graph ----------------------------------------------------


def _options(resource: Resource) -> PolicyResourceOptions:
    options = resource.options
    return PolicyResourceOptions(
        protect=bool(options.get("protect")),
        ignore_changes=list(options.get("ignore_changes") or []),
        delete_before_replace=options.get("delete_before_replace"),
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(options.get("additional_secret_outputs") or []),
        parent=resource.parent or None,
    )


def _provider(resource: Resource, by_urn: Mapping[str, Resource]) -> PolicyProviderResource | None:
    # A provider reference is "<urn>::<id>"; the URN itself contains "::" too.
    reference = str(resource.options.get("provider") or "")
    urn = reference.rsplit("::", 1)[0] if reference else ""
    provider = by_urn.get(urn)
    if provider is None:
        return None
    props = unknown_checking_proxy(copy.deepcopy(provider.inputs))
    return PolicyProviderResource(provider.type, props, provider.urn, provider.name)


def evaluate(
    graph: Graph,
    stack: str | None = None,
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
) -> list[Violation]:
    """Run every policy on a synthesized graph the way the engine would, honouring `config`.

    `config` is a pack config (see `resolve_config`); `stack` defaults to the graph's stack.
    Raises PolicyConfigError for a config that does not fit the policies' schemas.
    """
    resolved = resolve_config(config)
    tags = dict(stack_tags or {})
    by_urn = {r.urn: r for r in graph.resources}
    policy_resources = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(copy.deepcopy(r.inputs)),
            r.urn,
            r.name,
            _options(r),
            _provider(r, by_urn),
            None,
            [],
            {},
        )
        for r in graph.resources
    }
    for r in graph.resources:
        resource = policy_resources[r.urn]
        resource.parent = policy_resources.get(r.parent)
        resource.dependencies = [
            policy_resources[d] for d in r.options.get("depends_on") or [] if d in policy_resources
        ]
    violations: list[Violation] = []
    token = _STACK.set(stack if stack is not None else graph.stack)
    try:
        for policy in ALL:
            level, settings = resolved[policy.name]
            if level == "disabled":
                continue
            # As the engine does: a violation a remediation did not fix counts as mandatory.
            shown = "mandatory" if level == "remediate" else level
            if isinstance(policy, ResourceValidationPolicy):
                for res in policy_resources.values():
                    args = ResourceValidationArgs(
                        res.resource_type,
                        res.props,
                        res.urn,
                        res.name,
                        res.opts,
                        res.provider,
                        settings,
                        tags,
                    )
                    _run(policy, args, shown, res.urn, violations)
            elif isinstance(policy, StackValidationPolicy):
                stack_args = StackValidationArgs(list(policy_resources.values()), settings, tags)
                _run(policy, stack_args, shown, "", violations)
    finally:
        _STACK.reset(token)
    return violations


def _run(
    policy: ResourceValidationPolicy | StackValidationPolicy,
    args: Any,
    level: str,
    default_urn: str,
    out: list[Violation],
) -> None:
    def report(message: str, urn: str | None = None) -> None:
        # A resource policy's violation is always about the resource under validation.
        where = default_urn if default_urn else (urn or "")
        out.append(Violation(policy.name, level, where, message))

    try:
        result = policy.validate(args, report)
        if isawaitable(result):
            raise TypeError(f"policy {policy.name} is async; evaluate runs synchronous rules only")
    except UnknownValueError as exc:
        # The engine reports a rule that meets an unknown value as advisory, not as a pass.
        out.append(
            Violation(
                policy.name,
                "advisory",
                default_urn,
                f"can't run policy {policy.name!r} during preview: {exc.message}",
            )
        )


def mandatory(violations: Sequence[Violation]) -> list[Violation]:
    """The violations that block a deployment."""
    return [v for v in violations if v.level == "mandatory"]
