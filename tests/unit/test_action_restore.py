"""The Restore action without typer: what `up --atomic` runs after a failed release."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops import releases
from msops.actions.base import EditShown, PoliciesChecked, ReleaseChosen
from msops.actions.restore import Restore
from msops.actions.rollback import Rollback
from msops.actions.up import Up
from msops.errors import OperationFailed, VerificationFailed
from msops.verify import Verdict
from tests import fakes, multi

pytestmark = pytest.mark.timeout(120)

REASON = "verification failed after 1s:\n  - web: GET /healthz answered 503"


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    """The dev stack file holds a release that failed: image 1.5.0, never deployed."""
    bench = fakes.Bench(tmp_path)
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:1.5.0")
    return bench


def test_restore_re_applies_the_newest_good_release_that_differs(bench: fakes.Bench) -> None:
    result = Restore(bench.cfg(), "dev", REASON).run()
    assert result.release.number == 14 and "image: msops/demo:1.4.0" in bench.text("dev")


def test_restore_deploys_with_a_message_naming_the_release(bench: fakes.Bench) -> None:
    Restore(bench.cfg(), "dev", REASON).run()
    assert bench.gateway.called("up") == [
        ("up", "dev", "msops up --atomic: restore release 14 after a failed release")
    ]


def test_restore_reports_the_release_before_its_diff(bench: fakes.Bench) -> None:
    Restore(bench.cfg(), "dev", REASON).run()
    kinds = [type(e) for e in bench.events if isinstance(e, ReleaseChosen | EditShown)]
    assert kinds == [ReleaseChosen, EditShown] and bench.of(ReleaseChosen)[0].restore


def test_restore_never_asks(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    Restore(bench.cfg(), "dev", REASON).run()
    assert bench.confirm.questions == [] and len(bench.gateway.called("up")) == 1


def test_restore_skips_the_policy_gate(bench: fakes.Bench) -> None:
    # The release restored deployed before; a failed release must not block getting it back.
    bench.violations.append(fakes.Violation("mandatory"))
    Restore(bench.cfg(), "dev", REASON).run()
    assert bench.of(PoliciesChecked) == [] and len(bench.gateway.called("up")) == 1


def test_restore_with_nothing_different_to_restore_says_why_first(bench: fakes.Bench) -> None:
    bench.gateway.updates["dev"] = []
    with pytest.raises(OperationFailed) as caught:
        Restore(bench.cfg(), "dev", REASON).run()
    assert str(caught.value).startswith(REASON) and "nothing was restored" in str(caught.value)


def test_a_restore_that_fails_says_both_failures(bench: fakes.Bench) -> None:
    bench.gateway.fail_next_up = "container web-1 exited"
    with pytest.raises(OperationFailed) as caught:
        Restore(bench.cfg(), "dev", REASON).run()
    message = str(caught.value)
    assert message.startswith(REASON) and "restoring release 14 failed too" in message
    assert "container web-1 exited" in message


def test_restoring_a_release_that_no_longer_validates_fails_naming_it(bench: fakes.Bench) -> None:
    bench.gateway.updates["dev"] = [fakes.retired_release(fakes.EPOCH)]
    with pytest.raises(OperationFailed) as caught:
        Restore(bench.cfg(), "dev", REASON).run()
    assert "release 1 of stack 'dev' does not validate" in str(caught.value)
    assert "msops:services.web.retiredKey" in str(caught.value)


# --- the status history gives the releases ------------------------------------------------


def statuses(bench: fakes.Bench) -> dict[int, str]:
    history = releases.number_releases(bench.gateway.history("dev"))
    return {n: str(s) for n, s in releases.release_statuses(history).items()}


def test_a_failed_atomic_update_is_restored_by_the_restore(bench: fakes.Bench) -> None:
    bench.gateway.fail_next_up = "container web-1 exited"
    with pytest.raises(VerificationFailed):
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    found = statuses(bench)
    assert (found[15], found[16], found[14]) == ("restored-by 16", "deployed", "superseded")


def test_a_release_that_fails_verification_is_restored_by_the_restore(bench: fakes.Bench) -> None:
    bench.verdicts.append(Verdict(ok=False, problems=["web: GET /healthz answered 503"]))
    with pytest.raises(VerificationFailed):
        Up(bench.cfg(), "dev", yes=True, atomic=True).run()
    assert statuses(bench)[15] == "restored-by 16"


def test_a_rollback_marks_the_release_it_replaced(tmp_path: Path) -> None:
    bench = fakes.Bench(tmp_path)
    Rollback(bench.cfg(), "dev", to=12, yes=True).run()
    found = statuses(bench)
    assert (found[14], found[15], found[12]) == ("restored-by 15", "deployed", "superseded")


def test_a_restore_pins_the_digests_the_restored_release_ran(tmp_path: Path) -> None:
    """Release 4 (api 2.2.0) fails verification; release 3 comes back with the digests it
    ran, which release 4's message recorded."""
    two = multi.bench(tmp_path)
    two.edit("dev", "ghcr.io/msops/api:2.1.0", "ghcr.io/msops/api:2.2.0")
    two.verdicts.append(Verdict(ok=False, problems=["api: GET /healthz answered 503"]))
    with pytest.raises(VerificationFailed, match="restored release 3"):
        Up(two.cfg(), "dev", yes=True, atomic=True).run()
    assert f"image: ghcr.io/msops/api:2.1.0@{multi.DIGESTS[3]['api']}" in two.text("dev")
