"""The Preview action without typer: release changes, policies, then the engine's plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.base import PlanShown, PoliciesChecked, ReleaseSummarized
from msops.actions.preview import Preview
from msops.errors import OperationFailed
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_preview_summarizes_changes_since_the_last_good_release(bench: fakes.Bench) -> None:
    bench.edit("dev", "replicas: 2", "replicas: 4")
    summary = Preview(bench.cfg(), "dev").run().summary
    change = summary.changes[0]
    assert summary.since is not None and summary.since.number == 14
    assert (change.replicas_before, change.replicas_after) == ("2", "4")


def test_preview_of_a_stack_never_deployed_has_no_earlier_release(bench: fakes.Bench) -> None:
    assert Preview(bench.cfg(), "staging").run().summary.since is None


def test_preview_reports_changes_then_policies_then_the_plan(bench: fakes.Bench) -> None:
    Preview(bench.cfg(), "dev").run()
    kinds = [type(e) for e in bench.events]
    assert kinds == [ReleaseSummarized, PoliciesChecked, PlanShown], kinds
    assert not bench.of(ReleaseSummarized)[0].deployed


def test_preview_returns_the_planned_counts(bench: fakes.Bench) -> None:
    assert Preview(bench.cfg(), "dev").run().changes == {"same": 10, "update": 1}


def test_preview_with_a_mandatory_violation_fails_after_the_plan(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("mandatory"))
    with pytest.raises(OperationFailed, match="would refuse"):
        Preview(bench.cfg(), "dev").run()
    assert bench.gateway.called("preview") == [("preview", "dev")]


def test_preview_without_a_policy_pack_says_so(bench: fakes.Bench) -> None:
    Preview(bench.cfg(policies=lambda graph, stack, config: None), "dev").run()
    assert bench.of(PoliciesChecked)[0].violations is None
