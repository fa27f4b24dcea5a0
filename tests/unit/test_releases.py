"""Release logic without an engine: numbering, paging, rollback targets, promotion plans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from msops import releases
from msops.errors import BadInput
from msops.releases import ConfigEntry, Release, Update
from tests import fakes

pytestmark = pytest.mark.timeout(30)


def numbered() -> list[Release]:
    return releases.number_releases(list(reversed(fakes.realistic_history())))


def current_of(release: Release) -> dict[str, Any]:
    return dict(release.config)


# --- history: paging and numbering ----------------------------------------------------------------


def paged(entries: list[Update], calls: list[tuple[int, int]]) -> Any:
    def fetch(page: int, size: int) -> list[Update]:
        calls.append((page, size))
        return entries[(page - 1) * size : page * size]

    return fetch


def test_all_pages_reads_beyond_the_first_ten() -> None:
    history = fakes.realistic_history()
    calls: list[tuple[int, int]] = []
    got = releases.all_pages(paged(history, calls), page_size=10)
    assert len(got) == 14, f"got {len(got)} of 14 updates; pages asked: {calls}"


def test_all_pages_stops_at_the_first_short_page() -> None:
    calls: list[tuple[int, int]] = []
    releases.all_pages(paged(fakes.realistic_history(), calls), page_size=10)
    assert calls == [(1, 10), (2, 10)], f"pages asked: {calls}"


def test_all_pages_reads_an_empty_page_after_an_exact_multiple() -> None:
    calls: list[tuple[int, int]] = []
    got = releases.all_pages(paged(fakes.realistic_history()[:10], calls), page_size=5)
    assert (len(got), calls) == (10, [(1, 5), (2, 5), (3, 5)]), f"pages asked: {calls}"


def test_all_pages_stops_when_the_cli_ignores_paging() -> None:
    history = fakes.realistic_history()
    got = releases.all_pages(lambda page, size: history, page_size=5)
    assert len(got) == len(history), "a CLI that returns everything per page must not loop"


def test_releases_are_numbered_oldest_first() -> None:
    rels = numbered()
    first = rels[0]
    assert (first.number, first.images()) == (1, {"web": "msops/demo:1.0.0"}), (
        f"release 1 should be the oldest update, got {first.number}: {first.images()}"
    )


def test_numbering_does_not_use_the_engine_version() -> None:
    rels = numbered()
    assert [r.number for r in rels] == list(range(1, 15)), "every entry has version 0"
    assert {r.update.version for r in rels} == {0}


def test_secret_keys_come_from_the_history_flags() -> None:
    assert numbered()[0].secret_keys == frozenset({"msops:secrets"})


def test_object_config_values_are_decoded() -> None:
    services = numbered()[0].config["msops:services"]
    assert services["web"]["replicas"] == 2, "msops:services must decode from JSON text"


def test_decode_value_keeps_plain_text() -> None:
    assert releases.decode_value("[not json") == "[not json"


def test_history_rows_are_newest_first_without_config_values() -> None:
    rows = releases.history_rows(numbered())
    assert rows[0]["release"] == 14 and "config" not in rows[0], rows[0]
    assert fakes.API_KEYS[1] not in repr(rows), "history rows must never carry secrets"


def recorded(**service: Any) -> releases.ServiceView:
    """The view of one recorded service `web`."""
    return releases.recorded_views({"msops:services": {"web": {"image": "x/y:1", **service}}})[
        "web"
    ]


def test_replicas_of_an_autoscaled_service_show_the_range() -> None:
    assert recorded(autoscaling={"min": 3, "max": 10}).replicas == "3-10 (autoscaled)"


def test_replicas_default_to_one() -> None:
    assert recorded().replicas == "1"


def test_autoscaling_bounds_a_release_left_out_come_from_the_model() -> None:
    from components.spec import Autoscaling

    bounds = Autoscaling.model_fields["min"].default, Autoscaling.model_fields["max"].default
    assert recorded(autoscaling={}).replicas == f"{bounds[0]}-{bounds[1]} (autoscaled)"


def test_a_recorded_service_that_no_longer_validates_shows_what_it_recorded() -> None:
    view = recorded(replicas=3, retiredKey=True)
    assert (view.image, view.replicas) == ("x/y:1", "3"), view


def test_an_invalid_recorded_service_without_a_count_shows_a_question_mark() -> None:
    assert recorded(retiredKey=True).replicas == "?"


def test_spec_views_take_replicas_from_the_model() -> None:
    from components import spec

    config = spec.load(
        {
            "services": {
                "web": {"image": "x/y:1"},
                "api": {"image": "x/a:1", "autoscaling": {"min": 3, "max": 9}},
            }
        }
    )
    views = releases.spec_views(config)
    assert (views["web"].replicas, views["api"].replicas) == ("1", "3-9 (autoscaled)"), views


# --- rollback target ------------------------------------------------------------------------------


def test_default_target_is_the_newest_successful_release_that_differs() -> None:
    rels = numbered()
    target = releases.rollback_target(rels, current_of(rels[13]), None, "dev")
    # 14 is the current config and 13 failed, so 12.
    assert target.number == 12, f"expected release 12, got {target.number}"


def test_default_target_skips_failed_releases() -> None:
    rels = numbered()
    # Current = release 5's config: 13 failed, so the newest differing success is 14.
    target = releases.rollback_target(rels, current_of(rels[4]), None, "dev")
    assert target.number == 14 and target.succeeded


def test_default_target_skips_refreshes() -> None:
    rels = numbered()[:4]
    # Release 1 is current: 4 (1.1.0) differs but is a refresh, 3 failed, so release 2.
    target = releases.rollback_target(rels, current_of(rels[0]), None, "dev")
    assert target.number == 2, f"expected release 2 (4 is a refresh, 3 failed), got {target.number}"


def test_no_differing_release_is_refused() -> None:
    rels = numbered()[:1]
    with pytest.raises(BadInput, match="nothing to roll back to"):
        releases.rollback_target(rels, current_of(rels[0]), None, "dev")


def test_empty_history_is_refused() -> None:
    with pytest.raises(BadInput, match="no releases yet"):
        releases.rollback_target([], {}, None, "dev")


def test_to_picks_that_release() -> None:
    rels = numbered()
    assert releases.rollback_target(rels, current_of(rels[13]), 7, "dev").number == 7


def test_to_a_failed_release_is_refused() -> None:
    rels = numbered()
    with pytest.raises(BadInput, match="release 3 failed"):
        releases.rollback_target(rels, current_of(rels[13]), 3, "dev")


def test_to_a_missing_release_is_refused() -> None:
    rels = numbered()
    with pytest.raises(BadInput, match="release 15 does not exist"):
        releases.rollback_target(rels, current_of(rels[13]), 15, "dev")


def test_to_a_refresh_is_refused() -> None:
    rels = numbered()
    with pytest.raises(BadInput, match="release 4 is a refresh"):
        releases.rollback_target(rels, current_of(rels[13]), 4, "dev")


def test_newest_deployed_skips_a_failed_newest_entry() -> None:
    rels = numbered()[:13]
    deployed = releases.newest_deployed(rels)
    assert deployed is not None and deployed.number == 12


# --- release summaries ----------------------------------------------------------------------------


def test_service_changes_report_image_and_replicas() -> None:
    rels = numbered()
    change = releases.service_changes(rels[6].views(), rels[7].views())[0]
    assert (change.image_before, change.image_after) == ("msops/demo:1.1.1", "msops/demo:1.2.1")
    assert not change.replicas_changed, "releases 7 and 8 both run 3 replicas"


def test_service_changes_of_a_first_release_have_no_before() -> None:
    change = releases.service_changes({}, numbered()[0].views())[0]
    assert change.image_before is None and change.changed


def test_service_changes_list_a_removed_service_last() -> None:
    before = {
        "web": releases.ServiceView("a/web:1", "2"),
        "old": releases.ServiceView("a/o:1", "1"),
    }
    after = {"web": releases.ServiceView("a/web:2", "2")}
    removed = releases.service_changes(before, after)[-1]
    assert (removed.service, removed.image_after, removed.replicas_after) == ("old", None, None)


def test_summarize_compares_with_the_newest_successful_release() -> None:
    from components import spec

    config = spec.load({"services": {"web": {"image": "msops/demo:1.5.0", "replicas": 2}}})
    summary = releases.summarize("dev", numbered()[:13], config)
    change = summary.changes[0]
    assert summary.since is not None and summary.since.number == 12, "release 13 failed"
    assert (change.image_before, change.image_after) == ("msops/demo:1.3.2", "msops/demo:1.5.0")


# --- promotion ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "destination", "expected"),
    [
        # Same repository in another registry: keep ghcr.io, take the tag.
        ("msops/demo:1.2.0", "ghcr.io/msops/demo:1.1.0", "ghcr.io/msops/demo:1.2.0"),
        ("docker.io/msops/demo:1.2.0", "ghcr.io/msops/demo:1.1.0", "ghcr.io/msops/demo:1.2.0"),
        ("ghcr.io/msops/demo:1.2.0", "ghcr.io/msops/demo:1.1.0", "ghcr.io/msops/demo:1.2.0"),
        # Registry with a port.
        ("localhost:5000/msops/demo:2.0", "ghcr.io/msops/demo:1.1", "ghcr.io/msops/demo:2.0"),
        # A digest moves with the tag.
        (
            "msops/demo:1.2.0@sha256:" + "a" * 64,
            "ghcr.io/msops/demo:1.1.0",
            "ghcr.io/msops/demo:1.2.0@sha256:" + "a" * 64,
        ),
        # A different repository is a deliberate change: copied whole.
        ("msops/other:3.0", "ghcr.io/msops/demo:1.1.0", "msops/other:3.0"),
        # Official images: `nginx` is docker.io/library/nginx.
        ("nginx:1.27.3", "docker.io/library/nginx:1.27.2", "docker.io/library/nginx:1.27.3"),
    ],
)
def test_promoted_image(source: str, destination: str, expected: str) -> None:
    assert releases.promoted_image(source, destination) == expected


def test_promotion_moves_the_pin() -> None:
    plan = releases.plan_promotion(
        {"web": "msops/demo:1.3.0"},
        {"web": "ghcr.io/msops/demo:1.0.0"},
        source="dev",
        destination="staging",
    )
    assert plan == [
        releases.PinChange("web", "ghcr.io/msops/demo:1.0.0", "ghcr.io/msops/demo:1.3.0")
    ], f"the plan carries images only: {plan}"


def test_promotion_defaults_to_services_in_both_stacks() -> None:
    plan = releases.plan_promotion(
        {"web": "a/web:2", "worker": "a/worker:2"},
        {"web": "a/web:1", "api": "a/api:1"},
        source="dev",
        destination="staging",
    )
    assert [c.service for c in plan] == ["web"], "only services present in both stacks move"


def test_promotion_of_chosen_services_only() -> None:
    plan = releases.plan_promotion(
        {"web": "a/web:2", "api": "a/api:2"},
        {"web": "a/web:1", "api": "a/api:1"},
        ["api"],
        source="dev",
        destination="staging",
    )
    assert [c.service for c in plan] == ["api"]


def test_promotion_of_a_service_missing_in_the_destination_is_refused() -> None:
    with pytest.raises(BadInput, match="'worker' is not in stack 'staging'"):
        releases.plan_promotion(
            {"worker": "a/worker:2"},
            {"web": "a/web:1"},
            ["worker"],
            source="dev",
            destination="staging",
        )


def test_promotion_without_common_services_is_refused() -> None:
    with pytest.raises(BadInput, match="no service in common"):
        releases.plan_promotion({"a": "x/a:1"}, {"b": "x/b:1"}, source="dev", destination="prod")


def test_promotion_leaves_matching_pins_out() -> None:
    plan = releases.plan_promotion(
        {"web": "msops/demo:1.0.0"},
        {"web": "ghcr.io/msops/demo:1.0.0"},
        source="dev",
        destination="staging",
    )
    assert plan == [], "same tag in another registry is already promoted"


def test_update_dataclass_carries_version_zero_from_the_file_backend() -> None:
    update = Update(
        kind="update",
        result="succeeded",
        start_time=datetime(2025, 1, 1),
        version=0,
        config={"msops:backend": ConfigEntry("docker")},
    )
    release = releases.number_releases([update])[0]
    assert (release.number, release.config) == (1, {"msops:backend": "docker"})
