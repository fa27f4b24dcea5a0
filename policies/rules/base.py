"""What every policy module builds on: the policy classes, config schemas and messages.

A policy module writes a *check*: a function of the resource (or the stack) and the policy's
settings that yields each `Problem` it finds. `ResourcePolicy` and `StackPolicy` do the rest
the same way for every policy: read the config, honour waivers, word the message.
"""

from __future__ import annotations

import contextvars
import copy
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from .view import WAIVER_PREFIX, waived

# The stack `evaluate` checks; under the engine it is unset and PULUMI_STACK names the stack.
STACK: contextvars.ContextVar[str | None] = contextvars.ContextVar("msops_stack", default=None)


@dataclass(frozen=True)
class Problem:
    """One thing a check found wrong: what it is, and how to fix it."""

    detail: str
    fix: str
    # For a policy whose exceptions are expected: the message also says how to waive it.
    waivable: bool = False
    # What a stack check found at fault; a resource check's problem is on the resource it checks.
    resource: PolicyResource | None = None


Settings = dict[str, Any]
ResourceCheck = Callable[[ResourceValidationArgs, Settings], Iterable[Problem]]
StackCheck = Callable[[StackValidationArgs, Settings], Iterable[Problem]]


class ResourcePolicy(ResourceValidationPolicy):
    """A policy on one resource at a time; `check` finds the problems of one resource.

    `applies_to` limits it to some resource types; by default it sees every resource (a check
    that finds no container in a resource yields nothing).
    """

    def __init__(
        self, *, check: ResourceCheck, why: str, applies_to: Collection[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(validate=self._validate, **kwargs)
        self.check, self.why, self.applies_to = check, why, frozenset(applies_to)

    def _validate(self, args: ResourceValidationArgs, report: ReportViolation) -> None:
        if self.applies_to and args.resource_type not in self.applies_to:
            return
        cfg = settings(self, args)
        if waived(self.name, args.resource_type, args.props, cfg):
            return
        for problem in self.check(args, cfg):
            report(say(self, problem), None)


class StackPolicy(StackValidationPolicy):
    """A policy on the whole stack; `check` finds the problems and the resource each is on."""

    def __init__(self, *, check: StackCheck, why: str, **kwargs: Any) -> None:
        super().__init__(validate=self._validate, **kwargs)
        self.check, self.why = check, why

    def _validate(self, args: StackValidationArgs, report: ReportViolation) -> None:
        cfg = settings(self, args)
        for problem in self.check(args, cfg):
            res = problem.resource
            if res is not None and waived(self.name, res.resource_type, res.props, cfg):
                continue
            report(say(self, problem), res.urn if res is not None else None)


MsopsPolicy = ResourcePolicy | StackPolicy

# --- config schemas -------------------------------------------------------------------------------

_WAIVERS_PROPERTY = {
    "type": "boolean",
    "default": True,
    "description": f"Let a `{WAIVER_PREFIX}<policy>: <reason>` label or annotation exempt a "
    "resource. Default: true.",
}


def schema(**properties: dict[str, Any]) -> PolicyConfigSchema:
    """A policy's config schema: its own settings, and `allowWaivers`, which every policy has."""
    return PolicyConfigSchema(properties={**properties, "allowWaivers": _WAIVERS_PROPERTY})


def flag(default: bool, description: str) -> dict[str, Any]:
    return {"type": "boolean", "default": default, "description": description}


def string_list(default: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string"},
        "default": default,
        "description": description,
    }


def positive_int(default: int, description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "default": default, "description": description}


def regex(default: str, description: str) -> dict[str, Any]:
    return {"type": "string", "format": "regex", "default": default, "description": description}


def defaults(policy: Any) -> dict[str, Any]:
    """Every setting of a policy at its schema default."""
    config_schema = policy.config_schema
    if config_schema is None:
        return {}
    return {
        k: copy.deepcopy(v["default"])
        for k, v in config_schema.properties.items()
        if "default" in v
    }


def settings(policy: MsopsPolicy, args: ResourceValidationArgs | StackValidationArgs) -> Settings:
    """The policy's config: its schema defaults, overridden by what the pack config sets."""
    values = defaults(policy)
    values.update(dict(args.get_config() or {}))
    return values


# --- messages -------------------------------------------------------------------------------------

WAIVER_HINT = (
    "If the exception is deliberate, waive it on that resource with the label or annotation "
    "`{prefix}{policy}: <reason>`."
)


def say(policy: MsopsPolicy, problem: Problem) -> str:
    """A violation message: what is wrong, why the rule exists, and how to fix it."""
    text = f"{problem.detail}. Why: {policy.why} Fix: {problem.fix}"
    if problem.waivable:
        text += " " + WAIVER_HINT.format(prefix=WAIVER_PREFIX, policy=policy.name)
    return text


def current_stack() -> str | None:
    """The stack being checked: set by `evaluate`, or by the engine in PULUMI_STACK."""
    return STACK.get() or os.environ.get("PULUMI_STACK") or None
