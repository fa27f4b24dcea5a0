"""What a backend renders for tools other than Pulumi (Compose, `docker stack deploy`): one
document, the comment above it, and the config files it names, all plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Interpolated(str):
    """A string Compose must expand (`${VAR}`); every other `$` in a document is a literal."""

    __slots__ = ()


@dataclass(frozen=True)
class Bundle:
    """`document` (compose.yaml, stack.yaml) as a dict, with `header` comment lines above it;
    `files` are the config files beside it by path relative to it, `/`-separated."""

    document: dict[str, Any]
    header: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)


def literal(value: Any) -> Any:
    """`value` with every `$` doubled, as Compose and `docker stack deploy` read a literal
    dollar; an `Interpolated` string is kept as it is, and comes out a plain `str`."""
    if isinstance(value, Interpolated):
        return str(value)
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, Mapping):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [literal(v) for v in value]
    return value


def label_map(items: list[dict[str, Any]] | None) -> dict[str, str]:
    """pulumi-docker's `[{label, value}]` as the mapping Compose files take, without Nones."""
    return {i["label"]: str(i["value"]) for i in items or [] if i.get("value") is not None}


def mounted_file(path: str) -> str:
    """Where a file mounted at `path` in a container sits beside the document: under the
    program's own folder, its `/etc/<program>/` prefix dropped (`/etc/nginx/nginx.conf` →
    `nginx.conf`), so that two programs' files never share a path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) > 2 and parts[0] == "etc":
        parts = parts[2:]
    return "/".join(parts)
