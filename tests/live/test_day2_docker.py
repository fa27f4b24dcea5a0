"""Day 2 on docker dev: `msops logs` and `msops status --watch` against the real containers.

The dev graph applied to the tier's engine (as in scenario 1); the commands run as a user
runs them, the installed `msops` entry point with DOCKER_HOST pointing at the engine, and
find the replicas by their labels through the Docker Engine API.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live.applier import live_synth
from tests.live.engine import Engine
from tests.live.helpers import LiveResults, docker_stack

pytestmark = pytest.mark.timeout(900)

SCENARIO = "day 2 docker dev"
ROOT = Path(__file__).resolve().parents[2]
MSOPS = Path(sys.executable).parent / "msops"


@dataclass
class Dev:
    engine: Engine

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.engine.base_url, "COLUMNS": "200"}

    def msops(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MSOPS), *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def replica(self, index: int) -> Any:
        """web's replica `index` (api's are numbered too)."""
        labels = ["msops.stack=dev", "msops.service=web", "msops.role=replica"]
        (container,) = self.engine.client.containers.list(
            all=True, filters={"label": [*labels, f"msops.replica={index}"]}
        )
        return container


@pytest.fixture(scope="module")
def dev(engine: Engine, standins: dict[str, str], live_results: LiveResults) -> Iterator[Dev]:
    with docker_stack(engine.client, live_synth("dev"), live_results, SCENARIO):
        yield Dev(engine)


def by_replica(stdout: str) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        replica, sep, text = line.partition(" | ")
        assert sep, f"a line without its replica prefix: {line!r}"
        lines.setdefault(replica.strip(), []).append(text)
    return lines


def test_logs_merge_both_replicas_each_line_with_its_replica(
    dev: Dev, live_results: LiveResults
) -> None:
    done = dev.msops("logs", "dev", "web")
    lines = by_replica(done.stdout)
    live_results.record(SCENARIO, "logs lines by replica", {k: len(v) for k, v in lines.items()})
    assert done.returncode == 0, done.stderr
    assert sorted(lines) == ["web-1", "web-2"], done.stdout
    for replica, texts in lines.items():
        # The demo app names itself in its first line: `web 1.0.0 replica=web-1 listening ...`.
        assert any(f"replica={replica} listening" in t for t in texts), (replica, texts)


def test_logs_of_one_replica(dev: Dev) -> None:
    done = dev.msops("logs", "dev", "web", "--replica", "2")
    assert done.returncode == 0 and sorted(by_replica(done.stdout)) == ["web-2"], done.stdout


def test_logs_tail_is_per_replica(dev: Dev) -> None:
    done = dev.msops("logs", "dev", "web", "--tail", "1")
    lines = by_replica(done.stdout)
    assert done.returncode == 0 and {k: len(v) for k, v in lines.items()} == {
        "web-1": 1,
        "web-2": 1,
    }, done.stdout


def test_logs_since_leaves_out_older_lines(dev: Dev) -> None:
    # The replicas wrote their start-up lines when the stack came up, none since (the demo
    # app logs no requests unless ACCESS_LOG is set).
    everything = dev.msops("logs", "dev", "web", "--since", "1h")
    none = dev.msops("logs", "dev", "web", "--replica", "1", "--since", "1s")
    assert everything.returncode == 0 and "listening" in everything.stdout
    assert none.returncode == 0 and "listening" not in none.stdout, none.stdout


def test_status_watch_of_the_running_stack_converges(dev: Dev, live_results: LiveResults) -> None:
    started = time.monotonic()
    done = dev.msops("status", "dev", "--watch", "--json", "--timeout", "120")
    live_results.record(
        SCENARIO, "status --watch (running) seconds", round(time.monotonic() - started, 1)
    )
    data = json.loads(done.stdout)
    assert done.returncode == 0 and data["converged"] is True, done.stdout + done.stderr
    web, api = data["services"]
    assert (web["service"], api["service"]) == ("web", "api"), data["services"]
    assert (api["ready"], api["total"]) == (2, 2), api
    assert (web["ready"], web["total"], web["desired"], web["current"]) == (2, 2, 2, 2), web


class Lines:
    """The lines a process prints, read on a thread, so that a test can wait with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(
            target=lambda: [self.queue.put(line.rstrip("\n")) for line in stream], daemon=True
        ).start()

    def next(self, timeout: float) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout:.0f}s") from None


def test_follow_prints_lines_as_they_come(dev: Dev, live_results: LiveResults) -> None:
    follow = subprocess.Popen(
        [str(MSOPS), "logs", "dev", "web", "-f", "--tail", "1"],
        cwd=ROOT,
        env=dev.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Each replica's last line first: once both are there, both streams are attached.
        lines = Lines(follow)
        first = {lines.next(timeout=60).split(" | ")[0] for _ in range(2)}
        assert first == {"web-1", "web-2"}, first
        # Stopping replica 2 makes it write a line after the follow began.
        dev.replica(2).stop(timeout=20)
        line = lines.next(timeout=60)
        live_results.record(SCENARIO, "followed line", line)
        assert line == "web-2 | web stopped", line
    finally:
        follow.terminate()
        follow.wait(timeout=30)


def test_status_watch_with_a_replica_down_does_not_converge_then_does(
    dev: Dev, live_results: LiveResults
) -> None:
    container = dev.replica(2)
    container.reload()
    if container.attrs["State"]["Running"]:
        container.stop(timeout=20)
    down = dev.msops("status", "dev", "--watch", "--timeout", "4")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "did not converge within 4s (web: waiting: 1 of 2 ready)" in down.stderr, down.stderr
    container.start()
    started = time.monotonic()
    back = dev.msops("status", "dev", "--watch", "--timeout", "120")
    seconds = round(time.monotonic() - started, 1)
    live_results.record(SCENARIO, "status --watch until the restarted replica is healthy", seconds)
    assert back.returncode == 0 and "Converged" in back.stdout, back.stdout + back.stderr
    assert "web: 1/2 ready" in back.stdout, "the watch showed the replica coming back"
