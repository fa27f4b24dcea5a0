"""Databases: their storage survives a delete, a replacement or a rename."""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, Severity

from components.vocabulary import LABEL_DATABASE, LABEL_ROLE, ROLE_DATABASE

from .base import Problem, ResourcePolicy, Settings, schema
from .view import DOCKER_VOLUME, K8S_PVC, K8S_STATEFULSET, docker_labels, get, items


def _volume(args: ResourceValidationArgs) -> Iterator[Problem]:
    labels = docker_labels(args.props.get("labels"))
    is_database = LABEL_DATABASE in labels or labels.get(LABEL_ROLE) == ROLE_DATABASE
    if is_database and not args.opts.protect:
        yield Problem(
            "database volume is not protected",
            "create the volume with ResourceOptions(protect=True, retain_on_delete=True); "
            "pulumi-policy shows policies `protect` but not `retainOnDelete`, so protect is "
            "what this policy checks.",
        )


def _statefulset(args: ResourceValidationArgs) -> Iterator[Problem]:
    claims = items(get(args.props, "spec", "volumeClaimTemplates"))
    when_deleted = get(args.props, "spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted")
    # Kubernetes' default is Retain; only an explicit Delete throws the data away.
    if claims and when_deleted == "Delete":
        yield Problem(
            "StatefulSet deletes its PersistentVolumeClaims with it "
            "(persistentVolumeClaimRetentionPolicy.whenDeleted: Delete)",
            "set spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Retain.",
        )


def _claim(args: ResourceValidationArgs) -> Iterator[Problem]:
    if not args.opts.protect:
        yield Problem(
            "PersistentVolumeClaim is not protected",
            "create it with ResourceOptions(protect=True, retain_on_delete=True), or let "
            "a StatefulSet's volumeClaimTemplates own it.",
        )


_BY_TYPE = {DOCKER_VOLUME: _volume, K8S_STATEFULSET: _statefulset, K8S_PVC: _claim}


def storage_at_risk(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Database storage that a delete, a replacement or a rename would throw away."""
    yield from _BY_TYPE[args.resource_type](args)


DATABASE_STORAGE_RETAINED = ResourcePolicy(
    name="database-storage-retained",
    description="Database storage survives a delete: volumes are protected and "
    "StatefulSets retain their claims.",
    why="deleting or replacing the resource would delete the database's data with it, and a "
    "`pulumi destroy` or a rename cannot be undone.",
    check=storage_at_risk,
    applies_to=_BY_TYPE,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    config_schema=schema(),
    remediation_steps="Protect database volumes; keep whenDeleted: Retain on StatefulSets.",
)
