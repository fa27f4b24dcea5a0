"""Platform: everything one stack owns, built by the backend its config names."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pulumi

from components import plan as plans
from components import spec as specs
from components.plan import rollout as rollouts
from components.plan.builder import migrate_down_problems
from components.plan.model import Workload
from components.secrets import StackSecrets, config_secret_keys
from components.vocabulary import MIGRATE_DOWN_ENV

# Each backend's translation and components, imported lazily: a docker stack never pays for
# importing pulumi_kubernetes.
BACKENDS = {
    "docker": ("components.backends.docker", "DockerPlatform"),
    "swarm": ("components.backends.swarm", "SwarmPlatform"),
    "kubernetes": ("components.backends.kubernetes", "KubernetesPlatform"),
}


class InvalidConfig(pulumi.RunError):
    """A config error as Pulumi reports it (a plain message, no traceback), with its problems."""

    def __init__(self, error: specs.ConfigError) -> None:
        super().__init__(str(error))
        self.stack = error.stack
        self.problems = error.problems


def backend_module(backend: str, part: str) -> ModuleType:
    """`translate` or `component` of a backend."""
    package = BACKENDS[backend][0]
    if package.startswith("components.backends."):
        return importlib.import_module(f"{package}.{part}")
    return importlib.import_module(package)


def requested_down(environ: Mapping[str, str]) -> dict[str, int]:
    """The down step `msops rollback --migrate-down` asks for ({service: version}), or {}.

    It comes through the environment, never the config: the stack file keeps the config that
    is deployed, and this update runs that config's image with its `down` command.
    """
    text = environ.get(MIGRATE_DOWN_ENV, "")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    valid = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    )
    if not valid:
        raise specs.ConfigError(
            pulumi.get_stack(),
            [f"{MIGRATE_DOWN_ENV}: {text!r} is not a JSON object of service: version; unset it"],
        )
    return dict(value)


def load_config() -> tuple[specs.StackConfig, plans.StackPlan]:
    """Validate this stack's `msops:*` config and plan it, or stop with every problem listed.

    Runs before any resource is registered, so a bad config touches nothing.
    """
    values: dict[str, Any] = {
        **pulumi.runtime.config.get_config_env(),
        **pulumi.runtime.config.CONFIG.get(),
    }
    stack = pulumi.get_stack()
    try:
        secure = specs.keys_secure(config_secret_keys(values))
        config = specs.load_secured(specs.raw_config(values), stack, secure)
        try:
            states = rollouts.decode(os.environ.get(rollouts.ENV_VAR))
        except rollouts.RolloutStateError as exc:
            raise specs.ConfigError(stack, [str(exc)]) from None
        down_to = requested_down(os.environ)
        if down_problems := migrate_down_problems(config, down_to):
            raise specs.ConfigError(stack, down_problems)
        plan = plans.build(
            config, stack=stack, project=pulumi.get_project(), rollout=states, down_to=down_to
        )
        # A backend may add rules of its own (e.g. names that clash on a docker network).
        translate = backend_module(config.backend, "translate")
        problems: list[str] = getattr(translate, "config_problems", lambda _: [])(
            plan if translate.__name__.endswith(".translate") else config
        )
        if problems:
            raise specs.ConfigError(stack, problems)
    except specs.ConfigError as exc:
        raise InvalidConfig(exc) from None
    return config, plan


class Platform(pulumi.ComponentResource):
    """The stack's root component; its backend component owns every other resource."""

    outputs: dict[str, pulumi.Output[Any]]

    def __init__(
        self,
        name: str,
        config: specs.StackConfig,
        plan: plans.StackPlan,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:index:Platform", name, None, opts)
        secrets = StackSecrets.create(config, plan, parent=self)
        backend_cls = getattr(backend_module(plan.backend, "component"), BACKENDS[plan.backend][1])
        child = pulumi.ResourceOptions(parent=self)
        if BACKENDS[plan.backend][0].startswith("components.backends."):
            backend = backend_cls(name, plan, secrets, opts=child)
        else:
            backend = backend_cls(name, config, secrets, opts=child)
        digests = getattr(backend, "digests", {})
        self.outputs = {
            "backend": pulumi.Output.from_input(plan.backend),
            "services": pulumi.Output.from_input(
                {
                    w.name: service_output(w, backend.urls.get(w.name), digests.get(w.name))
                    for w in plan.workloads
                }
            ),
            "prometheusUrl": pulumi.Output.from_input(backend.prometheus_url),
            "grafanaUrl": pulumi.Output.from_input(backend.grafana_url),
        }
        # Generated where msops runs Grafana itself (docker, swarm); read it with
        # `pulumi stack output grafanaAdminPassword --show-secrets`.
        admin_password = getattr(backend, "grafana_admin_password", None)
        if admin_password is not None:
            self.outputs["grafanaAdminPassword"] = pulumi.Output.secret(admin_password)
        self.register_outputs(self.outputs)


def service_output(workload: Workload, url: Any, digest: Any = None) -> dict[str, Any]:
    """What a release records of a service; a canary step also records its canary, and
    `schemaVersion`, with migrations, is the schema its database is at after this update
    (the rollback rules read it). `digest` is what the image resolved to (`sha256:...`, None
    where the provider reports none); msops carries it into history (msops.releases)."""
    out: dict[str, Any] = {
        "image": workload.image,
        "replicas": workload.replicas,
        "url": url,
        "digest": digest,
    }
    if workload.canary is not None:
        out["canary"] = {
            "image": workload.canary.image,
            "replicas": workload.canary.replicas,
            "weight": workload.canary_weight,
            "step": workload.canary_step,
        }
    if workload.migration is not None:
        out["schemaVersion"] = workload.migration.target_version
    return out


def run() -> None:
    """The whole program: what `pulumi up` and the offline synth both execute."""
    config, plan = load_config()
    platform = Platform(pulumi.get_stack(), config, plan)
    for key, value in platform.outputs.items():
        pulumi.export(key, value)
