"""Docker and Swarm through the Docker Engine API (the `docker` SDK): replicas, health, logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import docker
import docker.errors
import requests

from components.vocabulary import (
    LABEL_REPLICA,
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_STACK,
    LABEL_VERSION,
    ROLE_REPLICA,
)
from msops import runtime
from msops.runtime import LogLine, LogQuery, Readiness, Unreachable

if TYPE_CHECKING:
    from components.plan.model import StackPlan, Workload

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# A Swarm update that is still moving, or that Swarm stopped or reversed.
_UPDATING = ("updating", "rollback_started")
_STUCK = ("paused", "rollback_paused", "rollback_completed")


@dataclass(frozen=True)
class Endpoint:
    """The daemon to talk to, as the deploy reaches it, and where that choice came from."""

    url: str | None
    source: str

    @property
    def shown(self) -> str:
        return self.url or DEFAULT_SOCKET


def endpoint(plan: StackPlan, environ: Mapping[str, str]) -> Endpoint:
    """msops:target.dockerHost, else DOCKER_HOST, else the local socket (as the provider)."""
    if plan.target.docker_host:
        return Endpoint(plan.target.docker_host, "msops:target.dockerHost")
    if environ.get("DOCKER_HOST"):
        return Endpoint(environ["DOCKER_HOST"], "DOCKER_HOST")
    return Endpoint(
        None, "the local socket: neither msops:target.dockerHost nor DOCKER_HOST is set"
    )


def connect(plan: StackPlan, environ: Mapping[str, str]) -> tuple[docker.DockerClient, str]:
    """A client that answered a ping, and the connection as messages name it."""
    point = endpoint(plan, environ)
    where = f"the Docker engine at {point.shown} ({point.source})"
    env = dict(environ)
    if point.url:
        env["DOCKER_HOST"] = point.url
    try:
        # from_env also honours DOCKER_TLS_VERIFY and DOCKER_CERT_PATH; ssh:// goes through
        # the ssh binary, as the Docker CLI and the provider do.
        client = docker.from_env(
            environment=env, use_ssh_client=point.shown.startswith("ssh://"), timeout=30
        )
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise Unreachable(
            f"cannot reach {where}: {_reason(exc)}. Start Docker there, or point "
            "msops:target.dockerHost (or DOCKER_HOST) at the engine the stack runs on"
        ) from None
    return client, where


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _engine_error(where: str, exc: BaseException) -> Unreachable:
    return Unreachable(f"{where} failed to answer: {_reason(exc)}")


class _EngineRuntime:
    """A stack on one Docker engine or swarm manager, through the Engine API."""

    def __init__(self, plan: StackPlan, client: docker.DockerClient, where: str) -> None:
        self.plan = plan
        self.client = client
        self.where = where

    @classmethod
    def connect(cls, plan: StackPlan, environ: Mapping[str, str]) -> Self:
        client, where = connect(plan, environ)
        return cls(plan, client, where)

    def close(self) -> None:
        self.client.close()


class DockerRuntime(_EngineRuntime):
    """A docker stack: each replica is a container labelled with its stack, service and index."""

    readiness_source = (
        "docker: ready = running and healthy by the Docker health check on the readiness "
        "path; Docker has no rollout object, so a rollout shows as old and new replicas side "
        "by side until the old ones are removed"
    )

    def containers(self, workload: Workload) -> list[Any]:
        """The service's replica containers, by replica index, the newest last within one."""
        filters = {
            "label": [
                f"{LABEL_STACK}={self.plan.stack}",
                f"{LABEL_SERVICE}={workload.name}",
                f"{LABEL_ROLE}={ROLE_REPLICA}",
            ]
        }
        try:
            found = self.client.containers.list(all=True, filters=filters)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise _engine_error(self.where, exc) from None

        def order(container: Any) -> tuple[int, str]:
            index = container.labels.get(LABEL_REPLICA, "0")
            return (int(index) if index.isdigit() else 0, container.attrs.get("Created", ""))

        return sorted(found, key=order)

    def replicas(self, workload: Workload) -> list[str]:
        return [_replica_name(workload, c) for c in self.containers(workload)]

    def readiness(self, workload: Workload) -> Readiness:
        containers = self.containers(workload)
        states = [c.attrs.get("State") or {} for c in containers]
        running = [s for s in states if s.get("Running")]
        # A container without a health check counts as ready once it runs.
        ready = sum(1 for s in running if _health(s) in ("healthy", None))
        current = sum(1 for c in containers if c.labels.get(LABEL_VERSION) == workload.version)
        desired, total = workload.replicas, len(containers)
        converged = ready == desired == total == current
        return Readiness(
            service=workload.name,
            desired=desired,
            ready=ready,
            total=total,
            current=current,
            state=_state(desired, ready, total, current, workload.version),
            converged=converged,
        )

    def logs(self, workload: Workload, query: LogQuery) -> Iterator[LogLine]:
        containers = self.containers(workload)
        names = [_replica_name(workload, c) for c in containers]
        chosen = [
            (names[i], containers[i]) for i in runtime.pick(names, query.replica, workload.name)
        ]
        options = _log_options(query)
        if query.follow:
            return runtime.as_they_come([self._stream(name, c, options) for name, c in chosen])
        return iter(runtime.in_time_order(self._lines(name, c, options) for name, c in chosen))

    def _lines(self, name: str, container: Any, options: dict[str, Any]) -> list[LogLine]:
        try:
            data = container.logs(stdout=True, stderr=True, timestamps=True, **options)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise _engine_error(self.where, exc) from None
        return [_line(name, text) for text in runtime.lines_of([data])]

    def _stream(self, name: str, container: Any, options: dict[str, Any]) -> Iterator[LogLine]:
        chunks = container.logs(
            stdout=True, stderr=True, timestamps=True, stream=True, follow=True, **options
        )
        for text in runtime.lines_of(chunks):
            yield _line(name, text)


def _health(state: Mapping[str, Any]) -> str | None:
    return (state.get("Health") or {}).get("Status")


def _image(spec: Mapping[str, Any] | None) -> str | None:
    return ((spec or {}).get("ContainerSpec") or {}).get("Image")


def _replica_name(workload: Workload, container: Any) -> str:
    """`web-1`, the replica's REPLICA_ID, as compose names its containers' lines."""
    return f"{workload.name}-{container.labels.get(LABEL_REPLICA, '?')}"


def _line(replica: str, text: str) -> LogLine:
    when, rest = runtime.split_stamp(text)
    return LogLine(replica=replica, text=rest, time=when)


def _log_options(query: LogQuery) -> dict[str, Any]:
    options: dict[str, Any] = {"tail": query.tail if query.tail is not None else "all"}
    if query.since_seconds is not None:
        options["since"] = max(1, int(time.time() - query.since_seconds))
    return options


def _state(desired: int, ready: int, total: int, current: int, version: str) -> str:
    if total == 0 and desired > 0:
        return "no replicas running (not deployed?)"
    if current < total:
        return f"rolling out: {current} of {total} at {version}"
    if total > desired:
        return f"scaling down: {total - desired} extra replica(s)"
    if ready < desired:
        return f"waiting: {ready} of {desired} ready"
    return "ready"


class SwarmRuntime(_EngineRuntime):
    """A swarm stack: each service is a replicated Swarm service `<stack>_<name>`."""

    readiness_source = (
        "swarm: ready = task running (Swarm starts a task as running only once its health "
        "check passes); the rollout is the service's UpdateStatus. Swarm reports no "
        "readiness apart from health"
    )

    def service_name(self, workload: Workload) -> str:
        from components.backends.swarm.translate import swarm_name

        return swarm_name(self.plan, workload.name)

    def _inspect(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.api.inspect_service(name))
        except docker.errors.NotFound:
            return None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise _engine_error(self.where, exc) from None

    def _tasks(self, name: str, **filters: str) -> list[dict[str, Any]]:
        try:
            return list(self.client.api.tasks(filters={"service": name, **filters}))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise _engine_error(self.where, exc) from None

    def replicas(self, workload: Workload) -> list[str]:
        slots = sorted({t.get("Slot", 0) for t in self._tasks(self.service_name(workload))})
        return [f"{workload.name}.{slot}" for slot in slots]

    def readiness(self, workload: Workload) -> Readiness:
        name = self.service_name(workload)
        service = self._inspect(name)
        desired = workload.replicas
        if service is None:
            return Readiness(workload.name, desired, 0, 0, 0, f"no service {name}", False)
        spec = service.get("Spec") or {}
        image = _image(spec.get("TaskTemplate"))
        tasks = self._tasks(name, **{"desired-state": "running"})
        ready = sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "running")
        current = sum(1 for t in tasks if _image(t.get("Spec")) == image)
        pinned = (spec.get("Labels") or {}).get(LABEL_VERSION) == workload.version
        update = (service.get("UpdateStatus") or {}).get("State") or ""
        state = _swarm_state(update, pinned, workload.version, desired, ready, len(tasks))
        settled = update not in (*_UPDATING, *_STUCK)
        converged = pinned and settled and ready == desired == len(tasks) == current
        return Readiness(
            service=workload.name,
            desired=desired,
            ready=ready,
            total=len(tasks),
            current=current if pinned else 0,
            state=state,
            converged=converged,
            failed=update in _STUCK and pinned,
        )

    def logs(self, workload: Workload, query: LogQuery) -> Iterator[LogLine]:
        name = self.service_name(workload)
        slots = _Slots(lambda: self._tasks(name))
        names = [f"{workload.name}.{s}" for s in slots.known()]
        wanted = None
        if query.replica is not None:
            wanted = {names[i] for i in runtime.pick(names, query.replica, workload.name)}
        options = _log_options(query)
        if "since" not in options:
            options["since"] = 0
        try:
            chunks = self.client.api.service_logs(
                name,
                details=True,
                stdout=True,
                stderr=True,
                timestamps=True,
                follow=query.follow,
                **options,
            )
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise _engine_error(self.where, exc) from None
        lines = _swarm_lines(workload.name, runtime.lines_of(chunks), slots, wanted)
        return lines if query.follow else iter(runtime.in_time_order([lines]))


class _Slots:
    """Task ID → slot, listed again when a line names a task started since (a rollout)."""

    def __init__(self, list_tasks: Callable[[], list[dict[str, Any]]]) -> None:
        self._list = list_tasks
        self._slots: dict[str, int] = {}
        self._reload()

    def _reload(self) -> None:
        self._slots = {t["ID"]: int(t.get("Slot") or 0) for t in self._list()}

    def known(self) -> list[int]:
        return sorted(set(self._slots.values()))

    def __call__(self, task_id: str) -> int | None:
        if task_id and task_id not in self._slots:
            self._reload()
        return self._slots.get(task_id)


def _swarm_lines(
    service: str, lines: Iterator[str], slots: _Slots, wanted: set[str] | None
) -> Iterator[LogLine]:
    """Service log lines (`<time> <attrs> <text>`, with details on) by task slot."""
    for raw in lines:
        when, rest = runtime.split_stamp(raw)
        attrs, _, text = rest.partition(" ")
        details = dict(part.split("=", 1) for part in attrs.split(",") if "=" in part)
        slot = slots(details.get("com.docker.swarm.task.id", ""))
        replica = f"{service}.{'?' if slot is None else slot}"
        if wanted is None or replica in wanted:
            yield LogLine(replica=replica, text=text, time=when)


def _swarm_state(
    update: str, pinned: bool, version: str, desired: int, ready: int, total: int
) -> str:
    if not pinned:
        return f"the service does not run {version}, which the stack file pins (not deployed?)"
    if update in _STUCK:
        return f"the last update {update.replace('_', ' ')}"
    if update in _UPDATING:
        return f"rolling out ({update.replace('_', ' ')})"
    if total > desired:
        return f"scaling down: {total - desired} extra task(s)"
    if ready < desired:
        return f"waiting: {ready} of {desired} running"
    return "ready"
