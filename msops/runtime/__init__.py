"""The running stack as its engine reports it: replicas, readiness and logs, on every backend.

`open_runtime(plan)` connects to what the stack's target config names (the Docker engine or
swarm manager of `msops:target.dockerHost`, else DOCKER_HOST, else the local socket; the
cluster of `msops:target.kubeContext`, else the kubeconfig's current context) and returns a
`Runtime`. `msops logs` and `msops status --watch` use nothing else, so neither needs Pulumi.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from msops.errors import OperationFailed

if TYPE_CHECKING:
    from components.plan.model import StackPlan, Workload


class Unreachable(OperationFailed):
    """The stack's engine did not answer; the message names the connection that was tried."""


@dataclass(frozen=True)
class Readiness:
    """One service as its engine reports it right now.

    `current`: replicas that run what the stack file pins (the version on docker and swarm,
    the newest ReplicaSet on kubernetes). `failed`: waiting longer will not help (a rollout
    past its deadline, a swarm update rolled back).
    """

    service: str
    desired: int
    ready: int
    total: int
    current: int
    state: str
    converged: bool
    failed: bool = False

    def data(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "desired": self.desired,
            "ready": self.ready,
            "total": self.total,
            "current": self.current,
            "state": self.state,
            "converged": self.converged,
        }


@dataclass(frozen=True)
class LogQuery:
    """Which log lines: of one replica (1-based) or all, how far back, how many, and whether
    to keep following."""

    replica: int | None = None
    since_seconds: float | None = None
    tail: int | None = None
    follow: bool = False


@dataclass(frozen=True)
class LogLine:
    """One line a replica wrote, with the time its engine recorded (None when it gave none)."""

    replica: str
    text: str
    time: datetime | None = None


class Runtime(Protocol):
    """What `logs` and `status --watch` ask of a running stack's engine."""

    # The connection, as messages name it: "the Docker engine at unix:///var/run/docker.sock
    # (the local socket: neither msops:target.dockerHost nor DOCKER_HOST is set)".
    where: str
    # What "ready" means on this backend, and what it cannot report.
    readiness_source: str

    def readiness(self, workload: Workload) -> Readiness:
        """The service's replicas now, against what the plan wants."""
        ...

    def replicas(self, workload: Workload) -> list[str]:
        """The names `logs` prefixes lines with, replica 1 first."""
        ...

    def logs(self, workload: Workload, query: LogQuery) -> Iterator[LogLine]:
        """Log lines of the service's replicas, merged: in time order, or as they come."""
        ...

    def close(self) -> None: ...


def open_runtime(plan: StackPlan, environ: Mapping[str, str] | None = None) -> Runtime:
    """Connect to the engine the stack runs on; Unreachable names the connection tried."""
    import os

    env = dict(os.environ if environ is None else environ)
    if plan.backend == "kubernetes":
        from msops.runtime.kubernetes import KubernetesRuntime

        return KubernetesRuntime.connect(plan, env)
    from msops.runtime import docker as engine

    if plan.backend == "swarm":
        return engine.SwarmRuntime.connect(plan, env)
    return engine.DockerRuntime.connect(plan, env)


class NoSuchReplica(OperationFailed):
    """--replica named a replica the service does not run."""

    exit_code = 2


def pick(names: list[str], replica: int | None, service: str) -> list[int]:
    """The indexes (0-based) of the replicas a query wants; a missing one is bad input."""
    if replica is None:
        return list(range(len(names)))
    if not 1 <= replica <= len(names):
        running = f"1-{len(names)}" if names else "none"
        raise NoSuchReplica(
            f"service {service!r} has no replica {replica}; it runs replicas {running}"
        )
    return [replica - 1]


# --- log lines ------------------------------------------------------------------------------------

# RFC 3339 with up to nanoseconds, as Docker and the kubelet write `timestamps=true` lines.
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d) ?")


def split_stamp(line: str) -> tuple[datetime | None, str]:
    """A `timestamps=true` line as its time and its text."""
    match = _STAMP.match(line)
    if not match:
        return None, line
    whole, fraction, zone = match.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone == "Z" else zone
    try:
        when = datetime.fromisoformat(f"{whole}.{micros}{offset}")
    except ValueError:
        return None, line
    return when.astimezone(UTC), line[match.end() :]


def lines_of(chunks: Iterable[bytes | str]) -> Iterator[str]:
    """Whole lines from a byte stream whose chunks may end mid-line."""
    pending = ""
    for chunk in chunks:
        text = chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        pending += text
        *whole, pending = pending.split("\n")
        for line in whole:
            yield line.rstrip("\r")
    if pending:
        yield pending.rstrip("\r")


def in_time_order(groups: Iterable[Iterable[LogLine]]) -> list[LogLine]:
    """Every line of every replica, oldest first; lines without a time keep their place last."""
    everything = [line for group in groups for line in group]
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(everything, key=lambda line: line.time or floor)


_DONE = object()


def as_they_come(streams: list[Iterator[LogLine]]) -> Iterator[LogLine]:
    """The lines of several endless streams, interleaved as they arrive (`--follow`).

    One reader thread per stream; it ends when every stream has ended (every replica
    stopped). The threads are daemons: Ctrl-C ends the command without waiting for them.
    """
    lines: queue.Queue[Any] = queue.Queue(maxsize=1000)

    def read(stream: Iterator[LogLine]) -> None:
        try:
            for line in stream:
                lines.put(line)
        except Exception as exc:  # a dropped connection ends this stream, not the others
            lines.put(LogLine(replica="msops", text=f"log stream ended: {exc}"))
        finally:
            lines.put(_DONE)

    for stream in streams:
        threading.Thread(target=read, args=(stream,), daemon=True).start()
    open_streams = len(streams)
    while open_streams:
        item = lines.get()
        if item is _DONE:
            open_streams -= 1
            continue
        yield item
