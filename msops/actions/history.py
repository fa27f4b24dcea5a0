"""`msops history`: every update of a stack, numbered as releases; or those of one service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration
from msops.errors import BadInput

if TYPE_CHECKING:
    from msops.releases import Release


@dataclass(frozen=True)
class HistoryResult:
    """The releases, oldest first; `rows` are what `--json` prints, newest first.

    With `service`, only the releases that changed that service, each row saying what changed
    (`changes`); `limit` keeps the newest rows only.
    """

    stack: str
    releases: tuple[Release, ...]
    # The stack outputs the newest update left (secrets masked), for its schema versions.
    outputs: Mapping[str, Any] = field(default_factory=dict)
    service: str | None = None
    limit: int | None = None

    def rows(self) -> list[dict[str, Any]]:
        rows = releases.history_rows(self.releases, self.outputs)
        if self.service is not None:
            changed = {
                entry.release.number: [c.text() for c in entry.changes]
                for entry in releases.service_history(self.releases, self.service, self.outputs)
            }
            rows = [
                _one_service(row, self.service) | {"changes": changed[row["release"]]}
                for row in rows
                if row["release"] in changed
            ]
        return rows[: self.limit] if self.limit is not None else rows


def _one_service(row: dict[str, Any], service: str) -> dict[str, Any]:
    """A history row narrowed to one service's image, digest, replicas and schema."""
    narrowed = dict(row)
    for key in ("images", "digests", "replicas", "schema"):
        narrowed[key] = {k: v for k, v in row[key].items() if k == service}
    return narrowed


@dataclass
class History:
    cfg: Configuration
    stack: str
    service: str | None = None
    limit: int | None = None

    def run(self) -> HistoryResult:
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--max must be 1 or more, got {self.limit}")
        steps.document(self.cfg, self.stack)  # an unknown stack is bad input, not "no history"
        found = tuple(steps.release_history(self.cfg, self.stack))
        if self.service is not None and found:
            known = {name for rel in found for name in rel.services}
            if self.service not in known:
                raise BadInput(
                    f"service {self.service!r} is in no release of stack {self.stack!r} "
                    f"(its releases ran: {', '.join(sorted(known)) or 'none'})"
                )
        outputs = self.cfg.gateway.outputs(self.stack) if found else {}
        return HistoryResult(self.stack, found, outputs, self.service, self.limit)
