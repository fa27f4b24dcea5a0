"""The Promote action without typer: only pins move, dry runs, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.base import PinsMoved
from msops.actions.promote import Promote
from msops.errors import BadInput, ConfigInvalid
from msops.releases import PinChange
from tests import fakes

pytestmark = pytest.mark.timeout(120)

PROMOTED = PinChange("web", "ghcr.io/msops/demo:1.0.0", "ghcr.io/msops/demo:1.4.0")


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_promote_moves_only_the_image_pin(bench: fakes.Bench) -> None:
    before = bench.text("staging")
    Promote(bench.cfg(), "dev", "staging", yes=True).run()
    # web's pin, the first; the bench's dev has no api to promote.
    assert bench.text("staging") == before.replace(PROMOTED.before, PROMOTED.after, 1)


def test_promote_returns_the_pins_it_moved_and_the_deployment(bench: fakes.Bench) -> None:
    result = Promote(bench.cfg(), "dev", "staging", yes=True).run()
    assert result.changes == (PROMOTED,) and result.deployment is not None
    assert not result.dry_run


def test_promote_reports_the_pins_it_moves(bench: fakes.Bench) -> None:
    Promote(bench.cfg(), "dev", "staging", yes=True).run()
    assert bench.of(PinsMoved) == [PinsMoved(changes=(PROMOTED,))]


def test_promote_deploys_the_destination_with_a_message(bench: fakes.Bench) -> None:
    Promote(bench.cfg(), "dev", "staging", yes=True).run()
    assert bench.gateway.called("up") == [("up", "staging", "msops promote web from dev")]


def test_promote_off_a_terminal_without_yes_is_a_dry_run(bench: fakes.Bench) -> None:
    before = bench.path("staging").read_bytes()
    result = Promote(bench.cfg(), "dev", "staging").run()
    assert result.dry_run and bench.path("staging").read_bytes() == before
    assert bench.gateway.called("up") == []


def test_promote_dry_run_previews_the_promoted_pins(bench: fakes.Bench) -> None:
    Promote(bench.cfg(), "dev", "staging").run()
    assert f"image: {PROMOTED.after}" in bench.gateway.previewed["staging"]


def test_promote_at_a_terminal_asks_after_previewing(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(True)
    result = Promote(bench.cfg(), "dev", "staging").run()
    assert result.deployment is not None
    assert bench.confirm.questions == ["Apply the promotion from dev to stack 'staging'?"]


def test_promote_with_matching_pins_does_nothing(bench: fakes.Bench) -> None:
    result = Promote(bench.cfg(), "staging", "prod", yes=True).run()
    assert result.changes == () and not result.dry_run and bench.gateways_made == 0


def test_promote_onto_itself_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="same stack"):
        Promote(bench.cfg(), "dev", "dev", yes=True).run()


def test_promote_of_a_service_missing_in_the_source_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="service 'api' is not in stack 'dev'"):
        Promote(bench.cfg(), "dev", "staging", services=("api",), yes=True).run()


def test_promote_validates_the_destination_after_the_edit(bench: fakes.Bench) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:latest")
    with pytest.raises(ConfigInvalid) as caught:
        Promote(bench.cfg(), "dev", "staging", yes=True).run()
    assert caught.value.stack == "staging", caught.value
    assert caught.value.problems[0].startswith("msops:services.web.image")
