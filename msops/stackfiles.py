"""Reads and edits stacks/Pulumi.<stack>.yaml, keeping comments and key order (ruamel.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"


class StackFileError(Exception):
    """A stack file that is missing or cannot be parsed."""


def stack_path(stack: str, stacks_dir: Path | None = None) -> Path:
    return (stacks_dir or STACKS_DIR) / f"Pulumi.{stack}.yaml"


def list_stacks(stacks_dir: Path | None = None) -> list[str]:
    root = stacks_dir or STACKS_DIR
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def read_config(stack: str, stacks_dir: Path | None = None) -> dict[str, Any]:
    """The `config:` map of a stack file as plain data (secure values stay `{secure: ...}`)."""
    path = stack_path(stack, stacks_dir)
    if not path.exists():
        known = ", ".join(list_stacks(stacks_dir)) or "none"
        raise StackFileError(f"no stack file {path.name} for stack {stack!r} (stacks: {known})")
    try:
        doc = YAML(typ="safe").load(path.read_text()) or {}
    except Exception as exc:  # ruamel raises many YAMLError subclasses
        raise StackFileError(f"{path.name} is not valid YAML: {exc}") from None
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path.name}: 'config' must be a mapping")
    return config
