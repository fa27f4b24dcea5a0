"""The demo's schema as numbered steps, and the engine that moves a database between them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: tuple[str, ...]
    # None: the step cannot be undone, and `down` refuses to cross it.
    down: tuple[str, ...] | None

    @property
    def reversible(self) -> bool:
        return self.down is not None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "notes table",
        up=(
            "CREATE TABLE notes ("
            " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " body text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())",
        ),
        down=("DROP TABLE notes",),
    ),
    Migration(
        2,
        "notes.author, backfilled",
        up=(
            "ALTER TABLE notes ADD COLUMN author text",
            "UPDATE notes SET author = 'anonymous' WHERE author IS NULL",
            "ALTER TABLE notes ALTER COLUMN author SET DEFAULT 'anonymous'",
            "ALTER TABLE notes ALTER COLUMN author SET NOT NULL",
        ),
        # Dropping the column would throw away every author written since: this step is
        # one-way on purpose, so the demo shows a rollback that must be refused.
        down=None,
    ),
    Migration(
        3,
        "visits table",
        up=(
            "CREATE TABLE visits ("
            " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " service text NOT NULL,"
            " replica text NOT NULL,"
            " version text NOT NULL,"
            " visited_at timestamptz NOT NULL DEFAULT now())",
            "CREATE INDEX visits_visited_at ON visits (visited_at)",
        ),
        down=("DROP TABLE visits",),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
# The first schema that has the visits table, which `/` writes to when it is there.
VISITS_VERSION = 3

VERSION_TABLE = "schema_version"
# One advisory lock for every migrate run against a database: two runs at once (a retried
# Job, two one-off containers) take turns instead of applying the same step twice.
LOCK_KEY = 0x6D736F7073

Log = Callable[[str], None]


class MigrationError(Exception):
    """A step failed; its transaction was rolled back, the steps before it stay applied."""


class Refused(Exception):
    """The request cannot be carried out safely; nothing was changed."""


class BadTarget(Exception):
    """A target version this build does not know."""


def by_version(version: int) -> Migration:
    for migration in MIGRATIONS:
        if migration.version == version:
            return migration
    raise KeyError(version)


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The version the database is at; 0 for a database no migration has touched."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()
    return int(row[0]) if row else 0


def applied(conn: psycopg.Connection[Any]) -> dict[int, str]:
    """{version: applied-at timestamp} of the steps recorded in the version table."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if not row or not row[0]:
        return {}
    rows = conn.execute(f"SELECT version, applied_at FROM {VERSION_TABLE} ORDER BY version")
    return {int(v): at.isoformat(timespec="seconds") for v, at in rows}


def check_target(target: int) -> None:
    if not 0 <= target <= LATEST_VERSION:
        raise BadTarget(f"version {target} is unknown: this build has versions 0..{LATEST_VERSION}")


def plan_up(current: int, target: int) -> list[Migration]:
    check_target(target)
    return [m for m in MIGRATIONS if current < m.version <= target]


def plan_down(current: int, target: int) -> list[Migration]:
    """The steps to undo, newest first; Refused if any of them has no down step."""
    check_target(target)
    if current <= target:
        return []
    if current > LATEST_VERSION:
        raise Refused(
            f"the database is at schema {current}, newer than the {LATEST_VERSION} this build "
            "knows: only the build that added it can take it down; nothing was changed"
        )
    steps = [m for m in reversed(MIGRATIONS) if target < m.version <= current]
    for step in steps:
        if not step.reversible:
            lowest = step.version
            raise Refused(
                f"cannot go down from {current} to {target}: migration {step.version} "
                f"({step.name}) has no down step, so {lowest} is the lowest version reachable "
                f"from {current}; nothing was changed"
            )
    return steps


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))


def _ensure_version_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def up(conn: psycopg.Connection[Any], target: int, log: Log) -> list[int]:
    """Apply the steps up to `target`; returns the versions applied (none when already there)."""
    import psycopg

    check_target(target)
    _lock(conn)
    current = current_version(conn)
    steps = plan_up(current, target)
    if not steps:
        if current > LATEST_VERSION:
            log(
                f"schema is at {current}, newer than the {LATEST_VERSION} this build knows; "
                "nothing to do"
            )
        else:
            log(f"schema is at {current}; nothing to do")
        return []
    _ensure_version_table(conn)
    done: list[int] = []
    for step in steps:
        try:
            with conn.transaction():
                for statement in step.up:
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (%s, %s)",
                    (step.version, step.name),
                )
        except psycopg.Error as exc:
            detail = exc.diag.message_primary or type(exc).__name__
            raise MigrationError(
                f"up {step.version} ({step.name}) failed and was rolled back: {detail}; "
                f"the schema is at {done[-1] if done else current}"
            ) from None
        done.append(step.version)
        log(f"up {step.version}: {step.name}")
    log(f"schema is at {done[-1]}")
    return done


def down(conn: psycopg.Connection[Any], target: int, log: Log) -> list[int]:
    """Undo the steps above `target`, newest first; Refused (with nothing changed) if one of
    them has no down step."""
    import psycopg

    check_target(target)
    _lock(conn)
    current = current_version(conn)
    steps = plan_down(current, target)
    if not steps:
        log(f"schema is at {current}; nothing to do")
        return []
    done: list[int] = []
    for step in steps:
        assert step.down is not None  # plan_down refused irreversible steps
        try:
            with conn.transaction():
                for statement in step.down:
                    conn.execute(statement)
                conn.execute(f"DELETE FROM {VERSION_TABLE} WHERE version = %s", (step.version,))
        except psycopg.Error as exc:
            detail = exc.diag.message_primary or type(exc).__name__
            at = done[-1] - 1 if done else current
            raise MigrationError(
                f"down {step.version} ({step.name}) failed and was rolled back: {detail}; "
                f"the schema is at {at}"
            ) from None
        done.append(step.version)
        log(f"down {step.version}: {step.name}")
    log(f"schema is at {target}")
    return done
