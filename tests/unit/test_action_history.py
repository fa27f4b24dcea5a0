"""The History action without typer: every release, numbered, newest first in its rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.history import History
from msops.actions.up import Up
from msops.errors import BadInput
from tests import fakes, multi

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_history_rows_are_every_release_newest_first(bench: fakes.Bench) -> None:
    rows = History(bench.cfg(), "dev").run().rows()
    assert [r["release"] for r in rows] == list(range(14, 0, -1))


def test_history_of_a_stack_never_deployed_is_empty(bench: fakes.Bench) -> None:
    assert History(bench.cfg(), "staging").run().releases == ()


def test_history_of_an_unknown_stack_is_refused_before_the_engine(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"no stack file Pulumi\.qa\.yaml"):
        History(bench.cfg(), "qa").run()
    assert bench.gateways_made == 0


def test_history_lists_a_release_that_no_longer_validates(bench: fakes.Bench) -> None:
    bench.gateway.updates["dev"].insert(0, fakes.retired_release(fakes.EPOCH))
    oldest = History(bench.cfg(), "dev").run().rows()[-1]
    assert (oldest["images"], oldest["replicas"]) == ({"web": "msops/demo:0.9.0"}, {"web": 2})


# --- statuses, digests, one service ---------------------------------------------------------------


def test_history_rows_have_a_status(bench: fakes.Bench) -> None:
    rows = {r["release"]: r for r in History(bench.cfg(), "dev").run().rows()}
    assert (rows[14]["status"], rows[13]["status"], rows[12]["status"]) == (
        "deployed",
        "failed",
        "superseded",
    )


def test_history_of_one_service_lists_only_the_releases_that_changed_it(
    tmp_path: Path,
) -> None:
    two = multi.bench(tmp_path)
    rows = History(two.cfg(), "dev", service="api").run().rows()
    assert [r["release"] for r in rows] == [3, 1]
    assert "replicas: 2 -> 3" in rows[0]["changes"] and rows[0]["images"] == {
        "api": "ghcr.io/msops/api:2.1.0"
    }


def test_history_max_keeps_the_newest_rows(tmp_path: Path) -> None:
    two = multi.bench(tmp_path)
    rows = History(two.cfg(), "dev", service="web", limit=1).run().rows()
    assert [r["release"] for r in rows] == [2]


def test_history_rows_carry_the_digests_each_release_ran(tmp_path: Path) -> None:
    two = multi.bench(tmp_path)
    rows = {r["release"]: r for r in History(two.cfg(), "dev").run().rows()}
    assert rows[1]["digests"] == multi.DIGESTS[1] and rows[3]["digests"] == multi.DIGESTS[3]


def test_history_of_a_service_no_release_ran_is_refused(tmp_path: Path) -> None:
    two = multi.bench(tmp_path)
    with pytest.raises(BadInput, match="service 'db' is in no release of stack 'dev'"):
        History(two.cfg(), "dev", service="db").run()


def test_the_digests_an_update_finds_reach_history_through_the_next_one(
    bench: fakes.Bench,
) -> None:
    """What the stack outputs say release 14 ran is written into release 15's message, so
    history still knows it once release 15's outputs replace them."""
    ran = {"web": multi.digest("web:1.4.0")}
    bench.gateway.stack_outputs["dev"] = {"services": {"web": {"digest": ran["web"]}}}
    Up(bench.cfg(), "dev", yes=True, message="release 1.4.0 again").run()
    bench.gateway.stack_outputs["dev"] = {}
    rows = {r["release"]: r for r in History(bench.cfg(), "dev").run().rows()}
    assert rows[14]["digests"] == ran and rows[15]["message"] == "release 1.4.0 again"
