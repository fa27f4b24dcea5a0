"""Fixtures that run the demo app as a real process on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.processes import AppHandle, StartApp, launch_app


@pytest.fixture
def start_app() -> Iterator[StartApp]:
    """Factory for app replicas; every replica it started is stopped after the test.

    Load-balancer tests can start several: `start_app(REPLICA_ID="a")`,
    `start_app(REPLICA_ID="b")`, then point the balancer at their `.port`s.
    """
    handles: list[AppHandle] = []

    def start(port: int | None = None, **env: str | None) -> AppHandle:
        handle = launch_app(port, **env)
        handles.append(handle)
        return handle

    try:
        yield start
    finally:
        # Signal every replica first so their shutdowns overlap instead of queueing.
        for handle in handles:
            handle.terminate()
        for handle in handles:
            handle.stop()


@pytest.fixture
def demo_app(start_app: StartApp) -> AppHandle:
    """One replica with no database and a known version and replica id."""
    return start_app(APP_VERSION="9.8.7-test", REPLICA_ID="replica-under-test")
