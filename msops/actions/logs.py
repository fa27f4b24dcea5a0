"""`msops logs`: the log lines of a service's replicas, merged, each with its replica's name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msops.actions import steps
from msops.actions.base import Configuration
from msops.errors import BadInput

if TYPE_CHECKING:
    from components.plan.model import StackPlan, Workload
    from msops.runtime import LogLine, LogQuery, Runtime


def stack_plan(cfg: Configuration, stack: str) -> StackPlan:
    """The plan of the validated stack file: names, replica counts and versions to look for."""
    from components import plan as plans

    return plans.build(steps.load(cfg, stack).spec, stack=stack)


def workload(plan: StackPlan, service: str) -> Workload:
    for candidate in plan.workloads:
        if candidate.name == service:
            return candidate
    known = ", ".join(w.name for w in plan.workloads)
    raise BadInput(f"service {service!r} is not in stack {plan.stack!r} (its services: {known})")


def open_runtime(cfg: Configuration, plan: StackPlan) -> Runtime:
    from msops import runtime

    return (cfg.runtime or runtime.open_runtime)(plan)


def since_seconds(text: str | None) -> float | None:
    """`--since 10m` in seconds; a value that is not a duration is bad input."""
    if text is None:
        return None
    from pydantic import TypeAdapter, ValidationError

    from components import spec

    try:
        seconds = spec.parse_duration(TypeAdapter(spec.Duration).validate_python(text))
    except ValidationError:
        seconds = 0
    if seconds <= 0:
        raise BadInput(
            f"--since {text!r} is not a duration; write it like '30s', '10m', '1h' or '1h30m'"
        )
    return seconds


@dataclass(frozen=True)
class LogsResult:
    """The connection that serves the lines, the replicas asked for, and the lines."""

    where: str
    replicas: tuple[str, ...]
    lines: Iterator[LogLine]


@dataclass
class Logs:
    """Read (or follow) the logs of one service of a stack, from the engine it runs on."""

    cfg: Configuration
    stack: str
    service: str
    query: LogQuery

    def run(self) -> LogsResult:
        plan = stack_plan(self.cfg, self.stack)
        chosen = workload(plan, self.service)
        engine = open_runtime(self.cfg, plan)
        try:
            replicas = tuple(engine.replicas(chosen))
            lines = engine.logs(chosen, self.query)
        except BaseException:
            engine.close()
            raise
        return LogsResult(engine.where, replicas, _closing(engine, lines))


def _closing(engine: Runtime, lines: Iterator[LogLine]) -> Iterator[LogLine]:
    try:
        yield from lines
    finally:
        engine.close()
