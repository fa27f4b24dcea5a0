"""A new service block for a stack file: the model's documented defaults, with its comments.

Values and comments come from components/spec.py (each key's default and description, each
section's docstring), so the block says what docs/config.md says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap

from components import spec

# The keys a new service spells out: what a reader of the stack file looks for first, and
# what the policies check. Every other key keeps its default unwritten.
SCAFFOLD_KEYS: tuple[tuple[str, ...], ...] = (
    ("image",),
    ("replicas",),
    ("port",),
    ("health", "path"),
    ("health", "readinessPath"),
    ("metricsPath",),
    ("resources", "cpuRequest"),
    ("resources", "cpuLimit"),
    ("resources", "memoryRequest"),
    ("resources", "memoryLimit"),
)
# Two, not the model's 1: one replica can then fail or be replaced without an outage, and
# prod-min-replicas (a mandatory policy) asks for two in prod.
SCAFFOLD_REPLICAS = 2
REPLICAS_COMMENT = "Fixed replica count: two, so one can fail without an outage (prod needs two)."


def indent_unit(text: str) -> int:
    """The mapping indentation a stack file uses (2 unless it says otherwise)."""
    from ruamel.yaml.util import load_yaml_guess_indent

    if not text.strip():
        return 2
    _, indent, _ = load_yaml_guess_indent(text)
    return int(indent or 2)


def _field(model: type[BaseModel], key: str) -> tuple[str, Any]:
    """The python name and FieldInfo of a camelCase key."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return name, info
    raise KeyError(f"{model.__name__} has no field {key!r}")


def documented(path: tuple[str, ...]) -> tuple[Any, str, type[BaseModel]]:
    """The default, the description and the owning model of a key of `Service`."""
    model: type[BaseModel] = spec.Service
    for part in path[:-1]:
        _, info = _field(model, part)
        inner = spec.model_of(info.annotation)
        assert inner is not None, f"{part} is not a section"
        model = inner
    _, info = _field(model, path[-1])
    default = info.get_default(call_default_factory=True)
    return default, info.description or "", model


def service_block(image: str, port: int | None, *, indent: int, unit: int) -> CommentedMap:
    """The block of one new service; its keys sit at column `indent`, nested ones `unit` deeper."""
    given: Mapping[tuple[str, ...], Any] = {
        ("image",): image,
        ("replicas",): SCAFFOLD_REPLICAS,
        ("port",): port if port is not None else documented(("port",))[0],
    }
    block = CommentedMap()
    for path in SCAFFOLD_KEYS:
        default, description, model = documented(path)
        node = block
        if len(path) == 2:
            section = path[0]
            if section not in node:
                node[section] = CommentedMap()
                doc = (model.__doc__ or "").strip().splitlines()[0]
                node.yaml_set_comment_before_after_key(section, before=doc, indent=indent)
            node = node[section]
        key = path[-1]
        node[key] = given.get(path, default)
        text = REPLICAS_COMMENT if path == ("replicas",) else description
        column = indent + unit * (len(path) - 1)
        node.yaml_set_comment_before_after_key(key, before=text, indent=column)
    return block
