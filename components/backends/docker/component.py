"""Docker backend components: they register what `translate` describes, and nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.backends import common
from components.backends.common import Args, digest_of, grafana_admin_password
from components.backends.docker import translate
from components.plan import model
from components.secrets import StackSecrets

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def options(spec: Args, parent: pulumi.Resource, **extra: Any) -> pulumi.ResourceOptions:
    settings = {**spec.options, **extra}
    if isinstance(settings.get("custom_timeouts"), Mapping):
        settings["custom_timeouts"] = pulumi.CustomTimeouts(**settings["custom_timeouts"])
    return pulumi.ResourceOptions(parent=parent, **settings)


def migration_gate(
    workload: model.Workload, container: docker.Container, hidden: list[pulumi.Output[str]]
) -> pulumi.Output[str]:
    """What the replicas of a release take from its migration container: the schema they run
    on once it exited 0. Otherwise the update stops with the migration's error (its output's
    last lines, secrets masked) and no replica of the release is registered."""

    def check(args: list[Any]) -> str:
        exit_code, logs, *secrets = args
        try:
            return common.migration_gate(workload, exit_code, logs, secrets)
        except common.MigrationFailed as exc:
            raise pulumi.RunError(str(exc)) from None

    gate = pulumi.Output.all(container.exit_code, container.container_logs, *hidden).apply(check)
    # The schema number is no secret, though it was computed next to some.
    return pulumi.Output.unsecret(gate)


def run_migration(
    owner: pulumi.Resource,
    spec: Args,
    workload: model.Workload,
    secret_values: Mapping[str, pulumi.Output[str]],
    depends_on: list[pulumi.Resource],
) -> tuple[docker.Container, pulumi.Output[str]]:
    """Register a migration container (docker or swarm) and its gate."""
    container = docker.Container(
        spec.name, **spec.args, opts=options(spec, owner, depends_on=depends_on)
    )
    return container, migration_gate(workload, container, list(secret_values.values()))


def envs(values: Mapping[str, pulumi.Input[str]]) -> list[pulumi.Input[str]]:
    """`KEY=value` strings, sorted, each its own item: a secret value makes only its own item
    secret, so `msops check` and the policies still read every plain variable (one secret
    Output for the whole list would hide them all). Plain text stays plain text: only the
    values that are Outputs (the secrets) cost an Output each."""
    return [
        pulumi.Output.concat(key, "=", value)
        if isinstance(value, pulumi.Output)
        else f"{key}={value}"
        for key, value in sorted(values.items())
    ]


def child_options(
    owner: pulumi.Resource, name: str, docker_host: str | None
) -> pulumi.ResourceOptions:
    """Options for a docker or swarm platform's children.

    With `msops:target.dockerHost` set they go through an explicit Docker provider, so the
    stack file decides which daemon or swarm this is, whatever DOCKER_HOST says.
    """
    if docker_host is None:
        return pulumi.ResourceOptions(parent=owner)
    provider = docker.Provider(
        f"{name}-docker", host=docker_host, opts=pulumi.ResourceOptions(parent=owner)
    )
    return pulumi.ResourceOptions(parent=owner, providers=[provider])


class Images:
    """One RemoteImage per image reference in the stack: every LB shares one nginx pull."""

    def __init__(self, opts: pulumi.ResourceOptions) -> None:
        self._opts = opts
        self._pulled: dict[str, docker.RemoteImage] = {}

    def pull(self, ref: str) -> docker.RemoteImage:
        if ref not in self._pulled:
            spec = translate.remote_image(ref)
            self._pulled[ref] = docker.RemoteImage(spec.name, **spec.args, opts=self._opts)
        return self._pulled[ref]


class PostgresDatabase(pulumi.ComponentResource):
    """One Postgres server with its data on a protected, retained volume."""

    container: docker.Container
    volume_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        plan: model.StackPlan,
        db: model.Database,
        password: pulumi.Output[str],
        network: docker.Network,
        images: Images,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Postgres", name, None, opts)
        image = images.pull(db.image)
        volume_spec = translate.database_volume(plan, db, component=name)
        volume = docker.Volume(
            volume_spec.name, **volume_spec.args, opts=options(volume_spec, self)
        )
        spec = translate.database(
            plan,
            db,
            component=name,
            image=image.name,
            network_name=network.name,
            volume_name=volume.name,
            envs=envs(translate.database_env(db, password)),
        )
        self.container = docker.Container(spec.name, **spec.args, opts=options(spec, self))
        self.volume_name = volume.name
        self.register_outputs({"host": db.host, "volumeName": self.volume_name})


class DockerService(pulumi.ComponentResource):
    """One microservice: its image, N auto-named replicas and the nginx LB in front of them."""

    replicas: list[docker.Container]
    # What this release's image resolved to (None: the provider reported no digest).
    digest: pulumi.Output[str | None]
    lb: docker.Container | None
    # The one-off container that ran this release's migration, with migrations.
    migration: docker.Container | None
    container_names: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        *,
        plan: model.StackPlan,
        workload: model.Workload,
        secrets: StackSecrets,
        network: docker.Network,
        images: Images,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Service", name, None, opts)
        self._context = (plan, secrets, network, images, depends_on)
        self.replicas = []
        image_ref, image_id, self.digest = self._image(name, workload, images)
        # Every replica of this release (a canary's too) waits on the migration.
        schema = self._migrate(name, workload, image_ref, image_id)
        self._replicas(name, workload, (image_ref, image_id), schema)
        if workload.canary is not None:
            canary_ref, canary_id, _ = self._image(f"{name}-canary", workload.canary, images)
            self._replicas(name, workload.canary, (canary_ref, canary_id), schema)
        self.container_names = pulumi.Output.all(*[c.name for c in self.replicas])
        self.lb = self._load_balancer(name, workload)
        self.register_outputs({"image": image_ref, "containerNames": self.container_names})

    def _migrate(
        self,
        name: str,
        workload: model.Workload,
        image_ref: pulumi.Output[str],
        image_id: pulumi.Output[str],
    ) -> pulumi.Output[str] | None:
        """The one-off migration container, with migrations; returns its result (the gate
        the replicas wait on) and adds it to what they depend on."""
        plan, secrets, network, _images, depends_on = self._context
        self.migration = None
        if workload.migration is None:
            return None
        secret_values = secrets.values(workload)
        spec = translate.migration(
            plan,
            workload,
            name=f"{name}-migrate",
            image=image_ref,
            image_id=image_id,
            network=network.name,
            envs=envs(common.migration_env(workload)),
            uploads=common.secret_files(workload, secret_values),
        )
        after = list(depends_on)
        self.migration, schema = run_migration(self, spec, workload, secret_values, after)
        self._context = (plan, secrets, network, _images, [*after, self.migration])
        return schema

    def _load_balancer(self, name: str, workload: model.Workload) -> docker.Container | None:
        if workload.lb is None:
            return None
        plan, _secrets, network, images, _after = self._context
        spec = translate.load_balancer(
            plan,
            workload,
            component=name,
            image=images.pull(workload.lb.image).name,
            network_name=network.name,
        )
        return docker.Container(spec.name, **spec.args, opts=options(spec, self))

    def _replicas(
        self,
        component: str,
        workload: model.Workload,
        image: tuple[pulumi.Output[str], pulumi.Output[str]],
        schema: pulumi.Output[str] | None,
    ) -> None:
        """The workload's replicas (a canary's beside the stable ones)."""
        plan, secrets, network, _images, depends_on = self._context
        image_ref, image_id = image
        secret_values = secrets.values(workload)
        for index in range(1, workload.replicas + 1):
            spec = translate.replica(
                plan,
                workload,
                index,
                component=component,
                image=image_ref,
                image_id=image_id,
                network_name=network.name,
                envs=envs({**translate.replica_env(workload, index), **secret_values}),
                schema=schema,
            )
            self.replicas.append(
                docker.Container(
                    spec.name, **spec.args, opts=options(spec, self, depends_on=depends_on)
                )
            )

    def _image(
        self, name: str, workload: model.Workload, images: Images
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str | None]]:
        """The image reference containers run, the image's ID, and the digest it resolved to
        (what the release records: `services.<name>.digest`)."""
        if workload.build is None:
            pulled = images.pull(workload.image)
            return pulled.name, pulled.image_id, pulled.repo_digest.apply(digest_of)
        spec = translate.built_image(name, workload, PROJECT_ROOT)
        context = Path(spec.args["build"]["context"])
        if not (context / "Dockerfile").is_file():
            raise pulumi.RunError(
                f"msops:services.{workload.name}.build: {workload.build!r} has no Dockerfile "
                f"(looked in {context}); point build at the directory holding it"
            )
        built = docker.Image(spec.name, **spec.args, opts=options(spec, self))
        # For a local image repo_digest is the built image's ID.
        return built.image_name, built.repo_digest, built.repo_digest.apply(digest_of)


class DockerMonitoring(pulumi.ComponentResource):
    """Prometheus finding every replica through Docker's DNS, msops' alert rules, and Grafana."""

    grafana_admin_password: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        plan: model.StackPlan,
        network: docker.Network,
        images: Images,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Monitoring", name, None, opts)
        assert plan.monitoring is not None
        mon = plan.monitoring
        volume_spec = translate.prometheus_volume(plan, component=name)
        volume = docker.Volume(
            volume_spec.name, **volume_spec.args, opts=options(volume_spec, self)
        )
        spec = translate.prometheus_server(
            plan,
            component=name,
            image=images.pull(mon.prometheus.image).name,
            network_name=network.name,
            volume_name=volume.name,
        )
        docker.Container(spec.name, **spec.args, opts=options(spec, self))
        self.grafana_admin_password = None
        if mon.grafana is not None:
            self._grafana(name, plan, network, images)
        self.register_outputs({"grafanaAdminPassword": self.grafana_admin_password})

    def _grafana(
        self, name: str, plan: model.StackPlan, network: docker.Network, images: Images
    ) -> None:
        assert plan.monitoring is not None and plan.monitoring.grafana is not None
        # Changing anything needs the admin, whose password is generated and kept in state.
        spec = grafana_admin_password(f"{name}-grafana-admin-password")
        password = random.RandomPassword(spec.name, **spec.args, opts=options(spec, self))
        admin_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        spec = translate.grafana(
            plan,
            component=name,
            image=images.pull(plan.monitoring.grafana.image).name,
            network_name=network.name,
            envs=envs(translate.grafana_settings(plan, admin_password)),
            uploads=translate.grafana_uploads(plan),
        )
        docker.Container(spec.name, **spec.args, opts=options(spec, self))
        self.grafana_admin_password = admin_password


class DockerPlatform(pulumi.ComponentResource):
    """Everything a docker stack runs: one network, its databases, services and monitoring."""

    urls: dict[str, str]
    digests: dict[str, pulumi.Output[str | None]]
    prometheus_url: str | None
    grafana_url: str | None
    grafana_admin_password: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        plan: model.StackPlan,
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Platform", name, None, opts)
        # The components' own children inherit the provider from them.
        child = child_options(self, name, plan.target.docker_host)
        spec = translate.network(plan)
        network = docker.Network(spec.name, **spec.args, opts=child)
        images = Images(child)

        databases = {
            db.name: PostgresDatabase(
                f"{name}-{db.name}",
                plan=plan,
                db=db,
                password=secrets.db_passwords[db.name],
                network=network,
                images=images,
                opts=child,
            )
            for db in plan.databases
        }
        services: dict[str, DockerService] = {}
        for workload in plan.workloads:
            database = databases.get(workload.database) if workload.database else None
            services[workload.name] = DockerService(
                f"{name}-{workload.name}",
                plan=plan,
                workload=workload,
                secrets=secrets,
                network=network,
                images=images,
                # Replicas start once their database is healthy (the container waits for it).
                depends_on=[database.container] if database else [],
                opts=child,
            )
        self.urls = {
            w.name: url for w in plan.workloads if (url := translate.lb_url(w)) is not None
        }
        self.digests = {n: s.digest for n, s in services.items()}
        self._monitoring(name, plan, network, images, child)
        self.register_outputs(
            {
                "urls": self.urls,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
                "networkName": network.name,
            }
        )

    def _monitoring(
        self,
        name: str,
        plan: model.StackPlan,
        network: docker.Network,
        images: Images,
        child: pulumi.ResourceOptions,
    ) -> None:
        self.prometheus_url = self.grafana_url = None
        self.grafana_admin_password = None
        if plan.monitoring is not None:
            monitoring = DockerMonitoring(
                f"{name}-monitoring", plan=plan, network=network, images=images, opts=child
            )
            self.prometheus_url, self.grafana_url = translate.monitoring_urls(plan)
            self.grafana_admin_password = monitoring.grafana_admin_password
