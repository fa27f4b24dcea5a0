"""`python -m demo.migrate up|down|status`: move the database to the schema a release needs.

Exit codes: 0 done (or nothing to do), 1 a step or the connection failed, 2 a usage or
configuration error, 3 refused (a step on the way has no down, or the database is newer
than this build knows); after 2 and 3 nothing was changed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from demo import migrations
from demo.config import ConfigError, read_secret, schema_version_from_env
from demo.db import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

PROG = "python -m demo.migrate"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Migrate the demo's database (DATABASE_URL or DATABASE_URL_FILE).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up", help="apply migrations up to --to (default: SCHEMA_VERSION, else the newest)"
    )
    up.add_argument("--to", type=int, metavar="N", help="the version to stop at")
    down = commands.add_parser("down", help="undo migrations down to --to")
    down.add_argument("--to", type=int, metavar="N", required=True, help="the version to reach")
    status = commands.add_parser("status", help="show the database's schema version")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _say(line: str) -> None:
    print(line, flush=True)


def _error(message: str) -> None:
    print(f"migrate: {message}", file=sys.stderr, flush=True)


def _status(conn: Any, needed: int, as_json: bool) -> None:
    version = migrations.current_version(conn)
    done = migrations.applied(conn)
    steps = [
        {
            "version": m.version,
            "name": m.name,
            "applied": m.version in done,
            "applied_at": done.get(m.version),
            "reversible": m.reversible,
        }
        for m in migrations.MIGRATIONS
    ]
    if as_json:
        report = {
            "version": version,
            "latest": migrations.LATEST_VERSION,
            "needed": needed,
            "migrations": steps,
        }
        _say(json.dumps(report))
        return
    _say(
        f"schema version: {version} (this build has up to {migrations.LATEST_VERSION}; "
        f"SCHEMA_VERSION needs {needed})"
    )
    for step in steps:
        state = f"applied {step['applied_at']}" if step["applied"] else "pending"
        down = "has down" if step["reversible"] else "no down"
        _say(f"  {step['version']:>3}  {step['name']:<28} {state:<34} {down}")


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        # argparse has printed the usage already.
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        url = read_secret(env, "DATABASE_URL")
        needed = schema_version_from_env(env)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if url is None:
        _error("DATABASE_URL (or DATABASE_URL_FILE) is not set")
        return EXIT_USAGE
    target = getattr(args, "to", None)
    if target is None:
        target = needed
    if args.command != "status":
        try:
            migrations.check_target(target)
        except migrations.BadTarget as exc:
            _error(str(exc))
            return EXIT_USAGE

    try:
        import psycopg

        from demo.db import connect
    except ImportError:
        _error("the psycopg driver is not installed")
        return EXIT_FAILED
    try:
        conn = connect(url, timeout=10)
    except psycopg.Error as exc:
        _error(f"cannot connect to the database: {redact(str(exc).strip(), url)}")
        return EXIT_FAILED
    try:
        with conn:
            if args.command == "status":
                _status(conn, needed, args.json)
            elif args.command == "up":
                migrations.up(conn, target, _say)
            else:
                migrations.down(conn, target, _say)
    except migrations.Refused as exc:
        _error(f"refused: {exc}")
        return EXIT_REFUSED
    except migrations.MigrationError as exc:
        _error(redact(str(exc), url))
        return EXIT_FAILED
    except psycopg.Error as exc:
        detail = exc.diag.message_primary or type(exc).__name__
        _error(f"database error: {redact(detail, url)}")
        return EXIT_FAILED
    return EXIT_OK


def main() -> int:
    return run(sys.argv[1:], os.environ)


if __name__ == "__main__":
    sys.exit(main())
