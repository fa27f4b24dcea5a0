"""Platform: everything one stack owns, built by the backend its config names."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pulumi

from components import spec as specs
from components.secrets import StackSecrets

# Imported lazily, so a docker stack never pays for importing pulumi_kubernetes.
BACKENDS = {
    "docker": ("components.docker", "DockerPlatform"),
    "swarm": ("components.swarm", "SwarmPlatform"),
    "kubernetes": ("components.kubernetes", "KubernetesPlatform"),
}


class InvalidConfig(pulumi.RunError):
    """A config error as Pulumi reports it (a plain message, no traceback), with its problems."""

    def __init__(self, error: specs.ConfigError) -> None:
        super().__init__(str(error))
        self.stack = error.stack
        self.problems = error.problems


def backend_module(spec: specs.StackConfig) -> ModuleType:
    return importlib.import_module(BACKENDS[spec.backend][0])


def load_config() -> specs.StackConfig:
    """Validate this stack's `msops:*` config, or stop with every problem listed.

    Runs before any resource is registered, so a bad config touches nothing.
    """
    values: dict[str, Any] = {
        **pulumi.runtime.config.get_config_env(),
        **pulumi.runtime.config.CONFIG.get(),
    }
    stack = pulumi.get_stack()
    try:
        spec = specs.load(specs.raw_config(values), stack)
        # A backend may add rules of its own (e.g. names that clash on a docker network).
        problems: list[str] = getattr(backend_module(spec), "config_problems", lambda _: [])(spec)
        if problems:
            raise specs.ConfigError(stack, problems)
    except specs.ConfigError as exc:
        raise InvalidConfig(exc) from None
    return spec


class Platform(pulumi.ComponentResource):
    """The stack's root component; its backend component owns every other resource."""

    outputs: dict[str, pulumi.Output[Any]]

    def __init__(
        self, name: str, spec: specs.StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("msops:index:Platform", name, None, opts)
        secrets = StackSecrets.create(spec, parent=self)
        backend_cls = getattr(backend_module(spec), BACKENDS[spec.backend][1])
        backend = backend_cls(name, spec, secrets, opts=pulumi.ResourceOptions(parent=self))
        self.outputs = {
            "backend": pulumi.Output.from_input(spec.backend),
            "services": pulumi.Output.from_input(
                {
                    svc_name: {
                        "image": svc.image,
                        "replicas": svc.desired_replicas,
                        "url": backend.urls.get(svc_name),
                    }
                    for svc_name, svc in spec.services.items()
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


def run() -> None:
    """The whole program: what `pulumi up` and the offline synth both execute."""
    spec = load_config()
    platform = Platform(pulumi.get_stack(), spec)
    for key, value in platform.outputs.items():
        pulumi.export(key, value)
