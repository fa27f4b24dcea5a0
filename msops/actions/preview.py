"""`msops preview`: the release-level changes, the policy results and the engine's plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration, PoliciesChecked, ReleaseSummarized, Violation
from msops.errors import OperationFailed

if TYPE_CHECKING:
    from msops.releases import ReleaseSummary


@dataclass(frozen=True)
class PreviewResult:
    """What the stack file changes, the policy results (None: no pack) and the planned counts."""

    summary: ReleaseSummary
    violations: tuple[Violation, ...] | None
    changes: dict[str, int]


@dataclass
class Preview:
    """Show everything, then raise OperationFailed if `msops up` would refuse (a mandatory
    policy violation)."""

    cfg: Configuration
    stack: str
    policy_config: Path | None = None

    def run(self) -> PreviewResult:
        cfg, stack = self.cfg, self.stack
        edit = steps.load(cfg, stack)
        evaluate = cfg.policies or steps.evaluate_policies
        with cfg.busy("Checking policies on the offline synth"):
            found = evaluate(steps.synth(edit.values, stack), stack, self.policy_config)
        summary = releases.summarize(stack, steps.release_history(cfg, stack), edit.spec)
        cfg.events(ReleaseSummarized(summary=summary, deployed=False))
        violations = None if found is None else tuple(found)
        cfg.events(PoliciesChecked(violations=violations))
        changes = steps.preview(cfg, stack)
        blocking = steps.mandatory(violations)
        if blocking:
            raise OperationFailed(
                f"{len(blocking)} mandatory policy violation(s); `msops up {stack}` would "
                "refuse this stack. Each is listed above with its resource and how to fix it "
                "(docs/policies.md)"
            )
        return PreviewResult(summary=summary, violations=violations, changes=changes)
