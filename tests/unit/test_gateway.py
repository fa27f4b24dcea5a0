"""The gateway: the one door to Pulumi, its backend and passphrase rules, real-CLI round trips."""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import errors as auto_errors
from pulumi.automation._cmd import CommandResult
from pulumi.automation._stack import UpdateSummary
from pulumi.automation.events import EngineEvent, OpType
from typer.testing import CliRunner

from msops import gateway, releases
from msops.errors import BadInput, OperationFailed, StackLocked
from msops.gateway import Backend, PulumiGateway

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
NO_PULUMI = shutil.which("pulumi") is None
needs_pulumi = pytest.mark.skipif(
    NO_PULUMI,
    reason="the Pulumi CLI is not installed; install it with "
    "curl -fsSL https://get.pulumi.com | sh",
)
SKIP_DIRS = {
    ".venv",
    ".git",
    "tests",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


# --- the one door ---------------------------------------------------------------------------------


def _python_files() -> Iterator[Path]:
    for path in ROOT.rglob("*.py"):
        if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            yield path


def _imports_automation(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(
                a.name == "pulumi.automation" or a.name.startswith("pulumi.automation.")
                for a in node.names
            ):
                return True
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pulumi.automation" or node.module.startswith("pulumi.automation."):
                return True
            if node.module == "pulumi" and any(a.name == "automation" for a in node.names):
                return True
    return False


def test_gateway_is_the_only_module_that_imports_the_automation_api() -> None:
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in _python_files()
        if _imports_automation(ast.parse(path.read_text(), filename=str(path)))
    )
    assert importers == ["msops/gateway.py"], f"modules importing pulumi.automation: {importers}"


def test_the_import_scan_sees_every_import_form() -> None:
    forms = [
        "import pulumi.automation as auto",
        "from pulumi import automation",
        "from pulumi.automation.errors import CommandError",
    ]
    assert all(_imports_automation(ast.parse(f"def f():\n    {form}\n")) for form in forms)


# --- backend and passphrase -----------------------------------------------------------------------


def test_backend_url_from_the_environment_wins(tmp_path: Path) -> None:
    backend = gateway.resolve_backend(tmp_path, {"PULUMI_BACKEND_URL": "s3://bucket/state"})
    assert (backend.url, backend.env, backend.source) == ("s3://bucket/state", {}, "environment")


def test_logged_in_backend_is_used(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text(json.dumps({"current": "https://api.pulumi.com"}))
    backend = gateway.resolve_backend(tmp_path, {"PULUMI_HOME": str(tmp_path)})
    assert (backend.url, backend.env, backend.source) == ("https://api.pulumi.com", {}, "login")


def test_default_backend_is_a_file_backend_in_the_project(tmp_path: Path) -> None:
    backend = gateway.resolve_backend(tmp_path, {"PULUMI_HOME": str(tmp_path / "home")})
    expected = (tmp_path / ".pulumi-state").resolve().as_uri()
    assert (backend.url, backend.env) == (expected, {"PULUMI_BACKEND_URL": expected})


def test_empty_login_falls_back_to_the_project_backend(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text(json.dumps({"current": "", "accessTokens": {}}))
    backend = gateway.resolve_backend(tmp_path, {"PULUMI_HOME": str(tmp_path)})
    assert backend.source == "project"


@pytest.mark.parametrize(
    ("url", "stack_file", "expected"),
    [
        ("file:///state", "config: {}\n", True),
        ("https://api.pulumi.com", "config: {}\n", False),
        ("https://api.pulumi.com", "encryptionsalt: v1:abc\nconfig: {}\n", True),
        ("file:///state", "secretsprovider: awskms://alias/x\nconfig: {}\n", False),
        ("s3://bucket", "secretsprovider: passphrase\nconfig: {}\n", True),
    ],
)
def test_needs_passphrase(tmp_path: Path, url: str, stack_file: str, expected: bool) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(stack_file)
    assert gateway.needs_passphrase(Backend(url, {}, "environment"), path) is expected


def test_stack_config_dir_comes_from_the_project_file() -> None:
    assert gateway.stack_config_dir(ROOT) == ROOT / "stacks"


def fake_pulumi(tmp_path: Path) -> dict[str, str]:
    """An environment whose PULUMI_HOME holds an executable `bin/pulumi` and nothing on PATH."""
    binary = tmp_path / "home" / "bin" / "pulumi"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)
    return {"PATH": str(tmp_path / "empty"), "PULUMI_HOME": str(tmp_path / "home")}


def test_missing_cli_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(OperationFailed, match=r"curl -fsSL https://get\.pulumi\.com \| sh"):
        PulumiGateway(ROOT, {"PATH": str(tmp_path), "PULUMI_HOME": str(tmp_path)})


def test_cli_is_found_where_the_installer_puts_it(tmp_path: Path) -> None:
    env = fake_pulumi(tmp_path)
    assert gateway.find_pulumi(env) == tmp_path / "home" / "bin" / "pulumi"


def test_missing_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    gw = PulumiGateway(ROOT, fake_pulumi(tmp_path))
    with pytest.raises(
        BadInput, match="set PULUMI_CONFIG_PASSPHRASE, or PULUMI_CONFIG_PASSPHRASE_FILE"
    ):
        gw.history("dev")


def test_an_empty_passphrase_counts_as_set(tmp_path: Path) -> None:
    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})
    gw._check_passphrase("dev")  # raises when missing
    assert gw.backend.startswith("file://")


# --- error mapping --------------------------------------------------------------------------------


def result(stderr: str, stdout: str = "") -> CommandResult:
    return CommandResult(stdout=stdout, stderr=stderr, code=255)


def mapped(exc: Exception, tmp_path: Path) -> Exception:
    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})
    try:
        with gw._engine("dev", "the update"):
            raise exc
    except Exception as caught:
        return caught
    raise AssertionError("not re-raised")


def test_concurrent_update_is_stack_locked(tmp_path: Path) -> None:
    error = auto_errors.ConcurrentUpdateError(
        result("error: the stack is currently locked by 1 lock(s): file:///s/.pulumi/locks/x.json")
    )
    caught = mapped(error, tmp_path)
    assert (
        isinstance(caught, StackLocked) and caught.exit_code == 3 and "locks/x.json" in str(caught)
    )


def test_missing_stack_is_not_deployed(tmp_path: Path) -> None:
    caught = mapped(
        auto_errors.StackNotFoundError(result("error: no stack named 'dev' found")), tmp_path
    )
    assert isinstance(caught, gateway.NotDeployed) and caught.exit_code == 2


def test_command_error_keeps_the_error_lines(tmp_path: Path) -> None:
    stdout = (
        "Diagnostics:\n  docker:Container (web-1):\n    error: port 8000 is already allocated\n"
    )
    caught = mapped(auto_errors.CommandError(result("error: update failed", stdout)), tmp_path)
    assert isinstance(caught, OperationFailed) and str(caught) == (
        "the update of stack 'dev' failed:\n  error: update failed\n"
        "  error: port 8000 is already allocated"
    )


# --- conversions ----------------------------------------------------------------------------------


def test_history_entries_keep_version_zero_and_secret_flags() -> None:
    summary = UpdateSummary(
        kind="update",
        start_time=datetime(2025, 3, 1),
        message="deploy",
        environment={},
        config={
            "msops:backend": {"value": "docker", "secret": False},
            "msops:secrets": {"value": '{"apiKey": "k"}', "secret": True},
        },
        result="succeeded",
        version=0,
        resource_changes={OpType.CREATE: 3},
    )
    update = gateway._update(summary)
    assert (update.version, update.config["msops:secrets"], update.changes) == (
        0,
        releases.ConfigEntry('{"apiKey": "k"}', True),
        {"create": 3},
    )


def step(kind: str, op: str = "update") -> EngineEvent:
    metadata = {"op": op, "urn": "urn:pulumi:dev::msops::x", "type": "t", "provider": ""}
    return EngineEvent.from_json({kind: {"metadata": metadata}})


@pytest.mark.parametrize(
    ("event", "kind"),
    [("resourcePreEvent", "start"), ("resOutputsEvent", "done"), ("resOpFailedEvent", "failed")],
)
def test_engine_steps_become_notes(event: str, kind: str) -> None:
    note = gateway._note(step(event, "create"))
    assert note == releases.EngineNote(kind=kind, op="create", urn="urn:pulumi:dev::msops::x")  # type: ignore[arg-type]


def test_info_diagnostics_are_dropped() -> None:
    event = EngineEvent.from_json(
        {"diagnosticEvent": {"message": "hello", "color": "never", "severity": "info"}}
    )
    assert gateway._note(event) is None


class PagedStack:
    """A Stack whose history pages like `pulumi stack history --page-size --page`."""

    def __init__(self, count: int) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.summaries = [
            UpdateSummary(
                "update", datetime(2025, 1, 1, 0, i), f"u{i}", {}, {}, "succeeded", version=0
            )
            for i in reversed(range(count))
        ]

    def history(self, page_size: int, page: int, show_secrets: bool) -> list[UpdateSummary]:
        self.calls.append((page_size, page, show_secrets))
        return self.summaries[(page - 1) * page_size : page * page_size]


def test_history_pages_through_every_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})
    stack = PagedStack(23)
    monkeypatch.setattr(gw, "_stack", lambda name, create=False: stack)
    gw.history_page_size = 10
    got = gw.history("dev")
    assert (len(got), stack.calls) == (23, [(10, 1, True), (10, 2, True), (10, 3, True)])


def test_history_of_a_stack_never_deployed_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})

    def missing(name: str, create: bool = False) -> Any:
        raise gateway.NotDeployed("never deployed")

    monkeypatch.setattr(gw, "_stack", missing)
    assert gw.history("dev") == []


# --- with the real Pulumi CLI ---------------------------------------------------------------------

TINY_PROGRAM = '''\
"""A tiny program: exports what msops reads back, creates nothing."""
import pulumi

config = pulumi.Config("msops")
services = config.require_object("services")
pulumi.export("backend", config.get("backend") or "docker")
pulumi.export(
    "services",
    {
        name: {"image": svc["image"], "replicas": svc.get("replicas", 1), "url": None}
        for name, svc in services.items()
    },
)
'''

TINY_STACK = """\
# tiny: one service, for the round-trip tests.
config:
  msops:backend: docker
  msops:services:
    web:
      image: msops/demo:1.0.0
      # Two, so that a scale has something to change.
      replicas: 2
"""


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, dict[str, str]]]:
    """A throwaway project with the tiny program, a file backend in tmp and its own PULUMI_HOME."""
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text(
        "name: msops\nruntime:\n  name: python\n  options:\n"
        f"    virtualenv: {sys.prefix}\nstackConfigDir: stacks\n"
    )
    (project / "__main__.py").write_text(TINY_PROGRAM)
    (project / "stacks" / "Pulumi.tiny.yaml").write_text(TINY_STACK)
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": "round-trip",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    (tmp_path / "state").mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield project, env


@needs_pulumi
@pytest.mark.timeout(600)
def test_real_up_records_numbered_history(tiny: tuple[Path, dict[str, str]]) -> None:
    project, env = tiny
    gw = PulumiGateway(project, env)
    gw.up("tiny", message="first")
    gw.up("tiny", message="second")
    rels = releases.number_releases(gw.history("tiny"))
    assert [(r.number, r.update.message, r.result) for r in rels] == [
        (1, "first", "succeeded"),
        (2, "second", "succeeded"),
    ]


@needs_pulumi
@pytest.mark.timeout(600)
def test_real_history_pages_beyond_one_page(tiny: tuple[Path, dict[str, str]]) -> None:
    project, env = tiny
    gw = PulumiGateway(project, env)
    for i in range(3):
        gw.up("tiny", message=f"update {i}")
    gw.history_page_size = 2
    assert len(gw.history("tiny")) == 3


@needs_pulumi
@pytest.mark.timeout(600)
def test_real_secret_is_encrypted_into_the_stack_config_dir(
    tiny: tuple[Path, dict[str, str]],
) -> None:
    project, env = tiny
    gw = PulumiGateway(project, env)
    gw.up("tiny")
    gw.set_secret("tiny", "msops:secrets.apiKey", "plain-text-key", path=True)
    text = (project / "stacks" / "Pulumi.tiny.yaml").read_text()
    current = gw.current_config("tiny")
    assert "plain-text-key" not in text and "secure:" in text
    secrets = current["msops:secrets"]
    assert secrets.secret and json.loads(secrets.value) == {"apiKey": "plain-text-key"}


@needs_pulumi
@pytest.mark.timeout(900)
def test_real_msops_up_scale_and_rollback_round_trip(
    tiny: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from msops import cli, stackfiles

    project, env = tiny
    monkeypatch.setattr(stackfiles, "STACKS_DIR", project / "stacks")
    monkeypatch.setattr(cli, "make_gateway", lambda: PulumiGateway(project, env))
    # The policy pack judges the real program; the tiny program has nothing to judge.
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])
    runner = CliRunner()
    for args in (
        ["up", "tiny", "--yes"],
        ["scale", "tiny", "web", "3", "--yes"],
        ["rollback", "tiny", "--yes"],
    ):
        outcome = runner.invoke(cli.app, args)
        assert outcome.exit_code == 0, f"msops {' '.join(args)}: {outcome.output}"
    text = (project / "stacks" / "Pulumi.tiny.yaml").read_text()
    rows = json.loads(runner.invoke(cli.app, ["history", "tiny", "--json"]).stdout)
    assert [r["replicas"]["web"] for r in rows] == ["2", "3", "2"] and "# Two, so that" in text


# --- colour ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terminal", "environ", "expected"),
    [
        (True, {}, "always"),
        (False, {}, "never"),
        (True, {"NO_COLOR": "1"}, "never"),
        (False, {"NO_COLOR": "1"}, "never"),
        # no-color.org: an empty NO_COLOR does not count.
        (True, {"NO_COLOR": ""}, "always"),
    ],
    ids=["terminal", "pipe", "terminal-no-color", "pipe-no-color", "empty-no-color"],
)
def test_engine_colour_follows_the_terminal_and_no_color(
    terminal: bool, environ: dict[str, str], expected: str
) -> None:
    assert gateway.engine_color(terminal, environ) == expected


class RecordingStack:
    """A Stack that records the keyword arguments of each engine call."""

    def __init__(self) -> None:
        self.kwargs: dict[str, dict[str, Any]] = {}

    def preview(self, **kwargs: Any) -> Any:
        self.kwargs["preview"] = kwargs
        return type("Preview", (), {"change_summary": {"same": 1}})()

    def refresh(self, **kwargs: Any) -> Any:
        self.kwargs["refresh"] = kwargs
        summary = type("Summary", (), {"resource_changes": {"same": 1}})()
        return type("Refresh", (), {"summary": summary})()


@pytest.mark.parametrize(("terminal", "expected"), [(True, "always"), (False, "never")])
def test_engine_runs_get_the_colour_of_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool, expected: str
) -> None:
    env = {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""}
    gw = PulumiGateway(ROOT, env, stdout_is_terminal=terminal)
    stack = RecordingStack()
    monkeypatch.setattr(gw, "_stack", lambda name, create=False, env=None: stack)
    gw.preview("dev")
    gw.refresh("dev")
    assert {op: kw["color"] for op, kw in stack.kwargs.items()} == {
        "preview": expected,
        "refresh": expected,
    }


def test_no_color_keeps_a_terminal_run_plain(tmp_path: Path) -> None:
    env = {**fake_pulumi(tmp_path), "NO_COLOR": "1"}
    assert PulumiGateway(ROOT, env, stdout_is_terminal=True).color == "never"
