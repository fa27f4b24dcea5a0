"""database-storage-retained: on single resources, and on the committed stacks."""

from __future__ import annotations

from typing import Any

import pytest

from components.vocabulary import LABEL_DATABASE, LABEL_ROLE, ROLE_DATABASE
from policies.rules import database, view
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    STACKS,
    STATEFULSET,
    VOLUME,
    check,
    edit,
    on,
    one,
    show,
)

pytestmark = pytest.mark.timeout(120)

POLICY = database.DATABASE_STORAGE_RETAINED
PVC = view.K8S_PVC


def database_volume(**labels: str) -> dict[str, Any]:
    return {"name": "main-data", "labels": args.docker_labels(**{LABEL_DATABASE: "main", **labels})}


def statefulset(when_deleted: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
    if when_deleted is not None:
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": when_deleted}
    return {"metadata": {"name": "main"}, "spec": spec}


# --- single resources ----------------------------------------------------------------------------


def test_protected_database_volume_passes() -> None:
    args.passes(POLICY, args.resource_args(VOLUME, database_volume(), protect=True))


def test_unprotected_database_volume_fails() -> None:
    found = args.fails(POLICY, args.resource_args(VOLUME, database_volume()), "is not protected")
    assert "Fix: create the volume with ResourceOptions(protect=True" in found.message


def test_volume_with_the_database_role_counts_as_database_storage() -> None:
    props = {"labels": args.docker_labels(**{LABEL_ROLE: ROLE_DATABASE})}
    args.fails(POLICY, args.resource_args(VOLUME, props), "database volume is not protected")


def test_unprotected_volume_of_no_database_passes() -> None:
    props = {"labels": args.docker_labels(**{LABEL_ROLE: "monitoring"})}
    args.passes(POLICY, args.resource_args(VOLUME, props))


@pytest.mark.parametrize("when_deleted", [None, "Retain"])
def test_statefulset_that_keeps_its_claims_passes(when_deleted: str | None) -> None:
    args.passes(POLICY, args.resource_args(STATEFULSET, statefulset(when_deleted)))


def test_statefulset_that_deletes_its_claims_fails() -> None:
    resource = args.resource_args(STATEFULSET, statefulset("Delete"))
    found = args.fails(POLICY, resource, "whenDeleted: Delete")
    assert "Fix: set spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Retain" in found.message


def test_unprotected_claim_fails() -> None:
    args.fails(POLICY, args.resource_args(PVC, {"metadata": {"name": "data"}}), "Claim is not")


def test_protected_claim_passes() -> None:
    args.passes(POLICY, args.resource_args(PVC, {"metadata": {"name": "data"}}, protect=True))


# --- committed stacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_database_storage_that_is_kept_passes(stack: str, stack_graph: Any) -> None:
    found = check(stack_graph(stack), "database-storage-retained")
    assert found == [], show(found)


@pytest.mark.parametrize(("stack", "name"), [("dev", "dev-main-data"), ("staging", "main-data")])
def test_unprotected_database_volume_is_a_violation(
    stack: str, name: str, stack_graph: Any
) -> None:
    """The backends always protect the volume, so the graph's options are edited."""
    res = one(stack_graph(stack), VOLUME, name)
    graph = edit(stack_graph(stack), res.urn, protect=False)
    found = on(check(graph, "database-storage-retained"), res.urn)
    assert len(found) == 1 and "database volume is not protected" in found[0].message, show(found)
    assert "delete the database's data" in found[0].message
    assert "protect=True" in found[0].message


def test_statefulset_deleting_its_claims_is_a_violation(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), STATEFULSET, "main")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] = "Delete"

    found = on(
        check(edit(stack_graph("prod"), res.urn, change), "database-storage-retained"), res.urn
    )
    assert len(found) == 1 and "whenDeleted: Retain" in found[0].message, show(found)


def test_metrics_volume_is_not_database_storage(stack_graph: Any) -> None:
    graph = stack_graph("dev")
    res = one(graph, VOLUME, "dev-monitoring-prometheus-data")
    assert (
        on(check(edit(graph, res.urn, protect=False), "database-storage-retained"), res.urn) == []
    )
