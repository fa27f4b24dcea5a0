"""The Scale action without typer: the edit, what it refuses, and the model's bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import spec
from msops.actions.base import EditShown, Notice
from msops.actions.scale import Scale
from msops.errors import BadInput, OperationFailed, StackLocked
from tests import fakes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def test_scale_edits_the_file_and_deploys(bench: fakes.Bench) -> None:
    result = Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert result.changed and "replicas: 3" in bench.text("dev")
    assert bench.gateway.called("up") == [("up", "dev", "msops scale web to 3")]


def test_scale_summary_shows_the_new_count(bench: fakes.Bench) -> None:
    result = Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert result.deployment is not None
    change = result.deployment.summary.changes[0]
    assert (change.replicas_before, change.replicas_after) == ("2", "3")


def test_scale_shows_the_diff(bench: fakes.Bench) -> None:
    Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert "+      replicas: 3" in bench.of(EditShown)[0].diff


def test_scale_to_the_current_count_of_an_undeployed_stack_does_nothing(
    bench: fakes.Bench,
) -> None:
    result = Scale(bench.cfg(), "dev", "web", 2, yes=True).run()
    assert not result.changed and bench.gateway.called("up") == []
    assert "is not deployed: `msops up dev` deploys it" in str(result.nothing_done())


def test_scale_to_a_negative_count_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="replicas must be 0 or more, got -1"):
        Scale(bench.cfg(), "dev", "web", -1, yes=True).run()


def test_scale_of_an_unknown_service_lists_the_known_ones(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"its services: web"):
        Scale(bench.cfg(), "dev", "api", 3, yes=True).run()


def test_scale_of_an_autoscaled_service_gives_its_bounds(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match=r"autoscales \(min 3, max 10\).*autoscaling.min/max"):
        Scale(bench.cfg(), "prod", "web", 4, yes=True).run()


def test_scale_takes_autoscaling_bounds_a_file_leaves_out_from_the_model(
    bench: fakes.Bench,
) -> None:
    bench.edit("prod", "        min: 3\n        max: 10\n", "")
    bounds = (
        spec.Autoscaling.model_fields["min"].default,
        spec.Autoscaling.model_fields["max"].default,
    )
    with pytest.raises(BadInput, match=rf"autoscales \(min {bounds[0]}, max {bounds[1]}\)"):
        Scale(bench.cfg(), "prod", "web", 4, yes=True).run()


def test_scale_off_a_terminal_without_yes_writes_nothing(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    with pytest.raises(BadInput, match="pass --yes"):
        Scale(bench.cfg(), "dev", "web", 3).run()
    assert bench.text("dev") == before and bench.gateways_made == 0


def test_scale_validates_the_stack_file_once(
    bench: fakes.Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msops import stackfiles

    calls: list[str] = []
    real = stackfiles.validate

    def counted(values: dict[str, object], stack: str) -> spec.StackConfig:
        calls.append(stack)
        return real(values, stack)

    monkeypatch.setattr(stackfiles, "validate", counted)
    Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert calls == ["dev"], "the edited config comes from the one validation"


# --- against the deployed release ---------------------------------------------------------------


def deployed(tmp_path: Path, replicas: int | float) -> fakes.Bench:
    """A bench whose deployed release (the stack outputs) runs `replicas` of web."""
    services = {"web": {"image": "msops/demo:1.4.0", "replicas": replicas, "url": None}}
    return fakes.Bench(tmp_path, outputs={"backend": "docker", "services": services})


def test_scale_after_a_hand_edit_deploys_what_the_release_does_not_run(tmp_path: Path) -> None:
    bench = deployed(tmp_path, 2)
    bench.edit("dev", "replicas: 2", "replicas: 3")
    before = bench.text("dev")
    result = Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert bench.gateway.called("up") == [("up", "dev", "msops scale web to 3")]
    assert not result.changed and bench.text("dev") == before
    (notice,) = bench.of(Notice)
    assert (
        "already has 3 replica(s) in stacks/Pulumi.dev.yaml, but the deployed release runs 2: "
        "deploying" in notice.text
    )


def test_scale_to_what_file_and_release_both_run_does_nothing(tmp_path: Path) -> None:
    bench = deployed(tmp_path, 2.0)  # outputs are JSON: a count may come back as a float
    result = Scale(bench.cfg(), "dev", "web", 2, yes=True).run()
    assert bench.gateway.called("up") == [] and bench.of(Notice) == []
    assert "and the deployed release runs 2; nothing to do" in str(result.nothing_done())


def test_scale_without_an_engine_says_it_could_not_compare(bench: fakes.Bench) -> None:
    def no_pulumi() -> fakes.FakeGateway:
        raise OperationFailed("the Pulumi CLI is not installed; install it with:\n  curl x | sh")

    result = Scale(bench.cfg(gateway_factory=no_pulumi), "dev", "web", 2, yes=True).run()
    said = str(result.nothing_done())
    assert (
        "could not compare that with the deployed release (the Pulumi CLI is not installed" in said
    )
    assert "install it with: curl x | sh)" in said and "nothing was deployed" in said


def test_scale_of_a_service_the_release_does_not_run_yet_points_at_up(tmp_path: Path) -> None:
    bench = fakes.Bench(tmp_path, outputs={"backend": "docker", "services": {}})
    result = Scale(bench.cfg(), "dev", "web", 2, yes=True).run()
    assert bench.gateway.called("up") == []
    assert "does not run web yet: `msops up dev` deploys it" in str(result.nothing_done())


# --- what a failure leaves behind -----------------------------------------------------------------


def test_a_failed_update_puts_the_stack_file_back_byte_for_byte(bench: fakes.Bench) -> None:
    # CRLF line ends, which a text round trip would not give back.
    bench.path("dev").write_bytes(bench.path("dev").read_bytes().replace(b"\n", b"\r\n"))
    before = bench.path("dev").read_bytes()
    bench.gateway.fail_next_up = "docker: port 8000 is already allocated"
    with pytest.raises(OperationFailed) as failed:
        Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert bench.path("dev").read_bytes() == before
    message = str(failed.value)
    assert "port 8000 is already allocated" in message
    assert (
        "stacks/Pulumi.dev.yaml was put back as it was before this scale, byte for byte "
        "(web: 2 replica(s))" in message
    )
    assert (
        "`msops up dev --yes`" in message and "`msops scale dev web 3 --yes` tries again" in message
    )


def test_a_locked_stack_keeps_its_exit_code_and_gets_its_file_back(bench: fakes.Bench) -> None:
    before = bench.text("dev")
    bench.gateway.locked = True
    with pytest.raises(StackLocked, match="was put back as it was") as failed:
        Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert failed.value.exit_code == 3 and bench.text("dev") == before


def test_ctrl_c_during_the_update_puts_the_file_back_and_says_so(
    bench: fakes.Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = bench.text("dev")

    def interrupted(stack: str, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.gateway, "up", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert bench.text("dev") == before
    assert any("was put back as it was" in n.text for n in bench.of(Notice))


def test_a_failure_before_anything_was_written_says_nothing_of_the_file(
    bench: fakes.Bench,
) -> None:
    bench.violations.append(fakes.Violation("mandatory"))
    with pytest.raises(OperationFailed) as failed:
        Scale(bench.cfg(), "dev", "web", 3, yes=True).run()
    assert "put back" not in str(failed.value) and "replicas: 2" in bench.text("dev")
