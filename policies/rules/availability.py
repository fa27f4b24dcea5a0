"""Availability: prod services run several replicas, and a node drain cannot evict them all."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import EnforcementLevel, PolicyResource, Severity, StackValidationArgs

from .base import Problem, Settings, StackPolicy, current_stack, positive_int, regex, schema
from .view import K8S_DEPLOYMENT, K8S_HPA, K8S_PDB, get, k8s_name, namespace, number, selects
from .workloads import hpa_for, of_type, pod_labels, replica_groups

# A stack tag that names the environment explicitly; when present it decides "is this prod".
ENVIRONMENT_TAG = "msops:environment"

# --- prod-min-replicas ----------------------------------------------------------------------------


def _prod_reason(args: StackValidationArgs, cfg: Mapping[str, Any]) -> str | None:
    """Why this stack counts as prod, or None. An environment tag, when set, decides alone."""
    prod = re.compile(str(cfg["prodStackPattern"]))
    tag = args.stack_tags.get(ENVIRONMENT_TAG)
    if tag is not None:
        return f"its {ENVIRONMENT_TAG} tag {tag!r} matches" if prod.search(tag) else None
    stack = current_stack()
    if stack is not None and prod.search(stack):
        return f"stack {stack!r} matches"
    return None


def thin_prod_services(args: StackValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """In a prod stack, every service with fewer than `minReplicas` replicas (HPA: its minimum)."""
    reason = _prod_reason(args, cfg)
    if reason is None:
        return
    minimum = int(number(cfg["minReplicas"]) or 0)
    for service, res, count, how in replica_groups(args):
        if count < minimum:
            yield Problem(
                f"service {service!r} runs {count} replica(s) ({how}) in a prod stack "
                f"({reason} prodStackPattern {cfg['prodStackPattern']!r}); "
                f"prod needs at least {minimum}",
                f"set msops:services.{service}.replicas (or autoscaling.min) to {minimum} or more.",
                resource=res,
            )


PROD_MIN_REPLICAS = StackPolicy(
    name="prod-min-replicas",
    description="In a prod stack every service runs at least minReplicas replicas.",
    why="with a single replica, every deploy, node drain or crash is an outage of the whole "
    "service.",
    check=thin_prod_services,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=schema(
        minReplicas=positive_int(2, "Fewest replicas (or HPA minReplicas) a prod service may run."),
        prodStackPattern=regex(
            "^prod",
            "A stack whose name matches this regular expression is prod, unless the stack "
            f"has a {ENVIRONMENT_TAG} tag, which is matched instead.",
        ),
    ),
    remediation_steps="Raise replicas (or autoscaling.min) to minReplicas.",
)

# --- pdb-required ---------------------------------------------------------------------------------


def _most_replicas(deployment: PolicyResource, hpas: list[PolicyResource]) -> float:
    """The most replicas a Deployment can run: its HPA's maxReplicas, else spec.replicas."""
    hpa = hpa_for(deployment, hpas)
    source = hpa.props if hpa is not None else deployment.props
    most = number(get(source, "spec", "maxReplicas" if hpa is not None else "replicas"))
    return 1 if most is None else most


def unbudgeted_deployments(args: StackValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every Deployment that can run `minReplicas` or more with no PodDisruptionBudget over it."""
    threshold = int(number(cfg["minReplicas"]) or 0)
    pdbs, hpas = of_type(args, K8S_PDB), of_type(args, K8S_HPA)
    for res in of_type(args, K8S_DEPLOYMENT):
        most = _most_replicas(res, hpas)
        if most < threshold:
            continue
        labels, where = pod_labels(res), namespace(res.props)
        if not any(
            namespace(p.props) == where and selects(get(p.props, "spec", "selector"), labels)
            for p in pdbs
        ):
            yield Problem(
                f"Deployment {k8s_name(res.props) or res.name!r} can run {int(most)} "
                "replicas but no PodDisruptionBudget selects its pods",
                "add a PodDisruptionBudget with maxUnavailable: 1 whose selector matches the "
                "pod template's labels (the msops kubernetes backend creates one for every "
                "service with 2 or more replicas).",
                resource=res,
            )


PDB_REQUIRED = StackPolicy(
    name="pdb-required",
    description="Every Deployment that can run 2 or more replicas has a PodDisruptionBudget.",
    why="without a PodDisruptionBudget a node drain or cluster upgrade may evict every replica "
    "of the Deployment at once.",
    check=unbudgeted_deployments,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.MEDIUM,
    config_schema=schema(
        minReplicas=positive_int(2, "A Deployment that can run this many replicas needs a PDB."),
    ),
    remediation_steps="Add a PodDisruptionBudget selecting the Deployment's pods.",
)
