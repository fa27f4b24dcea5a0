"""`msops diff`: two releases, or a release and the stack file, compared setting by setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msops import diffing, releases
from msops.actions import steps
from msops.actions.base import Configuration
from msops.errors import BadInput

if TYPE_CHECKING:
    from msops.diffing import Change, ConfigDiff, Normalized
    from msops.releases import Release


@dataclass(frozen=True)
class DiffSide:
    """One side of a diff: a release (`release` set), or the stack file (`release` None)."""

    release: Release | None
    config: Normalized

    @property
    def label(self) -> str:
        return "stack file" if self.release is None else f"release {self.release.number}"

    def data(self) -> dict[str, Any]:
        rel = self.release
        return {
            "source": "file" if rel is None else "release",
            "release": None if rel is None else rel.number,
            "time": None if rel is None else releases.rfc3339(rel.update.start_time),
            "kind": None if rel is None else rel.kind,
            "result": None if rel is None else rel.result,
            "valid": self.config.valid,
            "problems": list(self.config.problems),
        }


def change_data(change: Change) -> dict[str, Any]:
    return {
        "key": change.key,
        "kind": change.kind,
        "before": diffing.shown(change.before),
        "after": diffing.shown(change.after),
        "secret": change.secret,
    }


@dataclass(frozen=True)
class DiffResult:
    """What `msops diff` shows; `data()` is its `--json` (schema in docs/cli.md)."""

    stack: str
    before: DiffSide
    after: DiffSide
    diff: ConfigDiff

    @property
    def different(self) -> bool:
        return self.diff.different

    def data(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "before": self.before.data(),
            "after": self.after.data(),
            "different": self.different,
            "services": [
                {
                    "service": section.name,
                    "change": section.status,
                    "changes": [change_data(c) for c in section.changes],
                }
                for section in self.diff.services
            ],
            "settings": [change_data(c) for c in self.diff.settings.changes],
        }


@dataclass
class Diff:
    """Compare release `before` (default: the newest deployed) with release `after` (default:
    the stack file). Reads history and the file's config; changes nothing."""

    cfg: Configuration
    stack: str
    before: int | None = None
    after: int | None = None

    def run(self) -> DiffResult:
        if self.before is None and self.after is not None:
            raise BadInput("name the release to compare from first: `msops diff STACK A B`")
        steps.document(self.cfg, self.stack)  # an unknown stack is bad input, before the engine
        found = steps.release_history(self.cfg, self.stack)
        old = self._release(found, self.before)
        if self.after is None:
            new = DiffSide(None, self._file())
        else:
            rel = releases.release_numbered(found, self.after, self.stack)
            new = DiffSide(rel, self._normalized(rel))
        side = DiffSide(old, self._normalized(old))
        return DiffResult(self.stack, side, new, diffing.compare(side.config, new.config))

    def _release(self, found: list[Release], number: int | None) -> Release:
        if number is not None:
            return releases.release_numbered(found, number, self.stack)
        newest = releases.newest_deployed(found)
        if newest is not None:
            return newest
        if not found:
            raise BadInput(
                f"stack {self.stack!r} has no releases yet, so there is nothing to compare the "
                f"stack file with; deploy it with `msops up {self.stack}`"
            )
        raise BadInput(
            f"stack {self.stack!r} has no successful release to compare the stack file with; "
            f"name one of releases 1-{len(found)}: `msops diff {self.stack} N`"
        )

    def _normalized(self, rel: Release) -> Normalized:
        return diffing.normalize(rel.config, rel.secret_keys, self.stack)

    def _file(self) -> Normalized:
        entries = self.cfg.gateway.current_config(self.stack)
        secret = {key for key, entry in entries.items() if entry.secret}
        return diffing.normalize(releases.decode_config(entries), secret, self.stack)
