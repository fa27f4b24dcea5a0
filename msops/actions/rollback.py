"""`msops rollback`: write an earlier release's config back into the stack file and deploy it."""

from __future__ import annotations

from dataclasses import dataclass

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration, ReleaseChosen, SchemaPlanned
from msops.errors import BadInput, SchemaRefused

# The release re-applied, the secrets set again for it, and its deployment.
RollbackResult = steps.ReleaseApplied


@dataclass
class Rollback:
    """Re-apply release `to`, or by default the newest successful one that differs.

    The release's config is validated against today's schema and checked by the policy pack
    before anything is written; without `yes` a person previews and confirms. A release that
    needs an older database schema than the one its services' databases are at is refused
    before anything is written (`releases.plan_schema`), unless `migrate_down` runs the
    down migrations first or `ignore_schema` accepts the risk.
    """

    cfg: Configuration
    stack: str
    to: int | None = None
    yes: bool = False
    migrate_down: bool = False
    ignore_schema: bool = False

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
        schema = releases.plan_schema(
            history,
            target,
            current,
            migrate_down=self.migrate_down,
            ignore_schema=self.ignore_schema,
        )
        refusal = releases.schema_refusal(schema, stack)
        if refusal is not None:
            raise SchemaRefused(refusal)
        cfg.events(ReleaseChosen(stack=stack, release=target, restore=False))
        if schema.older or schema.undeclared:
            cfg.events(SchemaPlanned(plan=schema))
        edit = steps.stage_release(doc, target, current)
        downs = ", ".join(f"{s.service} to schema {s.target}" for s in schema.downs)
        deployment = steps.apply_edit(
            cfg,
            edit,
            yes=self.yes,
            message=f"msops rollback to release {target.number}",
            what=f"release {target.number}" + (f" (migrating {downs} first)" if downs else ""),
            history=history,
            first=(lambda: steps.migrate_down(cfg, stack, schema)) if schema.downs else None,
        )
        assert deployment is not None, "a rollback is confirmed, refused or cancelled"
        return RollbackResult(stack, target, edit.secrets, deployment)
