"""The only module that talks to the Pulumi Automation API: history, config, preview, up,
refresh and destroy."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi.automation as auto
from pulumi.automation import errors as auto_errors
from ruamel.yaml import YAML

from msops import releases
from msops.errors import BadInput, MsopsError, OperationFailed, StackLocked
from msops.lifecycle import EngineRun, StepRecord
from msops.releases import ConfigEntry, EngineNote, OnEvent, OnOutput, Update, UpResult

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ".pulumi-state"
INSTALL_COMMAND = "curl -fsSL https://get.pulumi.com | sh"
PASSPHRASE_VARS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
# The commands that never reach the engine, named when the Pulumi CLI is missing.
OFFLINE_COMMANDS = (
    "`msops check`, `render`, `config show`, `add-service`, `logs` and `status --watch`"
)


def engine_color(stdout_is_terminal: bool, environ: Mapping[str, str]) -> str:
    """Pulumi's `color` for this run: its coloured diff at a terminal, plain text for a pipe,
    a file or CI, and whenever NO_COLOR is set to anything but "" (https://no-color.org)."""
    if not stdout_is_terminal or environ.get("NO_COLOR"):
        return "never"
    return "always"


class NotDeployed(BadInput):
    """The backend has no such stack: it was never deployed there."""


@dataclass(frozen=True)
class Backend:
    """Where state lives, and the environment that points the Pulumi CLI at it."""

    url: str
    env: dict[str, str]
    # "environment" (PULUMI_BACKEND_URL), "login" (`pulumi login`) or "project" (the default).
    source: str

    @property
    def self_managed(self) -> bool:
        """A DIY backend (file, s3, gs, azblob), whose default secrets provider is a passphrase."""
        return not self.url.startswith(("https://", "http://"))


def pulumi_home(environ: Mapping[str, str]) -> Path:
    home = environ.get("PULUMI_HOME")
    return Path(home) if home else Path.home() / ".pulumi"


def logged_in_url(environ: Mapping[str, str]) -> str | None:
    """The backend of the current `pulumi login`, from credentials.json's `current` field only."""
    path = pulumi_home(environ) / "credentials.json"
    try:
        current = json.loads(path.read_text()).get("current")
    except (OSError, ValueError, AttributeError):
        return None
    return current if isinstance(current, str) and current else None


def resolve_backend(project_dir: Path, environ: Mapping[str, str]) -> Backend:
    """PULUMI_BACKEND_URL if set, else the logged-in backend, else a file backend in the project."""
    url = environ.get("PULUMI_BACKEND_URL")
    if url:
        return Backend(url=url, env={}, source="environment")
    url = logged_in_url(environ)
    if url:
        return Backend(url=url, env={}, source="login")
    state = (project_dir / STATE_DIR).resolve()
    url = state.as_uri()
    return Backend(url=url, env={"PULUMI_BACKEND_URL": url}, source="project")


def stack_config_dir(project_dir: Path) -> Path:
    """Where the project keeps its stack files (Pulumi.yaml's stackConfigDir)."""
    try:
        project = YAML(typ="safe").load((project_dir / "Pulumi.yaml").read_text()) or {}
    except (OSError, ValueError):
        project = {}
    configured = project.get("stackConfigDir") if isinstance(project, dict) else None
    return project_dir / configured if isinstance(configured, str) else project_dir


def needs_passphrase(backend: Backend, stack_file: Path) -> bool:
    """Whether the stack's secrets provider is a passphrase, per its stack file and backend."""
    try:
        settings = YAML(typ="safe").load(stack_file.read_text()) or {}
    except (OSError, ValueError):
        settings = {}
    if not isinstance(settings, dict):
        settings = {}
    provider = settings.get("secretsprovider")
    if isinstance(provider, str) and provider:
        return provider == "passphrase"
    if settings.get("encryptionsalt"):
        return True
    return backend.self_managed


def find_pulumi(environ: Mapping[str, str]) -> Path | None:
    """The `pulumi` binary: on PATH, or where the official installer puts it."""
    found = shutil.which("pulumi", path=environ.get("PATH"))
    if found:
        return Path(found)
    installed = pulumi_home(environ) / "bin" / "pulumi"
    return installed if installed.is_file() and os.access(installed, os.X_OK) else None


def _command_output(exc: Exception) -> tuple[str, str]:
    """stdout and stderr of a failed CLI call (CommandError keeps them only in its text)."""
    text = str(exc)
    stdout, _, stderr = text.partition("\n stderr: ")
    stdout = stdout.partition("\n stdout: ")[2]
    return stdout, stderr


def engine_error_message(exc: Exception, action: str, stack: str) -> str:
    """A short account of a failed CLI call: its `error:` lines, else the tail of stderr."""
    stdout, stderr = _command_output(exc)
    lines: list[str] = []
    for line in (stderr + "\n" + stdout).splitlines():
        stripped = line.strip()
        if stripped.startswith("error:") and stripped not in lines:
            lines.append(stripped)
    if not lines:
        lines = [line.strip() for line in stderr.strip().splitlines()[-5:] if line.strip()]
    detail = "\n".join(f"  {line}" for line in lines[:10]) or "  (the Pulumi CLI printed no error)"
    return f"{action} of stack {stack!r} failed:\n{detail}"


class PulumiGateway:
    """msops's port to Pulumi, over the local program in `project_dir` and its stack files."""

    def __init__(
        self,
        project_dir: Path = PROJECT_ROOT,
        environ: Mapping[str, str] | None = None,
        stdout_is_terminal: bool | None = None,
    ):
        self.project_dir = project_dir
        self._environ = dict(os.environ if environ is None else environ)
        if stdout_is_terminal is None:
            stdout_is_terminal = sys.stdout.isatty()
        self.color = engine_color(stdout_is_terminal, self._environ)
        self._backend = resolve_backend(project_dir, self._environ)
        binary = find_pulumi(self._environ)
        if binary is None:
            raise OperationFailed(
                "the Pulumi CLI is not installed, and msops needs it for this command; install "
                f"it with:\n  {INSTALL_COMMAND}\n({OFFLINE_COMMANDS} work without it)"
            )
        self._binary = binary
        self._command: auto.PulumiCommand | None = None
        self.history_page_size = releases.HISTORY_PAGE_SIZE

    @property
    def backend(self) -> str:
        return self._backend.url

    # --- plumbing ---------------------------------------------------------------------------------

    def _pulumi_command(self) -> auto.PulumiCommand:
        if self._command is None:
            on_path = shutil.which("pulumi", path=self._environ.get("PATH"))
            root = None if on_path else str(self._binary.parent.parent)
            try:
                self._command = auto.PulumiCommand(root=root)
            except auto_errors.InvalidVersionError as exc:
                raise OperationFailed(
                    f"the installed Pulumi CLI is too old for msops ({exc}); update it with:\n"
                    f"  {INSTALL_COMMAND}"
                ) from None
        return self._command

    def _check_passphrase(self, stack: str) -> None:
        stack_file = stack_config_dir(self.project_dir) / f"Pulumi.{stack}.yaml"
        if any(var in self._environ for var in PASSPHRASE_VARS):
            return
        if needs_passphrase(self._backend, stack_file):
            raise BadInput(
                f"stack {stack!r} keeps its secrets with a passphrase (the default on the "
                f"backend {self._backend.url}); set PULUMI_CONFIG_PASSPHRASE, or "
                "PULUMI_CONFIG_PASSPHRASE_FILE to a file that holds it. For a throwaway local "
                "stack an empty one works: export PULUMI_CONFIG_PASSPHRASE=''"
            )

    def _workspace(self, extra_env: Mapping[str, str] | None = None) -> auto.LocalWorkspace:
        env = {**self._backend.env, "PULUMI_SKIP_UPDATE_CHECK": "true", **(extra_env or {})}
        if self._backend.source == "project":
            (self.project_dir / STATE_DIR).mkdir(exist_ok=True)
        return auto.LocalWorkspace(
            work_dir=str(self.project_dir), env_vars=env, pulumi_command=self._pulumi_command()
        )

    @contextmanager
    def _engine(self, stack: str, action: str) -> Iterator[None]:
        """Turn Automation API failures into msops errors with their exit codes."""
        try:
            yield
        except MsopsError:
            raise
        except auto_errors.ConcurrentUpdateError as exc:
            stdout, stderr = _command_output(exc)
            lock = next(
                (line.strip() for line in (stderr + "\n" + stdout).splitlines() if "lock" in line),
                "",
            )
            raise StackLocked(
                f"stack {stack!r} is locked: another update is running, or one crashed and left "
                f"its lock behind.{' ' + lock if lock else ''} Wait for it to finish; if none is "
                f"running, `pulumi cancel --stack {stack}` (Pulumi Cloud) or deleting the lock "
                "file named above (self-managed backends) releases it"
            ) from None
        except auto_errors.StackNotFoundError:
            raise NotDeployed(
                f"stack {stack!r} has never been deployed to {self._backend.url}; "
                f"run `msops up {stack}` first"
            ) from None
        except auto_errors.CommandError as exc:
            raise OperationFailed(engine_error_message(exc, action, stack)) from None
        except FileNotFoundError as exc:
            raise OperationFailed(
                f"{action} of stack {stack!r} failed: {exc}; check that the Pulumi CLI "
                f"({self._binary}) and the project directory ({self.project_dir}) are there"
            ) from None

    def _stack(
        self, stack: str, *, create: bool = False, env: Mapping[str, str] | None = None
    ) -> auto.Stack:
        self._check_passphrase(stack)
        with self._engine(stack, "selecting"):
            workspace = self._workspace(env)
            if create:
                return auto.Stack.create_or_select(stack, workspace)
            return auto.Stack.select(stack, workspace)
        raise AssertionError("unreachable")  # pragma: no cover - _engine re-raises

    # --- the Gateway protocol ---------------------------------------------------------------------

    def history(self, stack: str) -> list[Update]:
        try:
            selected = self._stack(stack)
        except NotDeployed:
            return []

        def page(number: int, size: int) -> list[Update]:
            with self._engine(stack, "reading the history"):
                summaries = selected.history(page_size=size, page=number, show_secrets=True)
            return [_update(s) for s in summaries]

        return releases.all_pages(page, self.history_page_size)

    def current_config(self, stack: str) -> dict[str, ConfigEntry]:
        selected = self._stack(stack)
        with self._engine(stack, "reading the config"):
            values = selected.get_all_config()
        return {
            k: ConfigEntry(value=str(v.value), secret=bool(v.secret)) for k, v in values.items()
        }

    def set_secret(self, stack: str, key: str, value: str, *, path: bool) -> None:
        # Through the CLI, which honours stackConfigDir (LocalWorkspace.stack_settings does not).
        # Created if need be: a stack's secrets are set before its first `up`.
        selected = self._stack(stack, create=True)
        with self._engine(stack, f"setting the secret {key}"):
            selected.set_config(key, auto.ConfigValue(value=value, secret=True), path=path)

    def preview(
        self, stack: str, *, on_output: OnOutput | None = None, on_event: OnEvent | None = None
    ) -> dict[str, int]:
        selected = self._stack(stack, create=True)
        with self._engine(stack, "the preview"):
            result = selected.preview(
                on_output=on_output, on_event=_events(on_event), color=self.color
            )
        return {_op(op): int(n) for op, n in (result.change_summary or {}).items()}

    def up(
        self,
        stack: str,
        *,
        message: str | None = None,
        env: Mapping[str, str] | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> UpResult:
        # The workspace's env reaches the program: how msops hands it a canary step.
        selected = self._stack(stack, create=True, env=env)
        with self._engine(stack, "the update"):
            result = selected.up(
                message=message, on_output=on_output, on_event=_events(on_event), color=self.color
            )
        changes = result.summary.resource_changes or {}
        return UpResult(
            result=result.summary.result,
            outputs=_plain_outputs(result.outputs),
            changes={_op(op): int(n) for op, n in changes.items()},
        )

    def outputs(self, stack: str) -> dict[str, Any]:
        try:
            selected = self._stack(stack)
        except NotDeployed:
            return {}
        with self._engine(stack, "reading the outputs"):
            return _plain_outputs(selected.outputs())

    def preview_refresh(
        self, stack: str, *, on_output: OnOutput | None = None, on_event: OnEvent | None = None
    ) -> EngineRun:
        return self._steps(stack, "the refresh preview", "preview_refresh", on_output, on_event)

    def refresh(
        self,
        stack: str,
        *,
        message: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> EngineRun:
        return self._steps(stack, "the refresh", "refresh", on_output, on_event, message=message)

    # Protected resources (the database volumes), and what they need, stay, state included.
    def preview_destroy(
        self, stack: str, *, on_output: OnOutput | None = None, on_event: OnEvent | None = None
    ) -> EngineRun:
        return self._steps(
            stack,
            "the destroy preview",
            "preview_destroy",
            on_output,
            on_event,
            exclude_protected=True,
        )

    def destroy(
        self,
        stack: str,
        *,
        message: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> EngineRun:
        options = {"exclude_protected": True, "message": message}
        return self._steps(stack, "the destroy", "destroy", on_output, on_event, **options)

    def _steps(
        self,
        stack: str,
        action: str,
        operation: str,
        on_output: OnOutput | None,
        on_event: OnEvent | None,
        **options: Any,
    ) -> EngineRun:
        """A refresh or destroy (or its preview) of a deployed stack, step by step."""
        selected = self._stack(stack)
        steps = StepRecorder(on_event)
        with self._engine(stack, action):
            result = getattr(selected, operation)(
                on_output=on_output, on_event=steps, color=self.color, **options
            )
        # A preview reports its counts itself; a refresh or destroy in the stack's summary.
        preview = getattr(result, "change_summary", None)
        return steps.run(preview if preview is not None else result.summary.resource_changes)


def _op(op: Any) -> str:
    return str(getattr(op, "value", op))


def _plain_outputs(outputs: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    """Output values with every secret replaced by "[secret]", so nothing can print one."""
    return {k: releases.SECRET_PLACEHOLDER if v.secret else v.value for k, v in outputs.items()}


def _update(summary: auto.UpdateSummary) -> Update:
    changes = summary.resource_changes or {}
    return Update(
        kind=summary.kind,
        result=summary.result,
        start_time=summary.start_time,
        end_time=summary.end_time,
        message=summary.message or "",
        version=summary.version,
        config={
            k: ConfigEntry(value=str(v.value), secret=bool(v.secret))
            for k, v in summary.config.items()
        },
        changes={_op(op): int(n) for op, n in changes.items()},
    )


def _events(on_event: OnEvent | None) -> auto.OnEvent | None:
    if on_event is None:
        return None

    def forward(event: auto.EngineEvent) -> None:
        note = _note(event)
        if note is not None:
            on_event(note)

    return forward


class StepRecorder:
    """An engine event handler that keeps each resource's last step, and forwards the notes."""

    def __init__(self, on_event: OnEvent | None = None) -> None:
        self._forward = _events(on_event)
        self._steps: dict[str, StepRecord] = {}

    def __call__(self, event: auto.EngineEvent) -> None:
        step = step_record(event)
        if step is not None:
            # The outputs event, which carries a refresh's result, comes after the pre event.
            self._steps[step.urn] = step
        if self._forward is not None:
            self._forward(event)

    def run(self, changes: Mapping[Any, Any] | None) -> EngineRun:
        counts = {_op(op): int(n) for op, n in (changes or {}).items()}
        return EngineRun(changes=counts, steps=tuple(self._steps.values()))


def step_record(event: auto.EngineEvent) -> StepRecord | None:
    """The step an engine event reports, as plain data; None for events that carry none."""
    holder = event.res_outputs_event or event.resource_pre_event or event.res_op_failed_event
    if holder is None:
        return None
    meta = holder.metadata
    state = meta.old or meta.new
    return StepRecord(
        op=_op(meta.op),
        urn=meta.urn,
        type=meta.type,
        old_outputs=_masked(meta.old.outputs) if meta.old else None,
        new_outputs=_masked(meta.new.outputs) if meta.new else None,
        diffs=tuple(meta.diffs or ()),
        detailed_diff={k: _op(v.diff_kind) for k, v in (meta.detailed_diff or {}).items()},
        protect=bool(state and state.protect),
        retain_on_delete=bool(state and state.retain_on_delete),
    )


# Pulumi's wire signature of a secret value (sdk/go/common/resource/sig).
_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _masked(value: Any) -> Any:
    """A property value with every secret as "[secret]": the CLI masks them, this makes sure."""
    if isinstance(value, Mapping):
        if value.get(_SIG) == _SECRET_SIG:
            return releases.SECRET_PLACEHOLDER
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _note(event: auto.EngineEvent) -> EngineNote | None:
    if event.resource_pre_event is not None:
        meta = event.resource_pre_event.metadata
        return EngineNote(kind="start", op=_op(meta.op), urn=meta.urn)
    if event.res_outputs_event is not None:
        meta = event.res_outputs_event.metadata
        return EngineNote(kind="done", op=_op(meta.op), urn=meta.urn)
    if event.res_op_failed_event is not None:
        meta = event.res_op_failed_event.metadata
        return EngineNote(kind="failed", op=_op(meta.op), urn=meta.urn)
    diagnostic = event.diagnostic_event
    if diagnostic is not None and diagnostic.severity in ("error", "warning"):
        return EngineNote(
            kind="diagnostic",
            message=diagnostic.message.strip(),
            severity=diagnostic.severity,
            urn=diagnostic.urn or "",
        )
    return None
