"""Fixtures that run the demo app, and a real PostgreSQL, as processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.postgres import PostgresServer, PostgresUnavailable, start_postgres
from tests.runtime.processes import AppHandle, StartApp, launch_app


@pytest.fixture
def start_app() -> Iterator[StartApp]:
    """Factory for app replicas; every replica it started is stopped after the test.

    Load-balancer tests can start several: `start_app(REPLICA_ID="a")`,
    `start_app(REPLICA_ID="b")`, then point the balancer at their `.port`s.
    """
    handles: list[AppHandle] = []

    def start(
        port: int | None = None, *, wait_healthy: bool = True, **env: str | None
    ) -> AppHandle:
        handle = launch_app(port, wait_healthy=wait_healthy, **env)
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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session, stopped (and its data removed) at the end.

    A missing or broken Postgres fails the tests that need it, in CI and everywhere
    else: a skipped migration test proves nothing.
    """
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, owned by the app's role: its DATABASE_URL."""
    name, url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(name)
