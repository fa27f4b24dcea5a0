"""The Diff action without typer: releases and the stack file compared through the fake gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.diff import Diff, DiffResult
from msops.errors import BadInput, OperationFailed
from tests import fakes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def web_changes(result: DiffResult) -> dict[str, tuple[object, object]]:
    section = next(s for s in result.diff.services if s.name == "web")
    return {c.key.rsplit(".", 1)[-1]: (c.before, c.after) for c in section.changes}


def test_two_releases_show_what_changed_between_them(bench: fakes.Bench) -> None:
    result = Diff(bench.cfg(), "dev", 5, 8).run()
    assert web_changes(result) == {
        "image": ("msops/demo:1.1.1", "msops/demo:1.2.1"),
        "replicas": (2, 3),
    }


def test_two_releases_are_named_as_the_sides(bench: fakes.Bench) -> None:
    result = Diff(bench.cfg(), "dev", 5, 8).run()
    assert (result.before.data()["release"], result.after.data()["release"]) == (5, 8)


def test_a_release_against_the_stack_file(bench: fakes.Bench) -> None:
    result = Diff(bench.cfg(), "dev", 12).run()
    assert result.after.release is None
    assert web_changes(result) == {"image": ("msops/demo:1.3.2", "msops/demo:1.4.0")}


def test_the_default_is_the_newest_deployed_release_against_the_file(bench: fakes.Bench) -> None:
    bench.edit("dev", "replicas: 2", "replicas: 4")
    result = Diff(bench.cfg(), "dev").run()
    assert result.before.release is not None and result.before.release.number == 14
    assert web_changes(result) == {"replicas": (2, 4)}


def test_the_default_skips_a_failed_newest_release(bench: fakes.Bench) -> None:
    bench.gateway.fail_next_up = "boom"
    with pytest.raises(OperationFailed, match="boom"):
        bench.gateway.up("dev")
    result = Diff(bench.cfg(), "dev").run()
    assert result.before.release is not None and result.before.release.number == 14


def test_the_file_as_deployed_is_no_difference(bench: fakes.Bench) -> None:
    assert not Diff(bench.cfg(), "dev").run().different


def test_a_changed_secret_differs_by_value_never_shown(bench: fakes.Bench) -> None:
    # Release 5 has the first API key, the stack file the second.
    data = Diff(bench.cfg(), "dev", 5).run().data()
    change = next(c for c in data["settings"] if c["key"] == "msops:secrets.apiKey")
    assert (change["before"], change["after"], change["secret"]) == ("[secret]", "[secret]", True)


def test_an_unknown_release_is_refused_naming_it_and_the_range(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"release 15 does not exist; .* releases 1-14"):
        Diff(bench.cfg(), "dev", 15).run()


def test_release_zero_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"release 0 does not exist; .* releases 1-14"):
        Diff(bench.cfg(), "dev", 3, 0).run()


def test_a_stack_never_deployed_has_nothing_to_compare(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"'staging' has no releases yet"):
        Diff(bench.cfg(), "staging").run()


def test_no_successful_release_asks_for_a_number(bench: fakes.Bench) -> None:
    failed = fakes.schema_update("msops/demo:1.0.0", None, hour=0, result="failed")
    bench.gateway.updates["dev"] = [failed]
    with pytest.raises(BadInput, match=r"no successful release .* `msops diff dev N`"):
        Diff(bench.cfg(), "dev").run()


def test_an_unknown_stack_is_refused_before_the_engine(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"no stack file Pulumi\.qa\.yaml"):
        Diff(bench.cfg(), "qa").run()
    assert bench.gateways_made == 0


def test_a_release_that_no_longer_validates_is_still_compared(bench: fakes.Bench) -> None:
    bench.gateway.updates["dev"].insert(0, fakes.retired_release(fakes.EPOCH))
    result = Diff(bench.cfg(), "dev", 1).run()
    assert not result.before.config.valid
    assert "msops:services.web.retiredKey" in [c.key for c in result.diff.services[0].changes]


def test_a_diff_changes_nothing(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    Diff(bench.cfg(), "dev", 3).run()
    engine = {"up", "preview", "set_secret", "refresh", "destroy"}
    assert bench.text("dev") == before and not [c for c in bench.gateway.calls if c[0] in engine]
