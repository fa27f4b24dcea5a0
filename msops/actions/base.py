"""What every action runs with: the gateway, who confirms, and where progress and events go."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from components.plan.model import StackPlan
    from msops.analysis import Check, StepOutcome
    from msops.drift import DriftReport
    from msops.lifecycle import Kept
    from msops.releases import (
        DigestPin,
        EngineNote,
        FieldChange,
        Gateway,
        PinChange,
        Release,
        ReleaseSummary,
        SchemaPlan,
    )
    from msops.runtime import Runtime
    from msops.synth import Graph
    from msops.verify import Fetch, Plan, Verdict


# --- a person ------------------------------------------------------------------------------------


class Confirm(Protocol):
    """Whoever answers "apply this?": a person at a terminal, or nobody (CI, a pipe)."""

    def can_ask(self) -> bool:
        """Whether anyone is there to answer."""
        ...

    def ask(self, question: str) -> bool:
        """The answer to a yes/no question; only called when `can_ask()`."""
        ...


class Nobody:
    """No one to ask: changing a stack needs --yes, and promote becomes a dry run."""

    def can_ask(self) -> bool:
        return False

    def ask(self, question: str) -> bool:
        return False


# --- progress ------------------------------------------------------------------------------------


class EngineDisplay(Protocol):
    """Where one engine run's progress goes: Pulumi's own lines and its resource events."""

    def __enter__(self) -> EngineDisplay: ...

    def __exit__(self, *exc: object) -> None: ...

    def output(self, line: str) -> None: ...

    def event(self, note: EngineNote) -> None: ...


class QuietDisplay:
    """An engine display that only keeps what it was told (the default, and for tests)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []
        self.notes: list[EngineNote] = []

    def __enter__(self) -> QuietDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def output(self, line: str) -> None:
        self.lines.append(line)

    def event(self, note: EngineNote) -> None:
        self.notes.append(note)


def _idle(title: str) -> AbstractContextManager[Any]:
    return nullcontext()


# --- events: what happened, in order, for whoever shows it ----------------------------------------


class Violation(Protocol):
    """A policy violation as the policy pack reports it."""

    policy: str
    level: str
    urn: str
    message: str


@dataclass(frozen=True)
class EditShown:
    """A stack file is about to change: its diff, and the keys of the secrets set again."""

    diff: str
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoliciesChecked:
    """The policy pack ran on the offline synth (`violations` None: the pack is not installed)."""

    violations: tuple[Violation, ...] | None


@dataclass(frozen=True)
class PlanShown:
    """The engine previewed `stack`: planned change counts by operation."""

    stack: str
    changes: Mapping[str, int]


@dataclass(frozen=True)
class FileReverted:
    """A previewed edit was not applied, so the stack file has its previous bytes again."""

    path: Path


@dataclass(frozen=True)
class ReleaseSummarized:
    """What a config changes against the last good release: deployed, or about to be."""

    summary: ReleaseSummary
    deployed: bool


@dataclass(frozen=True)
class ReleaseVerified:
    """`--atomic` verification finished, passed or not."""

    verdict: Verdict


@dataclass(frozen=True)
class ReleaseChosen:
    """A recorded release is about to be re-applied: by a rollback, or to restore after a
    failed `--atomic` release."""

    stack: str
    release: Release
    restore: bool
    # A rollback of some services only (`rollback --service`): those taken from `release`.
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaPlanned:
    """What re-applying a release does about the database schemas: down steps to run first,
    older schemas accepted (--ignore-schema), services it declares no schema for."""

    plan: SchemaPlan


@dataclass(frozen=True)
class MigratingDown:
    """A rollback's down step is about to run (`plan.downs`), before the release is applied."""

    stack: str
    plan: SchemaPlan


@dataclass(frozen=True)
class DigestsPinned:
    """How a rollback pins each service's image: to the digest its release ran, or why not."""

    pins: tuple[DigestPin, ...]


@dataclass(frozen=True)
class ServicesStaged:
    """A rollback's dry run: the settings it would change, per service."""

    changes: Mapping[str, list[FieldChange]]


@dataclass(frozen=True)
class PinsMoved:
    """A promotion changed these image pins in the destination's stack file."""

    changes: tuple[PinChange, ...]


@dataclass(frozen=True)
class DriftFound:
    """A refresh preview read every resource of the stack: what changed outside msops."""

    report: DriftReport


@dataclass(frozen=True)
class ResourcesKept:
    """What a destroy of `stack` leaves standing (protected or retained), and how to remove it."""

    stack: str
    kept: tuple[Kept, ...]


@dataclass(frozen=True)
class CanaryStepDone:
    """A canary step was deployed and analysed: how it ended."""

    service: str
    step: int
    steps: int
    weight: int
    outcome: StepOutcome


@dataclass(frozen=True)
class Notice:
    """Something a person should know as it happens (what a scale compares, what it undid)."""

    text: str


Event = (
    CanaryStepDone
    | Notice
    | EditShown
    | PoliciesChecked
    | PlanShown
    | FileReverted
    | ReleaseSummarized
    | ReleaseVerified
    | ReleaseChosen
    | SchemaPlanned
    | MigratingDown
    | DigestsPinned
    | ServicesStaged
    | PinsMoved
    | DriftFound
    | ResourcesKept
)


def _ignore(event: Event) -> None:
    return None


# --- the configuration ---------------------------------------------------------------------------

# (graph, stack, policy config file) -> the pack's violations, or None when it is not installed.
PolicyCheck = Callable[["Graph", str, Path | None], "list[Any] | None"]
# (plan, timeout in seconds) -> the verdict.
Verifier = Callable[["Plan", float], "Verdict"]
Analyzer = Callable[["Check"], "StepOutcome"]


@dataclass
class Configuration:
    """What an action runs with, as Helm's action.Configuration: the seams a caller fills.

    The gateway is made on first use, so that an action that refuses early (bad input, no
    terminal) never needs the Pulumi CLI.
    """

    gateway_factory: Callable[[], Gateway]
    stacks_dir: Path | None = None
    confirm: Confirm = field(default_factory=Nobody)
    events: Callable[[Event], None] = _ignore
    engine_display: Callable[[str], EngineDisplay] = QuietDisplay
    # A spinner (or nothing) around offline work: the synth, verification.
    busy: Callable[[str], AbstractContextManager[Any]] = _idle
    # None: the policy pack in policies/ (steps.evaluate_policies).
    policies: PolicyCheck | None = None
    # None: msops.verify.verify over HTTP.
    verifier: Verifier | None = None
    # None: msops.verify.http_fetch.
    fetch: Fetch | None = None
    # The running stack's engine (Docker, Swarm, a cluster); None: msops.runtime.open_runtime.
    runtime: Callable[[StackPlan], Runtime] | None = None
    # None: msops.analysis.analyze_step against the stack's Prometheus.
    analyzer: Analyzer | None = None
    # Where msops keeps what it knows between runs (a canary in progress); None: .msops/ in
    # the project.
    state_dir: Path | None = None

    @functools.cached_property
    def gateway(self) -> Gateway:
        return self.gateway_factory()
