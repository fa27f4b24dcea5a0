"""A canary release: each step a Pulumi update of a derived config, judged by Prometheus.

For each service rolled out by canary whose block changed since the deployed release, msops
deploys the steps one by one: the stable release's block for that service, and the stack
file's version beside it on the step's share of replicas (components/plan/rollout.py says
how the program learns this). After each step it analyses the canary against the stack's
Prometheus (msops/analysis.py): a pass moves on, a failure takes the canary away (stable as
it was), records the abort and exits 4 with the failing query and its values. Once every
step passed, the stack file's own config is deployed: the new version everywhere, the canary
gone. The stack file only ever holds that target.

Interrupted (Ctrl-C, a lost connection), a canary leaves its last step running; the next
`msops up` starts the canary again from its first step, and `msops rollback` deploys an
earlier release, which has no canary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.plan import rollout as rollouts
from components.vocabulary import parse_image
from msops import analysis
from msops.actions import steps
from msops.actions.base import CanaryStepDone, Configuration
from msops.errors import OperationFailed, VerificationFailed

if TYPE_CHECKING:
    from components.plan.model import StackPlan, Workload
    from components.spec import StackConfig
    from msops.actions.steps import Deployment
    from msops.releases import Release

STATUS_DIR = Path(__file__).resolve().parents[2] / ".msops"
# app.kubernetes.io/version as Prometheus names it once podTargetLabels copies it.
K8S_VERSION_TARGET_LABEL = "app_kubernetes_io_version"


class CanaryAborted(VerificationFailed):
    """A canary failed its analysis (or got no traffic in time) and was taken away."""


def canary_services(spec: StackConfig, deployed: Release | None) -> list[str]:
    """The services this release rolls out by canary: strategy canary, and an image other
    than the deployed release's (a first deploy has nothing to compare with)."""
    if deployed is None:
        return []
    before = deployed.services
    return [
        name
        for name, svc in spec.services.items()
        if svc.rollout.strategy == "canary"
        and name in before
        and before[name].get("image") != svc.image
    ]


def status_path(stack: str, root: Path = STATUS_DIR) -> Path:
    """Where the canary in progress is described, for `msops status`."""
    return root / f"canary-{stack}.json"


@dataclass
class CanaryResult:
    """The services promoted and the final deployment of the stack file."""

    services: list[str]
    deployment: Deployment
    steps: dict[str, list[analysis.StepOutcome]] = field(default_factory=dict)


@dataclass
class Canary:
    """Roll `services` out step by step from the `deployed` release to the stack file."""

    cfg: Configuration
    stack: str
    spec: StackConfig
    plan: StackPlan
    services: list[str]
    deployed: Release
    history: Sequence[Release]
    prometheus_url: str | None = None
    message: str | None = None

    @property
    def status_root(self) -> Path:
        return self.cfg.state_dir or STATUS_DIR

    def run(self) -> CanaryResult:
        outcomes: dict[str, list[analysis.StepOutcome]] = {}
        for index, name in enumerate(self.services):
            outcomes[name] = self._roll(name, pending=self.services[index + 1 :])
        deployment = steps.deploy(
            self.cfg,
            self.stack,
            self.spec,
            message=self.message or f"msops canary: promoted {', '.join(self.services)}",
            history=self.history,
        )
        status_path(self.stack, self.status_root).unlink(missing_ok=True)
        return CanaryResult(self.services, deployment, outcomes)

    def _state(self, name: str, weight: int, step: int, pending: Sequence[str]) -> str:
        """The rollout env: this service at `weight`, the ones still to come at stable."""
        stable = self.deployed.services
        states = {name: rollouts.CanaryState(stable[name], weight, step)}
        states.update({other: rollouts.CanaryState(stable[other], 0, 0) for other in pending})
        return rollouts.encode(states)

    def _roll(self, name: str, pending: Sequence[str]) -> list[analysis.StepOutcome]:
        workload = self.plan.workload(name)
        planned = workload.rollout.steps
        outcomes = []
        for number, step in enumerate(planned, start=1):
            env = {rollouts.ENV_VAR: self._state(name, step.weight, number, pending)}
            message = f"msops canary step {number}/{len(planned)}: {name} at {step.weight}%"
            result = steps.update(self.cfg, self.stack, message, env)
            self._record(name, number, len(planned), step.weight, None)
            outcome = self._analyse(workload, result.outputs, step.pause)
            self._record(name, number, len(planned), step.weight, outcome)
            self.cfg.events(CanaryStepDone(name, number, len(planned), step.weight, outcome))
            outcomes.append(outcome)
            if outcome.status != "passed":
                self._abort(name, pending, number, outcome)
        return outcomes

    def _analyse(
        self, workload: Workload, outputs: Mapping[str, Any], pause: float
    ) -> analysis.StepOutcome:
        url = self.prometheus_url or outputs.get("prometheusUrl")
        check = analysis_check(self.plan, workload, self.deployed, url, pause)
        analyzer = self.cfg.analyzer or (
            lambda c: analysis.run_check(c, fetch=self.cfg.fetch or analysis.http_fetch)
        )
        try:
            with self.cfg.busy(f"Analysing the canary of {workload.name}"):
                return analyzer(check)
        except (analysis.Unreachable, analysis.PrometheusError) as exc:
            return analysis.StepOutcome(
                "failed",
                [analysis.Judgement("fail", (f"cannot judge the canary: {exc}",))],
            )

    def _abort(
        self, name: str, pending: Sequence[str], number: int, outcome: analysis.StepOutcome
    ) -> None:
        env = {rollouts.ENV_VAR: self._state(name, 0, 0, pending)}
        message = f"msops canary aborted at step {number}: {name} {outcome.status}"
        try:
            steps.update(self.cfg, self.stack, message, env)
        except OperationFailed as exc:
            raise OperationFailed(
                f"the canary of {name} failed step {number}, and taking it away failed too: "
                f"{exc}\n{outcome.report()}"
            ) from None
        status_path(self.stack, self.status_root).unlink(missing_ok=True)
        why = "got too little traffic to judge" if outcome.status == "no-traffic" else "failed"
        raise CanaryAborted(
            f"the canary of {name} {why} at step {number}; it was taken away and the stable "
            f"release serves as before:\n{outcome.report()}\nThe stack file still holds the "
            f"new version: fix it and run `msops up {self.stack}` again, or `msops rollback "
            f"{self.stack}` to write the stable release back."
        )

    def _record(
        self,
        name: str,
        number: int,
        total: int,
        weight: int,
        outcome: analysis.StepOutcome | None,
    ) -> None:
        last = outcome.last if outcome is not None else None
        data = {
            "stack": self.stack,
            "service": name,
            "step": number,
            "steps": total,
            "weight": weight,
            "updatedAt": time.time(),
            "lastAnalysis": None
            if last is None
            else {
                "status": last.status,
                "problems": list(last.problems),
                "canary": asdict(last.measured) if last.measured else None,
                "stable": asdict(last.baseline) if last.baseline else None,
            },
        }
        path = status_path(self.stack, self.status_root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")


def step_of(workload: Workload, pause: float) -> analysis.Step:
    """A step's timing: its pause, its analysis interval, and at most the rollout's progress
    deadline to wait for traffic."""
    settings = workload.rollout.analysis
    assert settings is not None
    return analysis.Step(
        pause=pause,
        interval=settings.interval,
        failure_limit=settings.failure_limit,
        deadline=max(pause, float(workload.rollout.progress_deadline)),
    )


def analysis_check(
    plan: StackPlan, workload: Workload, deployed: Release, prometheus_url: Any, pause: float
) -> analysis.Check:
    """What a step of `workload`'s canary is judged on; how a series knows its version
    depends on the backend (a pod label on Kubernetes, the app's app_info elsewhere)."""
    if not isinstance(prometheus_url, str) or not prometheus_url:
        raise OperationFailed(
            f"the canary of {workload.name} needs the stack's Prometheus, and the stack has no "
            "prometheusUrl output; pass --prometheus-url"
        )
    settings = workload.rollout.analysis
    assert settings is not None
    excluded = (workload.liveness.path, workload.readiness.path, workload.metrics_path)
    stable_image = str(deployed.services.get(workload.name, {}).get("image", ""))
    on_kubernetes = plan.backend == "kubernetes"

    def series(image: str) -> analysis.Series:
        ref = parse_image(image)
        if on_kubernetes:
            # The pod label the ServiceMonitor copies onto every series (podTargetLabels).
            return analysis.Series(
                job=workload.name,
                version=ref.version_label,
                version_from="label",
                label=K8S_VERSION_TARGET_LABEL,
                excluded_paths=excluded,
            )
        # The demo app's APP_VERSION, which app_info reports: the plan's workload version.
        return analysis.Series(
            job=workload.name, version=ref.digest or ref.version, excluded_paths=excluded
        )

    return analysis.Check(
        prometheus_url=prometheus_url,
        canary=series(workload.image),
        stable=series(stable_image) if stable_image else None,
        thresholds=analysis.Thresholds(
            error_rate=settings.error_rate,
            p99_latency=settings.p99_latency,
            min_requests=settings.min_requests,
        ),
        step=step_of(workload, pause),
    )
