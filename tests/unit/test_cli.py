"""Every msops command through typer's CliRunner, with the in-memory gateway in place of Pulumi."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from msops import cli, registry
from tests import fakes, multi

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


Violation = fakes.Violation


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Copies of the committed stacks in tmp (dev: the test copy with a secret)."""
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    (directory / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    monkeypatch.setenv("COLUMNS", "200")
    return directory


@pytest.fixture
def service() -> Iterator[tuple[str, fakes.ServiceState]]:
    state = fakes.ServiceState()
    with fakes.serve(state) as url:
        yield url, state


@pytest.fixture
def gw(
    stacks: Path, service: tuple[str, fakes.ServiceState], monkeypatch: pytest.MonkeyPatch
) -> fakes.FakeGateway:
    url, _ = service
    outputs = {
        "backend": "docker",
        "services": {"web": {"image": "msops/demo:1.4.0", "replicas": 2, "url": url}},
        "prometheusUrl": url,
        "grafanaUrl": "http://127.0.0.1:3000",
        "grafanaAdminPassword": "[secret]",
    }
    gateway = fakes.FakeGateway(stacks, {"dev": fakes.realistic_history()}, {"dev": outputs})
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    monkeypatch.setattr(cli, "interactive", lambda: False)
    return gateway


@pytest.fixture
def violations(monkeypatch: pytest.MonkeyPatch) -> list[Violation]:
    """The policy pack's answer for every stack; empty unless a test adds to it."""
    found: list[Violation] = []
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: list(found))
    return found


def invoke(*args: str, input: str | None = None) -> Result:
    outcome = CliRunner().invoke(cli.app, list(args), input=input)
    assert "Traceback" not in outcome.output, f"msops {' '.join(args)} printed a traceback"
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return outcome


def edit(stacks: Path, stack: str, old: str, new: str) -> None:
    path = stacks / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}"
    path.write_text(text.replace(old, new, 1))


# --- the whole app -------------------------------------------------------------------------------


def test_no_command_shows_the_commands() -> None:
    outcome = CliRunner().invoke(cli.app, [])
    assert "rollback" in outcome.output and "Exit codes" in outcome.output


def test_importing_the_cli_loads_no_pulumi_module() -> None:
    code = (
        "import msops.cli, sys; "
        "print([m for m in sys.modules if m.startswith(('pulumi', 'pulumi_kubernetes'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"`msops --help` imports {out.stdout.strip()}"


def test_command_help_loads_no_heavy_module() -> None:
    out = fakes.help_run("history")
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


# --- up ------------------------------------------------------------------------------------------


def test_up_with_yes_deploys_and_prints_the_release_summary(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    edit(stacks, "dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    outcome = invoke("up", "dev", "--yes")
    assert outcome.exit_code == 0, outcome.output
    assert (
        "msops/demo:1.4.0 -> msops/demo:1.5.0" in outcome.stdout
        and "2 (unchanged)" in outcome.stdout
    )


def test_up_records_the_message(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    invoke("up", "dev", "--yes", "--message", "release 1.4.0")
    assert gw.called("up") == [("up", "dev", "release 1.4.0")]


def test_up_without_yes_off_a_terminal_refuses(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("up", "dev")
    assert outcome.exit_code == 2 and "pass --yes" in outcome.stderr
    assert gw.calls == [], f"nothing may reach the engine: {gw.calls}"


def test_up_at_a_terminal_previews_then_asks(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    outcome = invoke("up", "dev", input="y\n")
    order = [c[0] for c in gw.calls if c[0] in ("preview", "up")]
    assert outcome.exit_code == 0 and order == ["preview", "up"], outcome.output


def test_up_declined_applies_nothing(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    outcome = invoke("up", "dev", input="n\n")
    assert outcome.exit_code == 1 and gw.called("up") == [] and "cancelled" in outcome.stderr


def test_up_with_a_bad_config_exits_2_naming_the_key(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    edit(stacks, "dev", "replicas: 2", 'replicas: "two"')
    outcome = invoke("up", "dev", "--yes")
    assert outcome.exit_code == 2 and "msops:services.web.replicas" in outcome.stderr, (
        outcome.output
    )
    assert gw.calls == []


def test_up_reports_every_config_problem_on_its_own_line(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    edit(stacks, "dev", "replicas: 2", "replicas: -3\n      replica: 2")
    outcome = invoke("up", "dev", "--yes")
    lines = [line for line in outcome.stderr.splitlines() if line.startswith("  - msops:")]
    assert len(lines) == 2, outcome.stderr


def test_up_with_a_backend_config_problem_exits_2_with_one_line_for_it(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    # The docker backend's own rule: a service may not take the monitoring alias.
    edit(
        stacks,
        "dev",
        "  msops:services:\n",
        "  msops:services:\n    prometheus:\n      image: ghcr.io/acme/prom-proxy:1.0.0\n",
    )
    outcome = invoke("up", "dev", "--yes")
    problems = [line for line in outcome.stderr.splitlines() if line.startswith("  - ")]
    assert outcome.exit_code == 2, outcome.output
    assert len(problems) == 1 and "msops:services.prometheus" in problems[0], outcome.stderr
    assert gw.calls == []


def test_up_of_an_unknown_stack_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("up", "qa", "--yes")
    assert outcome.exit_code == 2 and "no stack file Pulumi.qa.yaml" in outcome.stderr


def test_up_stops_on_a_mandatory_policy_violation(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    violations.append(Violation("mandatory"))
    outcome = invoke("up", "dev", "--yes")
    assert (
        outcome.exit_code == 1
        and gw.called("up") == []
        and "[mandatory] resource-limits" in outcome.stdout
    )


def test_up_goes_ahead_with_an_advisory_violation(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    violations.append(Violation("advisory"))
    outcome = invoke("up", "dev", "--yes")
    assert outcome.exit_code == 0 and len(gw.called("up")) == 1, outcome.output


def test_up_of_a_locked_stack_exits_3(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    gw.locked = True
    outcome = invoke("up", "dev", "--yes")
    assert outcome.exit_code == 3 and "locked" in outcome.stderr


def test_up_that_fails_exits_1_with_the_engine_error(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    gw.fail_next_up = "port 8000 is already allocated"
    outcome = invoke("up", "dev", "--yes")
    assert outcome.exit_code == 1 and "port 8000 is already allocated" in outcome.stderr


def test_atomic_up_that_verifies_exits_0(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("up", "dev", "--yes", "--atomic", "--timeout", "5")
    assert outcome.exit_code == 0 and "Verified" in outcome.stdout, outcome.output


def test_atomic_up_that_fails_verification_restores_and_exits_4(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    service: tuple[str, fakes.ServiceState],
) -> None:
    _, state = service
    state.health = 503
    edit(stacks, "dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    outcome = invoke("up", "dev", "--yes", "--atomic", "--timeout", "1")
    assert outcome.exit_code == 4, outcome.output
    assert "answered 503" in outcome.stderr and "restored release 14" in outcome.stderr
    assert "image: msops/demo:1.4.0" in (stacks / "Pulumi.dev.yaml").read_text()


def test_atomic_restore_goes_through_the_engine(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    service: tuple[str, fakes.ServiceState],
) -> None:
    _, state = service
    state.requests, state.errors = 10, 5
    edit(stacks, "dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    invoke("up", "dev", "--yes", "--atomic", "--timeout", "1")
    messages = [c[2] for c in gw.called("up")]
    assert messages == [None, "msops up --atomic: restore release 14 after release 15 failed"]


def test_atomic_up_whose_update_fails_restores_and_exits_4(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    gw.fail_next_up = "container web-1 exited"
    edit(stacks, "dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    outcome = invoke("up", "dev", "--yes", "--atomic")
    assert outcome.exit_code == 4 and "the update failed" in outcome.stderr, outcome.output


def test_atomic_up_with_nothing_to_restore_exits_1(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    service: tuple[str, fakes.ServiceState],
) -> None:
    _, state = service
    state.health = 503
    gw.updates["dev"] = []
    outcome = invoke("up", "dev", "--yes", "--atomic", "--timeout", "1")
    assert outcome.exit_code == 1 and "nothing was restored" in outcome.stderr, outcome.output


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every config validation (`components.spec.load`) the CLI makes, by stack.

    The offline synth is stubbed: the Pulumi program validates its config inside the engine,
    which is the engine's own check and not the CLI's.
    """
    from components import spec
    from msops import synth

    calls: list[str] = []
    real = spec.load

    def load(raw: Any, stack: str = "stack") -> Any:
        calls.append(stack)
        return real(raw, stack)

    monkeypatch.setattr(spec, "load", load)
    monkeypatch.setattr(synth, "synth_config", lambda values, **_: synth.Graph("dev", []))
    return calls


def test_up_validates_the_stack_file_once(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation], validations: list[str]
) -> None:
    outcome = invoke("up", "dev", "--yes")
    assert outcome.exit_code == 0 and validations == ["dev"], outcome.output


def test_atomic_up_validates_the_stack_file_once(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation], validations: list[str]
) -> None:
    outcome = invoke("up", "dev", "--yes", "--atomic", "--timeout", "5")
    assert outcome.exit_code == 0 and validations == ["dev"], outcome.output


def test_atomic_up_that_restores_validates_each_config_once(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    service: tuple[str, fakes.ServiceState],
    validations: list[str],
) -> None:
    _, state = service
    state.health = 503
    edit(stacks, "dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    outcome = invoke("up", "dev", "--yes", "--atomic", "--timeout", "1")
    assert outcome.exit_code == 4, outcome.output
    assert validations == ["dev", "dev"], "the config tried, then the config restored"


# --- preview -------------------------------------------------------------------------------------


def test_preview_shows_release_changes_policies_and_the_plan(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    edit(stacks, "dev", "replicas: 2", "replicas: 4")
    outcome = invoke("preview", "dev")
    out = outcome.stdout
    assert outcome.exit_code == 0, outcome.output
    assert "Changes since release 14" in out and "2 -> 4" in out
    assert "Policies: all passed." in out and "Plan for dev: 1 update (10 unchanged)." in out


def test_preview_of_a_first_release(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("preview", "staging")
    assert outcome.exit_code == 0 and "First release of this stack" in outcome.stdout


def test_preview_with_a_mandatory_violation_exits_1_after_the_plan(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    violations.append(Violation("mandatory"))
    outcome = invoke("preview", "dev")
    assert outcome.exit_code == 1 and gw.called("preview"), outcome.output


# --- history -------------------------------------------------------------------------------------


def test_history_json_lists_every_release_newest_first(stacks: Path, gw: fakes.FakeGateway) -> None:
    rows = json.loads(invoke("history", "dev", "--json").stdout)
    assert [r["release"] for r in rows] == list(range(14, 0, -1))


def test_history_pages_past_the_first_ten(stacks: Path, gw: fakes.FakeGateway) -> None:
    invoke("history", "dev", "--json")
    assert [c[2] for c in gw.called("history_page")] == [1, 2]


def test_history_table_shows_results_images_replicas_and_messages(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    out = invoke("history", "dev").stdout
    row = next(line for line in out.splitlines() if "refresh: succeeded" in line)
    assert "web=msops/demo:1.1.0" in row and "web=2" in row and "refresh 4" in row, row


def test_history_never_prints_secrets(stacks: Path, gw: fakes.FakeGateway) -> None:
    out = invoke("history", "dev", "--json").stdout + invoke("history", "dev").stdout
    assert not any(key in out for key in fakes.API_KEYS)


def test_history_of_a_stack_never_deployed(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("history", "staging")
    assert outcome.exit_code == 0 and "has no releases yet" in outcome.stdout


def test_history_of_an_unknown_stack_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("history", "qa")
    assert outcome.exit_code == 2 and "stacks: dev, prod, staging" in outcome.stderr


@pytest.fixture
def two(stacks: Path, gw: fakes.FakeGateway) -> fakes.FakeGateway:
    """The dev stack as web in front of api, deployed as release 3 (tests/multi.py)."""
    (stacks / "Pulumi.dev.yaml").write_text(multi.file_text())
    gw.updates["dev"] = multi.history()
    gw.stack_outputs["dev"] = multi.outputs()
    return gw


def test_history_table_has_a_status_column(stacks: Path, gw: fakes.FakeGateway) -> None:
    out = invoke("history", "dev").stdout
    row = next(line for line in out.splitlines() if "update 13" in line)
    assert "Status" in out and "\tfailed\t" in row, row


def test_history_json_has_status_and_restored_by_as_a_number(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    assert invoke("rollback", "dev", "--to", "12", "--yes").exit_code == 0
    rows = {r["release"]: r for r in json.loads(invoke("history", "dev", "--json").stdout)}
    assert (rows[14]["status"], rows[14]["restoredBy"]) == ("restored-by", 15)
    assert rows[15]["status"] == "deployed"


def test_history_shows_short_digests(stacks: Path, two: fakes.FakeGateway) -> None:
    out = invoke("history", "dev").stdout
    short = multi.DIGESTS[1]["api"][7:19]
    assert f"api={short}" in out and multi.DIGESTS[1]["api"] not in out


def test_history_of_one_service_shows_what_changed(stacks: Path, two: fakes.FakeGateway) -> None:
    rows = json.loads(invoke("history", "dev", "--service", "api", "--json").stdout)
    assert [r["release"] for r in rows] == [3, 1] and "replicas: 2 -> 3" in rows[0]["changes"]


def test_history_max_limits_the_rows(stacks: Path, gw: fakes.FakeGateway) -> None:
    rows = json.loads(invoke("history", "dev", "--max", "3", "--json").stdout)
    assert [r["release"] for r in rows] == [14, 13, 12]


def test_rollback_of_one_service_writes_its_digest_pin(
    stacks: Path, two: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("rollback", "dev", "--service", "api", "--to", "1", "--yes")
    text = (stacks / "Pulumi.dev.yaml").read_text()
    assert outcome.exit_code == 0, outcome.output
    assert f"ghcr.io/msops/api:2.0.0@{multi.DIGESTS[1]['api']}" in text
    assert "image: msops/demo:1.4.0" in text, "web is left as it is"


def test_rollback_of_a_service_to_a_release_without_it_exits_2(
    stacks: Path, two: fakes.FakeGateway
) -> None:
    outcome = invoke("rollback", "dev", "--service", "db", "--to", "1", "--yes")
    assert outcome.exit_code == 2 and "has no service 'db'" in outcome.stderr
    assert two.called("up") == []


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_defaults_to_the_newest_good_release_that_differs(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("rollback", "dev", "--yes")
    assert outcome.exit_code == 0, outcome.output
    assert "image: msops/demo:1.3.2" in (stacks / "Pulumi.dev.yaml").read_text()
    assert gw.called("up") == [("up", "dev", "msops rollback to release 12")]


def test_rollback_sets_a_changed_secret_again_as_a_secret(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("rollback", "dev", "--to", "5", "--yes")
    assert outcome.exit_code == 0, outcome.output
    assert gw.called("set_secret") == [("set_secret", "dev", "msops:secrets.apiKey", True)]
    assert gw.secrets_set[("dev", "msops:secrets.apiKey")] == fakes.API_KEYS[0]


def test_rollback_never_writes_or_prints_the_secret(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("rollback", "dev", "--to", "5", "--yes")
    text = (stacks / "Pulumi.dev.yaml").read_text()
    assert fakes.API_KEYS[0] not in text + outcome.output
    assert f"secure: {fakes.encrypt(fakes.API_KEYS[0])}" in text


def test_rollback_keeps_the_comments(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    invoke("rollback", "dev", "--to", "5", "--yes")
    text = (stacks / "Pulumi.dev.yaml").read_text()
    assert "# Built from app/ on this machine" in text and "# No password set" in text


def test_rollback_to_a_failed_release_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("rollback", "dev", "--to", "3", "--yes")
    assert outcome.exit_code == 2 and "release 3 failed" in outcome.stderr
    assert gw.called("up") == []


def test_rollback_to_a_release_that_does_not_exist_exits_2(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    outcome = invoke("rollback", "dev", "--to", "99", "--yes")
    assert outcome.exit_code == 2 and "release 99 does not exist" in outcome.stderr


def test_rollback_to_release_zero_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("rollback", "dev", "--to", "0", "--yes")
    assert outcome.exit_code == 2 and "--to" in outcome.output


def test_rollback_without_history_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("rollback", "staging", "--yes")
    assert outcome.exit_code == 2 and "no releases yet" in outcome.stderr


def test_rollback_to_a_release_that_no_longer_validates_exits_2_naming_it(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    gw.updates["dev"].insert(0, fakes.retired_release(fakes.EPOCH))
    outcome = invoke("rollback", "dev", "--to", "1", "--yes")
    assert outcome.exit_code == 2, outcome.output
    assert "release 1 of stack 'dev'" in outcome.stderr
    assert "msops:services.web.retiredKey" in outcome.stderr
    assert gw.called("up") == []


def test_rollback_off_a_terminal_without_yes_is_a_dry_run_that_exits_0(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    before = (stacks / "Pulumi.dev.yaml").read_bytes()
    outcome = invoke("rollback", "dev")
    assert outcome.exit_code == 0 and (stacks / "Pulumi.dev.yaml").read_bytes() == before
    assert "+      image: msops/demo:1.3.2" in outcome.stdout, "the diff is shown"
    assert "Dry run: nothing was written" in outcome.stdout and gw.called("up") == []


def test_rollback_dry_run_shows_the_diff_then_the_engine_preview(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    outcome = invoke("rollback", "dev", "--dry-run", "--service", "web")
    diff_at = outcome.stdout.index("+      image: msops/demo:1.3.2")
    plan_at = outcome.stdout.index("Plan for dev: 1 update")
    assert outcome.exit_code == 0 and diff_at < plan_at, outcome.output
    assert gw.called("up") == []


def test_rollback_declined_puts_the_file_back_byte_for_byte(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    before = (stacks / "Pulumi.dev.yaml").read_bytes()
    outcome = invoke("rollback", "dev", "--to", "5", input="n\n")
    assert outcome.exit_code == 1 and (stacks / "Pulumi.dev.yaml").read_bytes() == before
    assert gw.called("preview") and gw.called("up") == []


# --- promote -------------------------------------------------------------------------------------


class Registry:
    """DST's registry for the promote commands: the images it holds, and what it was asked."""

    def __init__(self) -> None:
        self.held = {"ghcr.io/msops/demo:1.4.0", "ghcr.io/msops/orders:2.0.0"}
        self.asked: list[str] = []

    def __call__(self, image: str) -> registry.Answer:
        self.asked.append(image)
        found = image in self.held
        return registry.Answer(
            image, registry.locate(image), "present" if found else "missing", 200 if found else 404
        )


@pytest.fixture(autouse=True)
def image_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Every test here: `msops promote` asks this fake, never a real registry."""
    fake = Registry()
    monkeypatch.setattr(cli, "make_image_lookup", lambda: fake)
    return fake


def test_promote_of_an_image_not_in_the_registry_exits_2_and_writes_nothing(
    stacks: Path, gw: fakes.FakeGateway, image_registry: Registry
) -> None:
    image_registry.held.clear()
    before = (stacks / "Pulumi.staging.yaml").read_bytes()
    outcome = invoke("promote", "dev", "staging", "--yes")
    assert outcome.exit_code == 2 and (stacks / "Pulumi.staging.yaml").read_bytes() == before
    assert "ghcr.io/msops/demo:1.4.0: registry ghcr.io has no such image" in outcome.stderr


def test_promote_names_the_images_it_found(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("promote", "dev", "staging", "--yes")
    assert "In the registry: ghcr.io/msops/demo:1.4.0." in outcome.stdout


def test_promote_with_no_verify_images_asks_no_registry(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation], image_registry: Registry
) -> None:
    image_registry.held.clear()
    outcome = invoke("promote", "dev", "staging", "--yes", "--no-verify-images")
    assert outcome.exit_code == 0 and image_registry.asked == []
    assert gw.called("up") == [("up", "staging", "msops promote web from dev")]


def test_promote_print_images_lists_what_to_push_and_writes_nothing(
    stacks: Path, gw: fakes.FakeGateway, image_registry: Registry
) -> None:
    before = (stacks / "Pulumi.staging.yaml").read_bytes()
    outcome = invoke("promote", "dev", "staging", "--print-images")
    assert outcome.stdout == "web ghcr.io/msops/demo:1.4.0 app\n"
    assert (stacks / "Pulumi.staging.yaml").read_bytes() == before
    assert gw.calls == [] and image_registry.asked == []


def test_promote_moves_only_the_image_pin(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    before = (stacks / "Pulumi.staging.yaml").read_text()
    outcome = invoke("promote", "dev", "staging", "--yes")
    after = (stacks / "Pulumi.staging.yaml").read_text()
    assert outcome.exit_code == 0, outcome.output
    # web's pin, the first; dev's test copy has no api to promote.
    assert after == before.replace("ghcr.io/msops/demo:1.0.0", "ghcr.io/msops/demo:1.4.0", 1)


def test_promote_shows_the_unified_diff(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    out = invoke("promote", "dev", "staging", "--yes").stdout
    assert (
        "--- a/stacks/Pulumi.staging.yaml" in out
        and "+      image: ghcr.io/msops/demo:1.4.0" in out
    )


def test_promote_deploys_the_destination(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    invoke("promote", "dev", "staging", "--yes")
    assert gw.called("up") == [("up", "staging", "msops promote web from dev")]


def test_promote_of_chosen_services_only(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    edit(
        stacks,
        "staging",
        "  msops:databases:",
        "    orders:\n      image: ghcr.io/msops/orders:1.0.0\n      port: 8081\n"
        "  msops:databases:",
    )
    edit(
        stacks,
        "dev",
        "  msops:databases:",
        "    orders:\n      image: msops/orders:2.0.0\n      port: 8081\n  msops:databases:",
    )
    invoke("promote", "dev", "staging", "--service", "orders", "--yes")
    text = (stacks / "Pulumi.staging.yaml").read_text()
    assert "ghcr.io/msops/orders:2.0.0" in text and "ghcr.io/msops/demo:1.0.0" in text


def test_promote_of_an_unknown_service_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("promote", "dev", "staging", "--service", "api", "--yes")
    assert outcome.exit_code == 2 and "service 'api' is not in stack 'dev'" in outcome.stderr


def test_promote_onto_itself_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    assert invoke("promote", "dev", "dev", "--yes").exit_code == 2


def test_promote_with_matching_pins_does_nothing(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("promote", "staging", "prod", "--yes")
    assert outcome.exit_code == 0 and "Nothing to promote" in outcome.stdout and gw.calls == []


def test_promote_off_a_terminal_without_yes_is_a_dry_run(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    before = (stacks / "Pulumi.staging.yaml").read_bytes()
    outcome = invoke("promote", "dev", "staging")
    assert outcome.exit_code == 0 and (stacks / "Pulumi.staging.yaml").read_bytes() == before
    assert gw.called("preview") == [("preview", "staging")] and gw.called("up") == []
    assert (
        "+      image: ghcr.io/msops/demo:1.4.0" in outcome.stdout and "Dry run" in outcome.stdout
    )


def test_promote_dry_run_previews_the_promoted_pins(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    invoke("promote", "dev", "staging")
    assert "image: ghcr.io/msops/demo:1.4.0" in gw.previewed["staging"]


def test_promote_at_a_terminal_previews_the_destination(
    stacks: Path,
    gw: fakes.FakeGateway,
    violations: list[Violation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    outcome = invoke("promote", "dev", "staging", input="y\n")
    assert outcome.exit_code == 0 and gw.called("preview") == [("preview", "staging")]


# --- scale ---------------------------------------------------------------------------------------


def test_scale_edits_the_file_and_applies(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    outcome = invoke("scale", "dev", "web", "3", "--yes")
    assert outcome.exit_code == 0, outcome.output
    assert "replicas: 3" in (stacks / "Pulumi.dev.yaml").read_text()
    assert gw.called("up") == [("up", "dev", "msops scale web to 3")]


def test_scale_of_an_unknown_service_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("scale", "dev", "api", "3", "--yes")
    assert outcome.exit_code == 2 and "its services: web" in outcome.stderr


@pytest.mark.parametrize("args", [["-1"], ["--", "-1"]])
def test_scale_to_negative_replicas_exits_2(
    stacks: Path, gw: fakes.FakeGateway, args: list[str]
) -> None:
    outcome = invoke("scale", "--yes", "dev", "web", *args)
    assert outcome.exit_code == 2 and "replicas must be 0 or more, got -1" in outcome.stderr


def test_scale_of_an_autoscaled_service_points_at_autoscaling(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    outcome = invoke("scale", "prod", "web", "4", "--yes")
    assert outcome.exit_code == 2 and "autoscaling.min/max" in outcome.stderr


def test_scale_to_the_current_count_does_nothing(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("scale", "dev", "web", "2", "--yes")
    assert outcome.exit_code == 0 and gw.called("up") == [] and "nothing to do" in outcome.stdout


def test_scale_after_a_hand_edit_says_it_deploys_what_the_release_does_not_run(
    stacks: Path, gw: fakes.FakeGateway, violations: list[Violation]
) -> None:
    edit(stacks, "dev", "replicas: 2", "replicas: 3")
    outcome = invoke("scale", "dev", "web", "3", "--yes")
    assert outcome.exit_code == 0 and gw.called("up") == [("up", "dev", "msops scale web to 3")]
    assert "but the deployed release runs 2: deploying the file." in outcome.stdout


def test_scale_with_a_bad_replica_count_exits_2(stacks: Path, gw: fakes.FakeGateway) -> None:
    outcome = invoke("scale", "dev", "web", "three", "--yes")
    assert outcome.exit_code == 2 and gw.calls == []


# --- status --------------------------------------------------------------------------------------


def test_status_shows_urls_images_replicas_and_health(stacks: Path, gw: fakes.FakeGateway) -> None:
    out = invoke("status", "dev").stdout
    assert "grafanaUrl: http://127.0.0.1:3000" in out
    row = next(line for line in out.splitlines() if "web" in line and "msops/demo" in line)
    assert "msops/demo:1.4.0" in row and "healthy (200)" in row, row


def test_status_json(
    stacks: Path, gw: fakes.FakeGateway, service: tuple[str, fakes.ServiceState]
) -> None:
    url, state = service
    state.health = 503
    data = json.loads(invoke("status", "dev", "--json").stdout)
    assert data["services"] == [
        {
            "service": "web",
            "image": "msops/demo:1.4.0",
            "deployedImage": "msops/demo:1.4.0",
            "replicas": 2,
            "url": url,
            "health": "unhealthy (503)",
            "canary": None,
        }
    ]


def test_status_of_a_stack_file_that_does_not_validate_exits_2(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    edit(stacks, "dev", "replicas: 2", 'replicas: "two"')
    outcome = invoke("status", "dev")
    assert outcome.exit_code == 2 and "msops:services.web.replicas" in outcome.stderr


def test_status_never_prints_secret_outputs(stacks: Path, gw: fakes.FakeGateway) -> None:
    data = json.loads(invoke("status", "dev", "--json").stdout)
    assert "grafanaAdminPassword" not in data["urls"]


def test_status_of_a_stack_never_deployed(stacks: Path, gw: fakes.FakeGateway) -> None:
    data = json.loads(invoke("status", "prod", "--json").stdout)
    assert data["deployed"] is False and data["services"][0]["health"] == "not deployed"
    assert data["services"][0]["replicas"] == {"min": 3, "max": 10}


# --- render and check (offline) ------------------------------------------------------------------


def test_render_writes_the_files(stacks: Path, tmp_path: Path) -> None:
    outcome = invoke("render", "prod", "--out", str(tmp_path / "out"))
    written = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert outcome.exit_code == 0 and written, outcome.output
    assert f"Rendered {len(written)} file(s)" in outcome.stdout


def test_render_to_stdout_writes_only_the_manifest_stream(stacks: Path) -> None:
    outcome = invoke("render", "prod", "--out", "-")
    documents = list(yaml.safe_load_all(outcome.stdout))
    assert outcome.exit_code == 0 and documents[0]["kind"] == "Namespace", outcome.stderr
    assert all(d["apiVersion"] and d["kind"] for d in documents), "not only manifests on stdout"


def test_render_into_a_foreign_directory_exits_2(stacks: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("x\n")
    outcome = invoke("render", "prod", "--out", str(tmp_path / "out"))
    assert outcome.exit_code == 2 and "msops did not render into it" in outcome.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.txt"]


def test_render_with_an_unknown_secrets_form_exits_2(stacks: Path, tmp_path: Path) -> None:
    outcome = invoke("render", "prod", "--secrets-as", "plain", "--out", str(tmp_path / "o"))
    assert outcome.exit_code == 2 and "--secrets-as plain" in outcome.stderr, outcome.stderr
    assert not (tmp_path / "o").exists(), "a refused render wrote files"


def test_render_names_the_secrets_it_omits(stacks: Path, tmp_path: Path) -> None:
    outcome = invoke("render", "prod", "--secrets-as", "omit", "--out", str(tmp_path / "o"))
    assert outcome.exit_code == 0, outcome.output
    assert "Secret msops-prod/api-env: DATABASE_URL omitted" in outcome.stdout, outcome.stdout


def test_render_writes_under_render_by_default(
    stacks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = invoke("render", "prod")
    assert outcome.exit_code == 0 and any((tmp_path / "render" / "prod").iterdir()), outcome.output


def test_render_with_a_bad_config_exits_2(stacks: Path, tmp_path: Path) -> None:
    edit(stacks, "prod", "min: 3", "min: 30")
    outcome = invoke("render", "prod", "--out", str(tmp_path / "out"))
    assert outcome.exit_code == 2 and "msops:services.web.autoscaling" in outcome.stderr


def test_check_passes_without_mandatory_violations(
    stacks: Path, violations: list[Violation]
) -> None:
    violations.append(Violation("advisory"))
    outcome = invoke("check", "dev")
    assert outcome.exit_code == 0 and "[advisory] resource-limits" in outcome.stdout


def test_check_fails_on_a_mandatory_violation(stacks: Path, violations: list[Violation]) -> None:
    violations.append(Violation("mandatory"))
    outcome = invoke("check", "dev")
    assert outcome.exit_code == 1 and "mandatory policy violation" in outcome.stderr


def test_check_json(stacks: Path, violations: list[Violation]) -> None:
    violations.append(Violation("mandatory"))
    data = json.loads(invoke("check", "dev", "--json").stdout)
    assert (data["ok"], data["violations"][0]["level"]) == (False, "mandatory")


def test_check_with_a_bad_config_exits_2_naming_the_key(
    stacks: Path, violations: list[Violation]
) -> None:
    edit(stacks, "dev", "port: 8080", "port: 99999")
    outcome = invoke("check", "dev", "--json")
    data = json.loads(outcome.stdout)
    assert outcome.exit_code == 2 and data["problems"][0].startswith("msops:services.web.port")


def test_check_runs_the_real_policy_pack(stacks: Path) -> None:
    rules = pytest.importorskip("policies.rules")
    from msops import synth

    expected = rules.evaluate(synth.synth("prod", stacks), stack="prod")
    data = json.loads(invoke("check", "prod", "--json").stdout)
    assert len(data["violations"]) == len(expected), data["violations"]


def test_check_honours_a_policy_config(stacks: Path, tmp_path: Path) -> None:
    pytest.importorskip("policies.rules")
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"all": "disabled"}))
    outcome = invoke("check", "dev", "--policy-config", str(config))
    assert outcome.exit_code == 0 and "Policies: all passed." in outcome.stdout, outcome.output


def test_check_with_a_bad_policy_config_exits_2(stacks: Path, tmp_path: Path) -> None:
    pytest.importorskip("policies.rules")
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"no-such-policy": "advisory"}))
    outcome = invoke("check", "dev", "--policy-config", str(config))
    assert outcome.exit_code == 2 and "no-such-policy" in outcome.stderr


# --- docs/cli.md stays true ----------------------------------------------------------------------


def doc_sections() -> dict[str, str]:
    """The sections of docs/cli.md by command: `up`, `add-service`, `config show`."""
    text = DOC.read_text()
    parts = re.split(r"^## `msops ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", text, flags=re.M)
    sections: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = body.split("\n## ", 1)[0]
    return sections


def command_names() -> list[str]:
    """Every command, a group's as `<group> <command>`."""
    names = [c.name or c.callback.__name__ for c in cli.app.registered_commands if c.callback]
    for group in cli.app.registered_groups:
        sub = group.typer_instance
        assert sub is not None
        prefix = group.name or sub.info.name
        names += [
            f"{prefix} {c.name or c.callback.__name__}"
            for c in sub.registered_commands
            if c.callback
        ]
    return names


def test_every_command_is_documented() -> None:
    assert sorted(doc_sections()) == sorted(command_names())


@pytest.mark.parametrize("command", command_names())
def test_every_option_in_help_is_documented(command: str) -> None:
    text = CliRunner().invoke(cli.app, [*command.split(), "--help"], env={"COLUMNS": "200"}).output
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[a-z])\b", text)) - {"--help"}
    section = doc_sections()[command]
    missing = sorted(o for o in options if f"`{o}" not in section and f" {o}" not in section)
    assert options and missing == [], f"docs/cli.md section for {command} lacks {missing}"


@pytest.mark.parametrize("command", command_names())
def test_every_argument_is_in_the_documented_usage(command: str) -> None:
    text = CliRunner().invoke(cli.app, [*command.split(), "--help"], env={"COLUMNS": "200"}).output
    usage = text.split("\n", 1)[0]
    arguments = re.findall(r"\{([A-Z]+)\}", usage)
    heading = doc_sections()[command].split("\n", 1)[0]
    assert arguments and all(a in heading for a in arguments), (usage, heading)


def test_exit_codes_are_documented() -> None:
    text = DOC.read_text()
    assert all(re.search(rf"^\| {code} \| ", text, flags=re.M) for code in range(5))
