"""The Rollback action without typer: the target, secrets, confirmation and today's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.base import EditShown, FileReverted, ReleaseChosen
from msops.actions.rollback import Rollback
from msops.errors import BadInput, OperationFailed, ReleaseInvalid
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_rollback_defaults_to_the_newest_good_release_that_differs(bench: fakes.Bench) -> None:
    result = Rollback(bench.cfg(), "dev", yes=True).run()
    assert result.release.number == 12 and "image: msops/demo:1.3.2" in bench.text("dev")


def test_rollback_deploys_with_a_message_naming_the_release(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", yes=True).run()
    assert bench.gateway.called("up") == [("up", "dev", "msops rollback to release 12")]


def test_rollback_reports_its_target(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=7, yes=True).run()
    (chosen,) = bench.of(ReleaseChosen)
    assert (chosen.release.number, chosen.restore) == (7, False)


def test_rollback_sets_a_changed_secret_again_as_a_secret(bench: fakes.Bench) -> None:
    result = Rollback(bench.cfg(), "dev", to=5, yes=True).run()
    assert result.secrets == ("msops:secrets.apiKey",)
    assert bench.gateway.secrets_set[("dev", "msops:secrets.apiKey")] == fakes.API_KEYS[0]


def test_rollback_never_writes_the_secret_in_plain_text(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=5, yes=True).run()
    text = bench.text("dev")
    assert fakes.API_KEYS[0] not in text and fakes.encrypt(fakes.API_KEYS[0]) in text


def test_rollback_summary_shows_the_replicas_it_brings_back(bench: fakes.Bench) -> None:
    result = Rollback(bench.cfg(), "dev", to=7, yes=True).run()
    change = result.deployment.summary.changes[0]
    assert (change.replicas_before, change.replicas_after) == ("2", "3")


def test_rollback_to_a_failed_release_is_refused(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    with pytest.raises(BadInput, match="release 3 failed"):
        Rollback(bench.cfg(), "dev", to=3, yes=True).run()
    assert bench.text("dev") == before


def test_rollback_without_history_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="no releases yet"):
        Rollback(bench.cfg(), "staging", yes=True).run()


def test_rollback_to_a_release_that_no_longer_validates_names_it_and_the_key(
    bench: fakes.Bench,
) -> None:
    bench.gateway.updates["dev"].insert(0, fakes.retired_release(fakes.EPOCH))
    before = bench.text("dev")
    with pytest.raises(ReleaseInvalid) as caught:
        Rollback(bench.cfg(), "dev", to=1, yes=True).run()
    assert caught.value.release == 1 and caught.value.exit_code == 2
    assert caught.value.problems[0].startswith("msops:services.web.retiredKey")
    assert bench.text("dev") == before, "nothing may be written"


def test_rollback_off_a_terminal_without_yes_shows_the_diff_and_writes_nothing(
    bench: fakes.Bench,
) -> None:
    before = bench.path("dev").read_bytes()
    result = Rollback(bench.cfg(), "dev").run()
    assert result.dry_run and bench.path("dev").read_bytes() == before
    assert "+      image: msops/demo:1.3.2" in bench.of(EditShown)[0].diff


def test_rollback_off_a_terminal_without_yes_previews_the_would_be_file(
    bench: fakes.Bench,
) -> None:
    result = Rollback(bench.cfg(), "dev").run()
    assert "image: msops/demo:1.3.2" in bench.gateway.previewed["dev"]
    assert result.preview == {"same": 10, "update": 1} and bench.gateway.called("up") == []


def test_rollback_declined_puts_the_file_back_byte_for_byte(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    before = bench.path("dev").read_bytes()
    with pytest.raises(OperationFailed, match="cancelled"):
        Rollback(bench.cfg(), "dev", to=5).run()
    assert bench.path("dev").read_bytes() == before and bench.of(FileReverted)


def test_rollback_confirmed_previews_the_release_first(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(True)
    Rollback(bench.cfg(), "dev", to=7).run()
    assert "replicas: 3" in bench.gateway.previewed["dev"]
    assert bench.confirm.questions == ["Apply release 7 to stack 'dev'?"]


def test_rollback_is_stopped_by_a_mandatory_violation(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("mandatory"))
    before = bench.text("dev")
    with pytest.raises(OperationFailed, match="mandatory policy violation"):
        Rollback(bench.cfg(), "dev", yes=True).run()
    assert bench.text("dev") == before and bench.gateway.called("up") == []
