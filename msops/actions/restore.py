"""Restore after a failed `msops up --atomic`: re-apply the newest good release that differs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration, DigestsPinned, ReleaseChosen
from msops.errors import BadInput, MsopsError, OperationFailed

# The release put back, the secrets set again for it, and its deployment.
RestoreResult = steps.ReleaseApplied


@dataclass
class Restore:
    """What `msops rollback --yes` does, without the policy gate: the release being replaced
    has just failed, and the one restored deployed before. Its images are pinned to the
    digests it ran, where it recorded them. Its schema rules too: a release
    that may have migrated its database up is left as it is unless the restored one's schema
    can be reached with a down migration and `migrate_down` allows it.

    `reason` (why the release failed) heads every error, so that a failed restore still says
    what went wrong first. Errors are OperationFailed (exit 1): nothing differs to restore, or
    restoring failed too.
    """

    cfg: Configuration
    stack: str
    reason: str
    # Run the down migrations a restore needs first (`up --atomic --migrate-down`).
    migrate_down: bool = False

    def run(self) -> RestoreResult:
        cfg, stack = self.cfg, self.stack
        history = steps.release_history(cfg, stack)
        current = releases.decode_config(cfg.gateway.current_config(stack))
        try:
            target = releases.rollback_target(history, current, None, stack)
        except BadInput:
            raise OperationFailed(
                f"{self.reason}\nno earlier successful release differs from this one, so "
                "nothing was restored"
            ) from None
        # The failed release may have migrated before it failed: the rollback's rules.
        schema = releases.plan_schema(history, target, current, migrate_down=self.migrate_down)
        refusal = releases.restore_refusal(schema, stack)
        if refusal is not None:
            raise OperationFailed(f"{self.reason}\n{refusal}")
        cfg.events(ReleaseChosen(stack=stack, release=target, restore=True))
        # Exactly the images it ran, as a rollback: its digests, where it recorded them.
        digests = releases.release_digests(history, cfg.gateway.outputs(stack))
        pins = releases.digest_pins(target, target.services, digests.get(target.number, {}))
        cfg.events(DigestsPinned(pins=tuple(pins)))
        pinned = dataclasses.replace(target, config=releases.pin_config(target.config, pins))
        try:
            edit = steps.stage_release(steps.document(cfg, stack), pinned, current)
            steps.show(cfg, edit)
            deployment = steps.write_and_deploy(
                cfg,
                edit,
                yes=True,
                message=releases.restore_message(
                    target.number, releases.failed_release(history, current)
                ),
                what=f"release {target.number}",
                history=history,
                first=(lambda: steps.migrate_down(cfg, stack, schema)) if schema.downs else None,
            )
        except MsopsError as exc:
            raise OperationFailed(
                f"{self.reason}\nrestoring release {target.number} failed too: {exc}"
            ) from None
        assert deployment is not None, "with yes=True an edit is always deployed"
        return RestoreResult(stack, target, edit.secrets, deployment)
