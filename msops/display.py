"""How the day-2 commands show their results on a console: drift, kept data, watch, logs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from msops.actions.watch import WatchRound
    from msops.drift import DriftReport, PropertyChange
    from msops.lifecycle import Kept
    from msops.runtime import LogLine, Readiness

VALUE_WIDTH = 60


def short(value: Any) -> str:
    """A property value on one line, cut to VALUE_WIDTH characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."


def _change(prop: PropertyChange) -> str:
    if prop.kind == "added":
        return f"{prop.path}: added {short(prop.after)}"
    if prop.kind == "removed":
        return f"{prop.path}: removed (was {short(prop.before)})"
    if prop.before is None and prop.after is None:
        return f"{prop.path}: changed"
    return f"{prop.path}: {short(prop.before)} -> {short(prop.after)}"


def print_drift(console: Console, report: DriftReport) -> None:
    """Per drifted resource, what changed outside msops; or that nothing did."""
    if not report.drifted:
        console.print(
            f"No drift: the {report.unchanged} resource(s) of {report.stack} are as msops "
            "deployed them."
        )
        return
    console.print(
        f"Drift in {report.stack}: {len(report.resources)} resource(s) changed outside msops "
        f"({report.unchanged} unchanged)."
    )
    for res in report.resources:
        what = "gone: deleted outside msops" if res.change == "gone" else "changed"
        console.print(f"  {res.name} ({res.type}): {what}", markup=False)
        console.print(f"      {res.urn}", markup=False)
        for prop in res.properties:
            console.print(f"      {_change(prop)}", markup=False)


def print_kept(console: Console, stack: str, kept: Sequence[Kept], *, done: bool) -> None:
    """What a destroy keeps (or kept), and how to remove each on purpose."""
    if not kept:
        console.print(f"A destroy of {stack} keeps nothing: the stack runs no database.")
        return
    verb = "Kept" if done else "A destroy keeps"
    console.print(f"{verb} {len(kept)} resource(s) of {stack}, so its data survives:")
    for item in kept:
        how = (
            "protected: stays, in the state too"
            if item.how == "protected"
            else "retained: left in place, dropped from the state"
        )
        console.print(f"  {item.what} ({how})", markup=False)
        if item.removal:
            console.print("    to remove it on purpose:", markup=False)
            for command in item.removal:
                console.print(f"      {command}", markup=False)


# --- status --watch -------------------------------------------------------------------------------


def readiness_row(svc: Readiness) -> tuple[str, str, str, str, str, str]:
    return (
        svc.service,
        f"{svc.ready}/{svc.desired}",
        str(svc.total),
        str(svc.current),
        "yes" if svc.converged else "no",
        svc.state,
    )


WATCH_COLUMNS = ("Service", "Ready", "Total", "Current", "Converged", "State")


def watch_table(stack: str, current: WatchRound) -> Any:
    from rich.table import Table

    table = Table(title=f"{stack} after {current.elapsed:.0f}s", title_justify="left")
    for column in WATCH_COLUMNS:
        table.add_column(column, overflow="fold")
    for svc in current.services:
        table.add_row(*readiness_row(svc))
    return table


class WatchLines:
    """Off a terminal: one line per service whenever its counts or state change."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.seen: dict[str, tuple[str, ...]] = {}

    def __call__(self, current: WatchRound) -> None:
        for svc in current.services:
            row = readiness_row(svc)
            if self.seen.get(svc.service) == row:
                continue
            self.seen[svc.service] = row
            self.out.write(
                f"[{current.elapsed:6.1f}s] {svc.service}: {svc.ready}/{svc.desired} ready, "
                f"{svc.total} total, {svc.current} current: {svc.state}\n"
            )
            self.out.flush()


def not_converged(stack: str, timeout: float, services: Iterable[Readiness]) -> str:
    pending = "; ".join(f"{s.service}: {s.state}" for s in services if not s.converged)
    return f"stack {stack!r} did not converge within {timeout:g}s ({pending})"


# --- logs -----------------------------------------------------------------------------------------


def write_lines(lines: Iterable[LogLine], width: int, out: TextIO | None = None) -> int:
    """`<replica> | <text>` per line, flushed as it comes; returns how many were written."""
    target = out or sys.stdout
    count = 0
    for line in lines:
        target.write(f"{line.replica:<{width}} | {line.text}\n")
        target.flush()
        count += 1
    return count
