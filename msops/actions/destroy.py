"""`msops destroy`: delete a stack's resources, keeping its data, and say what was kept."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from msops import lifecycle
from msops.actions import steps
from msops.actions.base import Configuration, PlanShown, ResourcesKept
from msops.actions.drift import engine_run
from msops.errors import OperationFailed


@dataclass(frozen=True)
class DestroyResult:
    """What stayed (protected or retained resources), and the destroy's counts by operation."""

    stack: str
    kept: tuple[lifecycle.Kept, ...]
    changes: dict[str, int]


@dataclass
class Destroy:
    """Destroy every resource of the stack except the protected ones, which keep their state.

    What stays is read from the offline synth of the stack file (the resources it registers
    with `protect` or `retain_on_delete`), so the stack file must validate. Without --yes: the
    engine's destroy preview, then a question; off a terminal it refuses before the engine.
    """

    cfg: Configuration
    stack: str
    yes: bool = False

    def run(self) -> DestroyResult:
        from components import plan as plans

        cfg, stack = self.cfg, self.stack
        edit = steps.load(cfg, stack)
        with cfg.busy(f"Synthesizing {stack} offline"):
            graph = steps.synth(edit.values, stack)
        kept = tuple(lifecycle.kept_by_destroy(graph, plans.build(edit.spec, stack=stack)))
        cfg.events(ResourcesKept(stack=stack, kept=kept))
        steps.require_terminal(cfg, self.yes)
        if not self.yes:
            preview = engine_run(
                cfg, stack, f"Previewing the destroy of {stack}", cfg.gateway.preview_destroy
            )
            cfg.events(PlanShown(stack=stack, changes=dict(preview.changes)))
            question = f"Destroy stack {stack!r}, keeping the {len(kept)} resource(s) listed?"
            if not cfg.confirm.ask(question):
                raise OperationFailed("cancelled; nothing was destroyed")
        destroy = functools.partial(cfg.gateway.destroy, message=f"msops destroy {stack}")
        run = engine_run(cfg, stack, f"Destroying {stack}", destroy)
        return DestroyResult(stack=stack, kept=kept, changes=dict(run.changes))
