"""`msops diff` through typer's CliRunner, with the in-memory gateway in place of Pulumi."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner, Result

from msops import cli
from msops.errors import OperationFailed
from tests import fakes

pytestmark = pytest.mark.timeout(120)

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "json-output.schema.json"
PLANTED = "planted-db-password"


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    (directory / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    monkeypatch.setenv("COLUMNS", "200")
    return directory


@pytest.fixture
def gw(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.FakeGateway:
    gateway = fakes.FakeGateway(stacks, {"dev": fakes.realistic_history()})
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    monkeypatch.setattr(cli, "interactive", lambda: False)
    return gateway


def invoke(*args: str) -> Result:
    outcome = CliRunner().invoke(cli.app, ["diff", *args])
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def schema_errors(data: Any) -> list[str]:
    """What docs/json-output.schema.json's `diff` definition finds wrong with `data`."""
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/diff", "$defs": schema["$defs"]})
    return [e.message for e in validator.iter_errors(data)]


def test_no_difference_exits_0(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("dev")
    assert outcome.exit_code == 0 and "No difference" in outcome.stdout, outcome.output


def test_differences_exit_1(stacks: Path, gw: fakes.FakeGateway) -> None:
    assert invoke("dev", "12").exit_code == 1


def test_a_release_against_the_file_is_a_unified_diff(stacks: Path, gw: fakes.FakeGateway) -> None:
    out = invoke("dev", "12").stdout
    assert "--- release 12: services.web\n+++ stack file: services.web\n" in out, out
    assert "\n-image: msops/demo:1.3.2\n+image: msops/demo:1.4.0\n" in out, out


def test_two_releases_show_both_changes(stacks: Path, gw: fakes.FakeGateway) -> None:
    out = invoke("dev", "5", "8").stdout
    assert "-replicas: 2\n+replicas: 3\n" in out and "+image: msops/demo:1.2.1\n" in out, out


def test_two_identical_releases_exit_0(stacks: Path, gw: fakes.FakeGateway) -> None:
    gw.up("dev", message="the same file again")  # release 15, with release 14's config
    assert invoke("dev", "14", "15").exit_code == 0


def test_secret_values_are_never_shown(stacks: Path, gw: fakes.FakeGateway) -> None:
    # A database password in the stack file, and a release with another API key.
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(
        path.read_text().replace(
            "      storage: 1Gi\n",
            f"      storage: 1Gi\n      password:\n        secure: {fakes.encrypt(PLANTED)}\n",
        )
    )
    human, as_json = invoke("dev", "5"), invoke("dev", "5", "--json")
    out = human.output + as_json.output
    planted = [PLANTED, *fakes.API_KEYS, fakes.FAKE_PREFIX]
    assert [s for s in planted if s in out] == [], out
    assert "msops:databases.main.password: [secret]" in human.stdout, human.stdout
    assert "msops:secrets.apiKey: [secret] (changed)" in human.stdout, human.stdout


def test_json_follows_the_documented_schema(stacks: Path, gw: fakes.FakeGateway) -> None:
    data = json.loads(invoke("dev", "5", "--json").stdout)
    assert schema_errors(data) == [] and data["different"] is True


def test_json_of_no_difference_follows_the_documented_schema(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    data = json.loads(invoke("dev", "--json").stdout)
    assert schema_errors(data) == [] and data["different"] is False


def test_json_keeps_numbers_as_numbers(stacks: Path, gw: fakes.FakeGateway) -> None:
    data = json.loads(invoke("dev", "5", "8", "--json").stdout)
    change = next(
        c for c in data["services"][0]["changes"] if c["key"] == "msops:services.web.replicas"
    )
    assert (change["before"], change["after"], data["before"]["release"]) == (2, 3, 5)


def test_json_times_are_rfc3339_in_utc(stacks: Path, gw: fakes.FakeGateway) -> None:
    data = json.loads(invoke("dev", "1", "--json").stdout)
    assert data["before"]["time"] == "2025-03-01T09:00:00Z"


def test_an_unknown_release_exits_2_naming_it_and_the_range(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    outcome = invoke("dev", "20")
    assert outcome.exit_code == 2, outcome.output
    assert "release 20 does not exist; stack 'dev' has releases 1-14" in outcome.stderr


def test_an_unknown_release_with_json_prints_the_error_object(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    outcome = invoke("dev", "20", "--json")
    error = json.loads(outcome.stdout)["error"]
    assert outcome.exit_code == 2 and error["code"] == 2
    assert any("release 20 does not exist" in p for p in error["problems"])


def test_an_engine_error_exits_2_not_1(
    stacks: Path, gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(stack: str) -> list[Any]:
        raise OperationFailed("the Pulumi CLI did not answer")

    monkeypatch.setattr(gw, "history", broken)
    outcome = invoke("dev")
    assert outcome.exit_code == 2 and "did not answer" in outcome.stderr


def test_a_release_that_no_longer_validates_is_diffed_with_a_note(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    gw.updates["dev"].insert(0, fakes.retired_release(fakes.EPOCH))
    outcome = invoke("dev", "1")
    assert outcome.exit_code == 1, outcome.output
    assert "note: release 1 does not validate" in outcome.stdout
    assert "-retiredKey: true" in outcome.stdout


def test_diff_help_loads_no_heavy_module() -> None:
    out = fakes.help_run("diff")
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_an_unexpected_error_is_one_line_and_exit_2_not_different(
    stacks: Path, gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msops.actions import diff

    def broken(self: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(diff.Diff, "run", broken)
    outcome = invoke("dev")
    assert outcome.exit_code == 2 and "bug in msops" in outcome.stderr, outcome.stderr
