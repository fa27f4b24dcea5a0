"""A release in progress: what `msops up` tells the program about a canary step, by env var.

The stack file only ever holds the release's target. While a canary runs, msops deploys
intermediate configs it derives: for each service being rolled out, the service block of
the release being replaced (stable) and the weight of the current step. They reach the
program in the `MSOPS_ROLLOUT` environment variable, as JSON, so that nothing but the target
is ever written to the stack file, and a plain `pulumi up` (no variable) deploys the target.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_VAR = "MSOPS_ROLLOUT"


@dataclass(frozen=True)
class CanaryState:
    """One service mid-canary: its stable block, the weight of the step, the step's number.

    Weight 0 runs the stable version alone: how an aborted canary is taken away.
    """

    stable: Mapping[str, Any]
    weight: int
    step: int


def encode(states: Mapping[str, CanaryState]) -> str:
    return json.dumps(
        {
            name: {"stable": dict(state.stable), "weight": state.weight, "step": state.step}
            for name, state in states.items()
        },
        sort_keys=True,
    )


class RolloutStateError(ValueError):
    """The variable holds something msops did not write."""


def decode(text: str | None) -> dict[str, CanaryState]:
    """The states in `MSOPS_ROLLOUT`; none when it is unset or empty."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        return {
            str(name): CanaryState(
                stable=dict(state["stable"]), weight=int(state["weight"]), step=int(state["step"])
            )
            for name, state in raw.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RolloutStateError(
            f"{ENV_VAR} is not a rollout state msops wrote ({exc}); unset it to deploy the "
            "stack file as it is"
        ) from None


def canary_replicas(stable: int, weight: int) -> int:
    """Canary replicas beside `stable` unchanged ones so that they are `weight` percent of
    all: at least one, since a canary with no replica judges nothing."""
    if weight <= 0:
        return 0
    return max(1, math.floor(stable * weight / (100 - weight) + 0.5))
