"""The README's set-up commands: the dev deploy stops cleanly, with help, when Pulumi is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def _path_without_pulumi() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "pulumi").exists())


def test_deploy_dev_without_pulumi_sets_up_then_says_how_to_install_it() -> None:
    env = {**os.environ, "PATH": _path_without_pulumi()}
    result = subprocess.run(
        ["bash", "scripts/deploy-dev.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert "The Pulumi CLI is not installed, so nothing was deployed" in result.stderr
    assert "curl -fsSL https://get.pulumi.com | sh" in result.stderr


def test_readme_names_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/deploy-dev.sh", "scripts/test.sh"):
        assert f"./{script}" in readme, script
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"


def test_ci_runs_the_readme_test_command() -> None:
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
