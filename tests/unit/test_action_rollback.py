"""The Rollback action without typer: the target, secrets, confirmation and today's schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from msops.actions.base import (
    DigestsPinned,
    EditShown,
    FileReverted,
    ReleaseChosen,
    ServicesStaged,
)
from msops.actions.rollback import Rollback
from msops.errors import BadInput, OperationFailed, ReleaseInvalid
from tests import fakes, multi

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_rollback_defaults_to_the_newest_good_release_that_differs(bench: fakes.Bench) -> None:
    result = Rollback(bench.cfg(), "dev", yes=True).run()
    assert result.release.number == 12 and "image: msops/demo:1.3.2" in bench.text("dev")


def test_rollback_deploys_with_a_message_naming_the_release(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", yes=True).run()
    assert bench.gateway.called("up") == [("up", "dev", "msops rollback to release 12")]


def test_rollback_reports_its_target(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=7, yes=True).run()
    (chosen,) = bench.of(ReleaseChosen)
    assert (chosen.release.number, chosen.restore) == (7, False)


def test_rollback_sets_a_changed_secret_again_as_a_secret(bench: fakes.Bench) -> None:
    result = Rollback(bench.cfg(), "dev", to=5, yes=True).run()
    assert result.secrets == ("msops:secrets.apiKey",)
    assert bench.gateway.secrets_set[("dev", "msops:secrets.apiKey")] == fakes.API_KEYS[0]


def test_rollback_never_writes_the_secret_in_plain_text(bench: fakes.Bench) -> None:
    Rollback(bench.cfg(), "dev", to=5, yes=True).run()
    text = bench.text("dev")
    assert fakes.API_KEYS[0] not in text and fakes.encrypt(fakes.API_KEYS[0]) in text


def test_rollback_summary_shows_the_replicas_it_brings_back(bench: fakes.Bench) -> None:
    result = Rollback(bench.cfg(), "dev", to=7, yes=True).run()
    change = result.deployment.summary.changes[0]
    assert (change.replicas_before, change.replicas_after) == ("2", "3")


def test_rollback_to_a_failed_release_is_refused(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    with pytest.raises(BadInput, match="release 3 failed"):
        Rollback(bench.cfg(), "dev", to=3, yes=True).run()
    assert bench.text("dev") == before


def test_rollback_without_history_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="no releases yet"):
        Rollback(bench.cfg(), "staging", yes=True).run()


def test_rollback_to_a_release_that_no_longer_validates_names_it_and_the_key(
    bench: fakes.Bench,
) -> None:
    bench.gateway.updates["dev"].insert(0, fakes.retired_release(fakes.EPOCH))
    before = bench.text("dev")
    with pytest.raises(ReleaseInvalid) as caught:
        Rollback(bench.cfg(), "dev", to=1, yes=True).run()
    assert caught.value.release == 1 and caught.value.exit_code == 2
    assert caught.value.problems[0].startswith("msops:services.web.retiredKey")
    assert bench.text("dev") == before, "nothing may be written"


def test_rollback_off_a_terminal_without_yes_shows_the_diff_and_writes_nothing(
    bench: fakes.Bench,
) -> None:
    before = bench.path("dev").read_bytes()
    result = Rollback(bench.cfg(), "dev").run()
    assert result.dry_run and bench.path("dev").read_bytes() == before
    assert "+      image: msops/demo:1.3.2" in bench.of(EditShown)[0].diff


def test_rollback_off_a_terminal_without_yes_previews_the_would_be_file(
    bench: fakes.Bench,
) -> None:
    result = Rollback(bench.cfg(), "dev").run()
    assert "image: msops/demo:1.3.2" in bench.gateway.previewed["dev"]
    assert result.preview == {"same": 10, "update": 1} and bench.gateway.called("up") == []


def test_rollback_declined_puts_the_file_back_byte_for_byte(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(False)
    before = bench.path("dev").read_bytes()
    with pytest.raises(OperationFailed, match="cancelled"):
        Rollback(bench.cfg(), "dev", to=5).run()
    assert bench.path("dev").read_bytes() == before and bench.of(FileReverted)


def test_rollback_confirmed_previews_the_release_first(bench: fakes.Bench) -> None:
    bench.confirm = fakes.Answers(True)
    Rollback(bench.cfg(), "dev", to=7).run()
    assert "replicas: 3" in bench.gateway.previewed["dev"]
    assert bench.confirm.questions == ["Apply release 7 to stack 'dev'?"]


def test_rollback_is_stopped_by_a_mandatory_violation(bench: fakes.Bench) -> None:
    bench.violations.append(fakes.Violation("mandatory"))
    before = bench.text("dev")
    with pytest.raises(OperationFailed, match="mandatory policy violation"):
        Rollback(bench.cfg(), "dev", yes=True).run()
    assert bench.text("dev") == before and bench.gateway.called("up") == []


# --- one service, of a stack of two ---------------------------------------------------------------


@pytest.fixture
def two(tmp_path: Path) -> fakes.Bench:
    """web in front of api, deployed as release 3 (see tests/multi.py)."""
    return multi.bench(tmp_path)


def test_a_service_rollback_leaves_the_other_service_byte_identical(two: fakes.Bench) -> None:
    before = two.text("dev")
    Rollback(two.cfg(), "dev", services=("api",), yes=True).run()
    after = two.text("dev")
    assert multi.block(after, "web") == multi.block(before, "web")

    def rest(text: str) -> list[str]:
        """The file without api's block, its secret's ciphertext and the provider key that
        setting a secret adds: everything the rollback of api must leave alone."""
        kept = text.replace(multi.block(text, "api"), "").splitlines()
        return [line for line in kept if not line.startswith(("      secure:", "encryptionsalt"))]

    assert rest(after) == rest(before) and after != before


def test_a_service_rollback_writes_its_whole_block_and_keeps_its_comments(
    two: fakes.Bench,
) -> None:
    Rollback(two.cfg(), "dev", services=("api",), to=1, yes=True).run()
    api = multi.block(two.text("dev"), "api")
    assert f"image: ghcr.io/msops/api:2.0.0@{multi.DIGESTS[1]['api']}" in api
    assert "replicas: 2  # sized for the load" in api and "LOG_LEVEL: info" in api
    assert "# The API behind it; it alone holds the key." in api


def test_a_service_rollback_defaults_to_the_newest_release_where_it_differs(
    two: fakes.Bench,
) -> None:
    result = Rollback(two.cfg(), "dev", services=("api",), yes=True).run()
    assert result.targets["api"].number == 2 and "image: msops/demo:1.4.0" in two.text("dev")


def test_a_service_rollback_sets_its_secret_again_as_a_secret(two: fakes.Bench) -> None:
    result = Rollback(two.cfg(), "dev", services=("api",), yes=True).run()
    assert result.secrets == ("msops:secrets.apiKey",)
    assert two.gateway.secrets_set[("dev", "msops:secrets.apiKey")] == fakes.API_KEYS[0]
    assert fakes.API_KEYS[0] not in two.text("dev")


def test_a_service_rollback_deploys_with_a_message_naming_service_and_release(
    two: fakes.Bench,
) -> None:
    Rollback(two.cfg(), "dev", services=("api", "web"), yes=True).run()
    (call,) = two.gateway.called("up")
    first_line = call[2].splitlines()[0]
    assert first_line == "msops rollback: api to release 2, web to release 1"


def test_a_service_rollback_to_a_release_without_it_is_refused(two: fakes.Bench) -> None:
    del two.gateway.updates["dev"][0].config["msops:services"]
    values = multi.values(*multi.RELEASES[0])
    del values["msops:services"]["api"]
    two.gateway.updates["dev"][0] = dataclasses.replace(
        two.gateway.updates["dev"][0], config=fakes.entries(values, {"msops:secrets"})
    )
    before = two.path("dev").read_bytes()
    with pytest.raises(BadInput, match="release 1 of stack 'dev' has no service 'api'"):
        Rollback(two.cfg(), "dev", services=("api",), to=1, yes=True).run()
    assert two.path("dev").read_bytes() == before and two.gateway.called("up") == []


def test_a_service_rollback_to_a_release_that_no_longer_validates_names_the_key(
    two: fakes.Bench,
) -> None:
    values = multi.values(*multi.RELEASES[0])
    values["msops:services"]["api"]["healthPath"] = "/healthz"  # a key renamed since
    two.gateway.updates["dev"][0] = dataclasses.replace(
        two.gateway.updates["dev"][0], config=fakes.entries(values, {"msops:secrets"})
    )
    before = two.path("dev").read_bytes()
    with pytest.raises(ReleaseInvalid) as caught:
        Rollback(two.cfg(), "dev", services=("api",), to=1, yes=True).run()
    assert caught.value.release == 1
    assert caught.value.problems[0].startswith("msops:services.api.healthPath")
    assert two.path("dev").read_bytes() == before


def test_a_release_that_recorded_no_digest_is_pinned_by_tag_and_says_so(
    two: fakes.Bench,
) -> None:
    two.gateway.stack_outputs["dev"] = {}
    two.gateway.updates["dev"] = [multi.update(n, r) for n, r in enumerate(multi.RELEASES, 1)]
    Rollback(two.cfg(), "dev", services=("api",), to=1, yes=True).run()
    (pinned,) = two.of(DigestsPinned)
    assert "image: ghcr.io/msops/api:2.0.0\n" in two.text("dev")
    assert pinned.pins[0].reason == (
        "release 1 recorded no digest for api; its tag is pinned as it was"
    )


def test_a_whole_stack_rollback_pins_every_recorded_digest(two: fakes.Bench) -> None:
    Rollback(two.cfg(), "dev", to=1, yes=True).run()
    text = two.text("dev")
    assert f"image: msops/demo:1.3.0@{multi.DIGESTS[1]['web']}" in text
    assert f"image: ghcr.io/msops/api:2.0.0@{multi.DIGESTS[1]['api']}" in text


def test_a_service_dry_run_writes_nothing_and_previews_the_would_be_file(
    two: fakes.Bench,
) -> None:
    before = two.path("dev").read_bytes()
    result = Rollback(two.cfg(), "dev", services=("api",), to=1, dry_run=True, yes=True).run()
    assert result.dry_run and two.path("dev").read_bytes() == before
    assert "image: ghcr.io/msops/api:2.0.0@" in two.gateway.previewed["dev"]
    assert two.gateway.called("up") == [] and result.preview == {"same": 10, "update": 1}


def test_a_service_dry_run_shows_what_changes_per_service(two: fakes.Bench) -> None:
    Rollback(two.cfg(), "dev", services=("api",), to=1, dry_run=True).run()
    (staged,) = two.of(ServicesStaged)
    texts = [c.text() for c in staged.changes["api"]]
    assert list(staged.changes) == ["api"] and "replicas: 3 -> 2" in texts


def test_a_dry_run_at_a_terminal_asks_nothing(two: fakes.Bench) -> None:
    two.confirm = fakes.Answers(True)
    Rollback(two.cfg(), "dev", services=("api",), dry_run=True).run()
    assert two.confirm.questions == [] and two.gateway.called("up") == []
