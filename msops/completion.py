"""Shell completion of stack and service names, read from the stack files (nothing validated)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def stacks(stacks_dir: Path, incomplete: str) -> list[str]:
    names = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
    return [n for n in names if n.startswith(incomplete)]


def services(stacks_dir: Path, stacks_named: Sequence[str], incomplete: str) -> list[str]:
    """The services of the named stacks (of every stack when none is named yet)."""
    from msops import stackfiles

    chosen = list(stacks_named) or stacks(stacks_dir, "")
    found: set[str] = set()
    for stack in chosen:
        try:
            config = stackfiles.read_config(stack, stacks_dir)
        except stackfiles.StackFileError:
            continue
        entries = config.get(stackfiles.SERVICES_KEY)
        if isinstance(entries, dict):
            found |= {str(name) for name in entries}
    return sorted(n for n in found if n.startswith(incomplete))
