"""`msops config show`: the effective config of a stack, every default filled in and marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from msops import effective
from msops.actions import steps
from msops.actions.base import Configuration


@dataclass(frozen=True)
class ConfigShowResult:
    stack: str
    leaves: tuple[effective.Leaf, ...]

    def data(self) -> dict[str, Any]:
        return effective.data(self.stack, list(self.leaves))

    def yaml(self) -> str:
        return effective.yaml_text(self.stack, list(self.leaves))


@dataclass
class ConfigShow:
    """Validate the stack file (secrets masked, nothing decrypted) and list every leaf."""

    cfg: Configuration
    stack: str

    def run(self) -> ConfigShowResult:
        spec = steps.load(self.cfg, self.stack).spec
        return ConfigShowResult(self.stack, tuple(effective.leaves(spec)))
