"""The Promote action without typer: only pins move, dry runs, the registry check, and what it
refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from msops import registry
from msops.actions.base import PinsMoved
from msops.actions.promote import Promote, PromotedImage, promoted_images
from msops.errors import BadInput, ConfigInvalid, OperationFailed
from msops.registry import Answer, ImagesMissing, Presence, RegistryUnreachable
from msops.releases import PinChange
from tests import fakes

pytestmark = pytest.mark.timeout(120)

PROMOTED = PinChange("web", "ghcr.io/msops/demo:1.0.0", "ghcr.io/msops/demo:1.4.0")


class FakeRegistry:
    """DST's registry: what it holds, and every image it was asked about."""

    def __init__(self, *held: str, credentials: str = "") -> None:
        self.held = set(held)
        self.denied: set[str] = set()
        self.credentials = credentials
        self.asked: list[str] = []

    def __call__(self, image: str) -> Answer:
        self.asked.append(image)
        presence: Presence = "present" if image in self.held else "missing"
        if image in self.denied:
            presence = "denied"
        status = {"present": 200, "missing": 404, "denied": 401}[presence]
        return Answer(image, registry.locate(image), presence, status, self.credentials)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


@pytest.fixture
def held() -> FakeRegistry:
    """A registry that holds the image the promotion pins."""
    return FakeRegistry(PROMOTED.after)


@pytest.fixture
def promote(bench: fakes.Bench, held: FakeRegistry) -> Callable[..., Promote]:
    """Promote with the bench's configuration and the registry above, unless a test says."""

    def make(source: str, destination: str, **options: Any) -> Promote:
        return Promote(bench.cfg(), source, destination, **{"lookup": held, **options})

    return make


def test_promote_moves_only_the_image_pin(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    before = bench.text("staging")
    # web's pin, the first; the bench's dev has no api to promote.
    promote("dev", "staging", yes=True).run()
    assert bench.text("staging") == before.replace(PROMOTED.before, PROMOTED.after, 1)


def test_promote_returns_the_pins_it_moved_and_the_deployment(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    result = promote("dev", "staging", yes=True).run()
    assert result.changes == (PROMOTED,) and result.deployment is not None
    assert not result.dry_run


def test_promote_reports_the_pins_it_moves(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    promote("dev", "staging", yes=True).run()
    assert bench.of(PinsMoved) == [PinsMoved(changes=(PROMOTED,))]


def test_promote_deploys_the_destination_with_a_message(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    promote("dev", "staging", yes=True).run()
    assert bench.gateway.called("up") == [("up", "staging", "msops promote web from dev")]


def test_promote_off_a_terminal_without_yes_is_a_dry_run(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    before = bench.path("staging").read_bytes()
    result = promote("dev", "staging").run()
    assert result.dry_run and bench.path("staging").read_bytes() == before
    assert bench.gateway.called("up") == []


def test_promote_dry_run_previews_the_promoted_pins(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    promote("dev", "staging").run()
    assert f"image: {PROMOTED.after}" in bench.gateway.previewed["staging"]


def test_promote_at_a_terminal_asks_after_previewing(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    bench.confirm = fakes.Answers(True)
    result = promote("dev", "staging").run()
    assert result.deployment is not None
    assert bench.confirm.questions == ["Apply the promotion from dev to stack 'staging'?"]


def test_promote_with_matching_pins_does_nothing(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    result = promote("staging", "prod", yes=True).run()
    assert result.changes == () and not result.dry_run and bench.gateways_made == 0


def test_promote_onto_itself_is_refused(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(BadInput, match="same stack"):
        promote("dev", "dev", yes=True).run()


def test_promote_of_a_service_missing_in_the_source_is_refused(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(BadInput, match="service 'api' is not in stack 'dev'"):
        promote("dev", "staging", services=("api",), yes=True).run()


def test_promote_validates_the_destination_after_the_edit(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:latest")
    with pytest.raises(ConfigInvalid) as caught:
        promote("dev", "staging", yes=True).run()
    assert caught.value.stack == "staging", caught.value
    assert caught.value.problems[0].startswith("msops:services.web.image")


# --- the registry check --------------------------------------------------------------------------


def test_promote_asks_the_registry_for_each_image_it_pins(
    bench: fakes.Bench, promote: Callable[..., Promote], held: FakeRegistry
) -> None:
    promote("dev", "staging", yes=True).run()
    assert held.asked == [PROMOTED.after]


def test_promote_returns_what_the_registry_said(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    result = promote("dev", "staging", yes=True).run()
    assert [(a.image, a.presence) for a in result.checked] == [(PROMOTED.after, "present")]


def test_promote_of_an_image_not_in_the_registry_writes_nothing(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    before = {stack: bench.path(stack).read_bytes() for stack in ("dev", "staging", "prod")}
    with pytest.raises(ImagesMissing):
        promote("dev", "staging", yes=True, lookup=FakeRegistry()).run()
    assert {stack: bench.path(stack).read_bytes() for stack in before} == before


def test_promote_of_an_image_not_in_the_registry_deploys_nothing(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(ImagesMissing):
        promote("dev", "staging", yes=True, lookup=FakeRegistry()).run()
    assert bench.gateway.calls == [] and bench.of(PinsMoved) == []


def test_the_refusal_names_the_key_the_image_and_the_registry(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(ImagesMissing) as caught:
        promote("dev", "staging", yes=True, lookup=FakeRegistry()).run()
    message = str(caught.value)
    assert f"msops:services.web.image: {PROMOTED.after}: registry ghcr.io has no such" in message
    assert "nothing was written" in message


def test_the_refusal_of_an_image_dev_builds_says_to_push_it_first(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(ImagesMissing) as caught:
        promote("dev", "staging", yes=True, lookup=FakeRegistry()).run()
    message = str(caught.value)
    assert "dev builds msops/demo:1.4.0 from app/ on its own machine" in message
    assert "Push each image first" in message and "`images` job" in message


def test_the_refusal_exits_2_as_bad_input(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(ImagesMissing) as caught:
        promote("dev", "staging", yes=True, lookup=FakeRegistry()).run()
    assert isinstance(caught.value, BadInput) and caught.value.exit_code == 2


def test_a_denied_image_is_refused_with_the_login_to_fix_it(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    private = FakeRegistry()
    private.denied.add(PROMOTED.after)
    with pytest.raises(ImagesMissing) as caught:
        promote("dev", "staging", yes=True, lookup=private).run()
    assert "refused to show it (401, asked anonymously" in str(caught.value)
    assert "docker login ghcr.io" in str(caught.value)


def test_a_dry_run_checks_the_images_too(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    with pytest.raises(ImagesMissing):
        promote("dev", "staging", lookup=FakeRegistry()).run()
    assert bench.gateway.calls == []


def test_every_missing_image_is_named_at_once(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    orders = "    orders:\n      image: {}\n      port: 8081\n  msops:databases:"
    bench.edit("dev", "  msops:databases:", orders.format("msops/orders:2.0.0"))
    bench.edit("staging", "  msops:databases:", orders.format("ghcr.io/msops/orders:1.0.0"))
    with pytest.raises(ImagesMissing) as caught:
        promote("dev", "staging", yes=True, lookup=FakeRegistry()).run()
    assert [u.answer.image for u in caught.value.unpushed] == [
        PROMOTED.after,
        "ghcr.io/msops/orders:2.0.0",
    ]


def test_an_unreachable_registry_stops_the_promotion_before_any_write(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    def unreachable(image: str) -> Answer:
        raise RegistryUnreachable(f"cannot reach registry ghcr.io: {image}")

    before = bench.path("staging").read_bytes()
    with pytest.raises(OperationFailed, match=r"cannot reach registry ghcr\.io"):
        promote("dev", "staging", yes=True, lookup=unreachable).run()
    assert bench.path("staging").read_bytes() == before and bench.gateway.calls == []


def test_no_verify_images_promotes_without_asking(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    nobody = FakeRegistry()
    result = promote("dev", "staging", yes=True, lookup=nobody, verify_images=False).run()
    assert nobody.asked == [] and result.checked == () and result.deployment is not None


def test_matching_pins_ask_no_registry(
    bench: fakes.Bench, promote: Callable[..., Promote], held: FakeRegistry
) -> None:
    promote("staging", "prod", yes=True).run()
    assert held.asked == []


def test_an_invalid_destination_is_refused_before_the_registry_is_asked(
    bench: fakes.Bench, promote: Callable[..., Promote], held: FakeRegistry
) -> None:
    bench.edit("dev", "msops/demo:1.4.0", "msops/demo:latest")
    with pytest.raises(ConfigInvalid):
        promote("dev", "staging", yes=True).run()
    assert held.asked == []


# --- what CI must push ----------------------------------------------------------------------------


def test_promoted_images_lists_what_dev_builds_under_stagings_name(bench: fakes.Bench) -> None:
    assert promoted_images(bench.cfg(), "dev", "staging") == [
        PromotedImage("web", PROMOTED.after, "app")
    ]


def test_promoted_images_lists_pins_that_already_match(bench: fakes.Bench) -> None:
    assert promoted_images(bench.cfg(), "staging", "prod") == [
        PromotedImage("web", "ghcr.io/msops/demo:1.0.0", None),
        PromotedImage("api", "ghcr.io/msops/demo:1.0.0", None),
    ]


def test_promoted_images_refuses_an_unknown_service(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="service 'orders' is not in stack 'dev'"):
        promoted_images(bench.cfg(), "dev", "staging", ("orders",))


LOCAL_ID = "sha256:" + "1d" * 32


def test_a_digest_dev_pins_on_its_own_build_does_not_move(
    bench: fakes.Bench, promote: Callable[..., Promote]
) -> None:
    # dev's digest is its local image ID (a rollback pins it): no registry knows it.
    bench.edit("dev", "msops/demo:1.4.0", f"msops/demo:1.4.0@{LOCAL_ID}")
    result = promote("dev", "staging", yes=True).run()
    assert [c.after for c in result.changes] == [PROMOTED.after]


def test_a_digest_dev_pins_on_a_pulled_image_moves_with_the_tag(
    bench: fakes.Bench, promote: Callable[..., Promote], held: FakeRegistry
) -> None:
    bench.edit("dev", "      build: app\n", "")
    bench.edit("dev", "msops/demo:1.4.0", f"msops/demo:1.4.0@{LOCAL_ID}")
    held.held.add(f"{PROMOTED.after}@{LOCAL_ID}")
    result = promote("dev", "staging", yes=True).run()
    assert [c.after for c in result.changes] == [f"{PROMOTED.after}@{LOCAL_ID}"]


def test_promoted_images_drops_the_digest_of_a_local_build(bench: fakes.Bench) -> None:
    bench.edit("dev", "msops/demo:1.4.0", f"msops/demo:1.4.0@{LOCAL_ID}")
    assert [i.image for i in promoted_images(bench.cfg(), "dev", "staging")] == [PROMOTED.after]
