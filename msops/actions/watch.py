"""`msops status --watch`: ready and total replicas per service, until they converge."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msops.actions.base import Configuration
from msops.actions.logs import open_runtime, stack_plan

if TYPE_CHECKING:
    from msops.runtime import Readiness


@dataclass(frozen=True)
class WatchRound:
    """Every service once, `elapsed` seconds after the watch began."""

    services: tuple[Readiness, ...]
    elapsed: float

    @property
    def converged(self) -> bool:
        return all(s.converged for s in self.services)

    @property
    def failed(self) -> tuple[Readiness, ...]:
        return tuple(s for s in self.services if s.failed)


@dataclass(frozen=True)
class WatchResult:
    """The last round, and whether it converged; `where` is the connection that answered."""

    stack: str
    where: str
    readiness_source: str
    last: WatchRound
    timeout: float

    @property
    def converged(self) -> bool:
        return self.last.converged

    def data(self) -> dict[str, Any]:
        """What `msops status --watch --json` prints once the watch ends."""
        return {
            "stack": self.stack,
            "converged": self.converged,
            "elapsedSeconds": round(self.last.elapsed, 3),
            "timeoutSeconds": self.timeout,
            "readiness": self.readiness_source,
            "services": [s.data() for s in self.last.services],
        }


def _ignore(round_: WatchRound) -> None:
    return None


@dataclass
class Watch:
    """Ask the stack's engine about every service every `interval` seconds until all have
    converged (desired = ready = total, all at the pinned version), one will not (a rollout
    past its deadline), or `timeout` seconds pass. Reads the stack file and the engine only:
    no Pulumi."""

    cfg: Configuration
    stack: str
    timeout: float
    interval: float = 2.0
    on_round: Callable[[WatchRound], None] = _ignore
    clock: Callable[[], float] = time.monotonic
    wait: Callable[[float], None] = time.sleep

    def run(self) -> WatchResult:
        plan = stack_plan(self.cfg, self.stack)
        engine = open_runtime(self.cfg, plan)
        try:
            started = self.clock()
            deadline = started + self.timeout
            while True:
                services = tuple(engine.readiness(w) for w in plan.workloads)
                current = WatchRound(services, self.clock() - started)
                self.on_round(current)
                remaining = deadline - self.clock()
                if current.converged or current.failed or remaining <= 0:
                    return WatchResult(
                        self.stack, engine.where, engine.readiness_source, current, self.timeout
                    )
                self.wait(min(self.interval, remaining))
        finally:
            engine.close()
