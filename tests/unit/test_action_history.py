"""The History action without typer: every release, numbered, newest first in its rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.history import History
from msops.errors import BadInput
from tests import fakes

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
