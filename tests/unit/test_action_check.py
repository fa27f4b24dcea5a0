"""The Check and Render actions without typer: offline, no engine, no gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.check import Check
from msops.actions.render import Render
from msops.errors import ConfigInvalid, OperationFailed
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_check_is_ok_with_only_advisories(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("advisory"))
    result = Check(bench.cfg(), "dev").run()
    assert result.ok and result.resources > 0 and bench.gateways_made == 0


def test_check_is_not_ok_with_a_mandatory_violation(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("mandatory"))
    assert not Check(bench.cfg(), "dev").run().ok


def test_check_without_a_policy_pack_fails(bench: fakes.Bench) -> None:
    with pytest.raises(OperationFailed, match="not installed"):
        Check(bench.cfg(policies=lambda graph, stack, config: None), "dev").run()


def test_check_of_a_bad_config_names_the_key(bench: fakes.Bench) -> None:
    bench.edit("dev", "port: 8080", "port: 99999")
    with pytest.raises(ConfigInvalid) as caught:
        Check(bench.cfg(), "dev").run()
    assert caught.value.problems[0].startswith("msops:services.web.port")


def test_render_writes_the_files_it_returns(bench: fakes.Bench, tmp_path: Path) -> None:
    result = Render(bench.cfg(), "prod", tmp_path / "out").run()
    written = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written and sorted(result.paths) == written
