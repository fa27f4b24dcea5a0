"""A real PostgreSQL server (Debian's package) on 127.0.0.1, in a temporary data directory."""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.runtime.processes import free_port

ADMIN_ROLE = "msops_admin"
# The role the app and its migrations use: it owns its databases and nothing else, as a
# service's role would in a deployment.
APP_ROLE = "demo"
INSTALL_HINT = "apt-get install postgresql (scripts/test.sh does it)"

START_TIMEOUT_SECONDS = 30.0
BIND_ATTEMPTS = 6
# A port someone else holds shows up as one of these, and is worth another try on another
# port; anything else is a real failure and is reported as it is.
_BIND_FAILURES = ("could not bind", "Address already in use", "could not create any TCP/IP")


class PostgresUnavailable(RuntimeError):
    """The server binaries are not installed, or the server would not start."""


def find_bindir() -> Path:
    """The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin)."""
    override = os.environ.get("PG_BINDIR")
    candidates = [Path(override)] if override else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates += [p / "bin" for p in majors]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb, postgres): {INSTALL_HINT}")


def _run_as() -> tuple[list[str], int, int]:
    """The command prefix, uid and gid the server runs with.

    initdb and postgres refuse to run as root, and the tests often do (CI containers), so
    as root they run as the package's `postgres` user, or `nobody`. setpriv execs the
    server itself (no extra process in between to forward signals), and its pdeathsig
    stops the server even if the test run is killed before it can clean up.
    """
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        prefix = [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--pdeathsig=INT",
            "--",
        ]
        return prefix, user.pw_uid, user.pw_gid
    raise PostgresUnavailable("running as root, and neither a postgres nor a nobody user exists")


def _clean_env() -> dict[str, str]:
    # PGDATA, PGPORT and friends from a developer's shell must not steer the test server.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    admin_password: str
    app_password: str
    run_as: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str, user: str = APP_ROLE, password: str | None = None) -> str:
        secret = self.app_password if password is None else password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    def admin_url(self, database: str = "postgres") -> str:
        return self.url(database, ADMIN_ROLE, self.admin_password)

    def output(self) -> str:
        if self.log is None or self.log.closed:
            return ""
        return os.pread(self.log.fileno(), 1 << 20, 0).decode(errors="replace")

    def admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=5) as conn:
            for statement in statements:
                conn.execute(statement)

    def create_database(self, prefix: str = "t") -> tuple[str, str]:
        """A new empty database owned by the app role: (name, URL)."""
        name = f"{prefix}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        # FORCE: an app replica the test left connected must not keep the database alive.
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _init(self) -> None:
        pwfile = self.root / "admin-password"
        pwfile.write_text(self.admin_password + "\n")
        done = subprocess.run(
            [
                *self.run_as,
                str(self.bindir / "initdb"),
                f"--pgdata={self.data_dir}",
                f"--username={ADMIN_ROLE}",
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            env=_clean_env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        pwfile.unlink()
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def _launch(self, port: int) -> bool:
        """Start on `port`; True once it accepts the admin role, False if the port was taken."""
        import psycopg

        self.port = port
        if self.log is not None:
            self.log.close()
        self.log = (self.root / f"postgres-{port}.log").open("a+b")
        self.proc = subprocess.Popen(
            [
                *self.run_as,
                str(self.bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(self.root),
                # A throwaway server: durability buys nothing and costs seconds per run.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            env=_clean_env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if any(marker in self.output() for marker in _BIND_FAILURES):
                    return False
                raise PostgresUnavailable(
                    f"postgres exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                psycopg.connect(self.admin_url(), connect_timeout=1).close()
            except psycopg.OperationalError:
                time.sleep(0.05)
                continue
            return True
        raise PostgresUnavailable(
            f"postgres not accepting connections after {START_TIMEOUT_SECONDS} s:\n" + self.output()
        )

    def start(self) -> None:
        self._init()
        for _ in range(BIND_ATTEMPTS):
            if self._launch(free_port()):
                break
        else:
            raise PostgresUnavailable(f"no free port after {BIND_ATTEMPTS} tries:\n{self.output()}")
        # The app role's password goes in a literal: CREATE ROLE takes no parameters. It is
        # generated from URL-safe characters only, so no quoting can go wrong.
        self.admin(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.app_password}'")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate, then kill; then remove the data directory."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 15), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A running server with an admin role and the app role, both password-authenticated.
    The caller must stop() it; on a failed start it is already stopped."""
    bindir = find_bindir()
    run_as, uid, gid = _run_as()
    # Under /tmp, not pytest's tmp_path: that one is private to root (0700), and the
    # server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="msops-pg-"))
    os.chown(root, uid, gid)
    server = PostgresServer(
        bindir=bindir,
        root=root,
        admin_password=secrets.token_urlsafe(18),
        app_password=secrets.token_urlsafe(18),
        run_as=run_as,
    )
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
