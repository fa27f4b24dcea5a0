"""Golden graphs: every committed stack and variant synthesizes exactly as recorded.

A deliberate change regenerates them with `uv run python -m tests.golden.cases`, in a commit
of its own that says why.
"""

from __future__ import annotations

import difflib
import json

import pytest

from tests.golden import cases

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("case", list(cases.CASES))
def test_graph_matches_its_golden_file(case: str) -> None:
    path = cases.path_of(case)
    expected = path.read_text()
    actual = cases.dumps(cases.snapshot(case))
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{path.name}",
                tofile="synthesized",
                n=2,
            )
        )
        pytest.fail(f"{case}: the graph differs from {path.name}:\n{diff[:6000]}")


@pytest.mark.parametrize("case", list(cases.CASES))
def test_golden_file_holds_resources(case: str) -> None:
    recorded = json.loads(cases.path_of(case).read_text())
    assert recorded["resources"], f"{case}: the golden file records no resource"
