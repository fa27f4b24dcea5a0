"""Helpers for tests on synthesized graphs: stack config values to modify, and look-ups."""

from __future__ import annotations

import copy
from typing import Any

from msops import synth

# The keys that hold secret fields. A test plants known plain values in them, which the engine
# would hand the program marked secret (`pulumi config set --secret --path` marks the key).
SECRET_KEYS = ("msops:databases", "msops:secrets")


def stack_values(stack: str) -> dict[str, Any]:
    """A deep copy of a committed stack's config values (`msops:services` → dict), to modify."""
    values, _ = synth.config_from_file(stack)
    return copy.deepcopy(values)


def secret_keys(values: dict[str, Any]) -> list[str]:
    """The keys of `values` the engine would mark secret once their secrets are set properly."""
    return [k for k in SECRET_KEYS if k in values]


def synth_values(values: dict[str, Any], stack: str = "dev") -> synth.Graph:
    """Synthesize modified stack values, their secret keys marked as under the engine."""
    return synth.synth_config(values, stack=stack, secret_keys=secret_keys(values))


# The resource types the graph tests look services up by.
CONTAINER = "docker:index/container:Container"
SWARM_SERVICE = "docker:index/service:Service"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
K8S_SERVICE = "kubernetes:core/v1:Service"
JOB = "kubernetes:batch/v1:Job"
# The committed stack that runs on each backend.
STACK_OF = {"docker": "dev", "swarm": "staging", "kubernetes": "prod"}


def labels(res: synth.Resource) -> dict[str, Any]:
    """A docker resource's `labels` list as a dict."""
    return {item["label"]: item.get("value") for item in res.inputs.get("labels") or []}
