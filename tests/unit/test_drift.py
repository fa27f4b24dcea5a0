"""`msops drift` on recorded refresh previews: the engine's JSON events, through the gateway.

tests/unit/recorded/refresh-preview-dev-*.jsonl are event logs in the format the Pulumi CLI
writes with `--event-log` (one EngineEvent per line: prelude, a pre and an outputs event per
resource, the summary), for the dev stack's resources as the golden graph records them. In
the drift one, someone ran `docker update --memory 512m --restart always` on dev-web-1 and
`docker rm -f` on dev-web-2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation._stack import PreviewResult
from pulumi.automation.events import EngineEvent, OpType
from typer.testing import CliRunner

from msops import cli, drift, gateway
from msops.gateway import PulumiGateway
from msops.lifecycle import StepRecord
from tests import fakes
from tests.unit.test_gateway import fake_pulumi

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).resolve().parent / "recorded"
WEB_1 = "urn:pulumi:dev::msops::msops:docker:Service$docker:index/container:Container::dev-web-1"
WEB_2 = "urn:pulumi:dev::msops::msops:docker:Service$docker:index/container:Container::dev-web-2"


def recorded(name: str) -> list[EngineEvent]:
    lines = (RECORDED / f"refresh-preview-dev-{name}.jsonl").read_text().splitlines()
    return [EngineEvent.from_json(json.loads(line)) for line in lines]


class RecordedStack:
    """An Automation API Stack whose refresh preview replays a recorded event log."""

    def __init__(self, name: str) -> None:
        self.events = recorded(name)
        self.calls: list[dict[str, Any]] = []

    def preview_refresh(self, **kwargs: Any) -> PreviewResult:
        self.calls.append(kwargs)
        summary = None
        for event in self.events:
            kwargs["on_event"](event)
            if event.summary_event is not None:
                summary = event.summary_event.resource_changes
        return PreviewResult(stdout="", stderr="", change_summary=summary or {})


def recorded_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> tuple[PulumiGateway, RecordedStack]:
    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})
    stack = RecordedStack(name)
    monkeypatch.setattr(gw, "_stack", lambda stack_name, create=False: stack)
    return gw, stack


def report_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> drift.DriftReport:
    gw, _ = recorded_gateway(tmp_path, monkeypatch, name)
    run = gw.preview_refresh("dev")
    return drift.report("dev", run.steps, run.changes)


# --- through the gateway ----------------------------------------------------------------------


def test_a_clean_refresh_preview_has_no_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = report_of(tmp_path, monkeypatch, "clean")
    assert (report.drifted, report.unchanged) == (False, 22), [r.urn for r in report.resources]


def test_drift_names_each_changed_and_each_gone_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = report_of(tmp_path, monkeypatch, "drift")
    assert [(r.urn, r.change) for r in report.resources] == [
        (WEB_1, "changed"),
        (WEB_2, "gone"),
    ]


def test_drift_lists_the_properties_that_differ_with_both_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = report_of(tmp_path, monkeypatch, "drift").resources[0]
    assert [(p.path, p.before, p.after) for p in changed.properties] == [
        ("memory", 256, 512),
        ("restart", "unless-stopped", "always"),
    ], changed.urn


def test_the_refresh_preview_changes_nothing_and_streams_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, stack = recorded_gateway(tmp_path, monkeypatch, "drift")
    notes: list[Any] = []
    gw.preview_refresh("dev", on_event=notes.append)
    (call,) = stack.calls
    assert call["color"] == "never" and {n.kind for n in notes} == {"start", "done"}


def test_secret_values_in_events_are_masked() -> None:
    secret = {gateway._SIG: gateway._SECRET_SIG, "value": "hunter2"}
    event = EngineEvent.from_json(
        {
            "resOutputsEvent": {
                "metadata": {
                    "op": "update",
                    "urn": WEB_1,
                    "type": "docker:index/container:Container",
                    "provider": "",
                    "old": {"type": "t", "urn": WEB_1, "outputs": {"envs": secret}},
                    "new": {"type": "t", "urn": WEB_1, "outputs": {"envs": ["A=1"]}},
                }
            }
        }
    )
    step = gateway.step_record(event)
    assert step is not None and "hunter2" not in json.dumps(step.old_outputs), step


# --- the summary itself -------------------------------------------------------------------------


def step(op: str, old: Any = None, new: Any = None, **extra: Any) -> StepRecord:
    return StepRecord(op=op, urn=WEB_1, type="docker:index/container:Container", old_outputs=old,
                      new_outputs=new, **extra)  # fmt: skip


def test_an_older_engines_refresh_op_is_decided_by_the_outputs() -> None:
    assert drift.drift_of(step("refresh", {"memory": 256}, {"memory": 256})) is None
    changed = drift.drift_of(step("refresh", {"memory": 256}, {"memory": 512}))
    assert changed is not None and changed.properties[0].path == "memory"


def test_nested_properties_are_named_by_their_path() -> None:
    old = {"labels": [{"label": "msops.stack", "value": "dev"}]}
    new = {"labels": [{"label": "msops.stack", "value": "prod"}]}
    found = drift.drift_of(step("update", old, new))
    assert found is not None and [p.path for p in found.properties] == ["labels[0].value"]


def test_a_property_read_back_as_null_is_not_drift() -> None:
    assert drift.drift_of(step("refresh", {"memory": None}, {})) is None


def test_pulumis_own_bookkeeping_is_not_drift() -> None:
    assert drift.drift_of(step("refresh", {"__defaults": []}, {"__defaults": ["name"]})) is None


def test_without_outputs_the_engines_detailed_diff_names_the_properties() -> None:
    found = drift.drift_of(step("update", detailed_diff={"restart": "update", "ports": "add"}))
    assert found is not None and [(p.path, p.kind) for p in found.properties] == [
        ("restart", "changed"),
        ("ports", "added"),
    ]


def test_providers_and_the_stack_never_drift() -> None:
    provider = StepRecord(op="update", urn="urn:x", type="pulumi:providers:docker")
    assert drift.drift_of(provider) is None


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    fakes.stack_copies(tmp_path, monkeypatch)
    monkeypatch.setenv("COLUMNS", "200")

    def run(name: str, *args: str) -> Any:
        gw, _ = recorded_gateway(tmp_path, monkeypatch, name)
        monkeypatch.setattr(cli, "make_gateway", lambda: gw)
        outcome = CliRunner().invoke(cli.app, ["drift", "dev", *args])
        assert "Traceback" not in outcome.output
        return outcome

    return run


def test_drift_exits_0_without_drift(cli_with: Any) -> None:
    outcome = cli_with("clean")
    assert outcome.exit_code == 0 and "No drift" in outcome.stdout, outcome.output


def test_drift_exits_1_and_shows_each_property(cli_with: Any) -> None:
    outcome = cli_with("drift")
    assert outcome.exit_code == 1, outcome.output
    assert "memory: 256 -> 512" in outcome.stdout and "dev-web-2" in outcome.stdout


def test_drift_json_is_data_only_with_numbers_as_numbers(cli_with: Any) -> None:
    outcome = cli_with("drift", "--json")
    data = json.loads(outcome.stdout)
    assert outcome.exit_code == 1 and data["drift"] is True and data["unchanged"] == 20
    (memory,) = [p for p in data["resources"][0]["properties"] if p["path"] == "memory"]
    assert memory == {"path": "memory", "kind": "changed", "before": 256, "after": 512}


def test_drift_json_without_drift(cli_with: Any) -> None:
    data = json.loads(cli_with("clean", "--json").stdout)
    assert data == {"stack": "dev", "drift": False, "unchanged": 22, "resources": []}


def test_drift_of_an_unknown_stack_exits_2_before_the_engine(cli_with: Any) -> None:
    outcome = CliRunner().invoke(cli.app, ["drift", "qa"])
    assert outcome.exit_code == 2 and "no stack file Pulumi.qa.yaml" in outcome.stderr


def test_summary_ops_become_plain_strings() -> None:
    counts = gateway.StepRecorder().run({OpType.SAME: 3, OpType.UPDATE: 1}).changes
    assert counts == {"same": 3, "update": 1}
