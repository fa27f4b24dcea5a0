"""Fixtures of the live tier: a real Docker engine, the stand-in images, a swarm, the numbers.

The tier needs a Docker engine: the one at /var/run/docker.sock, else a dockerd it starts as
root and stops at the end (tests/live/engine.py). In CI (CI set) a missing engine fails the
tier; elsewhere, without root, it skips and says why. Every scenario records its figures with
the `live_results` fixture; they are printed in the terminal summary, `-s` or not, and
written as JSON next to pytest's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest

from tests.live import images
from tests.live.engine import Engine, EngineUnavailable, leftover_pids, open_engine
from tests.live.helpers import RESULTS_KEY, LiveResults

# Every demo tag the scenarios roll between, besides those the stacks pin.
EXTRA_REFS = (
    "msops/demo:1.1.0",
    "ghcr.io/msops/demo:1.1.0",
    f"ghcr.io/msops/demo:1.2.0{images.UNHEALTHY_SUFFIX}",
)


def _in_ci() -> bool:
    return bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def live_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LiveResults:
    results = request.config.stash.setdefault(RESULTS_KEY, LiveResults())
    if results.path is None:
        results.path = tmp_path_factory.getbasetemp() / "live-results.json"
    return results


@pytest.fixture(scope="session")
def engine(live_results: LiveResults) -> Iterator[Engine]:
    """The Docker engine; everything the session created on it is removed at the end."""
    try:
        eng = open_engine()
    except EngineUnavailable as exc:
        if _in_ci():
            pytest.fail(
                f"live tier: no Docker engine in CI, where one must exist: {exc}", pytrace=False
            )
        pytest.skip(f"live tier skipped: {exc}")
    live_results.record(
        "engine", "dockerd", "started by the tier" if eng.owned else "already running"
    )
    live_results.record("engine", "server version", eng.client.version().get("Version"))
    try:
        yield eng
    finally:
        eng.close()
        left = leftover_pids() if eng.owned else []
        live_results.record("engine", "processes left running", len(left))
        if left:
            pytest.fail(f"live tier left processes running: {left}", pytrace=False)


@pytest.fixture(scope="session")
def standins(engine: Engine, live_results: LiveResults) -> dict[str, str]:
    """The stand-in images, tagged as every image reference the committed stacks use."""
    from tests.live.applier import live_synth

    try:
        tags, report = images.build_standins(engine.client)
    except images.ImageBuildError as exc:
        pytest.fail(f"live tier: stand-in images could not be built: {exc}", pytrace=False)
    refs: set[str] = set(EXTRA_REFS)
    for stack in ("dev", "staging"):
        refs |= images.image_refs(live_synth(stack))
    images.tag_refs(engine.client, tags, refs)
    for key, value in asdict(report).items():
        if key != "tags":
            live_results.record(
                "images", key, round(value, 1) if isinstance(value, float) else value
            )
    return tags


@pytest.fixture(scope="session")
def swarm_node(engine: Engine) -> Iterator[str]:
    """This engine as a one-node swarm manager on 127.0.0.1; left at the end if we made it."""
    try:
        node = engine.init_swarm()
    except EngineUnavailable as exc:
        pytest.fail(f"live tier: {exc}", pytrace=False)
    try:
        yield node
    finally:
        engine.cleanup()
        engine.leave_swarm()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, None)
    if results is None or not results.figures:
        return
    terminalreporter.section("live tier figures")
    for scenario, figures in results.figures.items():
        for key, value in figures.items():
            terminalreporter.write_line(f"{scenario}: {key} = {value}")
    if results.path is not None:
        terminalreporter.write_line(f"(also in {results.path})")
