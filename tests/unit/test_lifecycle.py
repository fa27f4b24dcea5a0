"""`msops destroy` and `msops refresh`: what they show, ask and keep, with the fake gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components import plan as plans
from msops import cli, lifecycle, stackfiles, synth
from msops.actions import base
from msops.actions.destroy import Destroy
from msops.actions.refresh import Refresh
from msops.errors import BadInput, OperationFailed, StackLocked
from msops.gateway import PulumiGateway
from msops.lifecycle import EngineRun, StepRecord
from tests import fakes
from tests.unit.test_gateway import fake_pulumi

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
VOLUME = "docker:index/volume:Volume"
TARGET = "  msops:target:\n"


def kept(stack: str) -> list[lifecycle.Kept]:
    config = stackfiles.validate(stackfiles.config_values(stack), stack)
    graph = synth.synth(stack)
    return lifecycle.kept_by_destroy(graph, plans.build(config, stack=stack))


@pytest.fixture(scope="module")
def dev_kept() -> dict[str, lifecycle.Kept]:
    return {k.name: k for k in kept("dev")}


@pytest.fixture(scope="module")
def prod_kept() -> dict[str, lifecycle.Kept]:
    return {k.name: k for k in kept("prod")}


# --- what a destroy keeps, from the program's own options --------------------------------------


def test_destroy_keeps_the_protected_database_volume(dev_kept: dict[str, lifecycle.Kept]) -> None:
    volume = dev_kept["msops-dev-main-pgdata"]
    assert (volume.type, volume.how) == (VOLUME, "protected"), volume.urn


def test_the_protected_volume_is_removed_by_unprotect_destroy_and_volume_rm(
    dev_kept: dict[str, lifecycle.Kept],
) -> None:
    volume = dev_kept["msops-dev-main-pgdata"]
    assert volume.removal == (
        f"pulumi state unprotect --stack dev --yes '{volume.urn}'",
        "msops destroy dev --yes",
        "docker volume rm msops-dev-main-pgdata",
    )


def test_destroy_keeps_the_generated_password_with_the_data(
    dev_kept: dict[str, lifecycle.Kept],
) -> None:
    password = dev_kept["main-db-password"]
    assert password.how == "protected" and "opens the kept data" in password.what, password.urn


def test_the_retained_prometheus_volume_is_kept_out_of_the_state(
    dev_kept: dict[str, lifecycle.Kept],
) -> None:
    volume = dev_kept["msops-dev-prometheus-data"]
    assert (volume.how, volume.removal) == (
        "retained",
        ("docker volume rm msops-dev-prometheus-data",),
    )


def test_on_kubernetes_the_statefulset_and_its_namespace_stay(
    prod_kept: dict[str, lifecycle.Kept],
) -> None:
    statefulset, namespace = prod_kept["main"], prod_kept["msops-prod"]
    assert (statefulset.how, namespace.how) == ("retained", "retained")
    assert statefulset.removal == (
        "kubectl -n msops-prod delete statefulset main",
        "kubectl -n msops-prod delete pvc data-main-0",
    )


def test_a_remote_docker_host_is_named_in_the_removal(tmp_path: Path) -> None:
    stacks = fakes.stack_copies(tmp_path)
    fakes.add_lines(
        stacks, "dev", "  msops:backend: docker\n", TARGET + "    dockerHost: ssh://ops@box\n"
    )
    config = stackfiles.validate(stackfiles.config_values("dev", stacks), "dev")
    graph = synth.synth("dev", stacks)
    found = {k.name: k for k in lifecycle.kept_by_destroy(graph, plans.build(config, stack="dev"))}
    assert found["msops-dev-main-pgdata"].removal[-1] == (
        "DOCKER_HOST=ssh://ops@box docker volume rm msops-dev-main-pgdata"
    )


# --- destroy --------------------------------------------------------------------------------------


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_destroy_off_a_terminal_without_yes_refuses_before_the_engine(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="pass --yes"):
        Destroy(bench.cfg(), "dev").run()
    assert bench.gateway.calls == [], bench.gateway.calls


def test_destroy_shows_what_it_keeps_before_it_asks(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput):
        Destroy(bench.cfg(), "dev").run()
    (shown,) = bench.of(base.ResourcesKept)
    assert "msops-dev-main-pgdata" in {k.name for k in shown.kept}


def test_destroy_with_yes_destroys_without_a_preview(bench: fakes.Bench) -> None:
    result = Destroy(bench.cfg(), "dev", yes=True).run()
    names = [c[0] for c in bench.gateway.calls]
    assert names == ["destroy"] and result.kept, names


def test_destroy_records_a_message(bench: fakes.Bench) -> None:
    Destroy(bench.cfg(), "dev", yes=True).run()
    assert bench.gateway.called("destroy") == [("destroy", "dev", "msops destroy dev")]


def test_destroy_at_a_terminal_previews_then_asks(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(True)
    bench.gateway.engine_runs["preview_destroy"] = EngineRun(changes={"delete": 14})
    Destroy(bench.cfg(), "dev").run()
    names = [c[0] for c in bench.gateway.calls]
    (plan,) = bench.of(base.PlanShown)
    assert names == ["preview_destroy", "destroy"] and plan.changes == {"delete": 14}
    assert "keeping the 3 resource(s)" in bench.confirm.questions[0], bench.confirm.questions


def test_destroy_declined_destroys_nothing(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    with pytest.raises(OperationFailed, match="nothing was destroyed"):
        Destroy(bench.cfg(), "dev").run()
    assert bench.gateway.called("destroy") == []


def test_destroy_of_a_locked_stack_exits_3(bench: fakes.Bench) -> None:
    bench.gateway.locked = True
    with pytest.raises(StackLocked) as caught:
        Destroy(bench.cfg(), "dev", yes=True).run()
    assert caught.value.exit_code == 3


class DestroyingStack:
    """An Automation API Stack that records how it is destroyed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def destroy(self, **kwargs: Any) -> Any:
        self.calls.append(("destroy", kwargs))
        summary = type("Summary", (), {"resource_changes": {"delete": 12}})()
        return type("Result", (), {"summary": summary})()

    def preview_destroy(self, **kwargs: Any) -> Any:
        self.calls.append(("preview_destroy", kwargs))
        return type("Result", (), {"change_summary": {"delete": 12}})()


@pytest.mark.parametrize("method", ["destroy", "preview_destroy"])
def test_the_gateway_destroys_with_exclude_protected(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})
    stack = DestroyingStack()
    monkeypatch.setattr(gw, "_stack", lambda name, create=False: stack)
    run = getattr(gw, method)("dev")
    ((called, kwargs),) = stack.calls
    assert (called, kwargs["exclude_protected"], run.changes) == (method, True, {"delete": 12})


# --- refresh --------------------------------------------------------------------------------------

DRIFTED = StepRecord(
    op="update",
    urn="urn:pulumi:dev::msops::msops:docker:Service$docker:index/container:Container::dev-web-1",
    type="docker:index/container:Container",
    old_outputs={"memory": 256},
    new_outputs={"memory": 512},
)


def test_refresh_shows_the_drift_then_asks(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(True)
    bench.gateway.engine_runs["preview_refresh"] = EngineRun({"same": 9, "update": 1}, (DRIFTED,))
    result = Refresh(bench.cfg(), "dev").run()
    (found,) = bench.of(base.DriftFound)
    assert [c[0] for c in bench.gateway.calls] == ["preview_refresh", "refresh"]
    assert found.report.resources[0].properties[0].after == 512 and result.preview is not None


def test_refresh_declined_leaves_the_state(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    with pytest.raises(OperationFailed, match="state was left as it was"):
        Refresh(bench.cfg(), "dev").run()
    assert bench.gateway.called("refresh") == []


def test_refresh_off_a_terminal_without_yes_refuses_before_the_engine(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="pass --yes"):
        Refresh(bench.cfg(), "dev").run()
    assert bench.gateway.calls == []


def test_refresh_with_yes_refreshes_with_a_message(bench: fakes.Bench) -> None:
    Refresh(bench.cfg(), "dev", yes=True).run()
    assert bench.gateway.calls == [("refresh", "dev", "msops refresh dev")]


# --- the commands -------------------------------------------------------------------------------


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.FakeGateway:
    stacks = fakes.stack_copies(tmp_path, monkeypatch)
    monkeypatch.setenv("COLUMNS", "200")
    gateway = fakes.FakeGateway(stacks)
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    monkeypatch.setattr(cli, "interactive", lambda: False)
    return gateway


def invoke(*args: str) -> Any:
    outcome = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def test_destroy_command_says_what_it_kept_and_how_to_remove_it(gw: fakes.FakeGateway) -> None:
    gw.engine_runs["destroy"] = EngineRun(changes={"delete": 15})
    outcome = invoke("destroy", "dev", "--yes")
    assert outcome.exit_code == 0, outcome.output
    assert "Destroyed dev: 15 delete." in outcome.stdout
    assert "Kept 3 resource(s) of dev" in outcome.stdout
    assert "docker volume rm msops-dev-main-pgdata" in outcome.stdout


def test_destroy_command_without_yes_off_a_terminal_exits_2(gw: fakes.FakeGateway) -> None:
    outcome = invoke("destroy", "dev")
    assert outcome.exit_code == 2 and gw.calls == [], outcome.output


def test_refresh_command_with_yes(gw: fakes.FakeGateway) -> None:
    gw.engine_runs["refresh"] = EngineRun(changes={"same": 20, "update": 1})
    outcome = invoke("refresh", "dev", "--yes")
    assert outcome.exit_code == 0 and "Refreshed dev: 1 update (20 unchanged)." in outcome.stdout


def test_refresh_command_at_a_terminal_shows_the_drift(
    gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    gw.engine_runs["preview_refresh"] = EngineRun({"same": 9, "update": 1}, (DRIFTED,))
    outcome = CliRunner().invoke(cli.app, ["refresh", "dev"], input="y\n")
    assert outcome.exit_code == 0 and "memory: 256 -> 512" in outcome.stdout, outcome.output
