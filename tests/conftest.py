"""Shared fixtures: synthesized graphs of the committed stacks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from msops import synth

STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def stack_graph() -> Callable[[str], synth.Graph]:
    """Synthesize a committed stack once per session: stack_graph("dev")."""
    cache: dict[str, synth.Graph] = {}

    def get(stack: str) -> synth.Graph:
        if stack not in cache:
            cache[stack] = synth.synth(stack)
        return cache[stack]

    return get
