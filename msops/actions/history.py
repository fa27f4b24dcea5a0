"""`msops history`: every update of a stack, numbered as releases."""

from __future__ import annotations

from dataclasses import dataclass
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

    def rows(self) -> list[dict[str, Any]]:
        return releases.history_rows(self.releases)


@dataclass
class History:
    cfg: Configuration
    stack: str

    def run(self) -> HistoryResult:
        steps.document(self.cfg, self.stack)  # an unknown stack is bad input, not "no history"
        return HistoryResult(self.stack, tuple(steps.release_history(self.cfg, self.stack)))
