"""Drift: what a refresh preview found changed outside msops, per resource and property."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from msops.lifecycle import StepRecord

_ABSENT: Any = object()
# Resource types that only group others, and the engine's own: they cannot drift.
_NOT_CLOUD = ("pulumi:pulumi:Stack", "pulumi:providers:")


@dataclass(frozen=True)
class PropertyChange:
    """One property that differs: as msops last deployed it (`before`) and as it is now."""

    path: str
    kind: Literal["changed", "added", "removed"]
    before: Any = None
    after: Any = None

    def data(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class Drifted:
    """A resource that changed outside msops (`changed`), or that no longer exists (`gone`)."""

    urn: str
    type: str
    name: str
    change: Literal["changed", "gone"]
    properties: tuple[PropertyChange, ...] = ()

    def data(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "change": self.change,
            "properties": [p.data() for p in self.properties],
        }


@dataclass(frozen=True)
class DriftReport:
    """Every drifted resource of a stack, and how many resources the refresh found unchanged."""

    stack: str
    resources: tuple[Drifted, ...]
    unchanged: int

    @property
    def drifted(self) -> bool:
        return bool(self.resources)

    def data(self) -> dict[str, Any]:
        """What `msops drift --json` prints."""
        return {
            "stack": self.stack,
            "drift": self.drifted,
            "unchanged": self.unchanged,
            "resources": [r.data() for r in self.resources],
        }


def report(stack: str, steps: Sequence[StepRecord], changes: Mapping[str, int]) -> DriftReport:
    """The drift of a refresh preview's steps; `changes` are its counts by operation."""
    drifted = [d for d in (drift_of(step) for step in steps) if d is not None]
    drifted.sort(key=lambda d: d.urn)
    return DriftReport(stack=stack, resources=tuple(drifted), unchanged=int(changes.get("same", 0)))


def drift_of(step: StepRecord) -> Drifted | None:
    """The drift one refresh step shows, or None when the resource is as msops left it.

    The engine reports a refresh's result as the step's op: `same`, `update` (the provider
    read different values) or `delete` (the object is gone). Older engines report `refresh`
    for every step; then the outputs decide.
    """
    if step.type.startswith(_NOT_CLOUD):
        return None
    if step.op == "delete":
        return Drifted(step.urn, step.type, step.name, "gone")
    if step.op not in ("update", "refresh"):
        return None
    properties = tuple(property_changes(step))
    if not properties and step.op == "refresh":
        return None
    return Drifted(step.urn, step.type, step.name, "changed", properties)


def property_changes(step: StepRecord) -> Iterator[PropertyChange]:
    """The properties that differ between the state and what the provider read, leaf by leaf.

    When the event carries no outputs to compare, the paths the engine named (its detailed
    diff, else its changed keys) are reported without values.
    """
    found = list(_differences(step.old_outputs or {}, step.new_outputs or {}, ""))
    if found:
        yield from found
        return
    named = list(step.detailed_diff) or list(step.diffs)
    for path in named:
        kind = step.detailed_diff.get(path, "update")
        yield PropertyChange(path=path, kind=_kind(kind))


def _kind(diff_kind: str) -> Literal["changed", "added", "removed"]:
    if diff_kind.startswith("add"):
        return "added"
    if diff_kind.startswith("delete"):
        return "removed"
    return "changed"


def _differences(before: Any, after: Any, path: str) -> Iterator[PropertyChange]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted({*before, *after}, key=str):
            # Pulumi's own bookkeeping (`__defaults`, `__meta`), not a property of the object.
            if str(key).startswith("__"):
                continue
            child = f"{path}.{key}" if path else str(key)
            yield from _differences(before.get(key, _ABSENT), after.get(key, _ABSENT), child)
        return
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            yield from _differences(old, new, f"{path}[{index}]")
        return
    # A property the provider leaves unset reads back as null or not at all: the same thing.
    before = _ABSENT if before is None else before
    after = _ABSENT if after is None else after
    if before is _ABSENT and after is _ABSENT:
        return
    if before is _ABSENT:
        yield PropertyChange(path=path, kind="added", after=after)
    elif after is _ABSENT:
        yield PropertyChange(path=path, kind="removed", before=before)
    elif before != after:
        yield PropertyChange(path=path, kind="changed", before=before, after=after)
