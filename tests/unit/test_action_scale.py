"""The Scale action without typer: the edit, what it refuses, and the model's bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import spec
from msops.actions.base import EditShown
from msops.actions.scale import Scale
from msops.errors import BadInput
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_scale_edits_the_file_and_deploys(bench: fakes.Bench) -> None:
    result = Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert result.changed and "replicas: 3" in bench.text("dev")
    assert bench.gateway.called("up") == [("up", "dev", "msops scale web to 3")]


def test_scale_summary_shows_the_new_count(bench: fakes.Bench) -> None:
    result = Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert result.deployment is not None
    change = result.deployment.summary.changes[0]
    assert (change.replicas_before, change.replicas_after) == ("2", "3")


def test_scale_shows_the_diff(bench: fakes.Bench) -> None:
    Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert "+      replicas: 3" in bench.of(EditShown)[0].diff


def test_scale_to_the_current_count_does_nothing(bench: fakes.Bench) -> None:
    result = Scale(bench.cfg(), "dev", "web", 2, yes=True).run()
    assert not result.changed and bench.gateways_made == 0


def test_scale_to_a_negative_count_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="replicas must be 0 or more, got -1"):
        Scale(bench.cfg(), "dev", "web", -1, yes=True).run()


def test_scale_of_an_unknown_service_lists_the_known_ones(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"its services: web"):
        Scale(bench.cfg(), "dev", "api", 3, yes=True).run()


def test_scale_of_an_autoscaled_service_gives_its_bounds(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"autoscales \(min 3, max 10\).*autoscaling.min/max"):
        Scale(bench.cfg(), "prod", "web", 4, yes=True).run()


def test_scale_takes_autoscaling_bounds_a_file_leaves_out_from_the_model(
    bench: fakes.Bench,
) -> None:
    bench.edit("prod", "        min: 3\n        max: 10\n", "")
    bounds = (
        spec.Autoscaling.model_fields["min"].default,
        spec.Autoscaling.model_fields["max"].default,
    )
    with pytest.raises(BadInput, match=rf"autoscales \(min {bounds[0]}, max {bounds[1]}\)"):
        Scale(bench.cfg(), "prod", "web", 4, yes=True).run()


def test_scale_off_a_terminal_without_yes_writes_nothing(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    with pytest.raises(BadInput, match="pass --yes"):
        Scale(bench.cfg(), "dev", "web", 3).run()
    assert bench.text("dev") == before and bench.gateways_made == 0


def test_scale_validates_the_stack_file_once(
    bench: fakes.Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msops import stackfiles

    calls: list[str] = []
    real = stackfiles.validate

    def counted(values: dict[str, object], stack: str) -> spec.StackConfig:
        calls.append(stack)
        return real(values, stack)

    monkeypatch.setattr(stackfiles, "validate", counted)
    Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert calls == ["dev"], "the edited config comes from the one validation"
