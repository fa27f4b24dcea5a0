"""`msops add-service`: a documented service block that passes `msops check` on every stack."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components import spec
from msops import cli, scaffold, stackfiles
from msops.actions.add_service import AddService
from msops.actions.base import Configuration, EditShown, PoliciesChecked
from msops.actions.check import Check
from tests import fakes

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (ROOT / "stacks").glob("*.yaml"))
IMAGE = "ghcr.io/acme/orders:2.3.1"


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "200")
    return fakes.stack_copies(tmp_path, monkeypatch)


def cfg(stacks: Path, events: list[Any] | None = None) -> Configuration:
    return Configuration(
        gateway_factory=lambda: pytest.fail("add-service must not need the engine"),
        stacks_dir=stacks,
        events=(events if events is not None else []).append,
    )


def added_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("+ ")], [d[2:] for d in diff if d.startswith("- ")]


@pytest.mark.parametrize("stack", COMMITTED)
def test_adding_a_service_to_each_committed_stack_passes_check(stacks: Path, stack: str) -> None:
    AddService(cfg(stacks), stack, "orders", IMAGE, port=9000).run()
    result = Check(cfg(stacks), stack).run()
    mandatory = [(v.policy, v.urn) for v in result.violations if v.level == "mandatory"]
    assert result.ok and mandatory == [], f"stack {stack}: {mandatory}"


@pytest.mark.parametrize("stack", COMMITTED)
def test_adding_a_service_only_adds_lines(stacks: Path, stack: str) -> None:
    path = stacks / f"Pulumi.{stack}.yaml"
    before = path.read_text()
    AddService(cfg(stacks), stack, "orders", IMAGE).run()
    added, removed = added_lines(before, path.read_text())
    assert removed == [] and "    orders:" in added, f"Pulumi.{stack}.yaml lost {removed}"


@pytest.mark.parametrize("stack", COMMITTED)
def test_the_new_service_validates_with_what_was_asked(stacks: Path, stack: str) -> None:
    AddService(cfg(stacks), stack, "orders", IMAGE, port=9000).run()
    config = stackfiles.validate(stackfiles.config_values(stack, stacks), stack)
    orders = config.services["orders"]
    assert (orders.image, orders.port, orders.replicas) == (IMAGE, 9000, 2)


def test_every_written_key_carries_its_documented_comment(stacks: Path) -> None:
    path = stacks / "Pulumi.staging.yaml"
    before = path.read_text()
    AddService(cfg(stacks), "staging", "orders", IMAGE).run()
    added, _ = added_lines(before, path.read_text())
    for key in scaffold.SCAFFOLD_KEYS:
        if key == ("replicas",):
            continue
        _, description, _ = scaffold.documented(key)
        assert f"# {description}" in {line.strip() for line in added}, key


def test_the_defaults_written_are_the_models(stacks: Path) -> None:
    AddService(cfg(stacks), "staging", "orders", IMAGE).run()
    raw = stackfiles.read_config("staging", stacks)["msops:services"]["orders"]
    assert raw["port"] == spec.Service.model_fields["port"].default
    assert raw["resources"] == spec.Resources().model_dump(by_alias=True)


def test_the_diff_and_the_policies_are_reported(stacks: Path) -> None:
    events: list[Any] = []
    AddService(cfg(stacks, events), "dev", "orders", IMAGE).run()
    kinds = [type(e) for e in events]
    assert kinds == [EditShown, PoliciesChecked] and "+    orders:" in events[0].diff


def test_dry_run_writes_nothing(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    before = path.read_text()
    result = AddService(cfg(stacks), "dev", "orders", IMAGE, dry_run=True).run()
    assert not result.written and path.read_text() == before


def invoke(*args: str) -> Any:
    outcome = CliRunner().invoke(cli.app, ["add-service", *args])
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def test_an_existing_service_exits_2(stacks: Path) -> None:
    outcome = invoke("dev", "web", "--image", IMAGE)
    assert outcome.exit_code == 2 and "already in stack 'dev'" in outcome.stderr


def test_an_unpinned_image_exits_2_naming_the_key_and_writes_nothing(stacks: Path) -> None:
    before = (stacks / "Pulumi.dev.yaml").read_text()
    outcome = invoke("dev", "orders", "--image", "ghcr.io/acme/orders:latest")
    assert outcome.exit_code == 2 and "msops:services.orders.image" in outcome.stderr
    assert (stacks / "Pulumi.dev.yaml").read_text() == before


def test_a_name_that_is_not_a_dns_label_exits_2(stacks: Path) -> None:
    outcome = invoke("dev", "Orders_API", "--image", IMAGE)
    assert outcome.exit_code == 2 and "DNS-1123" in outcome.stderr, outcome.output


def test_a_port_out_of_range_exits_2(stacks: Path) -> None:
    assert invoke("dev", "orders", "--image", IMAGE, "--port", "70000").exit_code == 2


def test_the_command_writes_and_says_how_to_deploy(stacks: Path) -> None:
    outcome = invoke("prod", "orders", "--image", IMAGE, "--port", "9000")
    assert outcome.exit_code == 0 and "`msops up prod` deploys it" in outcome.stdout
    assert "orders:" in (stacks / "Pulumi.prod.yaml").read_text()
