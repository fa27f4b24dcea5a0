"""The msops command line: deploy, inspect, roll back, promote and scale stacks (typer)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from msops.errors import BadInput, ConfigInvalid, MsopsError, OperationFailed

# Only for annotations: `msops --help` must not pay for pydantic, ruamel, rich or pulumi, so
# the actions are imported inside the commands.
if TYPE_CHECKING:
    from rich.console import Console

    from msops import display
    from msops.actions.base import Configuration, Event, Violation
    from msops.actions.promote import PromoteResult
    from msops.registry import Answer
    from msops.releases import EngineNote, Gateway, ReleaseSummary, SchemaPlan
    from msops.synth import Graph

HELP = """Operations as code for microservices on Pulumi: deploy, monitor, scale, roll back,
promote.

Exit codes: 0 ok; 1 the operation failed; 2 bad input or config; 3 the stack is locked by
another update; 4 verification failed and the last good release was restored.
"""


# typer's completion flags, which it declares with a default of None.
_COMPLETION_FLAGS = ("install_completion", "show_completion")


class _Group(TyperGroup):
    """The app's command group, with a --help flag that stays cheap."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        # typer coerces the group's unset --help flag (None) through a pydantic TypeAdapter,
        # importing pydantic on every `msops <command> --help`; False keeps it a plain bool.
        if option is not None:
            option.default = False
        return option

    def get_params(self, ctx: Any) -> Any:
        # The same for the completion flags: unset, they are False, and no pydantic loads.
        for param in self.params:
            if param.name in _COMPLETION_FLAGS and param.default is None:
                param.default = False
        return super().get_params(ctx)


app = typer.Typer(
    name="msops",
    cls=_Group,
    help=HELP,
    no_args_is_help=True,
    # typer's own --install-completion / --show-completion; names come from stacks/.
    add_completion=True,
    # No tracebacks (their locals can hold secrets) and no rich help: --help stays fast.
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# --- shell completion: stack and service names from the stack files -----------------------------


def _complete_stack(incomplete: str) -> list[str]:
    from msops import completion

    return completion.stacks(stacks_dir(), incomplete)


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    from msops import completion

    stacks = [ctx.params.get(k) for k in ("stack", "source", "destination")]
    return completion.services(stacks_dir(), [s for s in stacks if s], incomplete)


StackArg = Annotated[
    str,
    typer.Argument(
        metavar="STACK",
        help="Stack name: stacks/Pulumi.<STACK>.yaml.",
        autocompletion=_complete_stack,
    ),
]
ServiceArg = Annotated[
    str,
    typer.Argument(
        metavar="SERVICE", help="Service name (msops:services).", autocompletion=_complete_service
    ),
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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"msops {version('msops')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show msops's version and exit."
        ),
    ] = False,
) -> None:
    """Operations as code for microservices on Pulumi."""


def _policies(graph: Graph, stack: str, policy_config: Path | None) -> list[Any] | None:
    """The policy pack's violations, or None when the pack is not there."""
    from msops.actions import steps

    return steps.evaluate_policies(graph, stack, policy_config)


# --- output --------------------------------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    from msops import display

    return display.console(stderr=stderr)


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


# Whether this command has printed its JSON document yet: a --json command prints exactly one.
_json_printed = False


def _echo_json(data: Any) -> None:
    global _json_printed
    _json_printed = True
    typer.echo(json.dumps(data, indent=2, default=_json_value))


def _json_value(value: Any) -> Any:
    """What json cannot encode itself: a time as RFC 3339 UTC (docs/cli.md, JSON output)."""
    from datetime import datetime

    if isinstance(value, datetime):
        from msops.releases import rfc3339

        return rfc3339(value)
    return str(value)


def error_document(exc: MsopsError, code: int | None = None) -> dict[str, Any]:
    """What a --json command prints on stdout when it fails before printing its result;
    `code` when the command's exit code is not the error's own (diff's 2)."""
    problems = getattr(exc, "problems", None)
    if not isinstance(problems, list) or not problems:
        problems = [str(exc)]
    return {"error": {"code": exc.exit_code if code is None else code, "problems": problems}}


def boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """The one place errors become exit codes: a message, never a traceback. An msops error
    exits with its code; Ctrl-C and any other exception (also one raised while reporting an
    msops error, a closed pipe) as _ctrl_c_exits and _unexpected say."""
    return _guarded(fn, None)


def diff_boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """`boundary` for a command whose exit 1 means "different", as diff(1): every error is 2."""
    return _guarded(fn, 2)


def _guarded(fn: Callable[P, R], error_code: int | None) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        global _json_printed
        _json_printed = False
        with _ctrl_c_exits():
            try:
                try:
                    return fn(*args, **kwargs)
                except MsopsError as exc:
                    _error(str(exc))
                    # Under --json stdout is one JSON document, also on failure (docs/cli.md).
                    if kwargs.get("as_json") and not _json_printed:
                        _echo_json(error_document(exc, error_code))
                    raise typer.Exit(exc.exit_code if error_code is None else error_code) from None
            except Exception as exc:
                _unexpected(exc, 1 if error_code is None else error_code)

    return wrapper


# --- no traceback, ever: Ctrl-C and what no msops error describes ---------------------------------

INTERRUPTED = 130


@contextlib.contextmanager
def _ctrl_c_exits() -> Iterator[None]:
    """While a command runs, Ctrl-C ends msops at once: one line and exit 130.

    A KeyboardInterrupt raised wherever the signal lands is not reliable: inside the offline
    synth's asyncio tasks Pulumi's runtime swallows it (the command carries on and can exit 0)
    or leaves a traceback and a "Task was destroyed" line per pending task. An engine run in a
    terminal gets the same Ctrl-C and cancels itself, as Pulumi does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        # Started with Ctrl-C ignored (`nohup`, a background job): keep it so.
        yield
        return
    signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    # os.write, not print: the handler may run in the middle of a write to sys.stderr.
    os.write(2, b"error: interrupted (Ctrl-C); msops stopped\n")
    os._exit(INTERRUPTED)


def _unexpected(exc: Exception, code: int = 1) -> NoReturn:
    """An exception no msops error describes: one line and exit `code`, the traceback on
    request."""
    if isinstance(exc, typer.Exit | typer.Abort | TyperException):
        raise exc
    if isinstance(exc, BrokenPipeError):
        # The reader went away (`| head`): stop quietly, and keep Python from flushing into
        # the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(code) from None
    if os.environ.get("MSOPS_DEBUG"):
        raise exc
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}; nothing more was done")
        raise typer.Exit(code) from None
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    _error(
        f"unexpected {type(exc).__name__}{f': {text}' if text else ''}. This is a bug in "
        "msops; please report it with the command (MSOPS_DEBUG=1 shows the traceback)"
    )
    raise typer.Exit(code) from None


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

        # Pulumi's lines carry its colours when it runs with color="always" (a terminal).
        self._progress.console.print(Text.from_ansi(line))

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


class TerminalConfirm:
    """A person at this terminal answers; off a terminal (CI, a pipe) nobody does."""

    def can_ask(self) -> bool:
        return interactive()

    def ask(self, question: str) -> bool:
        return typer.confirm(question, default=False)


def _print_violations(console: Console, violations: Sequence[Violation] | None) -> None:
    if violations is None:
        console.print("Policies: skipped, the policy pack (policies/rules/) is not installed.")
        return
    if not violations:
        console.print("Policies: all passed.")
        return
    for v in sorted(violations, key=lambda v: (v.level != "mandatory", v.policy, v.urn)):
        console.print(f"  [{v.level}] {v.policy}: {v.message}", markup=False)
        # Never folded, at a terminal either: the terminal wraps it, and a copy is whole.
        console.print(f"      {v.urn}", markup=False, soft_wrap=True)


def _print_edit(console: Console, diff: str, secrets: Sequence[str]) -> None:
    """A stack file's diff, highlighted at a terminal; elsewhere the patch as it is."""
    if diff and console.is_terminal:
        from rich.syntax import Syntax

        console.print(Syntax(diff, "diff", theme="ansi_dark", word_wrap=True))
    elif diff:
        console.out(diff, end="", highlight=False)
    for key in secrets:
        console.print(f"secret {key}: set again as a secret (value not shown)")


def _table(title: str, *columns: str) -> display.Rows:
    from msops import display

    return display.Rows(title, *columns)


def _replicas_text(replicas: Any) -> str:
    from msops import display

    return display.replicas_text(replicas)


def _release_table(console: Console, title: str, summary: ReleaseSummary) -> None:
    table = _table(title, "Service", "Image", "Replicas")

    def cell(old: str | None, new: str | None) -> str:
        if old == new:
            return f"{new} (unchanged)"
        return f"{old or '(none)'} -> {new or '(removed)'}"

    for change in summary.changes:
        table.add_row(
            change.service,
            cell(change.image_before, change.image_after),
            cell(change.replicas_before, change.replicas_after),
        )
    console.print(table)


def _plan_line(stack: str, changes: dict[str, int] | Any) -> str:
    counts = ", ".join(f"{n} {op}" for op, n in sorted(changes.items()) if n and op != "same")
    same = changes.get("same", 0)
    unchanged = f" ({same} unchanged)" if same else ""
    return f"Plan for {stack}: {counts or 'no changes'}{unchanged}."


def _summary_title(summary: ReleaseSummary, deployed: bool) -> str:
    since = summary.since
    if deployed:
        return f"Release of {summary.stack}" + (f" (after release {since.number})" if since else "")
    if since is None:
        return "First release of this stack"
    return f"Changes since release {since.number} ({since.update.start_time:%Y-%m-%d %H:%M})"


class Report:
    """Shows each event of an action as it happens, on the console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: Event) -> None:
        from msops.actions import base as ev

        console = self.console
        for line in _rollback_lines(event):
            console.print(line, markup=False)
        match event:
            case ev.EditShown(diff=diff, secrets=secrets):
                _print_edit(console, diff, secrets)
            case ev.Notice(text=text):
                console.print(text, markup=False)
            case ev.PoliciesChecked(violations=violations):
                _print_violations(console, violations)
            case ev.PlanShown(stack=stack, changes=changes):
                console.print(_plan_line(stack, changes))
            case ev.FileReverted(path=path):
                console.print(f"stacks/{path.name} was left as it was.")
            case ev.ReleaseSummarized(summary=summary, deployed=deployed):
                _release_table(console, _summary_title(summary, deployed), summary)
            case ev.ReleaseVerified(verdict=verdict):
                for note in verdict.notes:
                    console.print(f"note: {note}", markup=False)
            case ev.ReleaseChosen(stack=stack, release=release, restore=False, services=only):
                chosen = release.images()
                chosen = {s: chosen.get(s, "?") for s in only} if only else chosen
                images = ", ".join(f"{s}={i}" for s, i in chosen.items())
                what = f"{', '.join(only)} of {stack}" if only else stack
                console.print(
                    f"Rolling back {what} to release {release.number} "
                    f"({release.update.start_time:%Y-%m-%d %H:%M}, {images}).",
                    markup=False,
                )
            case ev.ReleaseChosen(release=release, restore=True):
                console.print(f"The release failed; restoring release {release.number}.")
            case ev.SchemaPlanned(plan=plan):
                for line in _schema_lines(plan):
                    console.print(line, markup=False)
            case ev.MigratingDown(plan=plan):
                for line in _down_lines(plan):
                    console.print(line, markup=False)
            case ev.PinsMoved(changes=changes):
                for change in changes:
                    console.print(
                        f"{change.service}: {change.before} -> {change.after}", markup=False
                    )
            case ev.DriftFound(report=report):
                from msops import display

                display.print_drift(console, report)
            case ev.ResourcesKept(stack=stack, kept=kept):
                from msops import display

                display.print_kept(console, stack, kept, done=False)
            case ev.CanaryStepDone(service=svc, step=n, steps=total, weight=w, outcome=out):
                last = out.last.measured.text() if out.last and out.last.measured else "no data"
                console.print(
                    f"canary {svc} step {n}/{total} ({w}%): {out.status} after "
                    f"{out.elapsed:.0f}s ({last})",
                    markup=False,
                )


def _rollback_lines(event: Event) -> list[str]:
    """What a rollback reports of its digest pins and (a dry run) its per-service changes."""
    from msops.actions import base as ev
    from msops.releases import short_digest

    if isinstance(event, ev.DigestsPinned):
        return [
            f"{p.service}: pinned to {p.image}"
            if p.reason is None
            else f"{p.service}: {p.reason}"
            + (f" (it ran {short_digest(p.digest)})" if p.digest else "")
            for p in event.pins
        ]
    if isinstance(event, ev.ServicesStaged):
        lines = []
        for name, found in event.changes.items():
            lines += [f"{name}:", *(f"  {change.text()}" for change in found)]
        return lines
    return []


def _down_lines(plan: SchemaPlan) -> list[str]:
    """The down migrations a rollback runs now, one line each."""
    return [
        f"Migrating {s.service}'s database down to schema {s.target} with `{s.command}` "
        f"({s.image}) before release {plan.target.number}."
        for s in plan.downs
    ]


def _schema_lines(plan: SchemaPlan) -> list[str]:
    """What a rollback does about each database schema, one line per service."""
    number = plan.target.number
    lines = [
        f"{s.service}: its database is at schema {s.current}, release {number} needs "
        f"{s.target}; `{s.command}` runs first ({s.image})."
        for s in plan.downs
    ]
    lines += [
        f"{s.service}: its database stays at schema {s.current}, although release {number} "
        f"needs {s.target} (--ignore-schema)."
        for s in plan.accepted
    ]
    lines += [
        f"{name}: release {number} declares no schema; its database stays as it is."
        for name in plan.undeclared
    ]
    return lines


def _configuration(console: Console) -> Configuration:
    """What the actions run with here: Pulumi, this terminal, this console."""
    from msops.actions.base import Configuration

    return Configuration(
        gateway_factory=make_gateway,
        stacks_dir=stacks_dir(),
        confirm=TerminalConfirm(),
        events=Report(console),
        engine_display=lambda title: EngineDisplay(console, title),
        busy=lambda title: _console(stderr=True).status(title),
        policies=_policies,
    )


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
    migrate_down: Annotated[
        bool,
        typer.Option(
            "--migrate-down",
            help="With --atomic: a restore may first run the failed release's down "
            "migrations, where its database needs an older schema again.",
        ),
    ] = False,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus-url",
            help="Prometheus for a canary's analysis, when the stack's own is not reachable "
            "from here (e.g. behind kubectl port-forward).",
        ),
    ] = None,
) -> None:
    """Deploy the stack file: validate, check policies, preview and confirm, update.

    A service with rollout.strategy canary whose image changed is released step by step,
    each step judged by the stack's Prometheus; a failed step exits 4."""
    from msops.actions.up import Up

    console = _console()
    cfg = _configuration(console)
    result = Up(
        cfg,
        stack,
        yes=yes,
        atomic=atomic,
        timeout=timeout,
        message=message,
        migrate_down=migrate_down,
        prometheus_url=prometheus_url,
    ).run()
    if result.canary is not None:
        console.print(f"Canary passed: promoted {', '.join(result.canary.services)}.")
    if result.verdict is not None:
        console.print(f"Verified: every check passed ({result.verdict.rounds} round(s)).")


@app.command()
@boundary
def preview(stack: StackArg, policy_config: PolicyConfigOpt = None) -> None:
    """Show the plan: image and replica changes since the last release, policies, engine preview."""
    from msops.actions.preview import Preview

    Preview(_configuration(_console()), stack, policy_config=policy_config).run()


@app.command()
@boundary
def history(
    stack: StackArg,
    as_json: JsonOpt = False,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            "-s",
            help="Only the releases that changed this service, with what changed.",
            autocompletion=_complete_service,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--max", min=1, help="Show at most N rows, newest first.")
    ] = None,
) -> None:
    """List every update of the stack, numbered by release (oldest = 1), with its status:
    deployed, superseded, failed, or restored-by N."""
    from msops.actions.history import History

    console = _console()
    result = History(_configuration(console), stack, service=service, limit=limit).run()
    if as_json:
        _echo_json(result.rows())
        return
    if not result.releases:
        console.print(f"Stack {stack!r} has no releases yet.")
        return
    _history_table(console, result.rows(), stack, service)


def _history_table(
    console: Console, rows: list[dict[str, Any]], stack: str, service: str | None
) -> None:
    from msops.releases import short_digest

    columns = ["#", "Time (UTC)", "Status", "Result", "Images", "Digests", "Replicas", "Schema"]
    title = f"Releases of {stack}" + (f" that changed {service}" if service else "")
    table = _table(title, *columns, "Changes" if service else "Message")
    for row in rows:
        outcome = row["result"] if row["kind"] == "update" else f"{row['kind']}: {row['result']}"
        status = row["status"] + (f" {row['restoredBy']}" if row["restoredBy"] else "")
        table.add_row(
            str(row["release"]),
            row["time"][:19].replace("T", " "),
            status,
            outcome,
            "\n".join(f"{s}={i}" for s, i in row["images"].items()),
            "\n".join(f"{s}={short_digest(d)}" for s, d in row["digests"].items()) or "-",
            "\n".join(f"{s}={_replicas_text(n)}" for s, n in row["replicas"].items()),
            "\n".join(f"{s}={v}" for s, v in row["schema"].items()) or "-",
            "\n".join(row["changes"]) if service else row["message"],
        )
    console.print(table)


RollbackToOpt = Annotated[
    int | None,
    typer.Option(
        "--to",
        min=1,
        help="Release number to go back to (see `msops history`). Default: the newest "
        "successful release whose config (with --service: that service's) differs from "
        "the stack file.",
    ),
]
RollbackServiceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--service",
        "-s",
        help="Roll back only this service's block (repeatable); every other line of the "
        "stack file stays as it is.",
        autocompletion=_complete_service,
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show the stack file's diff and the engine's preview; write nothing. The "
        "default off a terminal without --yes.",
    ),
]
MigrateDownOpt = Annotated[
    bool,
    typer.Option(
        "--migrate-down",
        help="Where the release needs an older database schema, first run the down "
        "migration of the release that migrated it up.",
    ),
]
IgnoreSchemaOpt = Annotated[
    bool,
    typer.Option(
        "--ignore-schema",
        help="Roll back even where the release needs an older database schema and "
        "nothing migrates it down: its image then runs on the newer one.",
    ),
]


@app.command()
@boundary
def rollback(
    stack: StackArg,
    to: RollbackToOpt = None,
    service: RollbackServiceOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    migrate_down: MigrateDownOpt = False,
    ignore_schema: IgnoreSchemaOpt = False,
) -> None:
    """Re-apply an earlier release's config: write it into the stack file, then update.

    Images are pinned to the digest the release ran, where it recorded one. A release that
    needs an older database schema is refused before anything is written, unless
    --migrate-down or --ignore-schema says what to do about it. Off a terminal without
    --yes this is a dry run (exit 0).
    """
    from msops.actions.rollback import Rollback

    console = _console()
    result = Rollback(
        _configuration(console),
        stack,
        to=to,
        yes=yes,
        migrate_down=migrate_down,
        ignore_schema=ignore_schema,
        services=tuple(service or ()),
        dry_run=dry_run,
    ).run()
    if result.dry_run:
        console.print("Dry run: nothing was written or deployed; pass --yes to apply.")


def make_image_lookup() -> Callable[[str], Answer]:
    """Asks an image's registry about it with the user's docker config; tests replace this."""
    from msops import registry

    return registry.from_environment().lookup


@app.command()
@boundary
def promote(
    source: Annotated[str, typer.Argument(metavar="SRC", help="Stack to take image pins from.")],
    destination: Annotated[str, typer.Argument(metavar="DST", help="Stack to pin them in.")],
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            "-s",
            help="Service to promote (repeatable). Default: all in both stacks.",
            autocompletion=_complete_service,
        ),
    ] = None,
    yes: YesOpt = False,
    verify_images: Annotated[
        bool,
        typer.Option(
            "--verify-images/--no-verify-images",
            help="Ask DST's registry that every image to pin exists before writing anything "
            "(default). --no-verify-images skips it, for a registry this machine cannot reach.",
        ),
    ] = True,
    print_images: Annotated[
        bool,
        typer.Option(
            "--print-images",
            help="Only print the images the promotion pins in DST, one line each: SERVICE "
            "IMAGE CONTEXT (SRC's build directory, '-' when SRC pulls it). Nothing is checked "
            "or written; CI pushes these first.",
        ),
    ] = False,
) -> None:
    """Copy image pins from SRC's stack file to DST's once DST's registry has the images:
    show the diff, preview DST, deploy it.

    Without --yes and without a terminal this is a dry run: diff and preview, nothing written.
    """
    from msops.actions.promote import Promote, promoted_images

    console = _console()
    cfg = _configuration(console)
    services = tuple(service or ())
    lookup_once = functools.cache(make_image_lookup)
    if print_images:
        for item in promoted_images(cfg, source, destination, services):
            typer.echo(f"{item.service} {item.image} {item.context or '-'}")
        return
    result = Promote(
        cfg,
        source,
        destination,
        services=services,
        yes=yes,
        verify_images=verify_images,
        # Made on first use: a promotion with nothing to move reads no docker config.
        lookup=lambda image: lookup_once()(image),
    ).run()
    _report_promotion(console, result)


def _report_promotion(console: Console, result: PromoteResult) -> None:
    if not result.changes:
        console.print(
            f"Nothing to promote: {result.destination} already pins the images of {result.source}."
        )
        return
    if result.checked:
        console.print(f"In the registry: {', '.join(a.image for a in result.checked)}.")
    if result.dry_run:
        console.print("Dry run: nothing was applied; pass --yes to apply.")


@app.command(context_settings={"ignore_unknown_options": True})
@boundary
def scale(
    stack: StackArg,
    service: ServiceArg,
    replicas: Annotated[int, typer.Argument(metavar="REPLICAS", help="Replica count, 0 or more.")],
    yes: YesOpt = False,
) -> None:
    """Set a service's fixed replica count in the stack file and deploy it.

    A file that already holds the count is compared with the deployed release, and deployed
    when that runs another count. If the deploy fails, the file gets its previous bytes back.
    """
    from msops.actions.scale import Scale

    console = _console()
    result = Scale(_configuration(console), stack, service, replicas, yes=yes).run()
    reason = result.nothing_done()
    if reason is not None:
        console.print(reason, markup=False)


@app.command()
@boundary
def status(
    stack: StackArg,
    as_json: JsonOpt = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Follow ready and total replicas per service until they converge (exit 0) "
            "or --timeout passes (exit 1); asks Docker or the cluster, not Pulumi.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds --watch waits for convergence.")
    ] = 300.0,
) -> None:
    """Show the stack's URLs and, per service, its pinned image, replicas and live health."""
    if watch:
        _watch(stack, timeout, as_json)
        return
    from msops.actions.status import Status

    console = _console()
    result = Status(_configuration(console), stack).run()
    if as_json:
        _echo_json(result.data())
        return
    if not result.deployed:
        console.print(f"Stack {stack!r} is not deployed; `msops up {stack}` deploys it.")
    for key, url in result.urls.items():
        console.print(f"{key}: {url}", markup=False)
    table = _table(f"Services of {stack}", "Service", "Image", "Replicas", "URL", "Health")
    for row in result.services:
        image = row.image
        if row.deployed_image and row.deployed_image != row.image:
            image += f"\n(deployed: {row.deployed_image})"
        replicas = row.replicas
        shown = (
            f"{replicas[0]}-{replicas[1]} (autoscaled)"
            if isinstance(replicas, tuple)
            else str(replicas)
        )
        table.add_row(row.service, image, shown, str(row.url or "-"), row.health)
    console.print(table)
    for row in result.services:
        if row.canary:
            _print_canary(console, row.service, row.canary)


def _print_canary(console: Console, service: str, canary: Mapping[str, Any]) -> None:
    """One line for a canary in progress, and its last analysis when this machine ran it."""
    steps = f"/{canary['steps']}" if canary.get("steps") else ""
    console.print(
        f"canary of {service}: {canary.get('image')} on {canary.get('replicas')} replica(s), "
        f"{canary.get('weight')}% at step {canary.get('step')}{steps}",
        markup=False,
    )
    last = canary.get("lastAnalysis")
    if isinstance(last, Mapping):
        problems = "; ".join(last.get("problems") or []) or "no problem"
        console.print(f"  last analysis: {last.get('status')} ({problems})", markup=False)


@app.command()
@boundary
def render(
    stack: StackArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Directory to render into (new, empty, or an earlier render's), or - for one "
            "YAML stream of the Kubernetes manifests on stdout. Default: render/<STACK>.",
        ),
    ] = None,
    secrets_as: Annotated[
        str,
        typer.Option(
            "--secrets-as",
            help="Kubernetes Secrets: placeholder (keys kept, each value says where to set "
            "it) or omit (not written). Values are never written.",
        ),
    ] = "placeholder",
) -> None:
    """Write what the stack deploys, offline: Kubernetes manifests, or a Compose or stack file."""
    from msops.actions.render import Render

    target = out or Path("render") / stack
    console = _console(stderr=str(target) == "-")
    result = Render(_configuration(console), stack, target, secrets_as=secrets_as).run()
    if result.text is not None:
        typer.echo(result.text, nl=False)
    else:
        console.print(
            f"Rendered {len(result.paths)} file(s) under {target}: {len(result.changed)} "
            f"written, {len(result.removed)} removed, the rest unchanged.",
            markup=False,
        )
        for path in (*result.changed, *result.removed):
            mark = "-" if path in result.removed else "+"
            console.print(f"  {mark} {path.relative_to(target)}", markup=False)
    for line in result.rendered.omitted:
        console.print(f"Secret {line} omitted: create it in the cluster yourself.", markup=False)


@app.command()
@boundary
def check(stack: StackArg, as_json: JsonOpt = False, policy_config: PolicyConfigOpt = None) -> None:
    """Validate the config and run the policy pack on the offline synth (no engine needed)."""
    from msops.actions.check import Check

    console = _console()
    try:
        result = Check(_configuration(console), stack, policy_config=policy_config).run()
    except ConfigInvalid as exc:
        if as_json:
            _echo_json({"stack": stack, "ok": False, "problems": exc.problems, "violations": []})
        raise
    if as_json:
        _echo_json(
            {
                "stack": stack,
                "ok": result.ok,
                "problems": [],
                "violations": [
                    {"policy": v.policy, "level": v.level, "urn": v.urn, "message": v.message}
                    for v in result.violations
                ],
            }
        )
    else:
        console.print(f"Config of {stack}: valid ({result.resources} resources).")
        _print_violations(console, result.violations)
    if not result.ok:
        mandatory = sum(v.level == "mandatory" for v in result.violations)
        raise OperationFailed(
            f"{mandatory} mandatory policy violation(s) in stack {stack!r}; each is listed above "
            "with its resource and how to fix it (docs/policies.md)"
        )


def _watch(stack: str, timeout: float, as_json: bool) -> None:
    """`status --watch`: a live table at a terminal, a line per change elsewhere."""
    from msops import display
    from msops.actions.watch import Watch

    console = _console(stderr=as_json)
    cfg = _configuration(console)
    if as_json:
        result = Watch(cfg, stack, timeout).run()
        _echo_json(result.data())
    elif interactive():
        from rich.live import Live

        with Live(console=console, auto_refresh=False) as live:

            def show(current: Any) -> None:
                live.update(display.watch_table(stack, current), refresh=True)

            result = Watch(cfg, stack, timeout, on_round=show).run()
    else:
        result = Watch(cfg, stack, timeout, on_round=display.WatchLines()).run()
    if not as_json:
        console.print(f"({result.readiness_source})", markup=False)
    if not result.converged:
        raise OperationFailed(display.not_converged(stack, timeout, result.last.services))
    if not as_json:
        console.print(f"Converged: every service of {stack} is ready ({result.last.elapsed:.1f}s).")


@app.command()
@boundary
def logs(
    stack: StackArg,
    service: ServiceArg,
    replica: Annotated[
        int | None,
        typer.Option("--replica", min=1, help="Only this replica (1 = the first). Default: all."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only lines from this long ago on, e.g. 10m, 1h30m."),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option("--tail", "-n", min=0, help="Only the last N lines of each replica."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
) -> None:
    """Print a service's logs, merged across its replicas, each line prefixed with its replica."""
    from msops import display
    from msops.actions.logs import Logs, since_seconds
    from msops.runtime import LogQuery

    query = LogQuery(replica=replica, since_seconds=since_seconds(since), tail=tail, follow=follow)
    result = Logs(_configuration(_console(stderr=True)), stack, service, query).run()
    width = max((len(name) for name in result.replicas), default=len(service))
    # Following ends with Ctrl-C, as `docker logs -f` does: quietly, not as an interruption.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        display.write_lines(result.lines, width)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other CLIs do.
        sys.stderr.close()


@app.command()
@boundary
def drift(stack: StackArg, as_json: JsonOpt = False) -> None:
    """Find what changed outside msops: a refresh in preview mode, per resource and property.

    Exit 0: no drift; 1: drift (or the refresh failed).
    """
    from msops import display
    from msops.actions.drift import Drift

    console = _console(stderr=as_json)
    report = Drift(_configuration(console), stack).run()
    if as_json:
        _echo_json(report.data())
    else:
        display.print_drift(console, report)
    if report.drifted:
        raise typer.Exit(1)


@app.command("diff")
@diff_boundary
def diff_command(
    stack: StackArg,
    before: Annotated[
        int | None,
        typer.Argument(metavar="A", help="A release number (see `msops history`; oldest = 1)."),
    ] = None,
    after: Annotated[
        int | None,
        typer.Argument(metavar="B", help="The release to compare A with. Default: the stack file."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two releases, or a release and the stack file, per service and stack-wide.

    No release: the newest deployed one against the stack file. Exit 0: no difference;
    1: differences; 2: an error (an unknown stack or release, the engine did not answer).
    """
    from msops import display
    from msops.actions.diff import Diff

    result = Diff(_configuration(_console(stderr=True)), stack, before, after).run()
    if as_json:
        _echo_json(result.data())
    else:
        typer.echo(display.diff_text(result), nl=False)
    if result.different:
        raise typer.Exit(1)


@app.command()
@boundary
def refresh(stack: StackArg, yes: YesOpt = False) -> None:
    """Take what changed outside msops into the stack's state: show the drift, confirm, refresh."""
    from msops.actions.refresh import Refresh

    console = _console()
    result = Refresh(_configuration(console), stack, yes=yes).run()
    console.print(_plan_line(stack, result.changes).replace("Plan for", "Refreshed"))


@app.command()
@boundary
def destroy(stack: StackArg, yes: YesOpt = False) -> None:
    """Delete the stack's resources but keep its data: show what stays, confirm, destroy."""
    from msops import display
    from msops.actions.destroy import Destroy

    console = _console()
    result = Destroy(_configuration(console), stack, yes=yes).run()
    console.print(_plan_line(stack, result.changes).replace("Plan for", "Destroyed"))
    display.print_kept(console, stack, result.kept, done=True)


@app.command("add-service")
@boundary
def add_service(
    stack: StackArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new service's name.")],
    image: Annotated[
        str, typer.Option("--image", help="Exact image pin, e.g. ghcr.io/acme/api:1.0.0.")
    ],
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port it listens on. Default: 8080."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff and the policies; write nothing.")
    ] = False,
) -> None:
    """Add a service to a stack file, with the documented defaults and their comments."""
    from msops.actions.add_service import AddService

    console = _console()
    result = AddService(
        _configuration(console), stack, name, image, port=port, dry_run=dry_run
    ).run()
    if result.written:
        console.print(f"Added {name} to stacks/Pulumi.{stack}.yaml; `msops up {stack}` deploys it.")
    else:
        console.print("Dry run: nothing was written.")


def _subgroup(name: str, help: str) -> typer.Typer:
    """A command group under msops (`msops config ...`), with the app's cheap --help."""
    group = typer.Typer(
        name=name, cls=_Group, help=help, no_args_is_help=True, rich_markup_mode=None
    )
    app.add_typer(group)
    return group


config_app = _subgroup("config", "Read a stack's config.")


@config_app.command("show")
@boundary
def config_show(stack: StackArg, as_json: JsonOpt = False) -> None:
    """Show the effective config: every key with its default filled in, marked default or set."""
    from msops.actions.config_show import ConfigShow

    result = ConfigShow(_configuration(_console(stderr=True)), stack).run()
    if as_json:
        _echo_json(result.data())
    else:
        typer.echo(result.yaml(), nl=False)


secret_app = _subgroup(
    "secret", "Set a stack's secrets, encrypted into its stack file (never from the command line)."
)


def stdin_is_terminal() -> bool:
    """Whether stdin is a terminal (then a hidden prompt asks); tests replace this."""
    return sys.stdin.isatty()


def _secret_value(key: str, from_file: Path | None) -> str:
    """The value from a file, from stdin when it is not a terminal, else from a hidden prompt
    that asks twice."""
    if from_file is not None:
        try:
            return from_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise BadInput(f"--from-file {from_file}: cannot read it ({reason})") from None
    if not stdin_is_terminal():
        return sys.stdin.read()
    value: str = typer.prompt(
        f"Value of {key} (not shown)", hide_input=True, confirmation_prompt=True
    )
    return value


@secret_app.command("set", context_settings={"allow_extra_args": True})
@boundary
def secret_set(
    ctx: typer.Context,
    stack: StackArg,
    key: Annotated[
        str,
        typer.Argument(
            metavar="KEY",
            help="msops:databases.<db>.password, msops:databases.<db>.externalUrl or "
            "msops:secrets.<name> (`msops:` may be left out).",
        ),
    ],
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Read the value from this file (a certificate, a key) instead of stdin.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Set one secret, read from stdin or a hidden prompt; Pulumi encrypts it into the file."""
    from msops.actions.secret import SecretSet

    if ctx.args:
        # Never echoed: the word after KEY may well be the secret itself.
        raise BadInput(
            "msops secret set takes no value on the command line, where `ps` and the shell's "
            "history keep it (treat that value as exposed); pipe it on stdin or answer the prompt"
        )
    console = _console(stderr=True)
    value = _secret_value(key, from_file)
    result = SecretSet(_configuration(console), stack, key, value).run()
    was = {"plaintext": " (it was in plain text)", "secure": " (replacing the old value)"}
    typer.echo(
        f"Set {result.key} in stacks/Pulumi.{stack}.yaml, encrypted{was.get(result.before, '')}; "
        f"`msops up {stack}` deploys it."
    )
