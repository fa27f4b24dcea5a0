"""The runtime seam without an engine: log lines, merging, connections, and the watch loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components import plan as plans
from msops import cli, runtime, stackfiles
from msops.actions.base import Configuration
from msops.actions.logs import since_seconds
from msops.actions.watch import Watch
from msops.errors import BadInput
from msops.runtime import LogLine, LogQuery, Readiness
from msops.runtime import docker as docker_runtime
from tests import fakes

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


# --- log lines ------------------------------------------------------------------------------------


def test_a_timestamped_line_splits_into_its_time_and_text() -> None:
    when, text = runtime.split_stamp("2025-03-13T09:00:01.123456789Z GET /readyz 200")
    assert (when, text) == (datetime(2025, 3, 13, 9, 0, 1, 123456, tzinfo=UTC), "GET /readyz 200")


def test_a_line_without_a_time_is_kept_whole() -> None:
    assert runtime.split_stamp("plain text") == (None, "plain text")


def test_lines_are_whole_across_chunks() -> None:
    chunks = [b"first li", b"ne\nsecond\r\nthi", b"rd"]
    assert list(runtime.lines_of(chunks)) == ["first line", "second", "third"]


def test_replicas_are_merged_in_time_order() -> None:
    def line(replica: str, second: int) -> LogLine:
        return LogLine(replica, f"at {second}", datetime(2025, 1, 1, 0, 0, second, tzinfo=UTC))

    merged = runtime.in_time_order([[line("web-1", 1), line("web-1", 4)], [line("web-2", 2)]])
    assert [ln.text for ln in merged] == ["at 1", "at 2", "at 4"]


def test_follow_interleaves_every_stream_until_all_end() -> None:
    def stream(name: str, count: int) -> Iterator[LogLine]:
        for i in range(count):
            yield LogLine(name, str(i))

    lines = list(runtime.as_they_come([stream("web-1", 3), stream("web-2", 2)]))
    assert sorted((ln.replica, ln.text) for ln in lines) == [
        ("web-1", "0"), ("web-1", "1"), ("web-1", "2"), ("web-2", "0"), ("web-2", "1"),
    ]  # fmt: skip


def test_a_stream_that_breaks_says_so_and_the_others_go_on() -> None:
    def broken() -> Iterator[LogLine]:
        yield LogLine("web-1", "before")
        raise ConnectionError("connection reset")

    lines = list(runtime.as_they_come([broken(), iter([LogLine("web-2", "fine")])]))
    assert {ln.text for ln in lines} == {"before", "fine", "log stream ended: connection reset"}


def test_swarm_lines_are_named_by_their_task_slot() -> None:
    slots = docker_runtime._Slots(lambda: [{"ID": "t1", "Slot": 1}, {"ID": "t2", "Slot": 2}])
    raw = [
        "2025-03-13T09:00:00.5Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s,"
        "com.docker.swarm.task.id=t2 GET /readyz 200",
    ]
    (line,) = docker_runtime._swarm_lines("web", iter(raw), slots, None)
    assert (line.replica, line.text) == ("web.2", "GET /readyz 200")


def test_a_task_started_since_is_looked_up_again() -> None:
    listings = iter([[{"ID": "t1", "Slot": 1}], [{"ID": "t1", "Slot": 1}, {"ID": "t9", "Slot": 2}]])
    slots = docker_runtime._Slots(lambda: next(listings))
    assert slots("t9") == 2


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400)])
def test_since_takes_durations(text: str, seconds: float) -> None:
    assert since_seconds(text) == seconds


@pytest.mark.parametrize("text", ["10 minutes", "-5m", "0s", "yesterday"])
def test_since_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(BadInput, match="--since"):
        since_seconds(text)


# --- which Docker engine --------------------------------------------------------------------------


def plan_of(stack: str, stacks_dir: Path | None = None) -> Any:
    config = stackfiles.validate(stackfiles.config_values(stack, stacks_dir), stack)
    return plans.build(config, stack=stack)


def test_the_stack_files_docker_host_wins(tmp_path: Path) -> None:
    stacks = fakes.stack_copies(tmp_path)
    target = "  msops:target:\n    dockerHost: ssh://ops@swarm-1\n"
    fakes.add_lines(stacks, "staging", "  msops:backend: swarm\n", target)
    point = docker_runtime.endpoint(plan_of("staging", stacks), {"DOCKER_HOST": "tcp://x:2375"})
    assert (point.url, point.source) == ("ssh://ops@swarm-1", "msops:target.dockerHost")


def test_docker_host_from_the_environment_is_next() -> None:
    point = docker_runtime.endpoint(plan_of("dev"), {"DOCKER_HOST": "tcp://build:2375"})
    assert (point.url, point.source) == ("tcp://build:2375", "DOCKER_HOST")


def test_the_local_socket_is_last() -> None:
    point = docker_runtime.endpoint(plan_of("dev"), {})
    assert point.shown == "unix:///var/run/docker.sock" and "neither" in point.source


def test_an_engine_that_does_not_answer_is_named_with_where_it_came_from(tmp_path: Path) -> None:
    socket = f"unix://{tmp_path}/no-such.sock"
    with pytest.raises(runtime.Unreachable) as caught:
        runtime.open_runtime(plan_of("dev"), {"DOCKER_HOST": socket})
    assert f"the Docker engine at {socket} (DOCKER_HOST)" in str(caught.value)
    assert caught.value.exit_code == 1


def test_logs_command_without_an_engine_says_which_connection_it_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/gone.sock")
    outcome = CliRunner().invoke(cli.app, ["logs", "dev", "web"])
    assert outcome.exit_code == 1 and "cannot reach the Docker engine at unix://" in outcome.stderr


def test_logs_of_an_unknown_service_exits_2_listing_the_services() -> None:
    outcome = CliRunner().invoke(cli.app, ["logs", "dev", "orders"])
    assert outcome.exit_code == 2 and "its services: web, api" in outcome.stderr, outcome.output


# --- the watch loop -------------------------------------------------------------------------------


class Scripted:
    """A runtime that answers each round from a script of (ready, total, failed) per round."""

    where = "a scripted engine"
    readiness_source = "scripted"

    def __init__(self, rounds: list[tuple[int, int, bool]]) -> None:
        self.rounds = rounds
        # Rounds asked, by service: dev runs web and api, each answering from the script.
        self.calls: dict[str, int] = {}
        self.closed = False

    @property
    def asked(self) -> int:
        """Rounds the watch asked for."""
        return max(self.calls.values(), default=0)

    def readiness(self, workload: Any) -> Readiness:
        done_rounds = self.calls.get(workload.name, 0)
        ready, total, failed = self.rounds[min(done_rounds, len(self.rounds) - 1)]
        self.calls[workload.name] = done_rounds + 1
        done = ready == total == workload.replicas
        state = "ready" if done else f"waiting: {ready} of {workload.replicas} ready"
        return Readiness(workload.name, workload.replicas, ready, total, total, state, done, failed)

    def replicas(self, workload: Any) -> list[str]:
        return []

    def logs(self, workload: Any, query: LogQuery) -> Iterator[LogLine]:
        return iter(())

    def close(self) -> None:
        self.closed = True


class Clock:
    """Time that moves only when the watch waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def watch(engine: Scripted, timeout: float = 30.0) -> tuple[Any, Clock]:
    clock = Clock()
    cfg = Configuration(gateway_factory=lambda: pytest.fail("no Pulumi"), runtime=lambda p: engine)
    result = Watch(cfg, "dev", timeout, clock=clock, wait=clock.wait).run()
    return result, clock


def test_the_watch_ends_when_every_service_has_converged() -> None:
    engine = Scripted([(0, 1, False), (1, 2, False), (2, 2, False)])
    result, clock = watch(engine)
    assert result.converged and engine.asked == 3 and clock.waits == [2.0, 2.0]


def test_the_watch_gives_up_at_the_timeout() -> None:
    result, clock = watch(Scripted([(1, 2, False)]), timeout=5)
    assert not result.converged and clock.now == 5 and clock.waits == [2.0, 2.0, 1.0]


def test_a_failed_rollout_ends_the_watch_at_once() -> None:
    engine = Scripted([(1, 2, True)])
    result, _ = watch(engine)
    assert not result.converged and engine.asked == 1 and engine.closed


def test_the_watch_needs_no_pulumi() -> None:
    result, _ = watch(Scripted([(2, 2, False)]))
    assert result.converged


def test_watch_json_reports_numbers_as_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_configuration", _scripted_cfg([(2, 2, False)]))
    outcome = CliRunner().invoke(cli.app, ["status", "dev", "--watch", "--json"])
    data = json.loads(outcome.stdout)
    assert outcome.exit_code == 0 and data["services"][0]["ready"] == 2, outcome.output
    assert isinstance(data["elapsedSeconds"], float) and data["timeoutSeconds"] == 300.0


def test_watch_off_a_terminal_prints_a_line_per_change_and_exits_1_unconverged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "_configuration", _scripted_cfg([(1, 2, False)]))
    outcome = CliRunner().invoke(cli.app, ["status", "dev", "--watch", "--timeout", "1"])
    assert outcome.exit_code == 1 and "did not converge within 1s" in outcome.stderr
    assert "web: 1/2 ready, 2 total" in outcome.stdout, outcome.output


def _scripted_cfg(rounds: list[tuple[int, int, bool]]) -> Any:
    real = cli._configuration

    def make(console: Any) -> Configuration:
        cfg = real(console)
        cfg.runtime = lambda plan: Scripted(rounds)
        return cfg

    return make
