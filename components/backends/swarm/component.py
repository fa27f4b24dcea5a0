"""Swarm backend components: they register what `translate` describes, and nothing more."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.backends import common
from components.backends.common import Args, digest_of, grafana_admin_password
from components.backends.docker.component import (
    Images,
    child_options,
    envs,
    options,
    run_migration,
)
from components.backends.swarm import translate
from components.plan import model
from components.secrets import StackSecrets

Options = pulumi.ResourceOptions | None


def secret_b64(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """Base64 of a value for a docker.Secret, secret whatever the value was marked as."""
    encoded: pulumi.Output[str] = pulumi.Output.from_input(value).apply(translate.b64)
    return pulumi.Output.secret(encoded)


def register_configs(
    owner: pulumi.Resource, files: Sequence[tuple[Args, str]]
) -> list[dict[str, Any]]:
    """One ServiceConfig per file, and the mounts that put them at their paths."""
    mounts = []
    for spec, path in files:
        config = docker.ServiceConfig(spec.name, **spec.args, opts=options(spec, owner))
        mounts.append(translate.config_mount(config.id, config.name, path))
    return mounts


class SwarmService(pulumi.ComponentResource):
    """One microservice as a replicated Swarm service, updated in place task by task."""

    service_name: str
    url: str
    service: docker.Service
    # The one-off container that ran this release's migration, with migrations.
    migration: docker.Container | None

    def __init__(
        self,
        name: str,
        workload: model.Workload,
        *,
        plan: model.StackPlan,
        secrets: StackSecrets,
        network_id: pulumi.Input[str],
        public_host: str,
        images: Images,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: Options = None,
    ) -> None:
        super().__init__("msops:swarm:Service", name, None, opts)
        after = list(depends_on)
        self.migration, schema = None, None
        if workload.migration is not None:
            values = secrets.values(workload)
            self.migration, schema = self._migration(
                plan, workload, values, network_id, images, after
            )
            after.append(self.migration)
        # Every task of this release (a canary's too) waits on the migration.
        gate = (after, schema)
        self.service = self._service(workload, plan, secrets, network_id, gate)
        if workload.canary is not None:
            self._service(workload.canary, plan, secrets, network_id, gate)
        self.service_name = translate.swarm_name(plan, workload.name)
        self.url = translate.service_url(workload, public_host)
        self.register_outputs(
            {"serviceName": self.service_name, "url": self.url, "serviceId": self.service.id}
        )

    def _service(
        self,
        workload: model.Workload,
        plan: model.StackPlan,
        secrets: StackSecrets,
        network_id: pulumi.Input[str],
        gate: tuple[list[pulumi.Resource], pulumi.Output[str] | None],
    ) -> docker.Service:
        """The swarm service of one track (stable, or a canary), with its secret files."""
        values = secrets.values(workload)
        mounts = []
        for var in workload.secret_vars:
            spec = translate.service_secret(plan, workload, var, data=secret_b64(values[var]))
            secret = docker.Secret(spec.name, **spec.args, opts=options(spec, self))
            mounts.append(translate.service_secret_mount(workload, var, secret.id, secret.name))
        after, schema = gate
        spec = translate.service(
            plan,
            workload,
            network_id=network_id,
            env=translate.service_env(workload),
            secrets=mounts,
            schema=schema,
        )
        return docker.Service(spec.name, **spec.args, opts=options(spec, self, depends_on=after))

    def _migration(
        self,
        plan: model.StackPlan,
        workload: model.Workload,
        values: dict[str, pulumi.Output[str]],
        network_id: pulumi.Input[str],
        images: Images,
        after: list[pulumi.Resource],
    ) -> tuple[docker.Container, pulumi.Output[str]]:
        """The one-off migration container on the manager, and its result for the service."""
        image = images.pull(workload.image)
        spec = translate.migration(
            plan,
            workload,
            image=image.name,
            image_id=image.image_id,
            network_id=network_id,
            envs=envs(common.migration_env(workload)),
            uploads=common.secret_files(workload, values),
        )
        return run_migration(self, spec, workload, values, after)


class SwarmPostgres(pulumi.ComponentResource):
    """A Postgres database as a one-replica Swarm service pinned to one labelled node."""

    service_name: str
    host: str
    placement_label: str
    service: docker.Service
    volume: docker.Volume

    def __init__(
        self,
        name: str,
        db: model.Database,
        *,
        plan: model.StackPlan,
        password: pulumi.Input[str],
        network_id: pulumi.Input[str],
        opts: Options = None,
    ) -> None:
        super().__init__("msops:swarm:Postgres", name, None, opts)
        spec = translate.database_secret(plan, db, data=secret_b64(password))
        secret = docker.Secret(spec.name, **spec.args, opts=options(spec, self))
        spec = translate.database_volume(plan, db)
        self.volume = docker.Volume(spec.name, **spec.args, opts=options(spec, self))
        mount = translate.database_secret_mount(secret.id, secret.name)
        spec = translate.database(
            plan, db, network_id=network_id, volume_name=self.volume.name, secrets=[mount]
        )
        self.service = docker.Service(spec.name, **spec.args, opts=options(spec, self))
        self.service_name = spec.args["name"]
        self.host = db.host
        self.placement_label = db.placement_label
        self.register_outputs(
            {
                "serviceName": self.service_name,
                "host": self.host,
                "placementLabel": self.placement_label,
                "volume": self.volume.name,
            }
        )


class SwarmMonitoring(pulumi.ComponentResource):
    """Prometheus scraping every task through Swarm DNS, its alert rules, and Grafana."""

    prometheus_service_name: str
    grafana_admin_password: pulumi.Output[str] | None
    prometheus_url: str
    grafana_url: str | None

    def __init__(
        self,
        name: str,
        plan: model.StackPlan,
        *,
        network_id: pulumi.Input[str],
        public_host: str,
        opts: Options = None,
    ) -> None:
        super().__init__("msops:swarm:Monitoring", name, None, opts)
        spec = translate.prometheus_volume(plan, component=name)
        volume = docker.Volume(spec.name, **spec.args, opts=options(spec, self))
        spec = translate.prometheus(
            plan,
            component=name,
            network_id=network_id,
            configs=register_configs(self, translate.prometheus_configs(plan, component=name)),
            volume_name=volume.name,
        )
        docker.Service(spec.name, **spec.args, opts=options(spec, self))
        self.prometheus_service_name = spec.args["name"]
        self.prometheus_url, self.grafana_url = translate.monitoring_urls(plan, public_host)
        self.grafana_admin_password = None
        if plan.monitoring is not None and plan.monitoring.grafana is not None:
            self.grafana_admin_password = self._grafana(name, plan, network_id)
        self.register_outputs(
            {
                "prometheusServiceName": self.prometheus_service_name,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
                "grafanaAdminPassword": self.grafana_admin_password,
            }
        )

    def _grafana(
        self, name: str, plan: model.StackPlan, network_id: pulumi.Input[str]
    ) -> pulumi.Output[str]:
        """Grafana, and the admin password it reads from a Docker secret."""
        spec = grafana_admin_password(f"{name}-grafana-admin")
        generated = random.RandomPassword(spec.name, **spec.args, opts=options(spec, self))
        password: pulumi.Output[str] = pulumi.Output.secret(generated.result)
        spec = translate.grafana_admin_secret(plan, component=name, data=secret_b64(password))
        secret = docker.Secret(spec.name, **spec.args, opts=options(spec, self))
        spec = translate.grafana(
            plan,
            component=name,
            network_id=network_id,
            configs=register_configs(self, translate.grafana_configs(plan, component=name)),
            admin_secret_id=secret.id,
            admin_secret_name=secret.name,
        )
        docker.Service(spec.name, **spec.args, opts=options(spec, self))
        return password


class SwarmPlatform(pulumi.ComponentResource):
    """Everything a stack owns on a swarm: its overlay network, databases, services, monitoring."""

    urls: dict[str, str]
    digests: dict[str, pulumi.Output[str | None]]
    prometheus_url: str | None
    grafana_url: str | None
    grafana_admin_password: pulumi.Output[str] | None
    network: docker.Network
    services: dict[str, SwarmService]
    databases: dict[str, SwarmPostgres]
    monitoring: SwarmMonitoring | None

    def __init__(
        self, name: str, plan: model.StackPlan, secrets: StackSecrets, *, opts: Options = None
    ) -> None:
        super().__init__("msops:swarm:Platform", name, None, opts)
        host = translate.public_host(plan.target, os.environ)
        child = child_options(self, name, plan.target.docker_host)
        spec = translate.network(plan, component=name)
        self.network = docker.Network(spec.name, **spec.args, opts=child)

        self.databases = {
            db.name: SwarmPostgres(
                db.name,
                db,
                plan=plan,
                password=secrets.db_passwords[db.name],
                network_id=self.network.id,
                opts=child,
            )
            for db in plan.databases
        }
        # Pulled on the manager for what runs there rather than as a task: migrations.
        images = Images(child)
        self.services = {
            w.name: self._service(w, plan, secrets, host, images, child) for w in plan.workloads
        }
        self.urls = {n: s.url for n, s in self.services.items()}
        # The manager resolves a tag to a digest and writes it into the service's spec. The
        # spec holds secret env, so it is a secret output; the digest it yields is not.
        self.digests = {
            n: pulumi.Output.unsecret(s.service.task_spec.apply(_spec_digest))
            for n, s in self.services.items()
        }

        self.monitoring = None
        self.prometheus_url = self.grafana_url = None
        self.grafana_admin_password = None
        if plan.monitoring is not None:
            self.monitoring = SwarmMonitoring(
                f"{name}-monitoring",
                plan,
                network_id=self.network.id,
                public_host=host,
                opts=child,
            )
            self.prometheus_url = self.monitoring.prometheus_url
            self.grafana_url = self.monitoring.grafana_url
            self.grafana_admin_password = self.monitoring.grafana_admin_password

        warning = translate.mesh_warning(plan, host)
        if warning is not None:
            # Said once: the ports the mesh opens to the network although nothing asked for it.
            pulumi.log.warn(warning, resource=self)
        self.register_outputs(
            {
                "urls": self.urls,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
                "network": self.network.name,
            }
        )

    def _service(
        self,
        workload: model.Workload,
        plan: model.StackPlan,
        secrets: StackSecrets,
        host: str,
        images: Images,
        child: pulumi.ResourceOptions,
    ) -> SwarmService:
        """A service, started once its database (if msops runs it) has converged."""
        db = self.databases.get(workload.database) if workload.database else None
        return SwarmService(
            workload.name,
            workload,
            plan=plan,
            secrets=secrets,
            network_id=self.network.id,
            public_host=host,
            images=images,
            # An external database has no service to wait for.
            depends_on=[db.service] if db else [],
            opts=child,
        )


def _spec_digest(task_spec: Any) -> str | None:
    """The digest in a service's container image, as the manager pinned it (None: not yet)."""
    container = getattr(task_spec, "container_spec", None)
    if container is None and isinstance(task_spec, dict):
        container = task_spec.get("container_spec") or task_spec.get("containerSpec")
    image = getattr(container, "image", None)
    if image is None and isinstance(container, dict):
        image = container.get("image")
    return digest_of(image)
