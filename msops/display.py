"""How the day-2 commands show their results on a console: drift, kept data, watch, logs, diff."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from msops.actions.diff import DiffResult, DiffSide
    from msops.actions.watch import WatchRound
    from msops.diffing import Section
    from msops.drift import DriftReport, PropertyChange
    from msops.lifecycle import Kept
    from msops.runtime import LogLine, Readiness

VALUE_WIDTH = 60


# --- consoles and tables: a pipe gets every line whole ------------------------------------------


def console(*, stderr: bool = False) -> Console:
    """A console for msops's output. At a terminal rich wraps to its width; anywhere else (a
    pipe, a file, CI) nothing is wrapped or cut, so `| grep` sees whole lines and URNs."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out.soft_wrap = True
    return out


class Rows:
    """A table: with rich's boxes at a terminal; elsewhere its title, a header row and one row
    per line, cells separated by tabs and never cut (as `kubectl get` prints for a pipe).

    A cell may hold several lines (one per service); off a terminal they are joined by spaces,
    so that each row stays one line.
    """

    def __init__(self, title: str, *columns: str) -> None:
        self.title = title
        self.columns = columns
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def plain(self) -> str:
        """The title on a line of its own, then the tab-separated header and rows."""
        lines = [self.columns, *self.rows]
        rows = "".join("\t".join(_one_line(c) for c in line) + "\n" for line in lines)
        return (f"{self.title}\n" if self.title else "") + rows

    def __rich_console__(self, out: Console, options: Any) -> Any:
        """`console.print(rows)`: the boxed table at a terminal, the plain rows elsewhere."""
        if not out.is_terminal:
            from rich.segment import Segment

            # One segment, so rich neither wraps, crops nor expands the tabs.
            yield Segment(self.plain())
            return
        from rich.table import Table

        table = Table(title=self.title, title_justify="left")
        for column in self.columns:
            table.add_column(column, overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        yield table


def replicas_text(replicas: Any) -> str:
    """Replicas as --json gives them (`releases.replicas_data`), as a table cell shows them."""
    if isinstance(replicas, dict):
        return f"{replicas['min']}-{replicas['max']} (autoscaled)"
    return "?" if replicas is None else str(replicas)


def _one_line(cell: str) -> str:
    return " ".join(part for part in cell.replace("\t", " ").splitlines() if part) or "-"


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
        # Never folded, at a terminal either: the terminal wraps it, and a copy is whole.
        console.print(f"      {res.urn}", markup=False, soft_wrap=True)
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
    waiting = [s for s in services if not s.converged]
    pending = "; ".join(f"{s.service}: {s.state}" for s in waiting)
    first = waiting[0].service if waiting else "SERVICE"
    return (
        f"stack {stack!r} did not converge within {timeout:g}s ({pending}); "
        f"`msops logs {stack} {first}` shows what its replicas say, and a longer --timeout "
        "waits for a slow rollout"
    )


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


# --- diff ----------------------------------------------------------------------------------------


def _setting(path: tuple[str | int, ...]) -> str:
    """`resources.cpuLimit`, `migrations.command`, `msops:databases.main.version`."""
    from msops.stackfiles import config_path

    return config_path(str(path[0]), path[1:]) if path else ""


def _diff_value(value: Any) -> str:
    """A setting's value on one line: strings as they are unless they would read as another
    type (`"2"`, `"true"`, `""`), everything else as JSON; secrets as the mask."""
    from msops import diffing

    value = diffing.shown(value)
    if isinstance(value, str):
        try:
            readable = not isinstance(json.loads(value), str)
        except ValueError:
            readable = value == "" or value != value.strip() or "\n" in value
        return json.dumps(value) if readable else value
    return json.dumps(value, default=str)


def _diff_lines(tree: Any, changed_secrets: set[tuple[str | int, ...]]) -> list[str]:
    from msops import diffing

    if tree is diffing.MISSING:
        return []
    lines = []
    for path, value in diffing.leaves(tree):
        text = _diff_value(value)
        # Both sides of a changed secret read "[secret]"; mark the new one so the diff shows it.
        if path in changed_secrets:
            text += " (changed)"
        lines.append(f"{_setting(path)}: {text}")
    return lines


def section_diff(section: Section, before: str, after: str, title: str) -> list[str]:
    """One section (a service, the stack-wide settings) as a unified diff of `setting: value`
    lines, one per effective setting; [] when it did not change."""
    import difflib

    if not section.changes:
        return []
    secret = {c.path for c in section.changes if c.secret and c.kind == "changed"}
    return list(
        difflib.unified_diff(
            _diff_lines(section.before, set()),
            _diff_lines(section.after, secret),
            fromfile=f"{before}: {title}",
            tofile=f"{after}: {title}",
            lineterm="",
        )
    )


def _count(section: Section) -> str:
    n = len(section.changes)
    return f"{section.status}, {n} setting{'s' if n != 1 else ''}"


def diff_text(result: DiffResult) -> str:
    """`msops diff` for people: what is compared, a line per section, then each section's
    unified diff. Secret values never appear: only the mask, and whether it changed."""
    before, after = result.before, result.after
    out = [f"Stack {result.stack}: {_side_title(before)} -> {_side_title(after)}"]
    for side in (before, after):
        out.extend(_invalid_note(side))
    if not result.different:
        out.append(
            f"No difference: {_named(before)} and {_named(after)} have the same effective settings."
        )
        return "\n".join(out) + "\n"
    for section in result.diff.services:
        out.append(f"  services.{section.name}: {_count(section)}")
    out.append(f"  stack-wide settings: {_count(result.diff.settings)}")
    for section in result.diff.services:
        out.extend(section_diff(section, before.label, after.label, f"services.{section.name}"))
    out.extend(section_diff(result.diff.settings, before.label, after.label, "stack-wide"))
    return "\n".join(out) + "\n"


def _named(side: DiffSide) -> str:
    return "the stack file" if side.release is None else side.label


def _side_title(side: DiffSide) -> str:
    if side.release is None:
        return "stack file"
    from msops.releases import rfc3339

    rel = side.release
    outcome = rel.result if rel.kind == "update" else f"{rel.kind} {rel.result}"
    return f"release {rel.number} ({rfc3339(rel.update.start_time)}, {outcome})"


def _invalid_note(side: DiffSide) -> list[str]:
    problems = side.config.problems
    if not problems:
        return []
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = [
        f"note: {side.label} does not validate against today's config schema ({count}); "
        "where an entry fails, it is compared as recorded:"
    ]
    return lines + [f"  - {p}" for p in problems]
