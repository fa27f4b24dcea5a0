"""What a render of the kubernetes backend for GitOps needs beyond the synthesized manifests:
each Secret's key names, and the placeholder a Secret carries instead of its values.

The synth masks a Secret's whole `stringData` (pulumi-kubernetes marks it secret), so the keys
come from the translator itself, called with empty values: the same names `msops up` writes.
"""

from __future__ import annotations

from typing import Any, Literal

from components.backends.kubernetes import translate
from components.plan import model

SecretsAs = Literal["placeholder", "omit"]
# On a placeholder Secret, so that a person or a policy can tell it from a real one.
PLACEHOLDER_ANNOTATION = "msops.dev/placeholder"
DOCS = "docs/kubernetes.md#secrets-in-a-render"


def secret_keys(plan: model.StackPlan) -> dict[str, tuple[str, ...]]:
    """Every Secret the stack creates, by name, with its keys in the order msops writes them."""
    specs = [
        translate.env_secret(plan, w, namespace=None, values=dict.fromkeys(w.secret_vars, ""))
        for w in plan.workloads
        if w.secret_vars
    ]
    specs += [
        translate.postgres_secret(plan, db, namespace=None, password="") for db in plan.databases
    ]
    mon = plan.monitoring
    if translate.installs_stack(plan) and mon is not None and mon.grafana is not None:
        specs.append(
            translate.grafana_admin_secret(plan, component="render", namespace=None, password="")
        )
    return {s.args["metadata"]["name"]: tuple(s.args["string_data"]) for s in specs}


def placeholder(namespace: str, name: str, key: str) -> str:
    """What a placeholder Secret holds under `key`: where to set the real value."""
    return (
        f"msops-placeholder: set {key} of Secret {namespace}/{name} outside git "
        f"(see {DOCS}); msops render never writes a secret value"
    )


def placeholder_secret(manifest: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The Secret with its keys kept and every value a placeholder, marked as one."""
    metadata = dict(manifest.get("metadata") or {})
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        PLACEHOLDER_ANNOTATION: "true",
    }
    body = {k: v for k, v in manifest.items() if k not in ("data", "stringData", "metadata")}
    return {
        **body,
        "metadata": metadata,
        "stringData": {key: placeholder(namespace, name, key) for key in keys},
    }
