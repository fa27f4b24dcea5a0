"""Helpers for tests on synthesized graphs: stack config values to modify, and look-ups."""

from __future__ import annotations

import copy
from typing import Any

from msops import synth


def stack_values(stack: str) -> dict[str, Any]:
    """A deep copy of a committed stack's config values (`msops:services` → dict), to modify."""
    values, _ = synth.config_from_file(stack)
    return copy.deepcopy(values)


def synth_values(values: dict[str, Any], stack: str = "dev") -> synth.Graph:
    """Synthesize modified stack values."""
    return synth.synth_config(values, stack=stack)
