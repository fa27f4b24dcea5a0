"""Fixtures that run the real nginx, promtool and dnsmasq on rendered artifacts and report."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dns import Dnsmasq, Service, find_dnsmasq, running_dnsmasq
from tests.dns import service as running_service

# Generous: the tools answer in well under a second, but a loaded CI machine can be slow.
TOOL_TIMEOUT = 60

# What the LB container gives nginx: a private, writable /tmp on a read-only root, and no root.
# A private /tmp also keeps these runs from leaving root-owned /tmp/nginx.pid on a shared host.
# The config is read from stdin, because the tmpfs hides the test's own files under /tmp.
_CONTAINER_SH = (
    "mount --rbind / / && mount -o remount,bind,ro / "
    "&& mount -t tmpfs -o mode=1777 tmpfs /tmp "
    '&& exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"'
)


@dataclass(frozen=True)
class ToolRun:
    """One finished run of a tool: its command line, exit code and output."""

    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def report(self) -> str:
        """What to print when an assertion on this run fails: the command and all its output."""
        return (
            f"`{shlex.join(self.args)}` exited {self.returncode}\n"
            f"--- stderr ---\n{self.stderr}\n--- stdout ---\n{self.stdout}"
        )


@dataclass(frozen=True)
class Tool:
    """A binary found on PATH."""

    binary: str

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
        stdin: Path | None = None,
    ) -> ToolRun:
        command = [*prefix, self.binary, *args]
        with stdin.open("rb") if stdin else open(os.devnull, "rb") as source:
            done = subprocess.run(
                command,
                cwd=cwd,
                stdin=source,
                capture_output=True,
                timeout=TOOL_TIMEOUT,
                check=False,
            )
        return ToolRun(
            command,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )


def _require(name: str, package: str) -> Tool:
    found = shutil.which(name)
    if found is None:
        # A missing tool must fail: a skipped artifact test proves nothing about the artifact.
        pytest.fail(f"{name} is not installed: apt-get install {package}", pytrace=False)
    return Tool(found)


@pytest.fixture(scope="session")
def nginx() -> Tool:
    return _require("nginx", "nginx-light")


@pytest.fixture(scope="session")
def promtool() -> Tool:
    return _require("promtool", "prometheus")


@pytest.fixture(scope="session")
def lb_container() -> tuple[str, ...]:
    """The command prefix that runs a program the way the LB container runs nginx.

    As root with mount namespaces: uid 65534, read-only root, tmpfs /tmp. As root without
    them: uid 65534 only. Not root: nothing to add, the tests already run unprivileged.
    """
    if os.geteuid() != 0:
        return ()
    as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")
    container = ("unshare", "--mount", "--propagation", "private", "sh", "-c", _CONTAINER_SH, "lb")
    try:
        probe = subprocess.run(
            [*container, "true"], capture_output=True, timeout=TOOL_TIMEOUT, check=False
        )
    except FileNotFoundError:
        return as_nobody
    return container if probe.returncode == 0 else as_nobody


@pytest.fixture
def dnsmasq() -> Iterator[Dnsmasq]:
    """A real DNS server on 127.0.0.1 for the LB's resolver, serving no name until the test
    sets one; stopped after the test. Missing, it fails in CI and skips elsewhere."""
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
    """Replicas of one service on 127.0.0.2, .3, ... and one port; all stopped after the test."""
    with running_service() as svc:
        yield svc
