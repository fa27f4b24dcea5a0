"""Release logic per service, on plain data: statuses, digests, targets, what changed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from components import spec
from msops import releases
from msops.errors import BadInput
from msops.releases import Update
from tests import fakes, multi


def numbered(updates: list[Update]) -> list[releases.Release]:
    return releases.number_releases(list(reversed(updates)))


def statuses(updates: list[Update]) -> dict[int, str]:
    return {n: str(s) for n, s in releases.release_statuses(numbered(updates)).items()}


def later(update: Update, hours: int, **changes: object) -> Update:
    """A copy of `update` `hours` after the realistic history's last one."""
    import dataclasses

    start = fakes.EPOCH + timedelta(hours=14 + hours)
    return dataclasses.replace(update, start_time=start, **changes)  # type: ignore[arg-type]


# --- statuses ----------------------------------------------------------------------------------


def test_after_deploys_the_newest_good_release_is_deployed_and_failures_failed() -> None:
    found = statuses(fakes.realistic_history())
    assert found[14] == "deployed" and found[13] == found[3] == "failed"
    assert {found[n] for n in (1, 2, 4, 5, 12)} == {"superseded"}


def test_a_failed_release_left_as_it_is_keeps_the_one_before_deployed() -> None:
    history = fakes.realistic_history()
    history.append(later(history[-1], 1, result="failed", message="bad release"))
    found = statuses(history)
    assert (found[15], found[14]) == ("failed", "deployed")


def test_a_failed_atomic_release_is_restored_by_the_restore() -> None:
    history = fakes.realistic_history()
    history.append(later(history[-1], 1, result="failed", message="release 2.1.0"))
    history.append(later(history[-2], 2, message=releases.restore_message(14, 15)))
    found = statuses(history)
    assert (found[15], found[16], found[14]) == ("restored-by 16", "deployed", "superseded")


def test_a_release_that_failed_verification_is_restored_by_the_restore() -> None:
    history = fakes.realistic_history()
    history.append(later(history[-1], 1, message="release 2.1.0"))  # the update succeeded
    history.append(later(history[-2], 2, message=releases.restore_message(14, 15)))
    assert statuses(history)[15] == "restored-by 16"


def test_an_older_restore_message_marks_the_update_before_it() -> None:
    history = fakes.realistic_history()
    history.append(later(history[-1], 1, result="failed"))
    history.append(
        later(
            history[-2], 2, message="msops up --atomic: restore release 14 after a failed release"
        )
    )
    assert statuses(history)[15] == "restored-by 16"


def test_a_rollback_restores_over_the_release_deployed_before_it() -> None:
    history = fakes.realistic_history()
    history.append(later(history[11], 1, message="msops rollback to release 12"))
    found = statuses(history)
    assert (found[14], found[15], found[12]) == ("restored-by 15", "deployed", "superseded")


def test_a_per_service_rollback_restores_over_the_release_before_it() -> None:
    history = fakes.realistic_history()
    history.append(later(history[11], 1, message="msops rollback: web to release 12"))
    assert statuses(history)[14] == "restored-by 15"


def test_a_failed_restore_marks_nothing_restored() -> None:
    history = fakes.realistic_history()
    history.append(later(history[-1], 1, result="failed"))
    history.append(later(history[-2], 2, result="failed", message=releases.restore_message(14, 15)))
    found = statuses(history)
    assert (found[15], found[16], found[14]) == ("failed", "failed", "deployed")


def test_the_down_step_of_a_rollback_is_not_what_the_rollback_undid() -> None:
    history = fakes.realistic_history()
    down = releases.migrate_down_message({"web": 1}, 12)
    history.append(later(history[-1], 1, message=down))
    history.append(later(history[11], 2, message="msops rollback to release 12"))
    found = statuses(history)
    assert (found[14], found[15]) == ("restored-by 16", "superseded")


def test_history_rows_carry_status_and_restored_by_as_a_number() -> None:
    history = fakes.realistic_history()
    history.append(later(history[11], 1, message="msops rollback to release 12"))
    rows = {r["release"]: r for r in releases.history_rows(numbered(history))}
    assert (rows[14]["status"], rows[14]["restoredBy"]) == ("restored-by", 15)
    assert (rows[15]["status"], rows[15]["restoredBy"]) == ("deployed", None)


# --- digests -----------------------------------------------------------------------------------


def test_a_digest_line_round_trips_through_the_message() -> None:
    message = releases.with_digests("release 2.0", multi.DIGESTS[1])
    assert releases.split_digests(message or "") == ("release 2.0", multi.DIGESTS[1])


def test_a_message_without_digests_is_left_as_it_is() -> None:
    assert releases.with_digests("release 2.0", {}) == "release 2.0"
    assert releases.split_digests("release 2.0\nsecond line") == ("release 2.0\nsecond line", {})


def test_numbering_keeps_the_message_without_its_digest_line() -> None:
    rels = releases.number_releases(list(reversed(multi.history())))
    assert rels[1].update.message == "release 2" and rels[1].ran_before == multi.DIGESTS[1]


def test_each_release_gets_the_digests_the_next_update_recorded() -> None:
    rels = releases.number_releases(list(reversed(multi.history())))
    assert releases.release_digests(rels, multi.outputs()) == multi.DIGESTS


def test_digests_after_a_failed_update_belong_to_the_release_deployed_before_it() -> None:
    history = multi.history()
    history.insert(2, multi.update(9, multi.RELEASES[1], result="failed"))
    rels = releases.number_releases(list(reversed(history)))
    assert 3 not in releases.release_digests(rels)
    assert releases.release_digests(rels)[2] == multi.DIGESTS[2]


def test_the_outputs_give_the_newest_release_its_digests() -> None:
    rels = releases.number_releases(list(reversed(multi.history())))
    assert releases.release_digests(rels, multi.outputs())[3] == multi.DIGESTS[3]
    assert 3 not in releases.release_digests(rels, {})


def test_history_rows_carry_each_releases_digests() -> None:
    rels = releases.number_releases(list(reversed(multi.history())))
    rows = {r["release"]: r for r in releases.history_rows(rels, multi.outputs())}
    assert rows[1]["digests"] == multi.DIGESTS[1] and rows[3]["digests"] == multi.DIGESTS[3]


def test_a_pinned_image_keeps_its_tag() -> None:
    d = multi.digest("x")
    assert releases.pinned_image("ghcr.io/msops/api:2.0.0", d) == f"ghcr.io/msops/api:2.0.0@{d}"
    assert (
        releases.pinned_image(f"msops/api:2.0.0@{multi.digest('y')}", d) == f"msops/api:2.0.0@{d}"
    )


def test_short_digests_are_12_hex_digits() -> None:
    assert releases.short_digest(multi.digest("x")) == multi.digest("x")[7:19]


@pytest.mark.parametrize("pin", ["@{d}", ":2.0.0@{d}"])
def test_an_image_pinned_by_digest_validates_in_the_spec(pin: str) -> None:
    image = "ghcr.io/msops/api" + pin.format(d=multi.digest("x"))
    assert spec.Service.model_validate({"image": image, "port": 8080}).image == image


def test_a_short_digest_does_not_validate_in_the_spec() -> None:
    with pytest.raises(ValueError, match="not a valid image reference"):
        spec.Service.model_validate({"image": "msops/api@sha256:abc123", "port": 8080})


# --- one service -------------------------------------------------------------------------------


def rels() -> list[releases.Release]:
    return releases.number_releases(list(reversed(multi.history())))


def test_a_service_goes_back_to_the_newest_release_in_which_it_differs() -> None:
    current = multi.values(*multi.RELEASES[-1])
    assert releases.service_target(rels(), current, "api", None, "dev").number == 2
    assert releases.service_target(rels(), current, "web", None, "dev").number == 1


def test_to_a_release_that_lacks_the_service_is_refused_naming_it() -> None:
    history = rels()
    del history[0].config[releases.SERVICES_KEY]["api"]
    current = multi.values(*multi.RELEASES[-1])
    with pytest.raises(BadInput, match="release 1 of stack 'dev' has no service 'api'"):
        releases.service_target(history, current, "api", 1, "dev")


def test_a_service_no_release_ran_is_refused() -> None:
    current = multi.values(*multi.RELEASES[-1])
    with pytest.raises(BadInput, match="'db' is neither in stack 'dev' nor in its history"):
        releases.service_target(rels(), current, "db", None, "dev")


def test_a_service_history_lists_only_the_releases_that_changed_it() -> None:
    found = releases.service_history(rels(), "web")
    assert [e.release.number for e in found] == [1, 2]
    assert [c.text() for c in found[1].changes] == ["image: msops/demo:1.3.0 -> msops/demo:1.4.0"]


def test_a_service_history_says_what_changed_hiding_env_values() -> None:
    (_, third) = releases.service_history(rels(), "api")
    texts = [c.text() for c in third.changes]
    assert "replicas: 2 -> 3" in texts and "env.LOG_LEVEL changed" in texts
    assert not any("warn" in t for t in texts)


def test_a_moved_tag_under_the_same_config_counts_as_a_change() -> None:
    history = multi.history()
    moved = {**multi.DIGESTS[2], "web": multi.digest("moved")}
    history.append(
        multi.update(4, multi.RELEASES[-1], message=releases.with_digests("r4", multi.DIGESTS[3]))
    )
    history.append(multi.update(5, multi.RELEASES[-1], message=releases.with_digests("r5", moved)))
    found = releases.service_history(releases.number_releases(list(reversed(history))), "web")
    assert [e.release.number for e in found][-1] == 4
    assert found[-1].changes[0].path == "digest"


def test_a_service_that_first_appears_shows_each_setting_added() -> None:
    changes = releases.block_changes(None, {"image": "msops/api:1.0.0", "lb": {"port": 8001}})
    assert [c.text() for c in changes] == [
        "image: msops/api:1.0.0 (added)",
        "lb.port: 8001 (added)",
    ]
