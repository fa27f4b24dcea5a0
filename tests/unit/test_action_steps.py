"""The steps actions share, and the Configuration they run with."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from msops.actions import steps
from msops.actions.base import Configuration, Nobody, PlanShown, QuietDisplay
from msops.errors import BadInput
from tests import fakes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_a_configuration_makes_its_gateway_once(bench: fakes.Bench) -> None:
    cfg = bench.cfg()
    assert cfg.gateway is cfg.gateway and bench.gateways_made == 1


def test_a_bare_configuration_has_nobody_to_ask(bench: fakes.Bench) -> None:
    cfg = Configuration(gateway_factory=lambda: bench.gateway)
    with pytest.raises(BadInput, match="no terminal"):
        steps.require_terminal(cfg, yes=False)
    assert isinstance(cfg.confirm, Nobody)


def test_yes_needs_nobody_to_ask(bench: fakes.Bench) -> None:
    steps.require_terminal(bench.cfg(), yes=True)
    assert bench.confirm.questions == []


def test_an_engine_run_needs_no_terminal(bench: fakes.Bench) -> None:
    displays: list[QuietDisplay] = []

    def display(title: str) -> QuietDisplay:
        displays.append(QuietDisplay(title))
        return displays[-1]

    steps.preview(bench.cfg(engine_display=display), "dev")
    assert displays[0].title == "Previewing dev" and "Previewing update (dev)" in displays[0].lines
    assert [n.kind for n in displays[0].notes] == ["start", "done"]


def test_a_preview_reports_its_plan(bench: fakes.Bench) -> None:
    steps.preview(bench.cfg(), "dev")
    assert bench.of(PlanShown) == [PlanShown(stack="dev", changes={"same": 10, "update": 1})]


def test_load_validates_into_the_typed_model(bench: fakes.Bench) -> None:
    edit = steps.load(bench.cfg(), "prod")
    autoscaling = edit.spec.services["web"].autoscaling
    assert autoscaling is not None and (autoscaling.min, autoscaling.max) == (3, 10)


def test_edit_values_mask_pending_secrets(bench: fakes.Bench) -> None:
    from msops.releases import number_releases

    doc = steps.document(bench.cfg(), "dev")
    target = number_releases(bench.gateway.history("dev"))[4]
    current = {"msops:secrets": {"apiKey": fakes.API_KEYS[1]}}
    edit = steps.stage_release(doc, target, current)
    assert edit.values["msops:secrets"] == {"apiKey": "[secret]"}
    assert edit.secrets == ("msops:secrets.apiKey",)


def test_policies_are_skipped_without_the_policy_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> object:
        raise ModuleNotFoundError(f"No module named {name!r}", name="policies")

    monkeypatch.setattr(importlib, "import_module", missing)
    assert steps.evaluate_policies(None, "dev", None) is None  # type: ignore[arg-type]
