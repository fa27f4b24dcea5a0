"""Availability policies: prod-min-replicas and pdb-required."""

from __future__ import annotations

from typing import Any

import pulumi_policy
import pytest
from pulumi_policy import PolicyResource

from components.vocabulary import WAIVER_PREFIX
from policies import rules
from policies.rules import availability
from tests.graphs import stack_values
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    CONTAINER,
    DEPLOYMENT,
    HPA,
    PDB,
    SWARM_SERVICE,
    check,
    drop,
    edit,
    one,
    show,
    single_replica,
    synth_config,
)

pytestmark = pytest.mark.timeout(120)

MIN_REPLICAS = availability.PROD_MIN_REPLICAS
PDB_REQUIRED = availability.PDB_REQUIRED
PROD = {availability.ENVIRONMENT_TAG: "prod"}


def hpa(minimum: int, maximum: int, target: str = "web") -> PolicyResource:
    return args.resource(
        HPA,
        {
            "metadata": {"name": target, "namespace": "apps"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": minimum,
                "maxReplicas": maximum,
            },
        },
        name=target,
    )


def pdb(namespace: str = "apps", selector: dict[str, Any] | None = None) -> PolicyResource:
    props = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"maxUnavailable": 1, "selector": selector or {"matchLabels": args.POD_LABELS}},
    }
    return args.resource(PDB, props)


# --- prod-min-replicas: single resources ---------------------------------------------------------


def test_prod_deployment_with_enough_replicas_passes() -> None:
    stack = args.stack_args([args.resource(DEPLOYMENT, args.deployment(replicas=2))], tags=PROD)
    args.passes(MIN_REPLICAS, stack)


def test_prod_deployment_with_one_replica_fails_on_the_deployment() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=1))
    found = args.fails(
        MIN_REPLICAS, args.stack_args([deployment], tags=PROD), "runs 1 replica(s) (spec.replicas)"
    )
    assert found.urn == deployment.urn, found
    assert "Fix: set msops:services.web.replicas (or autoscaling.min) to 2" in found.message


def test_prod_swarm_service_with_one_replica_fails() -> None:
    props = args.swarm_service()
    props["mode"] = {"replicated": {"replicas": 1}}
    stack = args.stack_args([args.resource(SWARM_SERVICE, props)], tags=PROD)
    args.fails(MIN_REPLICAS, stack, "service 'web' runs 1 replica(s) (mode.replicated.replicas)")


def test_prod_docker_service_with_one_replica_container_fails() -> None:
    stack = args.stack_args([args.resource(CONTAINER, args.docker_container())], tags=PROD)
    args.fails(MIN_REPLICAS, stack, "runs 1 replica(s) (1 replica container(s))")


def test_global_swarm_service_is_not_counted() -> None:
    props = args.swarm_service()
    props["mode"] = {"global": True}
    args.passes(MIN_REPLICAS, args.stack_args([args.resource(SWARM_SERVICE, props)], tags=PROD))


def test_hpa_minimum_is_what_counts() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=None))
    stack = args.stack_args([deployment, hpa(1, 4)], tags=PROD)
    args.fails(MIN_REPLICAS, stack, "(its HorizontalPodAutoscaler's minReplicas)")


def test_non_prod_environment_tag_allows_one_replica() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=1))
    tags = {availability.ENVIRONMENT_TAG: "dev"}
    args.passes(MIN_REPLICAS, args.stack_args([deployment], tags=tags))


def test_min_replicas_config_raises_the_bar() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=3))
    stack = args.stack_args([deployment], config={"minReplicas": 4}, tags=PROD)
    args.fails(MIN_REPLICAS, stack, "prod needs at least 4")


def test_waiver_on_the_deployment_exempts_it() -> None:
    props = args.deployment(replicas=1)
    props["metadata"]["annotations"] = {f"{WAIVER_PREFIX}prod-min-replicas": "a singleton"}
    stack = args.stack_args([args.resource(DEPLOYMENT, props)], tags=PROD)
    args.passes(MIN_REPLICAS, stack)


# --- prod-min-replicas: committed stacks ---------------------------------------------------------


def test_prod_with_enough_replicas_passes(stack_graph: Any) -> None:
    found = check(stack_graph("prod"), "prod-min-replicas")
    assert found == [], show(found)


@pytest.mark.parametrize(
    ("base", "stack", "type_"),
    [
        ("dev", "prod-local", CONTAINER),
        ("staging", "prod-swarm", SWARM_SERVICE),
        ("prod", "prod", DEPLOYMENT),
    ],
)
def test_prod_with_one_replica_is_a_violation(base: str, stack: str, type_: str) -> None:
    graph = synth_config(single_replica(base), stack)
    found = check(graph, "prod-min-replicas")
    assert len(found) == 1, show(found)
    assert graph.by_urn(found[0].urn).type == type_
    assert "service 'web' runs 1 replica(s)" in found[0].message
    assert "every deploy, node drain or crash is an outage" in found[0].message
    assert "set msops:services.web.replicas (or autoscaling.min) to 2" in found[0].message


def test_prod_hpa_minimum_is_what_counts() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["autoscaling"] = {"min": 1, "max": 4, "targetCpu": 70}
    found = check(synth_config(values, "prod"), "prod-min-replicas")
    assert len(found) == 1 and "HorizontalPodAutoscaler's minReplicas" in found[0].message, show(
        found
    )


def test_non_prod_stack_may_run_one_replica() -> None:
    found = check(synth_config(single_replica("prod"), "preview"), "prod-min-replicas")
    assert found == [], show(found)


def test_min_replicas_config_changes_the_outcome(stack_graph: Any) -> None:
    config = {"prod-min-replicas": {"minReplicas": 4}}
    found = check(stack_graph("prod"), "prod-min-replicas", config=config)
    # One for each of prod's services, web and api, both at 3.
    assert len(found) == 2, show(found)
    assert all("prod needs at least 4" in v.message for v in found), show(found)


def test_engine_style_float_min_replicas_is_accepted(stack_graph: Any) -> None:
    # The engine hands policies config numbers as floats (protobuf Struct).
    config = {"prod-min-replicas": {"minReplicas": 4.0}}
    assert len(check(stack_graph("prod"), "prod-min-replicas", config=config)) == 2


def test_prod_stack_pattern_config_changes_the_outcome() -> None:
    graph = synth_config(single_replica("prod"), "prod")
    config = {"prod-min-replicas": {"prodStackPattern": "^production$"}}
    found = check(graph, "prod-min-replicas", config=config)
    assert found == [], show(found)


def test_environment_tag_marks_a_stack_prod() -> None:
    graph = synth_config(single_replica("prod"), "blue")
    tags = {rules.ENVIRONMENT_TAG: "prod"}
    assert len(check(graph, "prod-min-replicas", stack_tags=tags)) == 1


def test_environment_tag_overrides_the_stack_name() -> None:
    graph = synth_config(single_replica("prod"), "prod")
    tags = {rules.ENVIRONMENT_TAG: "test"}
    assert check(graph, "prod-min-replicas", stack_tags=tags) == []


def test_engine_stack_name_comes_from_pulumi_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pulumi preview` the engine names the stack in PULUMI_STACK, not through evaluate."""
    graph = synth_config(single_replica("prod"), "anything")
    options = pulumi_policy.PolicyResourceOptions(
        False, [], None, [], pulumi_policy.PolicyCustomTimeouts(0, 0, 0), []
    )
    resources = [
        pulumi_policy.PolicyResource(r.type, r.inputs, r.urn, r.name, options, None, None, [], {})
        for r in graph.resources
    ]
    reported: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message)

    monkeypatch.setenv("PULUMI_STACK", "prod")
    availability.PROD_MIN_REPLICAS.validate(
        pulumi_policy.StackValidationArgs(resources, {}), report
    )
    assert len(reported) == 1, reported


# --- pdb-required: single resources --------------------------------------------------------------


def test_deployment_with_a_matching_pdb_passes() -> None:
    stack = args.stack_args([args.resource(DEPLOYMENT, args.deployment(replicas=3)), pdb()])
    args.passes(PDB_REQUIRED, stack)


def test_deployment_without_a_pdb_fails_on_the_deployment() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=3))
    found = args.fails(PDB_REQUIRED, args.stack_args([deployment]), "can run 3 replicas")
    assert found.urn == deployment.urn, found
    assert "Fix: add a PodDisruptionBudget with maxUnavailable: 1" in found.message


def test_lone_single_replica_deployment_needs_no_pdb() -> None:
    args.passes(
        PDB_REQUIRED, args.stack_args([args.resource(DEPLOYMENT, args.deployment(replicas=1))])
    )


def test_pdb_in_another_namespace_does_not_cover() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=3))
    args.fails(PDB_REQUIRED, args.stack_args([deployment, pdb(namespace="other")]), "no Pod")


def test_hpa_maximum_is_what_counts() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=None))
    args.fails(PDB_REQUIRED, args.stack_args([deployment, hpa(1, 4)]), "can run 4 replicas")


def test_pdb_selecting_by_expression_covers() -> None:
    selector = {
        "matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["web", "api"]}
        ]
    }
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=3))
    args.passes(PDB_REQUIRED, args.stack_args([deployment, pdb(selector=selector)]))


def test_pdb_min_replicas_config_raises_the_threshold() -> None:
    deployment = args.resource(DEPLOYMENT, args.deployment(replicas=3))
    args.passes(PDB_REQUIRED, args.stack_args([deployment], config={"minReplicas": 4}))


# --- pdb-required: committed stacks ---------------------------------------------------------------


def test_deployment_with_a_pdb_passes(stack_graph: Any) -> None:
    found = check(stack_graph("prod"), "pdb-required")
    assert found == [], show(found)


def test_deployment_without_a_pdb_is_a_violation(stack_graph: Any) -> None:
    """The backend always adds a PDB to a scalable service, so the graph's PDB is dropped."""
    graph = stack_graph("prod")
    deployment = one(graph, DEPLOYMENT, "web")
    found = check(drop(graph, one(graph, PDB, "web").urn), "pdb-required")
    assert len(found) == 1 and found[0].urn == deployment.urn, show(found)
    assert "can run 10 replicas but no PodDisruptionBudget selects its pods" in found[0].message
    assert "evict every replica" in found[0].message
    assert "add a PodDisruptionBudget with maxUnavailable: 1" in found[0].message


def test_pdb_that_selects_other_pods_is_a_violation(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    pdb = one(graph, PDB, "web")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"

    assert len(check(edit(graph, pdb.urn, change), "pdb-required")) == 1


def test_single_replica_deployment_needs_no_pdb() -> None:
    found = check(synth_config(single_replica("prod"), "preview"), "pdb-required")
    assert found == [], show(found)
