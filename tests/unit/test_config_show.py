"""`msops config show`: the effective config, generated from the model, secrets masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, create_model
from ruamel.yaml import YAML
from typer.testing import CliRunner

from components import spec
from msops import cli, effective
from tests import fakes

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    (directory / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    return directory


def show(*args: str) -> Any:
    outcome = CliRunner().invoke(cli.app, ["config", "show", *args])
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def model_keys(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every leaf key a model defines, named from its fields alone."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        inner = spec.model_of(info.annotation)
        origin = getattr(info.annotation, "__origin__", None)
        # A dict of models holds named entries, a list of models is one value: both are leaves.
        if inner is not None and origin not in (dict, list) and info.default is not None:
            yield from model_keys(inner, f"{key}.")
        else:
            yield key


def sources(stack: str) -> dict[str, str]:
    return dict(json.loads(show(stack, "--json").stdout)["sources"])


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_field_of_the_model_is_shown(stacks: Path, stack: str) -> None:
    shown = sources(stack)
    top = [k for k in model_keys(spec.StackConfig, "msops:") if not k.startswith("msops:services")]
    top = [k for k in top if not k.startswith(("msops:databases", "msops:secrets"))]
    service = [f"msops:services.web.{k}" for k in model_keys(spec.Service, "")]
    missing = [k for k in top + service if not any(s == k or s.startswith(k) for s in shown)]
    assert missing == [], f"config show leaves out {missing}"


def test_set_and_default_values_are_marked(stacks: Path) -> None:
    shown = sources("staging")
    assert shown["msops:services.web.health.interval"] == "set"
    assert shown["msops:services.web.health.timeout"] == "default"


def test_defaults_are_filled_in(stacks: Path) -> None:
    config = json.loads(show("staging", "--json").stdout)["config"]
    assert config["msops:services"]["web"]["resources"]["memoryLimit"] == "256Mi"


def test_secrets_are_masked(stacks: Path) -> None:
    outcome = show("dev", "--json")
    data = json.loads(outcome.stdout)
    assert data["config"]["msops:secrets"] == {"apiKey": "[secret]"}
    assert fakes.FAKE_PREFIX not in outcome.stdout and "api-key" not in outcome.stdout


def test_yaml_is_the_same_config_with_a_mark_per_value(stacks: Path) -> None:
    outcome = show("staging")
    as_yaml = YAML(typ="safe").load(outcome.stdout)
    as_json = json.loads(show("staging", "--json").stdout)["config"]
    assert outcome.exit_code == 0 and as_yaml == as_json
    assert "interval: 10s" in outcome.stdout and "# set" in outcome.stdout


def test_an_unset_default_says_what_it_means(stacks: Path) -> None:
    line = next(ln for ln in show("staging").stdout.splitlines() if "dockerHost" in ln)
    assert "null" in line and "# default: unset, so DOCKER_HOST" in line, line


def test_a_config_that_does_not_validate_exits_2_naming_the_key(stacks: Path) -> None:
    path = stacks / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("replicas: 2", "replica: 2"))
    outcome = show("staging")
    assert outcome.exit_code == 2 and "msops:services.web.replica" in outcome.stderr


def test_a_list_of_sections_is_one_value_with_every_field(stacks: Path) -> None:
    fakes.add_lines(
        stacks,
        "staging",
        "      port: 8080\n",
        "      rollout:\n        strategy: canary\n        steps:\n"
        "          - weight: 50\n            pause: 30s\n",
    )
    data = json.loads(show("staging", "--json").stdout)
    (step,) = data["config"]["msops:services"]["web"]["rollout"]["steps"]
    assert step == {"weight": 50, "pause": "30s"}, step
    assert data["sources"]["msops:services.web.rollout.steps"] == "set"
    assert "- weight: 50" in show("staging").stdout


def test_a_field_added_to_the_model_appears_without_a_change_to_the_command() -> None:
    wider = create_model(
        "WiderConfig",
        __base__=spec.StackConfig,
        tracing=(bool, Field(False, description="Trace requests. Default: false.")),
    )
    config = wider.model_validate({"services": {"web": {"image": "ghcr.io/a/web:1.0.0"}}})
    found = {leaf.key: leaf for leaf in effective.leaves(config)}
    assert found["msops:tracing"].value is False and not found["msops:tracing"].set
