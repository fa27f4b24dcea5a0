"""A deploy that fails after a stack file was edited says what the file holds, and how to go on."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions import steps
from msops.actions.rollback import Rollback
from msops.errors import ConfigInvalid, OperationFailed, StackLocked
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_a_failed_rollback_says_the_file_keeps_the_edit_and_how_to_undo_it(
    bench: fakes.Bench,
) -> None:
    bench.gateway.fail_next_up = "docker: image not found"
    with pytest.raises(OperationFailed) as failed:
        Rollback(bench.cfg(), "dev", to=12, yes=True).run()
    message = str(failed.value)
    assert "image not found" in message
    assert "stacks/Pulumi.dev.yaml keeps the edit shown above, which did not deploy" in message
    assert "`msops up dev --yes` tries it again" in message
    assert "`git checkout -- stacks/Pulumi.dev.yaml`" in message
    assert "msops/demo:1.3.2" in bench.text("dev"), "the file holds the edit, as it says"


def test_the_note_keeps_the_errors_class_and_exit_code() -> None:
    noted = steps.edit_kept(StackLocked("stack 'dev' is locked"), Path("stacks/Pulumi.dev.yaml"))
    assert isinstance(noted, StackLocked) and noted.exit_code == 3
    assert str(noted).startswith("stack 'dev' is locked\nstacks/Pulumi.dev.yaml keeps the edit")


def test_an_error_with_another_constructor_keeps_its_exit_code() -> None:
    noted = steps.with_note(ConfigInvalid("dev", ["msops:backend: bad"]), "a note")
    assert noted.exit_code == 2 and str(noted).endswith("\na note")
