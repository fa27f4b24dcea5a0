"""`msops rollback`: write an earlier release's config back into the stack file and deploy it."""

from __future__ import annotations

from dataclasses import dataclass

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration, ReleaseChosen
from msops.errors import BadInput

# The release re-applied, the secrets set again for it, and its deployment.
RollbackResult = steps.ReleaseApplied


@dataclass
class Rollback:
    """Re-apply release `to`, or by default the newest successful one that differs.

    The release's config is validated against today's schema and checked by the policy pack
    before anything is written; without `yes` a person previews and confirms.
    """

    cfg: Configuration
    stack: str
    to: int | None = None
    yes: bool = False

    def run(self) -> RollbackResult:
        cfg, stack = self.cfg, self.stack
        doc = steps.document(cfg, stack)
        history = steps.release_history(cfg, stack)
        if not history:
            raise BadInput(
                f"stack {stack!r} has no releases yet; deploy it first with `msops up {stack}`"
            )
        current = releases.decode_config(cfg.gateway.current_config(stack))
        target = releases.rollback_target(history, current, self.to, stack)
        cfg.events(ReleaseChosen(stack=stack, release=target, restore=False))
        edit = steps.stage_release(doc, target, current)
        deployment = steps.apply_edit(
            cfg,
            edit,
            yes=self.yes,
            message=f"msops rollback to release {target.number}",
            what=f"release {target.number}",
            history=history,
        )
        assert deployment is not None, "a rollback is confirmed, refused or cancelled"
        return RollbackResult(stack, target, edit.secrets, deployment)
