"""What every backend's translation shares: one resource's arguments, and duration text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Args:
    """One provider resource as a translator describes it.

    `args` are the keyword arguments of the provider SDK's class, snake_case as it takes them;
    `options` are `pulumi.ResourceOptions` fields (protect, delete_before_replace, ...). The
    component adds parent, provider and dependencies.
    """

    name: str
    args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def go_duration(seconds: float, *, trim: bool = False) -> str:
    """A duration as Go's time.Duration prints it (`60` → `1m0s`), the way providers read one
    back, so that writing it this way keeps `pulumi preview` free of diffs like `60s` → `1m0s`.

    `trim` drops zero trailing units (`1m`, `1h`), the form Docker's swarm API hands back.
    """
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s" if trim else "0ms"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"
    if trim:
        text = text.removesuffix("m0s") + "m" if text.endswith("m0s") else text
        text = text.removesuffix("h0m") + "h" if text.endswith("h0m") else text
    return text
