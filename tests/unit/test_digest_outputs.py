"""The digest each release's images resolved to, in the stack outputs (offline synth)."""

from __future__ import annotations

import pytest

from components.backends.common import digest_of
from msops import releases
from tests import graphs, multi

pytestmark = pytest.mark.timeout(300)


def web_digest(values: dict, stack: str) -> object:
    return graphs.synth_values(values, stack).outputs["services"]["web"]["digest"]


def test_a_local_build_records_its_image_id_as_the_digest() -> None:
    values = graphs.stack_values("dev")
    assert releases.is_digest(web_digest(values, "dev")), "services.web.digest"


def test_a_pulled_image_records_the_digest_the_provider_reports() -> None:
    values = graphs.stack_values("dev")
    del values["msops:services"]["web"]["build"]
    first = web_digest(values, "dev")
    values["msops:services"]["web"]["image"] = "msops/demo:9.9.9"
    assert releases.is_digest(first) and web_digest(values, "dev") != first


def test_kubernetes_records_the_digest_its_pin_carries() -> None:
    values = graphs.stack_values("prod")
    image = f"ghcr.io/msops/demo:1.0.0@{multi.digest('prod')}"
    values["msops:services"]["web"]["image"] = image
    assert web_digest(values, "prod") == multi.digest("prod")


def test_kubernetes_records_no_digest_for_a_tag_alone() -> None:
    assert web_digest(graphs.stack_values("prod"), "prod") is None


def test_the_outputs_digest_is_what_history_reads() -> None:
    outputs = graphs.synth_values(graphs.stack_values("dev"), "dev").outputs
    recorded = {name: s["digest"] for name, s in outputs["services"].items()}
    assert releases.output_digests(outputs) == recorded and set(recorded) == {"web", "api"}


@pytest.mark.parametrize(
    ("reported", "digest"),
    [
        (f"ghcr.io/msops/demo@{multi.digest('a')}", multi.digest("a")),
        (f"ghcr.io/msops/demo:1.0.0@{multi.digest('a')}", multi.digest("a")),
        (multi.digest("b"), multi.digest("b")),
        ("ghcr.io/msops/demo:1.0.0", None),
        (None, None),
    ],
)
def test_digest_of_what_a_provider_reports(reported: object, digest: str | None) -> None:
    assert digest_of(reported) == digest
