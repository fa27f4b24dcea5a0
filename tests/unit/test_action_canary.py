"""The canary release logic, without typer or Prometheus: steps, abort, success, interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.plan.rollout import ENV_VAR, decode
from msops import analysis, releases
from msops.actions import canary
from msops.actions.base import CanaryStepDone
from msops.actions.rollback import Rollback
from msops.actions.up import Up
from msops.errors import OperationFailed
from tests import fakes

pytestmark = pytest.mark.timeout(120)

CANARY = """\
      rollout:
        strategy: canary
        steps:
          - {weight: 25, pause: 30s}
          - {weight: 50, pause: 30s}
"""
PASSED = analysis.StepOutcome("passed", [analysis.Judgement("pass")])
FAILED = analysis.StepOutcome(
    "failed",
    [analysis.Judgement("fail", ("web 1.5.0: error rate 20.00% is above the 1.00% threshold",))],
    queries=('sum(http_requests_total{job="web"})',),
)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    bench = fakes.Bench(tmp_path, outputs={"prometheusUrl": "http://prometheus.test:9090"})
    # Release 14 (deployed) runs 1.4.0; the file moves web to 1.5.0 by canary.
    bench.edit("dev", "      port: 8080\n", "      port: 8080\n" + CANARY)
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    return bench


def up(bench: fakes.Bench, *outcomes: analysis.StepOutcome, tmp_path: Path) -> Up:
    queue = list(outcomes)
    checks: list[analysis.Check] = []

    def analyzer(check: analysis.Check) -> analysis.StepOutcome:
        checks.append(check)
        if not queue:
            # Nothing more to say: as if the user pressed Ctrl-C during the analysis.
            raise KeyboardInterrupt
        return queue.pop(0)

    bench.checks = checks  # type: ignore[attr-defined]
    cfg = bench.cfg(analyzer=analyzer, state_dir=tmp_path / "state")
    return Up(cfg, "dev", yes=True)


def steps_of(bench: fakes.Bench) -> list[dict[str, canary.rollouts.CanaryState]]:
    return [decode(env.get(ENV_VAR)) for env in bench.gateway.envs]


def test_each_step_is_an_update_at_its_weight(bench: fakes.Bench, tmp_path: Path) -> None:
    up(bench, PASSED, PASSED, tmp_path=tmp_path).run()
    weights = [state["web"].weight if state else None for state in steps_of(bench)]
    assert weights == [25, 50, None]


def test_a_step_runs_the_deployed_release_as_stable(bench: fakes.Bench, tmp_path: Path) -> None:
    up(bench, PASSED, PASSED, tmp_path=tmp_path).run()
    first = steps_of(bench)[0]["web"]
    assert first.stable["image"] == "msops/demo:1.4.0", first.stable


def test_success_deploys_the_stack_file_last(bench: fakes.Bench, tmp_path: Path) -> None:
    result = up(bench, PASSED, PASSED, tmp_path=tmp_path).run()
    messages = [call[2] for call in bench.gateway.called("up")]
    assert messages[-1] == "msops canary: promoted web", messages
    assert result.canary is not None and result.canary.services == ["web"]


def test_a_failed_step_takes_the_canary_away_and_exits_4(
    bench: fakes.Bench, tmp_path: Path
) -> None:
    with pytest.raises(canary.CanaryAborted) as info:
        up(bench, PASSED, FAILED, tmp_path=tmp_path).run()
    assert info.value.exit_code == 4
    last = steps_of(bench)[-1]["web"]
    assert (last.weight, last.stable["image"]) == (0, "msops/demo:1.4.0")


def test_an_abort_names_the_failing_query_and_its_values(
    bench: fakes.Bench, tmp_path: Path
) -> None:
    with pytest.raises(canary.CanaryAborted) as info:
        up(bench, FAILED, tmp_path=tmp_path).run()
    message = str(info.value)
    assert "error rate 20.00%" in message and 'query: sum(http_requests_total{job="web"})' in (
        message
    )


def test_an_aborted_release_is_recorded_as_failed(bench: fakes.Bench, tmp_path: Path) -> None:
    with pytest.raises(canary.CanaryAborted):
        up(bench, FAILED, tmp_path=tmp_path).run()
    history = releases.number_releases(bench.gateway.history("dev"))
    newest = releases.newest_deployed(history)
    assert newest is not None and newest.images() == {"web": "msops/demo:1.4.0"}, newest


def test_the_stack_file_only_ever_holds_the_target(bench: fakes.Bench, tmp_path: Path) -> None:
    before = bench.path("dev").read_text()
    with pytest.raises(canary.CanaryAborted):
        up(bench, PASSED, FAILED, tmp_path=tmp_path).run()
    assert bench.path("dev").read_text() == before


def test_no_traffic_aborts_with_what_it_waited_for(bench: fakes.Bench, tmp_path: Path) -> None:
    idle = analysis.StepOutcome("no-traffic", [analysis.Judgement("wait")])
    with pytest.raises(canary.CanaryAborted, match="too little traffic"):
        up(bench, idle, tmp_path=tmp_path).run()


def test_each_step_is_reported(bench: fakes.Bench, tmp_path: Path) -> None:
    up(bench, PASSED, PASSED, tmp_path=tmp_path).run()
    done = [e for e in bench.events if isinstance(e, CanaryStepDone)]
    assert [(e.step, e.weight, e.outcome.status) for e in done] == [
        (1, 25, "passed"),
        (2, 50, "passed"),
    ]


def test_a_canary_in_progress_is_described_for_status(bench: fakes.Bench, tmp_path: Path) -> None:
    written: list[dict[str, object]] = []
    path = canary.status_path("dev", tmp_path / "state")

    def analyzer(check: analysis.Check) -> analysis.StepOutcome:
        written.append(json.loads(path.read_text()))
        return PASSED

    Up(bench.cfg(analyzer=analyzer, state_dir=tmp_path / "state"), "dev", yes=True).run()
    assert [(w["step"], w["weight"]) for w in written] == [(1, 25), (2, 50)]
    assert not path.exists(), "a finished canary leaves no description behind"


def test_an_interrupted_canary_is_started_again_by_the_next_up(
    bench: fakes.Bench, tmp_path: Path
) -> None:
    # The first run dies during its second step's analysis (Ctrl-C).
    with pytest.raises(KeyboardInterrupt):
        up(bench, PASSED, tmp_path=tmp_path).run()
    bench.gateway.envs.clear()
    up(bench, PASSED, PASSED, tmp_path=tmp_path).run()
    first = steps_of(bench)[0]["web"]
    # Its step updates do not count as deployed: stable is still release 14's 1.4.0.
    assert (first.step, first.stable["image"]) == (1, "msops/demo:1.4.0")


def test_an_interrupted_canary_is_taken_away_by_a_rollback(
    bench: fakes.Bench, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        up(bench, PASSED, tmp_path=tmp_path).run()
    bench.gateway.envs.clear()
    Rollback(bench.cfg(), "dev", yes=True).run()
    # A plain update of an earlier release: no canary step in it.
    assert steps_of(bench) == [{}]


def test_a_canary_without_a_prometheus_url_says_how_to_give_one(tmp_path: Path) -> None:
    bench = fakes.Bench(tmp_path)
    bench.edit("dev", "      port: 8080\n", "      port: 8080\n" + CANARY)
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    with pytest.raises(OperationFailed, match="pass --prometheus-url"):
        up(bench, PASSED, tmp_path=tmp_path).run()


def test_the_analysis_asks_the_url_given_over_the_stacks(
    bench: fakes.Bench, tmp_path: Path
) -> None:
    action = up(bench, PASSED, PASSED, tmp_path=tmp_path)
    action.prometheus_url = "http://127.0.0.1:19090"
    action.run()
    assert {c.prometheus_url for c in bench.checks} == {"http://127.0.0.1:19090"}  # type: ignore[attr-defined]


def test_the_canary_is_judged_on_its_own_version_without_probes(
    bench: fakes.Bench, tmp_path: Path
) -> None:
    up(bench, PASSED, PASSED, tmp_path=tmp_path).run()
    check = bench.checks[0]  # type: ignore[attr-defined]
    assert (check.canary.version, check.stable.version) == ("1.5.0", "1.4.0")
    assert "/healthz" in check.canary.excluded_paths and "/metrics" in check.canary.excluded_paths


def test_a_rolling_service_is_not_released_by_canary(tmp_path: Path) -> None:
    bench = fakes.Bench(tmp_path)
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    Up(bench.cfg(state_dir=tmp_path / "state"), "dev", yes=True).run()
    assert steps_of(bench) == [{}]


def test_status_shows_a_canary_in_progress(tmp_path: Path) -> None:
    from msops.actions.status import Status

    running = {"image": "msops/demo:1.5.0", "replicas": 1, "weight": 33, "step": 1}
    outputs = {"services": {"web": {"image": "msops/demo:1.4.0", "canary": running}}}
    bench = fakes.Bench(tmp_path, outputs=outputs)
    state = tmp_path / "state"
    state.mkdir()
    analysed = {"status": "pass", "problems": []}
    canary.status_path("dev", state).write_text(
        json.dumps({"service": "web", "steps": 2, "lastAnalysis": analysed})
    )
    (row,) = Status(bench.cfg(state_dir=state), "dev").run().services
    assert row.canary == {**running, "steps": 2, "lastAnalysis": analysed}
