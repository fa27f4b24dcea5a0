"""The msops command line: deploy, inspect, roll back, promote and scale stacks (typer)."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup

from msops.errors import BadInput, ConfigInvalid, MsopsError, OperationFailed, VerificationFailed

# Only for annotations: `msops --help` must not pay for pydantic, ruamel, rich or pulumi.
if TYPE_CHECKING:
    from rich.console import Console

    from components.spec import StackConfig
    from msops.releases import EngineNote, Gateway, Release, UpResult
    from msops.stackfiles import SecretWrite, StackDocument
    from msops.synth import Graph

HELP = """Operations as code for microservices on Pulumi: deploy, monitor, scale, roll back,
promote.

Exit codes: 0 ok; 1 the operation failed; 2 bad input or config; 3 the stack is locked by
another update; 4 verification failed and the last good release was restored.
"""


class _Group(TyperGroup):
    """The app's command group, with a --help flag that stays cheap."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        # typer coerces the group's unset --help flag (None) through a pydantic TypeAdapter,
        # importing pydantic on every `msops <command> --help`; False keeps it a plain bool.
        if option is not None:
            option.default = False
        return option


app = typer.Typer(
    name="msops",
    cls=_Group,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    # No tracebacks (their locals can hold secrets) and no rich help: --help stays fast.
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

StackArg = Annotated[
    str, typer.Argument(metavar="STACK", help="Stack name: stacks/Pulumi.<STACK>.yaml.")
]
YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Apply without asking (required when not at a terminal)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
PolicyConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy-config",
        help="Policy pack config (JSON, as for `pulumi preview --policy-pack-config`).",
        exists=True,
        dir_okay=False,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


# --- seams the tests replace ---------------------------------------------------------------------


def make_gateway() -> Gateway:
    """The gateway to Pulumi; tests replace this with an in-memory fake."""
    from msops.gateway import PulumiGateway

    return PulumiGateway()


def interactive() -> bool:
    """Whether a person can answer a prompt."""
    return sys.stdin.isatty() and not os.environ.get("CI")


def stacks_dir() -> Path:
    from msops import stackfiles

    return stackfiles.STACKS_DIR


# --- output --------------------------------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """The one place msops errors become exit codes: a message, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MsopsError as exc:
            _error(str(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper


class EngineDisplay:
    """Live progress of an engine run: Pulumi's own lines above, a spinner with counts below."""

    def __init__(self, console: Console, title: str) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.title = title
        self.started = 0
        self.done = 0
        self.failed = 0
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task(title, total=None)

    def __enter__(self) -> EngineDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def output(self, line: str) -> None:
        from rich.text import Text

        self._progress.console.print(Text(line))

    def event(self, note: EngineNote) -> None:
        if note.kind == "start":
            self.started += 1
        elif note.kind == "done":
            self.done += 1
        elif note.kind == "failed":
            self.failed += 1
        running = max(0, self.started - self.done - self.failed)
        failed = f", {self.failed} failed" if self.failed else ""
        self._progress.update(
            self._task,
            description=f"{self.title}: {self.done} done, {running} in progress{failed}",
        )


# --- shared steps --------------------------------------------------------------------------------


def _load(stack: str) -> StackDocument:
    from msops.stackfiles import StackDocument

    return StackDocument.load(stack, stacks_dir())


def _validated(values: Mapping[str, Any], stack: str) -> StackConfig:
    from msops import stackfiles

    spec: StackConfig = stackfiles.validate(values, stack)
    return spec


def _synth(values: Mapping[str, Any], stack: str) -> Graph:
    """The offline synth of config values; a backend's own config check is a config error."""
    import pulumi

    from components.platform import InvalidConfig
    from components.vocabulary import SECRET_MASK
    from msops import synth

    secret_keys = [k for k, v in values.items() if SECRET_MASK in json.dumps(v)]
    try:
        return synth.synth_config(values, stack=stack, secret_keys=secret_keys)
    except InvalidConfig as exc:
        raise ConfigInvalid(stack, exc.problems) from None
    except pulumi.RunError as exc:
        # Raised by a component about the config it was given (e.g. a build context
        # without a Dockerfile); the message names the key.
        raise ConfigInvalid(stack, [str(exc)]) from None


def _policies(graph: Graph, stack: str, policy_config: Path | None) -> list[Any] | None:
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


def _print_violations(console: Console, violations: Sequence[Any]) -> None:
    if not violations:
        console.print("Policies: all passed.")
        return
    for v in sorted(violations, key=lambda v: (v.level != "mandatory", v.policy, v.urn)):
        console.print(f"  [{v.level}] {v.policy}: {v.message}", markup=False)
        console.print(f"      {v.urn}", markup=False)


def _policy_gate(
    values: Mapping[str, Any], stack: str, console: Console, policy_config: Path | None = None
) -> None:
    """Run the policy pack on the offline synth; mandatory violations stop the deploy."""
    with _console(stderr=True).status("Checking policies on the offline synth"):
        graph = _synth(values, stack)
        violations = _policies(graph, stack, policy_config)
    if violations is None:
        console.print("Policies: skipped, the policy pack (policies/rules.py) is not installed.")
        return
    _print_violations(console, violations)
    mandatory = [v for v in violations if v.level == "mandatory"]
    if mandatory:
        raise OperationFailed(
            f"{len(mandatory)} mandatory policy violation(s) in stack {stack!r}; nothing was "
            "deployed"
        )


def _require_terminal(yes: bool) -> None:
    """Without --yes a person must confirm; with nobody to ask, refuse before changing anything."""
    if not yes and not interactive():
        raise BadInput(
            "not applied: there is no terminal to confirm at; pass --yes to apply without a prompt"
        )


def _confirm(stack: str, what: str) -> None:
    if not typer.confirm(f"Apply {what} to stack {stack!r}?", default=False):
        raise OperationFailed("cancelled; nothing was applied")


def _run_preview(gateway: Gateway, stack: str, console: Console) -> dict[str, int]:
    from msops import stackfiles

    path = stackfiles.stack_path(stack, stacks_dir())
    with stackfiles.keep_layout(path), EngineDisplay(console, f"Previewing {stack}") as display:
        changes = gateway.preview(stack, on_output=display.output, on_event=display.event)
    counts = ", ".join(f"{n} {op}" for op, n in sorted(changes.items()) if n and op != "same")
    same = changes.get("same", 0)
    unchanged = f" ({same} unchanged)" if same else ""
    console.print(f"Plan for {stack}: {counts or 'no changes'}{unchanged}.")
    return changes


def _run_update(gateway: Gateway, stack: str, console: Console, message: str | None) -> UpResult:
    from msops import stackfiles

    path = stackfiles.stack_path(stack, stacks_dir())
    with stackfiles.keep_layout(path), EngineDisplay(console, f"Updating {stack}") as display:
        return gateway.up(stack, message=message, on_output=display.output, on_event=display.event)


def _release_table(
    console: Console, title: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> None:
    from rich.table import Table

    from msops import releases

    table = Table(title=title, title_justify="left")
    for column in ("Service", "Image", "Replicas"):
        table.add_column(column, overflow="fold")

    def cell(old: str | None, new: str | None) -> str:
        if old == new:
            return f"{new} (unchanged)"
        return f"{old or '(none)'} -> {new or '(removed)'}"

    for change in releases.service_changes(before, after):
        table.add_row(
            change.service,
            cell(change.image_before, change.image_after),
            cell(change.replicas_before, change.replicas_after),
        )
    console.print(table)


def _save_with_secrets(
    gateway: Gateway, stack: str, doc: StackDocument, writes: Sequence[SecretWrite]
) -> None:
    """Write the edited stack file; changed secrets go through Pulumi, which encrypts them."""
    doc.save()
    if not writes:
        return
    for write in writes:
        gateway.set_secret(stack, write.pulumi_key, write.value, path=write.uses_path)
    doc.place_secrets(writes, doc.path.read_text())
    doc.save(force=True)


def _deploy(
    gateway: Gateway,
    stack: str,
    console: Console,
    *,
    message: str | None,
    before: Sequence[Release],
    atomic: bool = False,
    timeout: float = 120.0,
) -> None:
    """Run the update, print the release summary and, with `atomic`, verify or restore."""
    from msops import releases, stackfiles

    doc = _load(stack)
    values = doc.values()
    deployed = releases.newest_deployed(before)
    try:
        result = _run_update(gateway, stack, console, message)
    except OperationFailed as exc:
        if not atomic:
            raise
        _restore(gateway, stack, console, f"the update failed: {exc}")
    title = f"Release of {stack}" + (f" (after release {deployed.number})" if deployed else "")
    _release_table(console, title, deployed.config if deployed else None, values)
    if not atomic:
        return
    from msops import verify

    spec = stackfiles.validate(values, stack)
    plan = verify.plan_for(result.outputs, spec)
    with _console(stderr=True).status(f"Verifying the release (up to {timeout:g}s)"):
        verdict = verify.verify(plan, timeout=timeout)
    for note in verdict.notes:
        console.print(f"note: {note}", markup=False)
    if not verdict.ok:
        reasons = "\n".join(f"  - {p}" for p in verdict.problems)
        _restore(gateway, stack, console, f"verification failed after {timeout:g}s:\n{reasons}")
    console.print(f"Verified: every check passed ({verdict.rounds} round(s)).")


def _restore(gateway: Gateway, stack: str, console: Console, reason: str) -> NoReturn:
    """Re-apply the last good release after a failed --atomic update; always raises."""
    from msops import releases

    history = releases.number_releases(gateway.history(stack))
    current = releases.decode_config(gateway.current_config(stack))
    try:
        target = releases.rollback_target(history, current, None, stack)
    except BadInput:
        raise OperationFailed(
            f"{reason}\nno earlier successful release differs from this one, so nothing was "
            "restored"
        ) from None
    console.print(f"The release failed; restoring release {target.number}.")
    try:
        _apply_release(
            gateway,
            stack,
            console,
            target,
            current,
            yes=True,
            message=f"msops up --atomic: restore release {target.number} after a failed release",
            history=history,
            check_policies=False,
        )
    except MsopsError as exc:
        raise OperationFailed(
            f"{reason}\nrestoring release {target.number} failed too: {exc}"
        ) from None
    images = ", ".join(f"{s}={i}" for s, i in target.images().items())
    raise VerificationFailed(
        f"{reason}\nrestored release {target.number} ({images}); stacks/Pulumi.{stack}.yaml now "
        "holds its config (the diff above shows what was reverted)"
    )


def _apply_edit(
    gateway: Gateway,
    stack: str,
    console: Console,
    doc: StackDocument,
    writes: Sequence[SecretWrite],
    *,
    yes: bool,
    message: str,
    history: Sequence[Release],
    what: str,
    dry_run_off_terminal: bool = False,
) -> None:
    """Write an edited stack file and deploy it; without --yes, preview and confirm first.

    Declined, the file goes back to its exact previous bytes. With `dry_run_off_terminal`,
    no --yes and nobody to ask, the preview is the whole result (promote's dry run).
    """
    from msops import stackfiles

    if not dry_run_off_terminal:
        _require_terminal(yes)
    original = doc.original
    _save_with_secrets(gateway, stack, doc, writes)
    if not yes:
        confirmed = False
        try:
            # The engine previews the stack file, so the edit is on disk during the preview.
            _run_preview(gateway, stack, console)
            if interactive():
                _confirm(stack, what)
                confirmed = True
        finally:
            if not confirmed:
                stackfiles.write_text(doc.path, original)
                console.print(f"stacks/{doc.path.name} was left as it was.")
        if not confirmed:
            console.print("Dry run: nothing was applied; pass --yes to apply.")
            return
    _deploy(gateway, stack, console, message=message, before=history)


def _show_edit(console: Console, doc: StackDocument, writes: Sequence[SecretWrite]) -> None:
    from rich.syntax import Syntax

    diff = doc.diff()
    if diff:
        console.print(Syntax(diff, "diff", theme="ansi_dark", word_wrap=True))
    for write in writes:
        console.print(f"secret {write.pulumi_key}: set again as a secret (value not shown)")


def _apply_release(
    gateway: Gateway,
    stack: str,
    console: Console,
    target: Release,
    current: Mapping[str, Any],
    *,
    yes: bool,
    message: str,
    history: Sequence[Release],
    check_policies: bool = True,
) -> None:
    """Write a release's config back into the stack file and deploy it (rollback's mechanism)."""
    doc = _load(stack)
    writes = doc.apply_config(target.config, target.secret_keys, current)
    values = doc.values(pending=writes)
    _validated(values, stack)
    _show_edit(console, doc, writes)
    if check_policies:
        _policy_gate(values, stack, console)
    _apply_edit(
        gateway,
        stack,
        console,
        doc,
        writes,
        yes=yes,
        message=message,
        history=history,
        what=f"release {target.number}",
    )


def _probe(url: str | None, health_path: str) -> str:
    from msops import verify

    if not url:
        return "no URL"
    try:
        status, _ = verify.http_fetch(url.rstrip("/") + health_path, 2.0)
    except verify.Unreachable:
        return "unreachable from here"
    except OSError as exc:
        return f"down ({exc})"
    return f"healthy ({status})" if 200 <= status < 300 else f"unhealthy ({status})"


# --- commands ------------------------------------------------------------------------------------


@app.command()
@boundary
def up(
    stack: StackArg,
    yes: YesOpt = False,
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic",
            help="Verify the release (health endpoints, Prometheus) and restore the last good "
            "release if it fails (exit 4).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds --atomic verification may take.")
    ] = 120.0,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Message recorded with the update.")
    ] = None,
) -> None:
    """Deploy the stack file: validate, check policies, preview and confirm, update."""
    from msops import releases

    console = _console()
    doc = _load(stack)
    values = doc.values()
    _validated(values, stack)
    _policy_gate(values, stack, console)
    _require_terminal(yes)
    gateway = make_gateway()
    history = releases.number_releases(gateway.history(stack))
    if not yes:
        _run_preview(gateway, stack, console)
        _confirm(stack, "this update")
    _deploy(
        gateway, stack, console, message=message, before=history, atomic=atomic, timeout=timeout
    )


@app.command()
@boundary
def preview(stack: StackArg, policy_config: PolicyConfigOpt = None) -> None:
    """Show the plan: image and replica changes since the last release, policies, engine preview."""
    from msops import releases

    console = _console()
    values = _load(stack).values()
    _validated(values, stack)
    with _console(stderr=True).status("Checking policies on the offline synth"):
        violations = _policies(_synth(values, stack), stack, policy_config)
    gateway = make_gateway()
    history = releases.number_releases(gateway.history(stack))
    deployed = releases.newest_deployed(history)
    title = (
        f"Changes since release {deployed.number} ({deployed.update.start_time:%Y-%m-%d %H:%M})"
        if deployed
        else "First release of this stack"
    )
    _release_table(console, title, deployed.config if deployed else None, values)
    if violations is None:
        console.print("Policies: skipped, the policy pack (policies/rules.py) is not installed.")
    else:
        _print_violations(console, violations)
    _run_preview(gateway, stack, console)
    mandatory = [v for v in violations or [] if v.level == "mandatory"]
    if mandatory:
        raise OperationFailed(
            f"{len(mandatory)} mandatory policy violation(s); `msops up {stack}` would refuse "
            "this stack"
        )


@app.command()
@boundary
def history(stack: StackArg, as_json: JsonOpt = False) -> None:
    """List every update of the stack, numbered by release (oldest = 1)."""
    from msops import releases

    _load(stack)
    rels = releases.number_releases(make_gateway().history(stack))
    if as_json:
        _echo_json(releases.history_rows(rels))
        return
    console = _console()
    if not rels:
        console.print(f"Stack {stack!r} has no releases yet.")
        return
    from rich.table import Table

    table = Table(title=f"Releases of {stack}", title_justify="left")
    for column in ("#", "Time (UTC)", "Result", "Images", "Replicas", "Message"):
        table.add_column(column, overflow="fold")
    for row in releases.history_rows(rels):
        result = row["result"] if row["kind"] == "update" else f"{row['kind']}: {row['result']}"
        table.add_row(
            str(row["release"]),
            row["time"][:19].replace("T", " "),
            result,
            "\n".join(f"{s}={i}" for s, i in row["images"].items()),
            "\n".join(f"{s}={n}" for s, n in row["replicas"].items()),
            row["message"],
        )
    console.print(table)


@app.command()
@boundary
def rollback(
    stack: StackArg,
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            min=1,
            help="Release number to go back to (see `msops history`). Default: the newest "
            "successful release whose config differs from the stack file.",
        ),
    ] = None,
    yes: YesOpt = False,
) -> None:
    """Re-apply an earlier release's config: write it into the stack file, then update."""
    from msops import releases

    console = _console()
    _load(stack)
    gateway = make_gateway()
    rels = releases.number_releases(gateway.history(stack))
    if not rels:
        raise BadInput(
            f"stack {stack!r} has no releases yet; deploy it first with `msops up {stack}`"
        )
    current = releases.decode_config(gateway.current_config(stack))
    target = releases.rollback_target(rels, current, to, stack)
    images = ", ".join(f"{s}={i}" for s, i in target.images().items())
    console.print(
        f"Rolling back {stack} to release {target.number} "
        f"({target.update.start_time:%Y-%m-%d %H:%M}, {images}).",
        markup=False,
    )
    _apply_release(
        gateway,
        stack,
        console,
        target,
        current,
        yes=yes,
        message=f"msops rollback to release {target.number}",
        history=rels,
    )


@app.command()
@boundary
def promote(
    source: Annotated[str, typer.Argument(metavar="SRC", help="Stack to take image pins from.")],
    destination: Annotated[str, typer.Argument(metavar="DST", help="Stack to pin them in.")],
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service", "-s", help="Service to promote (repeatable). Default: all in both stacks."
        ),
    ] = None,
    yes: YesOpt = False,
) -> None:
    """Copy image pins from SRC's stack file to DST's: show the diff, preview DST, deploy it.

    Without --yes and without a terminal this is a dry run: diff and preview, nothing written.
    """
    from msops import releases, stackfiles

    console = _console()
    if source == destination:
        raise BadInput("SRC and DST are the same stack; promote from one stack to another")
    src = _load(source)
    dst = _load(destination)
    changes = releases.plan_promotion(
        stackfiles.services(src.values()),
        stackfiles.services(dst.values()),
        service or (),
        source=source,
        destination=destination,
    )
    if not changes:
        console.print(f"Nothing to promote: {destination} already pins the images of {source}.")
        return
    for change in changes:
        dst.set_image(change.service, change.after)
        console.print(f"{change.service}: {change.before} -> {change.after}", markup=False)
    values = dst.values()
    _validated(values, destination)
    _show_edit(console, dst, [])
    _policy_gate(values, destination, console)
    gateway = make_gateway()
    history = releases.number_releases(gateway.history(destination))
    _apply_edit(
        gateway,
        destination,
        console,
        dst,
        [],
        yes=yes,
        message=f"msops promote {', '.join(c.service for c in changes)} from {source}",
        history=history,
        what=f"the promotion from {source}",
        dry_run_off_terminal=True,
    )


@app.command(context_settings={"ignore_unknown_options": True})
@boundary
def scale(
    stack: StackArg,
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="Service to scale.")],
    replicas: Annotated[int, typer.Argument(metavar="REPLICAS", help="Replica count, 0 or more.")],
    yes: YesOpt = False,
) -> None:
    """Set a service's fixed replica count in the stack file and deploy it."""
    from msops import releases

    console = _console()
    if replicas < 0:
        raise BadInput(f"replicas must be 0 or more, got {replicas}")
    doc = _load(stack)
    doc.set_replicas(service, replicas)
    if not doc.changed:
        console.print(f"{service} in {stack} already runs {replicas} replica(s); nothing to do.")
        return
    values = doc.values()
    _validated(values, stack)
    _show_edit(console, doc, [])
    _policy_gate(values, stack, console)
    _require_terminal(yes)
    gateway = make_gateway()
    history = releases.number_releases(gateway.history(stack))
    _apply_edit(
        gateway,
        stack,
        console,
        doc,
        [],
        yes=yes,
        message=f"msops scale {service} to {replicas}",
        history=history,
        what=f"{replicas} replica(s) of {service}",
    )


@app.command()
@boundary
def status(stack: StackArg, as_json: JsonOpt = False) -> None:
    """Show the stack's URLs and, per service, its pinned image, replicas and live health."""
    from msops import stackfiles

    values = _load(stack).values()
    outputs = make_gateway().outputs(stack)
    deployed = outputs.get("services") if isinstance(outputs.get("services"), dict) else {}
    rows = []
    for name, svc in stackfiles.services(values).items():
        out = deployed.get(name) if isinstance(deployed, dict) else None
        out = out if isinstance(out, dict) else {}
        autoscaling = svc.get("autoscaling")
        replicas: Any
        if isinstance(autoscaling, dict):
            replicas = {"min": autoscaling.get("min", 2), "max": autoscaling.get("max", 5)}
        else:
            replicas = svc.get("replicas", 1)
        health = svc.get("health")
        health_path = health.get("path", "/healthz") if isinstance(health, dict) else "/healthz"
        url = out.get("url")
        rows.append(
            {
                "service": name,
                "image": svc.get("image"),
                "deployedImage": out.get("image"),
                "replicas": replicas,
                "url": url,
                "health": _probe(url, str(health_path)) if outputs else "not deployed",
            }
        )
    urls = {k: v for k, v in outputs.items() if k.endswith("Url") and v}
    if as_json:
        _echo_json({"stack": stack, "deployed": bool(outputs), "urls": urls, "services": rows})
        return
    from rich.table import Table

    console = _console()
    if not outputs:
        console.print(f"Stack {stack!r} is not deployed; `msops up {stack}` deploys it.")
    for key, url in urls.items():
        console.print(f"{key}: {url}", markup=False)
    table = Table(title=f"Services of {stack}", title_justify="left")
    for column in ("Service", "Image", "Replicas", "URL", "Health"):
        table.add_column(column, overflow="fold")
    for row in rows:
        image = str(row["image"])
        if row["deployedImage"] and row["deployedImage"] != row["image"]:
            image += f"\n(deployed: {row['deployedImage']})"
        replicas = row["replicas"]
        shown = (
            f"{replicas['min']}-{replicas['max']} (autoscaled)"
            if isinstance(replicas, dict)
            else str(replicas)
        )
        table.add_row(row["service"], image, shown, str(row["url"] or "-"), row["health"])
    console.print(table)


@app.command()
@boundary
def render(
    stack: StackArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Directory to write into. Default: render/<STACK>.", file_okay=False
        ),
    ] = None,
) -> None:
    """Write the stack's manifests and config files from the offline synth (no engine needed)."""
    from msops import render as renderer

    out = out or Path("render") / stack
    values = _load(stack).values()
    _validated(values, stack)
    with _console(stderr=True).status(f"Synthesizing {stack} offline"):
        graph = _synth(values, stack)
        paths = renderer.render(graph, out)
    console = _console()
    console.print(f"Wrote {len(paths)} file(s) under {out}:")
    for path in paths:
        shown = path.relative_to(out) if path.is_relative_to(out) else path
        console.print(f"  {shown}", markup=False)


@app.command()
@boundary
def check(stack: StackArg, as_json: JsonOpt = False, policy_config: PolicyConfigOpt = None) -> None:
    """Validate the config and run the policy pack on the offline synth (no engine needed)."""
    values = _load(stack).values()
    try:
        _validated(values, stack)
        with _console(stderr=True).status(f"Synthesizing {stack} offline"):
            graph = _synth(values, stack)
    except ConfigInvalid as exc:
        if as_json:
            _echo_json({"stack": stack, "ok": False, "problems": exc.problems, "violations": []})
        raise
    violations = _policies(graph, stack, policy_config)
    if violations is None:
        raise OperationFailed(
            "the policy pack (policies/rules.py) is not installed, so the stack was not checked"
        )
    mandatory = [v for v in violations if v.level == "mandatory"]
    if as_json:
        _echo_json(
            {
                "stack": stack,
                "ok": not mandatory,
                "problems": [],
                "violations": [
                    {"policy": v.policy, "level": v.level, "urn": v.urn, "message": v.message}
                    for v in violations
                ],
            }
        )
    else:
        console = _console()
        console.print(f"Config of {stack}: valid ({len(graph)} resources).")
        _print_violations(console, violations)
    if mandatory:
        raise OperationFailed(f"{len(mandatory)} mandatory policy violation(s) in stack {stack!r}")
