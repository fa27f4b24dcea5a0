"""docs/config.md stays true: it is what the model generates, and names every key."""

from __future__ import annotations

from pathlib import Path

from pydantic.alias_generators import to_camel

from components import spec
from msops import configdoc

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_config_reference_matches_the_model() -> None:
    assert DOC.read_text() == configdoc.render(), (
        "docs/config.md is stale: run `uv run python -m msops.configdoc > docs/config.md`"
    )


def test_config_reference_lists_every_service_key() -> None:
    text = DOC.read_text()
    missing = [to_camel(n) for n in spec.Service.model_fields if f"| `{to_camel(n)}` |" not in text]
    assert missing == []
