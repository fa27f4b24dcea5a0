"""Fixtures that run the demo app, a real PostgreSQL and a real DNS server on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.dns import Dnsmasq, Service, find_dnsmasq, running_dnsmasq
from tests.dns import service as running_service
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


def require_tool(tool: str, package: str) -> str:
    """The path of a tool the test runs; missing, the test fails (never skips)."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install {package}")
    return path


@pytest.fixture
def dnsmasq() -> Iterator[Dnsmasq]:
    """The DNS an LB asks, as the LB container asks Docker's; fails in CI if missing."""
    try:
        binary = find_dnsmasq()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if binary is None:
        pytest.skip("dnsmasq is not installed: apt-get install dnsmasq-base")
    with running_dnsmasq(binary) as server:
        yield server


@pytest.fixture
def service() -> Iterator[Service]:
    """Replicas of one service on 127.0.0.2, .3, ... and one port; stopped after the test."""
    with running_service() as svc:
        yield svc
