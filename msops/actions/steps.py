"""The steps actions share: validate, the policy gate, preview, confirm, save, deploy, verify."""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.vocabulary import MIGRATE_DOWN_ENV, SECRET_MASK
from msops import releases, stackfiles
from msops.actions.base import (
    Configuration,
    EditShown,
    FileReverted,
    MigratingDown,
    PlanShown,
    PoliciesChecked,
    ReleaseSummarized,
    ReleaseVerified,
    Violation,
)
from msops.errors import BadInput, ConfigInvalid, MsopsError, OperationFailed, ReleaseInvalid

if TYPE_CHECKING:
    from components.spec import StackConfig
    from msops.releases import Release, ReleaseSummary, SchemaPlan, UpResult
    from msops.stackfiles import SecretWrite, StackDocument
    from msops.synth import Graph
    from msops.verify import Verdict


@dataclass(frozen=True)
class Edit:
    """A stack file as it is about to be deployed, with its validated config.

    `writes` are secrets still to set through Pulumi; until then they count as "[secret]".
    """

    stack: str
    doc: StackDocument
    spec: StackConfig
    writes: tuple[SecretWrite, ...] = ()

    @property
    def values(self) -> dict[str, Any]:
        """The config values the offline synth sees: secrets masked."""
        return self.doc.values(pending=self.writes)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The keys of the secrets set again, never their values."""
        return tuple(w.pulumi_key for w in self.writes)


@dataclass(frozen=True)
class Deployment:
    """A finished update: what it changed against the last good release, and its outputs."""

    summary: ReleaseSummary
    outputs: Mapping[str, Any]


@dataclass(frozen=True)
class ReleaseApplied:
    """A recorded release written back into the stack file and deployed (rollback, restore)."""

    stack: str
    release: Release
    # The keys of the secrets set again for it.
    secrets: tuple[str, ...]
    deployment: Deployment


# --- reading -------------------------------------------------------------------------------------


def document(cfg: Configuration, stack: str) -> StackDocument:
    """The stack file, for editing; an unknown stack is bad input."""
    return stackfiles.StackDocument.load(stack, cfg.stacks_dir)


def load(cfg: Configuration, stack: str) -> Edit:
    """The stack file and its config, validated once; everything after uses the typed model."""
    doc = document(cfg, stack)
    return Edit(stack=stack, doc=doc, spec=doc.validate())


def edited(doc: StackDocument) -> Edit:
    """An edited document and its config, validated once (after the edit)."""
    return Edit(stack=doc.stack, doc=doc, spec=doc.validate())


def show(cfg: Configuration, edit: Edit) -> None:
    """Show an edit before it goes anywhere: its diff, and which secrets are set again."""
    cfg.events(EditShown(diff=edit.doc.diff(), secrets=edit.secrets))


def stage_release(doc: StackDocument, target: Release, current: Mapping[str, Any]) -> Edit:
    """Write a release's config into the document (not the file) and validate it once.

    History keeps configs as data; this is where one must fit today's schema, and a release
    that does not is refused naming the release and the key.
    """
    writes = tuple(doc.apply_config(target.config, target.secret_keys, current))
    try:
        spec = doc.validate(pending=writes)
    except ConfigInvalid as exc:
        raise ReleaseInvalid(doc.stack, target.number, exc.problems) from None
    return Edit(stack=doc.stack, doc=doc, spec=spec, writes=writes)


def release_history(cfg: Configuration, stack: str) -> list[Release]:
    """Every release of the stack, oldest first, numbered."""
    return releases.number_releases(cfg.gateway.history(stack))


# --- policies ------------------------------------------------------------------------------------


def synth(values: Mapping[str, Any], stack: str) -> Graph:
    """The offline synth of config values; a backend's own config check is a config error."""
    import pulumi

    from components.platform import InvalidConfig
    from msops import synth as synthesizer

    secret_keys = [k for k, v in values.items() if SECRET_MASK in json.dumps(v)]
    try:
        return synthesizer.synth_config(values, stack=stack, secret_keys=secret_keys)
    except InvalidConfig as exc:
        raise ConfigInvalid(stack, exc.problems) from None
    except pulumi.RunError as exc:
        # Raised by a component about the config it was given (e.g. a build context
        # without a Dockerfile); the message names the key.
        raise ConfigInvalid(stack, [str(exc)]) from None


def evaluate_policies(graph: Graph, stack: str, policy_config: Path | None) -> list[Any] | None:
    """The policy pack's violations, or None when the pack is not there."""
    try:
        rules = importlib.import_module("policies.rules")
    except ModuleNotFoundError as exc:
        if exc.name in ("policies", "policies.rules"):
            return None
        raise
    try:
        config = rules.read_policy_config(policy_config) if policy_config else None
        return list(rules.evaluate(graph, stack=stack, config=config))
    except rules.PolicyConfigError as exc:
        raise BadInput(f"policy config {policy_config}: {exc}") from None


def check_policies(
    cfg: Configuration, values: Mapping[str, Any], stack: str, policy_config: Path | None = None
) -> tuple[Violation, ...] | None:
    """The policy pack on the offline synth of `values`, reported; None without a pack."""
    evaluate = cfg.policies or evaluate_policies
    with cfg.busy("Checking policies on the offline synth"):
        found = evaluate(synth(values, stack), stack, policy_config)
    violations = None if found is None else tuple(found)
    cfg.events(PoliciesChecked(violations=violations))
    return violations


def mandatory(violations: Sequence[Violation] | None) -> list[Violation]:
    return [v for v in violations or () if v.level == "mandatory"]


def policy_gate(cfg: Configuration, edit: Edit) -> None:
    """Mandatory violations stop a deploy before anything changes."""
    blocking = mandatory(check_policies(cfg, edit.values, edit.stack))
    if blocking:
        raise OperationFailed(
            f"{len(blocking)} mandatory policy violation(s) in stack {edit.stack!r}; nothing was "
            "deployed. Each is listed above with its resource and how to fix it (docs/policies.md)"
        )


# --- a person ------------------------------------------------------------------------------------


def require_terminal(cfg: Configuration, yes: bool) -> None:
    """Without --yes a person must confirm; with nobody to ask, refuse before changing anything."""
    if not yes and not cfg.confirm.can_ask():
        raise BadInput(
            "not applied: there is no terminal to confirm at; pass --yes to apply without a prompt"
        )


def confirm(cfg: Configuration, stack: str, what: str) -> None:
    if not cfg.confirm.ask(f"Apply {what} to stack {stack!r}?"):
        raise OperationFailed("cancelled; nothing was applied")


# --- the engine ----------------------------------------------------------------------------------


def preview(cfg: Configuration, stack: str) -> dict[str, int]:
    """`pulumi preview` of the stack file on disk, with progress; the planned change counts."""
    path = stackfiles.stack_path(stack, cfg.stacks_dir)
    with stackfiles.keep_layout(path), cfg.engine_display(f"Previewing {stack}") as display:
        changes = cfg.gateway.preview(stack, on_output=display.output, on_event=display.event)
    cfg.events(PlanShown(stack=stack, changes=changes))
    return changes


def update(
    cfg: Configuration,
    stack: str,
    message: str | None,
    env: Mapping[str, str] | None = None,
    title: str | None = None,
) -> UpResult:
    """`pulumi up` of the stack file on disk; `env` reaches the program (a canary step, a
    down migration); `title` heads the engine's display (default "Updating STACK")."""
    path = stackfiles.stack_path(stack, cfg.stacks_dir)
    message = ran_message(cfg, stack, message)
    title = title or f"Updating {stack}"
    with stackfiles.keep_layout(path), cfg.engine_display(title) as display:
        return cfg.gateway.up(
            stack, message=message, env=env, on_output=display.output, on_event=display.event
        )


def ran_message(cfg: Configuration, stack: str, message: str | None) -> str | None:
    """`message` with the digests the release deployed now ran (`releases.with_digests`): the
    state keeps only the newest outputs, so the next update's message is where they last."""
    return releases.with_digests(message, releases.output_digests(cfg.gateway.outputs(stack)))


def deploy(
    cfg: Configuration,
    stack: str,
    spec: StackConfig,
    *,
    message: str | None,
    history: Sequence[Release],
) -> Deployment:
    """Run the update of the stack file on disk and report what it changed."""
    result = update(cfg, stack, message)
    summary = releases.summarize(stack, history, spec)
    cfg.events(ReleaseSummarized(summary=summary, deployed=True))
    return Deployment(summary=summary, outputs=result.outputs)


def verify(
    cfg: Configuration, outputs: Mapping[str, Any], spec: StackConfig, timeout: float
) -> Verdict:
    """Check a deployed release until it passes or `timeout` seconds pass."""
    from msops import verify as verification

    plan = verification.plan_for(outputs, spec)
    with cfg.busy(f"Verifying the release (up to {timeout:g}s)"):
        if cfg.verifier is not None:
            verdict = cfg.verifier(plan, timeout)
        else:
            verdict = verification.verify(
                plan, fetch=cfg.fetch or verification.http_fetch, timeout=timeout
            )
    cfg.events(ReleaseVerified(verdict=verdict))
    return verdict


# --- applying an edit ----------------------------------------------------------------------------


def save_with_secrets(cfg: Configuration, edit: Edit) -> None:
    """Write the edited stack file; changed secrets go through Pulumi, which encrypts them."""
    doc = edit.doc
    doc.save()
    if not edit.writes:
        return
    for write in edit.writes:
        cfg.gateway.set_secret(edit.stack, write.pulumi_key, write.value, path=write.uses_path)
    doc.place_secrets(edit.writes, doc.path.read_text())
    doc.save(force=True)


def apply_edit(
    cfg: Configuration,
    edit: Edit,
    *,
    yes: bool,
    message: str,
    what: str,
    history: Sequence[Release] | None = None,
    dry_run_off_terminal: bool = False,
    first: Callable[[], None] | None = None,
) -> Deployment | None:
    """Show an edit, gate it on the policies, then write and deploy it (see `write_and_deploy`).

    Without --yes and with nobody to ask it is refused before anything is written, unless
    `dry_run_off_terminal`: then the preview is the whole result (None; promote's dry run).
    """
    show(cfg, edit)
    policy_gate(cfg, edit)
    if not dry_run_off_terminal:
        require_terminal(cfg, yes)
    if history is None:
        history = release_history(cfg, edit.stack)
    return write_and_deploy(
        cfg, edit, yes=yes, message=message, what=what, history=history, first=first
    )


def write_and_deploy(
    cfg: Configuration,
    edit: Edit,
    *,
    yes: bool,
    message: str,
    what: str,
    history: Sequence[Release],
    first: Callable[[], None] | None = None,
) -> Deployment | None:
    """Write an edited stack file and deploy it; without --yes, preview and confirm first.

    Declined, the file goes back to its exact previous bytes; with nobody to ask, that is a
    dry run (None). `first` (a rollback's down step, an update of the config deployed now)
    runs once confirmed, before the edit is deployed, with the file as it was meanwhile.
    """
    original = edit.doc.original
    if first is not None and yes:
        first()
    save_with_secrets(cfg, edit)
    if not yes:
        if not _previewed_and_confirmed(cfg, edit, original, what):
            return None
        if first is not None:
            saved = edit.doc.path.read_text()
            stackfiles.write_text(edit.doc.path, original)
            first()
            stackfiles.write_text(edit.doc.path, saved)
    try:
        return deploy(cfg, edit.stack, edit.spec, message=message, history=history)
    except MsopsError as exc:
        raise edit_kept(exc, edit.doc.path) from None


def with_note(exc: MsopsError, note: str) -> MsopsError:
    """The same error (class and exit code), its message followed by `note`."""
    message = f"{exc}\n{note}"
    try:
        noted = copy.copy(exc)
    except TypeError:  # a subclass whose constructor takes other arguments
        noted = MsopsError(message)
        noted.exit_code = exc.exit_code
    noted.args = (message,)
    return noted


def edit_kept(exc: MsopsError, path: Path) -> MsopsError:
    """A deploy failed after the edit was written: say that the file keeps it, and how to go
    on from there. `bare` is the error without that note, for an action that undoes the edit
    itself (scale)."""
    noted = with_note(
        exc,
        f"stacks/{path.name} keeps the edit shown above, which did not deploy: `msops up "
        f"{path.stem.removeprefix('Pulumi.')} --yes` tries it again; to undo it, put the file "
        f"back as it was (`git checkout -- stacks/{path.name}` where it is under version "
        "control). The engine may have applied part of the update before it stopped.",
    )
    noted.bare = exc  # type: ignore[attr-defined]
    return noted


def migrate_down(cfg: Configuration, stack: str, plan: SchemaPlan) -> None:
    """A rollback's down step: an update of the stack file as it is, whose migrations run
    their `down` to the versions `plan` says, with the images that migrated the databases up.

    The file is never changed for it (it keeps only real config): the program gets the step
    through MIGRATE_DOWN_ENV. Nothing else changes in this update: every replica keeps its
    inputs, and the history records it with `releases.migrate_down_message`.
    """
    versions = plan.down_versions()
    path = stackfiles.stack_path(stack, cfg.stacks_dir)
    cfg.events(MigratingDown(stack=stack, plan=plan))
    try:
        update(
            cfg,
            stack,
            releases.migrate_down_message(versions, plan.target.number),
            {MIGRATE_DOWN_ENV: json.dumps(versions)},
            title=f"Migrating {stack} down",
        )
    except OperationFailed as exc:
        raise OperationFailed(
            f"the down migration failed, so release {plan.target.number} was not rolled back: "
            f"stacks/{path.name} holds the release deployed now, and its replicas were not "
            f"touched (the migration's output says how far its database got):\n{exc}"
        ) from None


def _previewed_and_confirmed(cfg: Configuration, edit: Edit, original: str, what: str) -> bool:
    """Preview the saved edit and ask; unless confirmed, put the file's old bytes back."""
    confirmed = False
    try:
        # The engine previews the stack file, so the edit is on disk during the preview.
        preview(cfg, edit.stack)
        if cfg.confirm.can_ask():
            confirm(cfg, edit.stack, what)
            confirmed = True
    finally:
        if not confirmed:
            stackfiles.write_text(edit.doc.path, original)
            cfg.events(FileReverted(path=edit.doc.path))
    return confirmed
