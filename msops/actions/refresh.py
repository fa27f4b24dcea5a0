"""`msops refresh`: take what changed outside msops into the stack's state, after a look."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msops.actions import steps
from msops.actions.base import Configuration, DriftFound
from msops.actions.drift import engine_run, preview_drift
from msops.errors import OperationFailed

if TYPE_CHECKING:
    from msops.drift import DriftReport


@dataclass(frozen=True)
class RefreshResult:
    """The drift the preview showed (None with --yes, which skips it) and the applied counts."""

    stack: str
    preview: DriftReport | None
    changes: dict[str, int]


@dataclass
class Refresh:
    """Refresh the stack's state from its resources. Without --yes: show the drift, then ask.

    Off a terminal without --yes it refuses before reaching the engine, as `up` does.
    """

    cfg: Configuration
    stack: str
    yes: bool = False

    def run(self) -> RefreshResult:
        cfg, stack = self.cfg, self.stack
        steps.document(cfg, stack)
        steps.require_terminal(cfg, self.yes)
        preview = None
        if not self.yes:
            preview = preview_drift(cfg, stack)
            cfg.events(DriftFound(report=preview))
            if not cfg.confirm.ask(f"Refresh the state of stack {stack!r} from its resources?"):
                raise OperationFailed("cancelled; the state was left as it was")
        refresh = functools.partial(cfg.gateway.refresh, message=f"msops refresh {stack}")
        run = engine_run(cfg, stack, f"Refreshing {stack}", refresh)
        return RefreshResult(stack=stack, preview=preview, changes=dict(run.changes))
