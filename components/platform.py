"""Platform: everything one stack owns, built by the backend its config names."""

from __future__ import annotations

import importlib
from typing import Any

import pulumi

from components import spec as specs
from components.secrets import StackSecrets

# Imported lazily, so a docker stack never pays for importing pulumi_kubernetes.
BACKENDS = {
    "docker": "components.docker:DockerPlatform",
    "swarm": "components.swarm:SwarmPlatform",
    "kubernetes": "components.kubernetes:KubernetesPlatform",
}


def load_config() -> specs.StackConfig:
    """Validate this stack's `msops:*` config, or stop with every problem listed."""
    values: dict[str, Any] = {
        **pulumi.runtime.config.get_config_env(),
        **pulumi.runtime.config.CONFIG.get(),
    }
    try:
        return specs.load(specs.raw_config(values), pulumi.get_stack())
    except specs.ConfigError as exc:
        # RunError prints as a plain message in `pulumi preview`, with no traceback.
        raise pulumi.RunError(str(exc)) from None


class Platform(pulumi.ComponentResource):
    """The stack's root component; its backend component owns every other resource."""

    outputs: dict[str, pulumi.Output[Any]]

    def __init__(
        self, name: str, spec: specs.StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("msops:index:Platform", name, None, opts)
        secrets = StackSecrets.create(spec, parent=self)
        module_name, class_name = BACKENDS[spec.backend].split(":")
        backend_cls = getattr(importlib.import_module(module_name), class_name)
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
        self.register_outputs(self.outputs)


def run() -> None:
    """The whole program: what `pulumi up` and the offline synth both execute."""
    spec = load_config()
    platform = Platform(pulumi.get_stack(), spec)
    for key, value in platform.outputs.items():
        pulumi.export(key, value)
