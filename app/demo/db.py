"""The app's use of its Postgres: readiness with the schema check, and recording visits."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from demo import migrations

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_SECONDS = 2
# After a failed connect, `/` stops trying for this long, so a database outage costs each
# request nothing instead of a connect timeout.
RECONNECT_BACKOFF_SECONDS = 2.0
MAX_IDLE_CONNECTIONS = 4


def connect(url: str, timeout: int = CONNECT_TIMEOUT_SECONDS) -> psycopg.Connection[Any]:
    # Imported here so the service runs without the driver when it has no database.
    import psycopg

    return psycopg.connect(url, connect_timeout=timeout, autocommit=True)


def redact(message: str, url: str) -> str:
    """`message` with the URL and its password masked: libpq can quote the conninfo string
    when it fails to parse it."""
    secrets = [url]
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(url).get("password")
        if password:
            secrets.append(str(password))
    except Exception:  # an unparsable URL has no password to find
        pass
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


class Database:
    """The app's connections: a fresh one per readiness check, a few pooled ones for `/`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._down_until = 0.0

    def readiness(self, needed: int) -> str | None:
        """None when the database answers at a schema at least `needed`, else a reason that
        is safe to show to anyone."""
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "database driver not installed"
        try:
            # A fresh connection, not a pooled one: the probe is there to find out whether
            # a new connection works now.
            with connect(self.url) as conn:
                version = migrations.current_version(conn)
        except Exception as exc:
            # Only the exception type leaves this method: libpq messages can quote the
            # conninfo string, password included, when it fails to parse.
            return f"database unavailable ({type(exc).__name__})"
        if version < needed:
            return f"schema {version} is older than the {needed} this version needs"
        return None

    def record_visit(self, service: str, replica: str, version: str) -> int | None:
        """The id of the visit written, or None when the schema has no visits table yet or
        the database is unavailable: a visit is worth a row, not a failed page."""
        import psycopg

        conn = self._take()
        if conn is None:
            return None
        try:
            row = conn.execute(
                "INSERT INTO visits (service, replica, version) VALUES (%s, %s, %s) RETURNING id",
                (service, replica, version),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            self._give_back(conn)
            return None
        except psycopg.Error:
            conn.close()
            return None
        self._give_back(conn)
        return int(row[0]) if row else None

    def _take(self) -> psycopg.Connection[Any] | None:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            if time.monotonic() < self._down_until:
                return None
        try:
            return connect(self.url)
        except Exception:
            with self._lock:
                self._down_until = time.monotonic() + RECONNECT_BACKOFF_SECONDS
            return None

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
