"""Every `--json` output, through the CLI, validates against docs/json-output.schema.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner, Result

from msops import cli, releases
from msops.actions.base import Configuration
from msops.lifecycle import EngineRun, StepRecord
from msops.runtime import LogLine, LogQuery, Readiness
from tests import fakes

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "json-output.schema.json").read_text())
DOC = ROOT / "docs" / "cli.md"


def validate(data: Any, command: str) -> None:
    """`data` against the schema's definition for `command`, naming the first mismatch."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    schema = {"$ref": f"#/$defs/{command}", "$defs": SCHEMA["$defs"]}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, f"{command} --json: {errors[0].json_path}: {errors[0].message}"


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    (directory / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    monkeypatch.setattr(cli, "interactive", lambda: False)
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])
    return directory


@pytest.fixture
def gw(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.FakeGateway:
    outputs = {
        "backend": "docker",
        "services": {"web": {"image": "msops/demo:1.3.2", "replicas": 2, "url": None}},
        "prometheusUrl": "http://127.0.0.1:9090",
        "grafanaAdminPassword": "[secret]",
    }
    history = {"dev": fakes.realistic_history(), "prod": fakes.realistic_history()}
    gateway = fakes.FakeGateway(stacks, history, {"dev": outputs})
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    return gateway


def run(*args: str) -> tuple[Result, Any]:
    outcome = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in outcome.output, outcome.output
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return outcome, json.loads(outcome.stdout)


# --- each command ---------------------------------------------------------------------------------


def test_history_json_validates(gw: fakes.FakeGateway) -> None:
    outcome, data = run("history", "dev", "--json")
    assert outcome.exit_code == 0 and len(data) == 14
    validate(data, "history")


def test_history_json_gives_replicas_as_numbers_and_times_in_utc(gw: fakes.FakeGateway) -> None:
    _, data = run("history", "dev", "--json")
    newest = data[0]
    assert newest["replicas"] == {"web": 2}
    assert newest["time"] == "2025-03-01T22:00:00Z"


def test_history_json_gives_an_autoscaled_service_its_bounds(
    gw: fakes.FakeGateway, stacks: Path
) -> None:
    gw.updates["prod"] = [_update_of(stacks / "Pulumi.prod.yaml")]
    _, data = run("history", "prod", "--json")
    validate(data, "history")
    assert data[0]["replicas"]["web"] == {"min": 3, "max": 10}


def _update_of(path: Path) -> releases.Update:
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load(path.read_text())["config"]
    return releases.Update(
        kind="update",
        result="succeeded",
        start_time=datetime(2025, 3, 2, 9, 0, tzinfo=UTC),
        version=4,
        config=fakes.entries(config, set()),
    )


def test_a_zoned_time_is_given_in_utc() -> None:
    from datetime import timedelta, timezone

    moment = datetime(2025, 3, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    assert releases.rfc3339(moment) == "2025-03-01T09:00:00Z"


def test_status_json_validates(gw: fakes.FakeGateway) -> None:
    outcome, data = run("status", "dev", "--json")
    assert outcome.exit_code == 0 and data["services"][0]["replicas"] == 2
    validate(data, "status")


def test_status_json_of_an_autoscaled_service_validates(gw: fakes.FakeGateway) -> None:
    _, data = run("status", "prod", "--json")
    assert data["services"][0]["replicas"] == {"min": 3, "max": 10}
    validate(data, "status")


def test_check_json_validates(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = [fakes.Violation("mandatory"), fakes.Violation("advisory", "probes")]
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: found)
    outcome, data = run("check", "dev", "--json")
    assert outcome.exit_code == 1 and [v["level"] for v in data["violations"]] == [
        "mandatory",
        "advisory",
    ]
    validate(data, "check")


def test_check_json_of_an_invalid_config_validates(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("replicas: 2", "replicas: two"))
    outcome, data = run("check", "dev", "--json")
    assert outcome.exit_code == 2 and data["ok"] is False and data["problems"]
    validate(data, "check")


def test_config_show_json_validates(stacks: Path) -> None:
    outcome, data = run("config", "show", "dev", "--json")
    assert outcome.exit_code == 0 and data["sources"]["msops:backend"] == "set"
    validate(data, "configShow")


def test_diff_json_validates(gw: fakes.FakeGateway) -> None:
    outcome, data = run("diff", "dev", "1", "14", "--json")
    assert outcome.exit_code == 1 and data["different"] is True
    validate(data, "diff")


def test_drift_json_validates(gw: fakes.FakeGateway) -> None:
    urn = "urn:pulumi:dev::msops::msops:docker:Service$docker:index/container:Container::dev-web-1"
    step = StepRecord(
        op="update",
        urn=urn,
        type="docker:index/container:Container",
        old_outputs={"memory": 256, "labels": [{"label": "a", "value": "1"}]},
        new_outputs={"memory": 512, "labels": [{"label": "a", "value": "2"}], "restart": "no"},
    )
    gone = StepRecord(op="delete", urn=urn.replace("web-1", "web-2"), type=step.type)
    gw.engine_runs["preview_refresh"] = EngineRun({"same": 20, "update": 2}, (step, gone))
    outcome, data = run("drift", "dev", "--json")
    assert outcome.exit_code == 1 and [r["change"] for r in data["resources"]] == [
        "changed",
        "gone",
    ]
    validate(data, "drift")


class Scripted:
    """A runtime whose every service is ready."""

    where = "a scripted engine"
    readiness_source = "scripted"

    def readiness(self, workload: Any) -> Readiness:
        n = workload.replicas
        return Readiness(workload.name, n, n, n, n, "ready", True, False)

    def replicas(self, workload: Any) -> list[str]:
        return []

    def logs(self, workload: Any, query: LogQuery) -> Any:
        return iter([LogLine("web-1", "hello")])

    def close(self) -> None:
        return None


def test_watch_json_validates(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli._configuration

    def scripted(console: Any) -> Configuration:
        cfg = real(console)
        cfg.runtime = lambda plan: Scripted()
        return cfg

    monkeypatch.setattr(cli, "_configuration", scripted)
    outcome, data = run("status", "dev", "--watch", "--json")
    assert outcome.exit_code == 0 and data["converged"] is True
    validate(data, "watch")


# --- errors ---------------------------------------------------------------------------------------

JSON_COMMANDS = [
    ["history", "nope", "--json"],
    ["status", "nope", "--json"],
    ["status", "nope", "--watch", "--json"],
    ["check", "nope", "--json"],
    ["drift", "nope", "--json"],
    ["config", "show", "nope", "--json"],
    ["diff", "nope", "--json"],
]


@pytest.mark.parametrize("args", JSON_COMMANDS, ids=lambda a: " ".join(a[:-2]))
def test_an_error_under_json_prints_the_error_object(
    gw: fakes.FakeGateway, args: list[str]
) -> None:
    outcome, data = run(*args)
    validate(data, "error")
    assert outcome.exit_code == 2 and data["error"]["code"] == 2
    assert "Pulumi.nope.yaml" in data["error"]["problems"][0]
    assert "error: " in outcome.stderr, "the human line still goes to stderr"


def test_an_invalid_config_under_json_gives_one_problem_per_line(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("replicas: 2", "replicas: two"))
    outcome, data = run("config", "show", "dev", "--json")
    validate(data, "error")
    assert outcome.exit_code == 2
    assert [p for p in data["error"]["problems"] if "msops:services.web.replicas" in p]


def test_an_engine_failure_under_json_gives_its_exit_code(
    gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msops.errors import StackLocked

    def locked(stack: str) -> Any:
        raise StackLocked(f"stack {stack!r} is locked: another update is running")

    monkeypatch.setattr(gw, "history", locked)
    outcome, data = run("history", "dev", "--json")
    assert (outcome.exit_code, data["error"]["code"]) == (3, 3)
    validate(data, "error")


def test_a_failure_after_the_result_prints_one_document(
    stacks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cli, "_policies", lambda graph, stack, config: [fakes.Violation("mandatory")]
    )
    outcome, data = run("check", "dev", "--json")
    assert outcome.exit_code == 1 and "error" not in data, "exactly one JSON document on stdout"


# --- the docs ------------------------------------------------------------------------------------


def test_every_json_command_has_a_schema_and_a_doc_entry() -> None:
    text = DOC.read_text()
    section = text[text.index("## JSON output") :]
    for name in ("history", "status", "watch", "check", "drift", "configShow", "error"):
        assert name in SCHEMA["$defs"], f"no $defs/{name} in docs/json-output.schema.json"
        assert f"`{name}`" in section, f"docs/cli.md's JSON output section omits `{name}`"


def test_every_json_option_of_the_cli_is_covered() -> None:
    """A new --json command needs its schema and its test here (or the integrator's)."""
    import typer.main

    group = typer.main.get_command(cli.app)
    found = set()

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))
        if any("--json" in p.opts for p in getattr(command, "params", [])):
            found.add(" ".join(path))

    walk(group, ())
    covered = {" ".join(a[: a.index("nope")]) for a in JSON_COMMANDS}
    assert found <= covered, f"--json without a schema test: {sorted(found - covered)}"
