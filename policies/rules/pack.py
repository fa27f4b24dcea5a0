"""The pack: every policy in the order the engine runs them, and `evaluate` to run them offline."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from . import availability, database, exposure, health, images, monitoring, resources, security
from .base import STACK, MsopsPolicy
from .config import Resolved, read_pack_config, resolve_pack_config

if TYPE_CHECKING:
    # Only for annotations: the published pack carries this package without the msops package.
    from msops.synth import Graph, Resource

_POLICIES: tuple[MsopsPolicy, ...] = (
    images.IMAGES_PINNED,
    security.NO_PRIVILEGED,
    security.NON_ROOT,
    resources.RESOURCE_LIMITS,
    health.HEALTH_CHECKS,
    availability.PROD_MIN_REPLICAS,
    availability.PDB_REQUIRED,
    monitoring.SERVICES_MONITORED,
    database.DATABASE_STORAGE_RETAINED,
    security.NO_PLAINTEXT_SECRET_ENV,
    exposure.DOCKER_PORTS_LOOPBACK,
    exposure.K8S_LOADBALANCER_EXPOSED,
)
ALL: list[Policy] = list(_POLICIES)

# Why each policy exists, by name: every violation message quotes it.
WHY: dict[str, str] = {p.name: p.why for p in _POLICIES}


@dataclass(frozen=True)
class Violation:
    """One policy violation: which policy, how hard it blocks, on what, and what to do."""

    policy: str
    level: str
    urn: str
    message: str


def resolve_config(config: Mapping[str, Any] | None) -> Resolved:
    """Each policy's enforcement level and settings under a pack config, or PolicyConfigError.

    The format is the one `pulumi preview --policy-pack-config` reads: `{"<policy>": "disabled"}`
    or `{"<policy>": {"enforcementLevel": "advisory", "<property>": value}}`, and `"all"` to set
    every policy's level. Unlike the engine, unknown policies and properties are errors here, so a
    misspelt key is never silently ignored.
    """
    return resolve_pack_config(config, ALL)


def read_policy_config(path: str | Path) -> dict[str, Any]:
    """Read and check a policy config JSON file (the one `--policy-pack-config` takes)."""
    return read_pack_config(path, ALL)


def mandatory(violations: Sequence[Violation]) -> list[Violation]:
    """The violations that block a deployment."""
    return [v for v in violations if v.level == "mandatory"]


# --- running the pack on a synthesized graph ------------------------------------------------------


def _options(resource: Resource) -> PolicyResourceOptions:
    options = resource.options
    return PolicyResourceOptions(
        protect=bool(options.get("protect")),
        ignore_changes=list(options.get("ignore_changes") or []),
        delete_before_replace=options.get("delete_before_replace"),
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(options.get("additional_secret_outputs") or []),
        parent=resource.parent or None,
    )


def _provider(resource: Resource, by_urn: Mapping[str, Resource]) -> PolicyProviderResource | None:
    # A provider reference is "<urn>::<id>"; the URN itself contains "::" too.
    reference = str(resource.options.get("provider") or "")
    urn = reference.rsplit("::", 1)[0] if reference else ""
    provider = by_urn.get(urn)
    if provider is None:
        return None
    props = unknown_checking_proxy(copy.deepcopy(provider.inputs))
    return PolicyProviderResource(provider.type, props, provider.urn, provider.name)


def _policy_resources(graph: Graph) -> list[PolicyResource]:
    """The graph's resources as the engine hands them to policies, parents and dependencies set."""
    by_urn = {r.urn: r for r in graph.resources}
    out = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(copy.deepcopy(r.inputs)),
            r.urn,
            r.name,
            _options(r),
            _provider(r, by_urn),
            None,
            [],
            {},
        )
        for r in graph.resources
    }
    for r in graph.resources:
        resource = out[r.urn]
        resource.parent = out.get(r.parent)
        resource.dependencies = [out[d] for d in r.options.get("depends_on") or [] if d in out]
    return list(out.values())


def evaluate(
    graph: Graph,
    stack: str | None = None,
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
) -> list[Violation]:
    """Run every policy on a synthesized graph the way the engine would, honouring `config`.

    `config` is a pack config (see `resolve_config`); `stack` defaults to the graph's stack.
    Raises PolicyConfigError for a config that does not fit the policies' schemas.
    """
    resolved = resolve_config(config)
    tags = dict(stack_tags or {})
    resources = _policy_resources(graph)
    violations: list[Violation] = []
    token = STACK.set(stack if stack is not None else graph.stack)
    try:
        for policy in _POLICIES:
            level, settings = resolved[policy.name]
            if level != "disabled":
                # As the engine does: a violation a remediation did not fix counts as mandatory.
                shown = "mandatory" if level == "remediate" else level
                _run_policy(policy, resources, settings, tags, shown, violations)
    finally:
        STACK.reset(token)
    return violations


def _run_policy(
    policy: MsopsPolicy,
    resources: list[PolicyResource],
    settings: dict[str, Any],
    tags: dict[str, str],
    level: str,
    out: list[Violation],
) -> None:
    if isinstance(policy, StackValidationPolicy):
        _run(policy, StackValidationArgs(resources, settings, tags), level, "", out)
        return
    for res in resources:
        args = ResourceValidationArgs(
            res.resource_type, res.props, res.urn, res.name, res.opts, res.provider, settings, tags
        )
        _run(policy, args, level, res.urn, out)


def _run(
    policy: MsopsPolicy, args: Any, level: str, default_urn: str, out: list[Violation]
) -> None:
    def report(message: str, urn: str | None = None) -> None:
        # A resource policy's violation is always about the resource under validation.
        where = default_urn if default_urn else (urn or "")
        out.append(Violation(policy.name, level, where, message))

    try:
        result = policy.validate(args, report)
        if isawaitable(result):
            raise TypeError(f"policy {policy.name} is async; evaluate runs synchronous rules only")
    except UnknownValueError as exc:
        # The engine reports a rule that meets an unknown value as advisory, not as a pass.
        out.append(
            Violation(
                policy.name,
                "advisory",
                default_urn,
                f"can't run policy {policy.name!r} during preview: {exc.message}",
            )
        )
