"""Errors msops raises say what to do next, where msops can tell (docs/operations.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from msops import display, stackfiles
from msops.errors import OperationFailed
from msops.runtime import Readiness
from msops.stackfiles import StackDocument
from tests import fakes

pytestmark = pytest.mark.timeout(60)


def test_an_unconverged_watch_points_at_the_logs_and_the_timeout() -> None:
    waiting = Readiness("web", 2, 1, 2, 2, "waiting: 1 of 2 ready", False)
    done = Readiness("worker", 1, 1, 1, 1, "ready", True)
    message = display.not_converged("dev", 4, [done, waiting])
    assert message.startswith("stack 'dev' did not converge within 4s (web: waiting: 1 of 2 ready)")
    assert "`msops logs dev web`" in message and "--timeout" in message


def test_a_secret_pulumi_did_not_encrypt_says_how_to_set_it(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    write = stackfiles.SecretWrite("msops:secrets", ("apiKey",), "x")
    doc = StackDocument.load("dev", tmp_path)
    with pytest.raises(OperationFailed) as failed:
        doc.place_secrets([write], "config:\n  msops:secrets:\n    apiKey: x\n")
    assert "pulumi config set --secret --path 'msops:secrets.apiKey' --stack dev" in str(
        failed.value
    )


def test_an_unreadable_rewrite_by_pulumi_says_how_to_put_it_right(tmp_path: Path) -> None:
    shutil.copy(fakes.COMMITTED_STACKS / "Pulumi.staging.yaml", tmp_path)
    doc = StackDocument.load("staging", tmp_path)
    with pytest.raises(OperationFailed, match=r"git diff stacks/Pulumi\.staging\.yaml"):
        doc.place_secrets([], "config: [unclosed\n")
