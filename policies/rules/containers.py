"""One view of a container on every backend: a docker container, a swarm service's task, a pod's.

The container policies read `Container`, never the provider's props, so each of them works the
same on docker, swarm and Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from components.vocabulary import LABEL_SECRET_ENV, SECRET_MASK

from .view import (
    DOCKER_CONTAINER,
    DOCKER_SERVICE,
    LONG_RUNNING,
    POD_TEMPLATE_PATHS,
    docker_labels,
    get,
    is_list,
    items,
    known_items,
    mapping,
    number,
    peek,
    pod_template,
    strings,
)


@dataclass(frozen=True)
class Env:
    name: str
    value: Any
    # Set by reference (Kubernetes valueFrom), so the manifest never holds the value.
    by_reference: bool = False
    # A Pulumi secret the resource names as such (LABEL_SECRET_ENV): encrypted in state, though
    # a policy under the engine sees it decrypted.
    secret: bool = False


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
class Container:
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

    def get(self, field: str) -> Any:
        value = getattr(self, field)
        if isinstance(value, _Unknown):
            raise value.error
        return value


def containers(resource_type: str, props: Mapping[str, Any]) -> list[Container]:
    """The containers a resource runs; [] for a resource that runs none.

    Not its options: a property declared secret (additionalSecretOutputs) is about state,
    and must not hide the variables in it from the policies.
    """
    if resource_type == DOCKER_CONTAINER:
        return [_docker_container(props)]
    if resource_type == DOCKER_SERVICE:
        return [_swarm_container(props)]
    if resource_type in POD_TEMPLATE_PATHS:
        return _k8s_containers(resource_type, props)
    return []


# --- docker and swarm -----------------------------------------------------------------------------


def _secret_names(props: Mapping[str, Any]) -> frozenset[str]:
    """The variables a docker container names as Pulumi secrets (LABEL_SECRET_ENV)."""
    labels = docker_labels(props.get("labels"))
    return frozenset(n for n in labels.get(LABEL_SECRET_ENV, "").split(",") if n)


def _docker_env(envs: Any, secret_names: frozenset[str]) -> tuple[Env, ...] | None:
    if envs == SECRET_MASK:
        return None
    out = []
    for index in range(len(envs) if is_list(envs) else 0):
        item = peek(envs, index)
        # A secret item is masked whole under `msops check` ("[secret]", no name): skipped.
        if isinstance(item, str) and item != SECRET_MASK:
            name, _, value = item.partition("=")
            out.append(Env(name, value, secret=name in secret_names))
    return tuple(out)


def _docker_cpu(props: Mapping[str, Any]) -> Any:
    cpus = props.get("cpus")
    if number(cpus) is None and (number(props.get("cpuQuota")) or 0) > 0:
        return props.get("cpuQuota")
    return cpus


def _docker_container(props: Mapping[str, Any]) -> Container:
    health = _lazy(lambda: _health_tests(get(props, "healthcheck", "tests")))
    if peek(props, "mustRun") is False:
        # Runs to completion (a migration), as a Kubernetes Job does: nothing to probe.
        health = None
    return Container(
        backend="docker",
        where="the container",
        image=_lazy(lambda: props.get("image")),
        user=_lazy(lambda: props.get("user")),
        privileged=_lazy(lambda: props.get("privileged") is True),
        cap_adds=_lazy(lambda: strings(get(props, "capabilities", "adds"))),
        cpu_limit=_lazy(lambda: _docker_cpu(props)),
        memory_limit=_lazy(lambda: props.get("memory")),
        readiness=health,
        liveness=health,
        env=_lazy(lambda: _docker_env(props.get("envs"), _secret_names(props))),
    )


def _health_tests(tests: Any) -> bool:
    found = strings(tests)
    return bool(found) and found[0].upper() != "NONE"


def _env_map(env_map: Any) -> tuple[Env, ...] | None:
    if env_map == SECRET_MASK:
        return None
    return tuple(Env(k, v) for k, v in known_items(env_map))


def _swarm_container(props: Mapping[str, Any]) -> Container:
    spec = mapping(get(props, "taskSpec", "containerSpec"))
    limits = mapping(get(props, "taskSpec", "resources", "limits"))
    health = _lazy(lambda: _health_tests(get(spec, "healthcheck", "tests")))
    return Container(
        backend="swarm",
        where="taskSpec.containerSpec",
        image=_lazy(lambda: spec.get("image")),
        user=_lazy(lambda: spec.get("user")),
        # Swarm has no privileged mode; capabilities are the way to get the same power.
        privileged=False,
        cap_adds=_lazy(lambda: strings(spec.get("capAdds"))),
        cpu_limit=_lazy(lambda: limits.get("nanoCpus")),
        memory_limit=_lazy(lambda: limits.get("memoryBytes")),
        readiness=health,
        liveness=health,
        env=_lazy(lambda: _env_map(spec.get("env"))),
    )


# --- Kubernetes -----------------------------------------------------------------------------------


def _k8s_env(item: Any) -> tuple[Env, ...]:
    return tuple(
        Env(
            str(get(e, "name")),
            peek(e, "value"),
            by_reference=get(e, "valueFrom") is not None,
        )
        for e in items(get(item, "env"))
    )


def _k8s_containers(resource_type: str, props: Mapping[str, Any]) -> list[Container]:
    pod = mapping(get(pod_template(resource_type, props), "spec"))
    pod_security = mapping(pod.get("securityContext"))
    probed = resource_type in LONG_RUNNING
    return [
        _k8s_container(item, key == "initContainers", pod_security, probed)
        for key in ("initContainers", "containers")
        for item in items(pod.get(key))
    ]


def _k8s_container(
    item: Any, init: bool, pod_security: Mapping[str, Any], probed: bool
) -> Container:
    security = mapping(get(item, "securityContext"))
    limits = mapping(get(item, "resources", "limits"))
    main = probed and not init
    return Container(
        backend="kubernetes",
        where=f"{'init container' if init else 'container'} {peek(item, 'name')!r}",
        image=_lazy(lambda: get(item, "image")),
        run_as_user=_lazy(lambda: security.get("runAsUser", pod_security.get("runAsUser"))),
        run_as_non_root=_lazy(
            lambda: security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
        ),
        privileged=_lazy(lambda: security.get("privileged") is True),
        cap_adds=_lazy(lambda: strings(get(security, "capabilities", "add"))),
        cpu_limit=_lazy(lambda: limits.get("cpu")),
        memory_limit=_lazy(lambda: limits.get("memory")),
        readiness=(get(item, "readinessProbe") is not None) if main else None,
        liveness=(get(item, "livenessProbe") is not None) if main else None,
        env=_lazy(lambda: _k8s_env(item)),
    )
