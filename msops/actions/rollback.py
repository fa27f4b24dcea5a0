"""`msops rollback`: write an earlier release's config (of the stack, or of some services) back
into the stack file and deploy it; or, as a dry run, show what that would change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msops import releases, stackfiles
from msops.actions import steps
from msops.actions.base import (
    Configuration,
    DigestsPinned,
    FileReverted,
    ReleaseChosen,
    SchemaPlanned,
    ServicesStaged,
)
from msops.errors import BadInput, ConfigInvalid, ReleaseInvalid, SchemaRefused

if TYPE_CHECKING:
    from msops.actions.steps import Deployment, Edit
    from msops.releases import DigestPin, Release, SchemaPlan
    from msops.stackfiles import StackDocument


@dataclass(frozen=True)
class RollbackResult:
    """The release re-applied (the first service's, per service), the secrets set again for
    it, and its deployment (None: a dry run, which wrote nothing)."""

    stack: str
    release: Release
    secrets: tuple[str, ...]
    deployment: Deployment | None
    # Per service: the release each one went back to ({} for a whole-stack rollback).
    targets: Mapping[str, Release] = field(default_factory=dict)
    pins: tuple[DigestPin, ...] = ()
    # What the engine planned (a dry run), by operation.
    preview: Mapping[str, int] | None = None

    @property
    def dry_run(self) -> bool:
        return self.deployment is None


@dataclass(frozen=True)
class _Staged:
    """A rollback worked out and written into the document (not the file)."""

    edit: Edit
    plans: tuple[SchemaPlan, ...]
    pins: tuple[DigestPin, ...]
    targets: Mapping[str, Release]
    message: str
    what: str


@dataclass
class Rollback:
    """Re-apply release `to`, or by default the newest successful one that differs.

    With `services`, only those service blocks (and the msops:secrets entries only they use)
    are written, each from its own release: `to`, or the newest successful one in which that
    service differs from the stack file; every other line of the file stays as it is.

    The release's config is validated against today's schema and checked by the policy pack
    before anything is written. Each service's image is pinned to the digest the release ran
    where it recorded one. A release that needs an older database schema than the one its
    services' databases are at is refused before anything is written
    (`releases.plan_schema`), unless `migrate_down` runs the down migrations first or
    `ignore_schema` accepts the risk. `dry_run` (and the default when nobody can confirm and
    `yes` is not given) shows the diff and the engine's preview, and writes nothing.
    """

    cfg: Configuration
    stack: str
    to: int | None = None
    yes: bool = False
    migrate_down: bool = False
    ignore_schema: bool = False
    services: tuple[str, ...] = ()
    dry_run: bool = False

    def run(self) -> RollbackResult:
        cfg, stack = self.cfg, self.stack
        doc = steps.document(cfg, stack)
        history = steps.release_history(cfg, stack)
        if not history:
            raise BadInput(
                f"stack {stack!r} has no releases yet; deploy it first with `msops up {stack}`"
            )
        current = releases.decode_config(cfg.gateway.current_config(stack))
        digests = releases.release_digests(history, cfg.gateway.outputs(stack))
        if self.services:
            staged = self._services(doc, history, current, digests)
        else:
            staged = self._whole(doc, history, current, digests)
        for plan in staged.plans:
            refusal = releases.schema_refusal(plan, stack)
            if refusal is not None:
                raise SchemaRefused(refusal)
        first_target = next(iter(staged.targets.values()), None) or staged.plans[0].target
        if self.services:
            for plan in staged.plans:
                names = tuple(n for n, t in staged.targets.items() if t is plan.target)
                cfg.events(ReleaseChosen(stack, plan.target, restore=False, services=names))
        else:
            cfg.events(ReleaseChosen(stack=stack, release=first_target, restore=False))
        for plan in staged.plans:
            if plan.older or plan.undeclared:
                cfg.events(SchemaPlanned(plan=plan))
        cfg.events(DigestsPinned(pins=staged.pins))
        targets = staged.targets if self.services else {}
        if self.dry_run or (not self.yes and not cfg.confirm.can_ask()):
            planned = self._preview(staged.edit)
            return RollbackResult(
                stack, first_target, staged.edit.secrets, None, targets, staged.pins, planned
            )
        downs = [p for p in staged.plans if p.downs]

        def migrate() -> None:
            for plan in downs:
                steps.migrate_down(cfg, stack, plan)

        deployment = steps.apply_edit(
            cfg,
            staged.edit,
            yes=self.yes,
            message=staged.message,
            what=staged.what,
            history=history,
            first=migrate if downs else None,
        )
        assert deployment is not None, "a rollback is confirmed, refused or cancelled"
        return RollbackResult(
            stack, first_target, staged.edit.secrets, deployment, targets, staged.pins
        )

    def _whole(
        self,
        doc: StackDocument,
        history: list[Release],
        current: Mapping[str, Any],
        digests: Mapping[int, Mapping[str, str]],
    ) -> _Staged:
        target = releases.rollback_target(history, current, self.to, self.stack)
        plan = self._plan(history, target, current, None)
        pins = releases.digest_pins(target, target.services, digests.get(target.number, {}))
        config = releases.pin_config(target.config, pins)
        writes = doc.apply_config(config, target.secret_keys, current)
        edit = _validated(doc, writes, {}, target)
        downs = ", ".join(f"{s.service} to schema {s.target}" for s in plan.downs)
        return _Staged(
            edit=edit,
            plans=(plan,),
            pins=tuple(pins),
            targets={name: target for name in target.services},
            message=f"msops rollback to release {target.number}",
            what=f"release {target.number}" + (f" (migrating {downs} first)" if downs else ""),
        )

    def _services(
        self,
        doc: StackDocument,
        history: list[Release],
        current: Mapping[str, Any],
        digests: Mapping[int, Mapping[str, str]],
    ) -> _Staged:
        names = list(dict.fromkeys(self.services))
        targets = {
            s: releases.service_target(history, current, s, self.to, self.stack) for s in names
        }
        pins, blocks = [], {}
        for name, target in targets.items():
            (pin,) = releases.digest_pins(target, [name], digests.get(target.number, {}))
            blocks[name] = {**target.services[name], "image": pin.image}
            pins.append(pin)
        secrets, secret_keys = _own_secrets(doc, blocks, targets)
        writes = doc.apply_services(blocks, secret_keys, current, secrets)
        edit = _validated(doc, writes, targets, next(iter(targets.values())))
        by_release: dict[int, list[str]] = {}
        for name, target in targets.items():
            by_release.setdefault(target.number, []).append(name)
        plans = tuple(
            self._plan(history, history[number - 1], current, set(group))
            for number, group in by_release.items()
        )
        moves = ", ".join(f"{s} to release {t.number}" for s, t in targets.items())
        return _Staged(
            edit=edit,
            plans=plans,
            pins=tuple(pins),
            targets=targets,
            message=f"msops rollback: {moves}",
            what=moves,
        )

    def _plan(
        self,
        history: Sequence[Release],
        target: Release,
        current: Mapping[str, Any],
        services: set[str] | None,
    ) -> SchemaPlan:
        return releases.plan_schema(
            history,
            target,
            current,
            services=services,
            migrate_down=self.migrate_down,
            ignore_schema=self.ignore_schema,
        )

    def _preview(self, edit: Edit) -> dict[str, int]:
        """The dry run: the diff, the policies, and the engine's preview of the edited file,
        which is on disk only during the preview; then the file's exact old bytes again."""
        cfg = self.cfg
        steps.show(cfg, edit)
        cfg.events(ServicesStaged(changes=_staged_changes(edit)))
        steps.check_policies(cfg, edit.values, edit.stack)
        original = edit.doc.original
        try:
            steps.save_with_secrets(cfg, edit)
            return steps.preview(cfg, edit.stack)
        finally:
            stackfiles.write_text(edit.doc.path, original)
            cfg.events(FileReverted(path=edit.doc.path))


def _validated(
    doc: StackDocument,
    writes: list[stackfiles.SecretWrite],
    targets: Mapping[str, Release],
    default: Release,
) -> Edit:
    """The staged document validated once; a release that no longer fits today's schema is
    refused naming that release (the one whose service the first problem is about)."""
    try:
        spec = doc.validate(pending=writes)
    except ConfigInvalid as exc:
        number = default.number
        for name, target in targets.items():
            if any(p.startswith(f"{releases.SERVICES_KEY}.{name}.") for p in exc.problems):
                number = target.number
                break
        raise ReleaseInvalid(doc.stack, number, exc.problems) from None
    return steps.Edit(stack=doc.stack, doc=doc, spec=spec, writes=tuple(writes))


def _own_secrets(
    doc: StackDocument, blocks: Mapping[str, Mapping[str, Any]], targets: Mapping[str, Release]
) -> tuple[dict[str, Any], set[str]]:
    """The msops:secrets entries the rolled-back services use and no other service in the
    file does, with their values in each service's release; and the keys history marks secret.

    A secret another service also uses stays as it is: writing it would change that service.
    """
    others: set[str] = set()
    for name, node in (doc.config.get(releases.SERVICES_KEY) or {}).items():
        if name not in blocks and isinstance(node, Mapping):
            others |= set((node.get("secretEnv") or {}).values())
    secrets: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for name, block in blocks.items():
        target = targets[name]
        secret_keys |= target.secret_keys
        stored = target.config.get(stackfiles.SECRETS_KEY)
        for ref in (block.get("secretEnv") or {}).values():
            if ref not in others and isinstance(stored, Mapping) and ref in stored:
                secrets[str(ref)] = stored[ref]
    return secrets, secret_keys


def _staged_changes(edit: Edit) -> dict[str, list[releases.FieldChange]]:
    """Per service, the settings the edit changes against the file as it was loaded."""
    from ruamel.yaml import YAML

    before = (YAML(typ="safe").load(edit.doc.original) or {}).get("config") or {}
    after = edit.values
    old = before.get(releases.SERVICES_KEY) or {}
    new = after.get(releases.SERVICES_KEY) or {}
    changes = {}
    for name in [*new, *(n for n in old if n not in new)]:
        found = releases.block_changes(
            stackfiles.masked(old.get(name)) if name in old else None, new.get(name)
        )
        if found:
            changes[name] = found
    return changes
