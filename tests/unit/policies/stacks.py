"""Whole-stack helpers: committed stacks synthesized, edited and checked by the whole pack."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from components.vocabulary import LABEL_ROLE, LABEL_SERVICE, ROLE_REPLICA
from msops import synth
from policies import rules
from policies.rules import view
from tests.graphs import labels, stack_values, synth_values

STACKS = ("dev", "staging", "prod")

CONTAINER = view.DOCKER_CONTAINER
SWARM_SERVICE = view.DOCKER_SERVICE
VOLUME = view.DOCKER_VOLUME
REMOTE_IMAGE = view.DOCKER_REMOTE_IMAGE
DEPLOYMENT = view.K8S_DEPLOYMENT
STATEFULSET = view.K8S_STATEFULSET
K8S_SERVICE = view.K8S_SERVICE
PDB = view.K8S_PDB
HPA = view.K8S_HPA


@functools.cache
def _synth_cached(key: str, stack: str) -> synth.Graph:
    return synth_values(json.loads(key), stack)


def synth_config(values: dict[str, Any], stack: str) -> synth.Graph:
    """Synthesize modified stack values once per distinct config (graphs are not mutated)."""
    return _synth_cached(json.dumps(values, sort_keys=True), stack)


def without_database(stack: str) -> dict[str, Any]:
    """A committed stack's values with no database, so only the service's own containers run."""
    values = stack_values(stack)
    values.pop("msops:databases", None)
    for svc in values["msops:services"].values():
        svc.pop("database", None)
        # Migrations need a database.
        svc.pop("migrations", None)
    return values


def docker_replicas(graph: synth.Graph, service: str = "web") -> list[synth.Resource]:
    return [
        r
        for r in graph.of_type(CONTAINER)
        if labels(r).get(LABEL_ROLE) == ROLE_REPLICA and labels(r).get(LABEL_SERVICE) == service
    ]


def one(graph: synth.Graph, type_: str, name: str) -> synth.Resource:
    found = [r for r in graph.of_type(type_) if r.name == name]
    assert len(found) == 1, f"expected one {type_} named {name!r} in {graph.stack}; got {found}"
    return found[0]


def edit(
    graph: synth.Graph,
    urn: str,
    change: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> synth.Graph:
    """A copy of `graph` in which one resource's inputs (and options) are changed."""
    resources = []
    for res in graph.resources:
        if res.urn == urn:
            inputs = copy.deepcopy(res.inputs)
            if change is not None:
                change(inputs)
            res = dataclasses.replace(res, inputs=inputs, options={**res.options, **options})
        resources.append(res)
    return dataclasses.replace(graph, resources=resources)


def drop(graph: synth.Graph, urn: str) -> synth.Graph:
    return dataclasses.replace(graph, resources=[r for r in graph.resources if r.urn != urn])


def k8s_container(inputs: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = inputs["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name in (None, c["name"]))


def add_docker_label(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        inputs.setdefault("labels", []).append({"label": key, "value": value})

    return change


def annotate(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        inputs["metadata"].setdefault("annotations", {})[key] = value

    return change


def of_policy(violations: Iterable[rules.Violation], policy: str) -> list[rules.Violation]:
    return [v for v in violations if v.policy == policy]


def check(graph: synth.Graph, policy: str, **kwargs: Any) -> list[rules.Violation]:
    return of_policy(rules.evaluate(graph, **kwargs), policy)


def on(violations: Iterable[rules.Violation], urn: str) -> list[rules.Violation]:
    return [v for v in violations if v.urn == urn]


def show(violations: Iterable[rules.Violation]) -> str:
    return "\n".join(f"  [{v.level}] {v.policy} {v.urn}: {v.message}" for v in violations) or "  -"


# --- stack config variants ----------------------------------------------------------------------


def single_replica(stack: str) -> dict[str, Any]:
    values = stack_values(stack)
    web = values["msops:services"]["web"]
    web.pop("autoscaling", None)
    web["replicas"] = 1
    return values


def plain_token(stack: str) -> dict[str, Any]:
    # With its database: the service then has secret variables too (DATABASE_URL), which once
    # hid every variable of a docker container from the rule.
    values = stack_values(stack)
    values["msops:services"]["web"].setdefault("env", {})["API_TOKEN"] = "tok-plain-1234"
    return values


def secret_token(stack: str) -> dict[str, Any]:
    values = without_database(stack) if stack == "dev" else stack_values(stack)
    values["msops:secrets"] = {"api": "tok-secret-1234"}
    values["msops:services"]["web"]["secretEnv"] = {"API_TOKEN": "api"}
    return values


def bad_stack_values() -> dict[str, Any]:
    """A docker stack named prod that breaks three mandatory policies through its config alone."""
    return {
        "msops:backend": "docker",
        "msops:target": {"bindAddress": "0.0.0.0"},
        "msops:services": {
            "web": {
                "image": "ghcr.io/msops/demo:1.0.0",
                "replicas": 1,
                "env": {"API_TOKEN": "tok-plain-1234"},
                "lb": {"port": 8000},
            }
        },
        "msops:monitoring": {"enabled": False},
    }
