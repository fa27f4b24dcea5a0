"""`msops up`: deploy the stack file; with `atomic`, verify it and restore the last good release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from components import plan as plans
from msops import releases
from msops.actions import canary, steps
from msops.actions.base import Configuration
from msops.actions.restore import Restore
from msops.errors import OperationFailed, VerificationFailed

if TYPE_CHECKING:
    from components.spec import StackConfig
    from msops.actions.canary import CanaryResult
    from msops.actions.steps import Deployment
    from msops.releases import Release
    from msops.verify import Verdict


@dataclass(frozen=True)
class UpResult:
    """A deployed release: what it changed, its outputs, and (with `atomic`) its verdict."""

    stack: str
    deployment: Deployment
    verdict: Verdict | None = None
    canary: CanaryResult | None = None


@dataclass
class Up:
    """Validate, check policies, preview and confirm (unless `yes`), update, verify (`atomic`).

    A service rolled out by canary (rollout.strategy) whose image changed goes through the
    `Canary` action instead: each step deployed and analysed; a failed step exits 4.

    A failed `atomic` release (the update or its verification) is replaced by the last good
    one through the `Restore` action, and `run` raises VerificationFailed (exit 4); with
    nothing to restore, OperationFailed (exit 1).
    """

    cfg: Configuration
    stack: str
    yes: bool = False
    atomic: bool = False
    timeout: float = 120.0
    message: str | None = None
    # With `atomic`: a restore may run the failed release's down migrations first.
    migrate_down: bool = False
    # Where a canary's analysis asks Prometheus, when the stack's own URL is not reachable
    # from here (a cluster-internal one, say, behind `kubectl port-forward`).
    prometheus_url: str | None = None

    def run(self) -> UpResult:
        cfg = self.cfg
        edit = steps.load(cfg, self.stack)
        steps.policy_gate(cfg, edit)
        steps.require_terminal(cfg, self.yes)
        history = steps.release_history(cfg, self.stack)
        if not self.yes:
            steps.preview(cfg, self.stack)
            steps.confirm(cfg, self.stack, "this update")
        deployed = releases.newest_deployed(history)
        canaries = canary.canary_services(edit.spec, deployed)
        if canaries and deployed is not None:
            done = canary.Canary(
                cfg,
                self.stack,
                edit.spec,
                plans.build(edit.spec, stack=self.stack),
                canaries,
                deployed,
                history,
                prometheus_url=self.prometheus_url,
                message=self.message,
            ).run()
            return UpResult(stack=self.stack, deployment=done.deployment, canary=done)
        if not self.atomic:
            deployment = steps.deploy(
                cfg, self.stack, edit.spec, message=self.message, history=history
            )
            return UpResult(stack=self.stack, deployment=deployment)
        return self._atomic(edit.spec, history)

    def _atomic(self, spec: StackConfig, history: list[Release]) -> UpResult:
        cfg = self.cfg
        try:
            deployment = steps.deploy(cfg, self.stack, spec, message=self.message, history=history)
        except OperationFailed as exc:
            self._restore(f"the update failed: {exc}")
        verdict = steps.verify(cfg, deployment.outputs, spec, self.timeout)
        if not verdict.ok:
            reasons = "\n".join(f"  - {p}" for p in verdict.problems)
            self._restore(f"verification failed after {self.timeout:g}s:\n{reasons}")
        return UpResult(stack=self.stack, deployment=deployment, verdict=verdict)

    def _restore(self, reason: str) -> NoReturn:
        restored = Restore(self.cfg, self.stack, reason, migrate_down=self.migrate_down).run()
        images = ", ".join(f"{s}={i}" for s, i in restored.release.images().items())
        raise VerificationFailed(
            f"{reason}\nrestored release {restored.release.number} ({images}); "
            f"stacks/Pulumi.{self.stack}.yaml now holds its config (the diff above shows what "
            "was reverted)"
        )
