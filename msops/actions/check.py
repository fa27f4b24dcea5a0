"""`msops check`: validate the config and run the policy pack on the offline synth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from msops.actions import steps
from msops.actions.base import Configuration, Violation
from msops.errors import OperationFailed


@dataclass(frozen=True)
class CheckResult:
    """How many resources the synth registered and every violation; `ok`: none mandatory."""

    stack: str
    resources: int
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not steps.mandatory(self.violations)


@dataclass
class Check:
    """Validate the stack file and run the policy pack on its offline synth (no engine).

    A config that does not validate raises ConfigInvalid; a missing policy pack is a failure,
    since then nothing was checked.
    """

    cfg: Configuration
    stack: str
    policy_config: Path | None = None

    def run(self) -> CheckResult:
        edit = steps.load(self.cfg, self.stack)
        with self.cfg.busy(f"Synthesizing {self.stack} offline"):
            graph = steps.synth(edit.values, self.stack)
        evaluate = self.cfg.policies or steps.evaluate_policies
        found = evaluate(graph, self.stack, self.policy_config)
        if found is None:
            raise OperationFailed(
                "the policy pack (policies/rules/) is not installed, so the stack was not checked; "
                "run msops from the repository, which holds policies/ (`uv run msops check ...`)"
            )
        return CheckResult(stack=self.stack, resources=len(graph), violations=tuple(found))
