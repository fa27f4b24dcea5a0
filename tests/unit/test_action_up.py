"""The Up action without typer: deploy, confirm, policies, and --atomic with its restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops.actions.base import PoliciesChecked, ReleaseChosen, ReleaseSummarized
from msops.actions.up import Up
from msops.errors import (
    BadInput,
    ConfigInvalid,
    OperationFailed,
    StackLocked,
    VerificationFailed,
)
from msops.verify import Verdict
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_up_deploys_and_returns_what_changed(bench: fakes.Bench) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    result = Up(bench.cfg(), "dev", yes=True).run()
    change = result.deployment.summary.changes[0]
    assert (change.image_before, change.image_after) == ("msops/demo:1.4.0", "msops/demo:1.5.0")


def test_up_summary_is_against_the_newest_successful_release(bench: fakes.Bench) -> None:
    since = Up(bench.cfg(), "dev", yes=True).run().deployment.summary.since
    assert since is not None and since.number == 14


def test_up_records_the_message(bench: fakes.Bench) -> None:
    Up(bench.cfg(), "dev", yes=True, message="release 1.4.0").run()
    assert bench.gateway.called("up") == [("up", "dev", "release 1.4.0")]


def test_up_without_yes_and_nobody_to_ask_refuses_before_making_a_gateway(
    bench: fakes.Bench,
) -> None:
    with pytest.raises(BadInput, match="pass --yes"):
        Up(bench.cfg(), "dev").run()
    assert bench.gateways_made == 0, "the Pulumi CLI must not be needed to refuse"


def test_up_without_yes_previews_then_asks(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(True)
    Up(bench.cfg(), "dev").run()
    order = [c[0] for c in bench.gateway.calls if c[0] in ("preview", "up")]
    assert order == ["preview", "up"] and bench.confirm.questions == [
        "Apply this update to stack 'dev'?"
    ]


def test_up_declined_applies_nothing(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    with pytest.raises(OperationFailed, match="cancelled"):
        Up(bench.cfg(), "dev").run()
    assert bench.gateway.called("up") == []


def test_up_with_a_bad_config_names_the_key_and_touches_no_engine(bench: fakes.Bench) -> None:
    bench.edit("dev", "replicas: 2", 'replicas: "two"')
    with pytest.raises(ConfigInvalid) as caught:
        Up(bench.cfg(), "dev", yes=True).run()
    assert caught.value.problems[0].startswith("msops:services.web.replicas")
    assert bench.gateways_made == 0


def test_up_stops_on_a_mandatory_violation(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("mandatory"))
    with pytest.raises(OperationFailed, match="1 mandatory policy violation"):
        Up(bench.cfg(), "dev", yes=True).run()
    assert bench.gateway.called("up") == []


def test_up_reports_an_advisory_violation_and_deploys(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("advisory"))
    Up(bench.cfg(), "dev", yes=True).run()
    reported = bench.of(PoliciesChecked)[0].violations
    assert [v.level for v in reported] == ["advisory"] and len(bench.gateway.called("up")) == 1


def test_up_reports_the_release_after_the_update(bench: fakes.Bench) -> None:
    Up(bench.cfg(), "dev", yes=True).run()
    assert [e.deployed for e in bench.of(ReleaseSummarized)] == [True]


def test_up_of_a_locked_stack_raises_stack_locked(bench: fakes.Bench) -> None:
    bench.gateway.locked = True
    with pytest.raises(StackLocked):
        Up(bench.cfg(), "dev", yes=True).run()


# --- atomic ---------------------------------------------------------------------------------------


def test_atomic_up_returns_the_verdict(bench: fakes.Bench) -> None:
    result = Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    assert result.verdict is not None and result.verdict.ok


def test_atomic_up_verifies_the_validated_config(bench: fakes.Bench) -> None:
    Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    (target,) = bench.plans[0].services
    assert (target.name, target.health_path, target.replicas) == ("web", "/healthz", 2)


def test_atomic_up_hands_its_timeout_to_the_verifier(bench: fakes.Bench) -> None:
    seen: list[float] = []
    cfg = bench.cfg(verifier=lambda plan, timeout: seen.append(timeout) or Verdict(ok=True))
    Up(cfg, "dev", yes=True, atomic=True, timeout=7).run()
    assert seen == [7]


def test_failed_verification_restores_and_raises_verification_failed(bench: fakes.Bench) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    bench.verdicts.append(Verdict(ok=False, problems=["web: GET /healthz answered 503"]))
    with pytest.raises(VerificationFailed, match="answered 503") as caught:
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    assert "restored release 14" in str(caught.value)
    assert "image: msops/demo:1.4.0" in bench.text("dev")


def test_failed_verification_restores_through_the_engine(bench: fakes.Bench) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    bench.verdicts.append(Verdict(ok=False, problems=["web: error rate 50%"]))
    with pytest.raises(VerificationFailed):
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    messages = [c[2] for c in bench.gateway.called("up")]
    assert messages == [None, "msops up --atomic: restore release 14 after release 15 failed"]


def test_a_failed_atomic_update_is_restored(bench: fakes.Bench) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    bench.gateway.fail_next_up = "container web-1 exited"
    with pytest.raises(VerificationFailed, match="the update failed"):
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    assert [e.release.number for e in bench.of(ReleaseChosen)] == [14]


def test_a_failed_plain_update_is_not_restored(bench: fakes.Bench) -> None:
    bench.gateway.fail_next_up = "port 8000 is already allocated"
    with pytest.raises(OperationFailed, match="already allocated"):
        Up(bench.cfg(), "dev", yes=True).run()
    assert len(bench.gateway.called("up")) == 1


def test_a_locked_atomic_update_is_not_restored(bench: fakes.Bench) -> None:
    bench.gateway.locked = True
    with pytest.raises(StackLocked):
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    assert bench.of(ReleaseChosen) == []


def test_atomic_up_with_nothing_to_restore_raises_operation_failed(bench: fakes.Bench) -> None:
    bench.gateway.updates["dev"] = []
    bench.verdicts.append(Verdict(ok=False, problems=["web: down"]))
    with pytest.raises(OperationFailed, match="nothing was restored"):
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
