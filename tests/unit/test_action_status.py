"""The Status action without typer: the model's replicas and health path, one probe each."""

from __future__ import annotations

from pathlib import Path

import pytest

from msops import verify
from msops.actions.status import Status
from msops.errors import ConfigInvalid
from tests import fakes

pytestmark = pytest.mark.timeout(60)

OUTPUTS = {
    "services": {"web": {"image": "msops/demo:1.3.2", "url": "http://web.test:8000/"}},
    "grafanaUrl": "http://127.0.0.1:3000",
    "grafanaAdminPassword": "[secret]",
}


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path, outputs=OUTPUTS)


def answering(status: int, asked: list[str]) -> verify.Fetch:
    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        asked.append(url)
        return status, b""

    return fetch


def test_status_probes_the_health_path_of_the_model(bench: fakes.Bench) -> None:
    bench.edit(
        "dev", "      port: 8080\n", "      port: 8080\n      health:\n        path: /live\n"
    )
    asked: list[str] = []
    Status(bench.cfg(fetch=answering(200, asked)), "dev").run()
    assert asked == ["http://web.test:8000/live"]


def test_status_defaults_the_health_path_from_the_model(bench: fakes.Bench) -> None:
    from components.spec import Health

    asked: list[str] = []
    Status(bench.cfg(fetch=answering(200, asked)), "dev").run()
    assert asked == [f"http://web.test:8000{Health.model_fields['path'].default}"]


def test_status_reports_health_pins_and_the_deployed_image(bench: fakes.Bench) -> None:
    (row,) = Status(bench.cfg(fetch=answering(503, [])), "dev").run().services
    assert (row.image, row.deployed_image, row.health) == (
        "msops/demo:1.4.0",
        "msops/demo:1.3.2",
        "unhealthy (503)",
    )


def test_status_of_an_autoscaled_service_gives_its_bounds(bench: fakes.Bench) -> None:
    (row, *_) = Status(bench.cfg(), "prod").run().services
    assert row.service == "web"
    assert row.replicas == (3, 10) and row.data()["replicas"] == {"min": 3, "max": 10}


def test_status_of_a_stack_never_deployed_probes_nothing(bench: fakes.Bench) -> None:
    asked: list[str] = []
    result = Status(bench.cfg(fetch=answering(200, asked)), "prod").run()
    assert not result.deployed and result.services[0].health == "not deployed" and asked == []


def test_status_says_when_a_url_does_not_resolve_here(bench: fakes.Bench) -> None:
    def unresolved(url: str, timeout: float) -> tuple[int, bytes]:
        raise verify.Unreachable("web.test does not resolve")

    (row,) = Status(bench.cfg(fetch=unresolved), "dev").run().services
    assert row.health == "unreachable from here"


def test_status_shows_only_url_outputs(bench: fakes.Bench) -> None:
    result = Status(bench.cfg(fetch=answering(200, [])), "dev").run()
    assert result.urls == {"grafanaUrl": "http://127.0.0.1:3000"}


def test_status_of_a_stack_file_that_does_not_validate_names_the_key(bench: fakes.Bench) -> None:
    bench.edit("dev", "replicas: 2", 'replicas: "two"')
    with pytest.raises(ConfigInvalid) as caught:
        Status(bench.cfg(), "dev").run()
    assert caught.value.problems[0].startswith("msops:services.web.replicas")
