"""`msops drift`: a refresh in preview mode, summarised as what changed outside msops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msops import drift, stackfiles
from msops.actions import steps
from msops.actions.base import Configuration

if TYPE_CHECKING:
    from msops.drift import DriftReport
    from msops.lifecycle import EngineRun


def engine_run(
    cfg: Configuration, stack: str, title: str, call: Callable[..., EngineRun]
) -> EngineRun:
    """One refresh or destroy (or its preview) through the gateway, with live progress.

    The stack file keeps its layout should the Pulumi CLI rewrite it on the way.
    """
    path = stackfiles.stack_path(stack, cfg.stacks_dir)
    with stackfiles.keep_layout(path), cfg.engine_display(title) as display:
        progress: dict[str, Any] = {"on_output": display.output, "on_event": display.event}
        return call(stack, **progress)


def preview_drift(cfg: Configuration, stack: str) -> DriftReport:
    """`pulumi refresh --preview-only` of a known stack, as a drift report; changes nothing."""
    steps.document(cfg, stack)
    run = engine_run(
        cfg, stack, f"Reading {stack}'s resources (refresh preview)", cfg.gateway.preview_refresh
    )
    return drift.report(stack, run.steps, run.changes)


@dataclass
class Drift:
    """Read every resource of the stack and report, per resource, the properties that differ
    from what msops deployed. Nothing is written: not the state, not the stack file."""

    cfg: Configuration
    stack: str

    def run(self) -> DriftReport:
        return preview_drift(self.cfg, self.stack)
