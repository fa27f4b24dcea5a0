"""Shell completion (typer's own) names the stacks and services of stacks/, and --version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msops import cli
from tests import fakes

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
MSOPS = Path(sys.executable).parent / "msops"


def complete(words: str, cword: int) -> list[str]:
    """What the installed `msops` offers, called the way typer's bash script calls it."""
    env = {
        **os.environ,
        "_MSOPS_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    done = subprocess.run(
        [str(MSOPS)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.split()


def test_the_entry_point_completes_stack_names() -> None:
    assert complete("msops logs ", 2) == ["dev", "prod", "staging"]


def test_the_entry_point_completes_a_stacks_service_names() -> None:
    assert complete("msops logs staging ", 3) == ["api", "web"]


def test_a_partial_stack_name_completes_to_the_matching_stacks() -> None:
    assert complete("msops status st", 2) == ["staging"]


def test_promote_completes_services_for_its_service_option() -> None:
    assert complete("msops promote dev staging --service ", 5) == ["api", "web"]


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    (directory / "Pulumi.qa.yaml").write_text(
        "config:\n  msops:services:\n    orders:\n      image: a/orders:1.0.0\n"
        "    payments:\n      image: a/payments:1.0.0\n"
    )
    return directory


def complete_in_process(words: str, cword: int) -> list[str]:
    env = {"_MSOPS_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    outcome = CliRunner().invoke(cli.app, [], env=env, prog_name="msops")
    return outcome.stdout.split()


def test_completion_reads_the_stack_files_as_they_are(stacks: Path) -> None:
    assert complete_in_process("msops scale qa ", 3) == ["orders", "payments"]


def test_a_new_stack_file_is_completed(stacks: Path) -> None:
    assert "qa" in complete_in_process("msops history ", 2)


def test_completion_script_is_typers_own() -> None:
    outcome = CliRunner().invoke(cli.app, ["--show-completion", "bash"], prog_name="msops")
    assert "_MSOPS_COMPLETE=complete_bash" in outcome.stdout, outcome.output


def test_version() -> None:
    from importlib.metadata import version

    outcome = CliRunner().invoke(cli.app, ["--version"])
    assert outcome.exit_code == 0 and outcome.stdout == f"msops {version('msops')}\n"
