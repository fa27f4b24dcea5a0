"""The pack config (`--policy-pack-config`, `msops check --policy-config`) read and checked.

Unlike the engine, unknown policies and settings are errors here, so a misspelt key never
silently switches a check off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, Policy

from .base import defaults
from .view import get, is_list, mapping

LEVELS = ("advisory", "mandatory", "remediate", "disabled")

# Each policy's enforcement level and settings, by policy name.
Resolved = dict[str, tuple[str, dict[str, Any]]]


class PolicyConfigError(ValueError):
    """A policy config (`--policy-pack-config` / `msops check --policy-config`) that is wrong."""


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        not isinstance(v, bool)
        and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
    ),
    "number": lambda v: not isinstance(v, bool) and isinstance(v, int | float),
    "string": lambda v: isinstance(v, str),
    "array": is_list,
}


def type_problems(schema: Mapping[str, Any], value: Any, where: str) -> list[str]:
    """Problems of `value` against the JSON-schema subset the policies' config uses."""
    kind = schema.get("type")
    if kind in _TYPE_CHECKS and not _TYPE_CHECKS[kind](value):
        return [f"{where}: got {value!r}; expected {'an' if kind == 'integer' else 'a'} {kind}"]
    problems = []
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        problems.append(f"{where}: got {value!r}; it must be at least {schema['minimum']}")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        problems.append(f"{where}: got {value!r}; expected one of {allowed}")
    if kind == "array" and "items" in schema:
        for index, item in enumerate(value):
            problems += type_problems(schema["items"], item, f"{where}[{index}]")
    if schema.get("format") == "regex" and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as exc:
            problems.append(f"{where}: {value!r} is not a regular expression ({exc})")
    return problems


def _level_name(level: EnforcementLevel | None) -> str:
    return (level or EnforcementLevel.ADVISORY).value


def _all_level(entry: Any, problems: list[str]) -> str | None:
    """The level the `all` entry sets, or None (with a problem) when it is not one."""
    level = entry if isinstance(entry, str) else get(entry, "enforcementLevel")
    extra = set(mapping(entry)) - {"enforcementLevel"}
    if level in LEVELS and not extra:
        return str(level)
    problems.append(
        f"all: got {entry!r}; 'all' takes only an enforcement level, one of {', '.join(LEVELS)}"
    )
    return None


def _apply(
    policy: Policy,
    entry: Mapping[str, Any],
    current: tuple[str, dict[str, Any]],
    problems: list[str],
) -> tuple[str, dict[str, Any]]:
    """A policy's level and settings once one config entry is applied; problems appended."""
    name, (level, values) = policy.name, current
    properties = policy.config_schema.properties if policy.config_schema else {}
    for key, value in entry.items():
        if key == "enforcementLevel":
            if value in LEVELS:
                level = value
            else:
                problems.append(
                    f"{name}.enforcementLevel: got {value!r}; expected one of {', '.join(LEVELS)}"
                )
        elif key not in properties:
            allowed = ", ".join(["enforcementLevel", *properties])
            problems.append(f"{name}.{key}: unknown setting; the settings are {allowed}")
        else:
            found = type_problems(properties[key], value, f"{name}.{key}")
            problems += found
            if not found:
                values = {**values, key: value}
    return level, values


def resolve_pack_config(config: Mapping[str, Any] | None, policies: Sequence[Policy]) -> Resolved:
    """Each policy's enforcement level and settings under a pack config, or PolicyConfigError.

    The format is the one `pulumi preview --policy-pack-config` reads: `{"<policy>": "disabled"}`
    or `{"<policy>": {"enforcementLevel": "advisory", "<property>": value}}`, and `"all"` to set
    every policy's level.
    """
    by_name = {p.name: p for p in policies}
    resolved = {p.name: (_level_name(p.enforcement_level), defaults(p)) for p in policies}
    problems: list[str] = []
    entries = dict(config or {})
    all_entry = entries.pop("all", None)
    if all_entry is not None:
        level = _all_level(all_entry, problems)
        if level is not None:
            resolved = {name: (level, values) for name, (_, values) in resolved.items()}
    for name, entry in entries.items():
        if name not in by_name:
            problems.append(f"{name}: no such policy; the policies are {', '.join(by_name)}")
        elif isinstance(entry, str | Mapping):
            entry = {"enforcementLevel": entry} if isinstance(entry, str) else entry
            resolved[name] = _apply(by_name[name], entry, resolved[name], problems)
        else:
            problems.append(f"{name}: got {entry!r}; expected a level or an object of settings")
    if problems:
        raise PolicyConfigError("the policy config has problems:\n" + "\n".join(problems))
    return resolved


def read_pack_config(path: str | Path, policies: Sequence[Policy]) -> dict[str, Any]:
    """Read and check a policy config JSON file (the one `--policy-pack-config` takes)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PolicyConfigError(f"cannot read the policy config: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyConfigError("the policy config must be a JSON object keyed by policy name")
    resolve_pack_config(data, policies)
    return data
