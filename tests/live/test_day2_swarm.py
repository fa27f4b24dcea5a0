"""Day 2 on swarm staging: `msops logs` (Swarm's service logs) and `msops status --watch`.

The staging graph on the tier's one-node swarm, set up by scenario 4's fixture; the commands
run as the installed `msops` with DOCKER_HOST pointing at the manager.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live.helpers import LiveResults

# Scenario 4's stack, applied once more for this module (its module-scoped fixture).
from tests.live.test_swarm_staging import Staging, staging  # noqa: F401

pytestmark = pytest.mark.timeout(900)

SCENARIO = "day 2 swarm staging"
ROOT = Path(__file__).resolve().parents[2]
MSOPS = Path(sys.executable).parent / "msops"


def msops(stack: Staging, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": stack.engine.base_url, "COLUMNS": "200"}
    return subprocess.run(
        [str(MSOPS), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def prefixes(stdout: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        replica, sep, _ = line.partition(" | ")
        assert sep, f"a line without its replica prefix: {line!r}"
        counts[replica.strip()] = counts.get(replica.strip(), 0) + 1
    return counts


def test_service_logs_are_merged_by_task_slot(
    staging: Staging,  # noqa: F811
    live_results: LiveResults,
) -> None:
    done = msops(staging, "logs", "staging", "web")
    counts = prefixes(done.stdout)
    live_results.record(SCENARIO, "logs lines by task slot", counts)
    assert done.returncode == 0, done.stderr
    assert sorted(counts) == ["web.1", "web.2"], done.stdout
    assert done.stdout.count("listening on") >= 2, done.stdout


def test_service_logs_of_one_slot(staging: Staging) -> None:  # noqa: F811
    done = msops(staging, "logs", "staging", "web", "--replica", "1", "--tail", "1")
    assert done.returncode == 0 and prefixes(done.stdout) == {"web.1": 1}, done.stdout


def test_status_watch_of_the_swarm_converges(
    staging: Staging,  # noqa: F811
    live_results: LiveResults,
) -> None:
    started = time.monotonic()
    done = msops(staging, "status", "staging", "--watch", "--json", "--timeout", "120")
    seconds = round(time.monotonic() - started, 1)
    live_results.record(SCENARIO, "status --watch seconds", seconds)
    data = json.loads(done.stdout)
    assert done.returncode == 0 and data["converged"] is True, done.stdout + done.stderr
    web, api = data["services"]
    assert (web["service"], api["service"]) == ("web", "api"), data["services"]
    assert (api["ready"], api["total"]) == (2, 2), api
    assert (web["ready"], web["total"], web["current"], web["state"]) == (2, 2, 2, "ready"), web


def test_status_watch_does_not_converge_on_more_tasks_than_the_stack_file_wants(
    staging: Staging,  # noqa: F811
    live_results: LiveResults,
) -> None:
    # Scaled behind msops's back (`docker service scale staging_web=3`): the stack file still
    # wants 2, so the watch reports the extra task and does not converge; back at 2, it does.
    service = staging.engine.client.services.get("staging_web")
    service.scale(3)
    try:
        done = msops(staging, "status", "staging", "--watch", "--timeout", "10")
        live_results.record(SCENARIO, "status --watch with 3 of 2 tasks", done.stderr.strip())
        assert done.returncode == 1, done.stdout + done.stderr
        assert "did not converge within 10s (web: " in done.stderr, done.stderr
    finally:
        service.reload()
        service.scale(2)
    back = msops(staging, "status", "staging", "--watch", "--timeout", "120")
    assert back.returncode == 0, back.stdout + back.stderr
