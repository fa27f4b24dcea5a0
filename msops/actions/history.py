"""`msops history`: every update of a stack, numbered as releases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration

if TYPE_CHECKING:
    from msops.releases import Release


@dataclass(frozen=True)
class HistoryResult:
    """The releases, oldest first; `rows` are what `--json` prints, newest first."""

    stack: str
    releases: tuple[Release, ...]
    # The stack outputs the newest update left (secrets masked), for its schema versions.
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return releases.history_rows(self.releases, self.outputs)


@dataclass
class History:
    cfg: Configuration
    stack: str

    def run(self) -> HistoryResult:
        steps.document(self.cfg, self.stack)  # an unknown stack is bad input, not "no history"
        found = tuple(steps.release_history(self.cfg, self.stack))
        outputs = self.cfg.gateway.outputs(self.stack) if found else {}
        return HistoryResult(self.stack, found, outputs)
