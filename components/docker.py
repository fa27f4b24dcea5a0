"""Docker backend: replicas behind an nginx LB, Postgres, Prometheus and Grafana on one host."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import spec as specs
from components.artifacts import grafana, nginx, prometheus
from components.secrets import StackSecrets

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Shared by the containers msops runs. Only the LB, Prometheus and Grafana publish a port.
RESTART = "unless-stopped"
NO_NEW_PRIVILEGES = ["no-new-privileges:true"]
# The writable scratch space of a read-only or non-root container; noexec so nothing dropped
# there can be run.
TMPFS = {"/tmp": "rw,noexec,nosuid,size=64m"}
# The provider has no update for these and does not mark them ForceNew, so a change would be
# recorded in state without reaching the container; replacing is the only way to apply it.
REPLACE_ON = ["healthcheck", "tmpfs"]
# SIGTERM and time to drain in-flight requests; the provider otherwise removes with SIGKILL.
STOP_GRACE_SECONDS = 15
# The provider's default; health waits are never shorter than this.
MIN_WAIT_SECONDS = 60

LB_PORT = 8080
# The uid of the `nginx` user in the official image; the rendered config writes only to /tmp.
LB_USER = "101"
# Labels the policy pack reads: an exposed LB, and a reviewed waiver of one policy.
EXPOSED_LABEL = "msops.exposed"
WAIVER = "msops.dev/policy-waiver."
LB_MEMORY_MB = 128
LB_CPUS = "1"
LB_CONF = "/etc/nginx/nginx.conf"

POSTGRES_PORT = 5432
POSTGRES_MEMORY_MB = 512
POSTGRES_CPUS = "1"
# A subdirectory, not the mount point itself: initdb refuses a non-empty directory, and a
# volume root can hold lost+found. Set explicitly so the layout does not move with the image.
PGDATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{PGDATA_MOUNT}/pgdata"
# The official entrypoint starts as root, chowns PGDATA and steps down to `postgres` with
# gosu; these are the capabilities that needs, every other one is dropped.
POSTGRES_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]

PROMETHEUS_PORT = 9090
PROMETHEUS_USER = "65534"
PROMETHEUS_MEMORY_MB = 512
PROMETHEUS_CPUS = "1"
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES = "/etc/prometheus/rules/msops.rules.yml"
PROMETHEUS_DATA = "/prometheus"
# Stable names on the stack network, so Grafana's datasource does not change when the
# (auto-named) Prometheus container is replaced.
PROMETHEUS_ALIAS = "prometheus"
GRAFANA_ALIAS = "grafana"

GRAFANA_PORT = 3000
GRAFANA_USER = "472"
GRAFANA_MEMORY_MB = 512
GRAFANA_CPUS = "0.5"
GRAFANA_DATASOURCES = "/etc/grafana/provisioning/datasources/msops.yaml"
GRAFANA_PROVIDERS = "/etc/grafana/provisioning/dashboards/msops.yaml"
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"

MIB = 1024 * 1024


# --- helpers -----------------------------------------------------------------------------------


def go_duration(text: str) -> str:
    """A spec duration as Go's time.Duration prints it (`1m` → `1m0s`).

    The provider reads health checks back in this form, so any other spelling would show
    as a change on every refresh.
    """
    millis = round(specs.parse_duration(text) * 1000)
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def image_version(reference: str) -> str:
    """The version part of a pinned image reference: its digest, else its tag."""
    if "@" in reference:
        return reference.split("@", 1)[1]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def megabytes(quantity: str) -> int:
    """A memory quantity in whole MB, rounded up, as the provider's `memory` takes it."""
    return max(6, math.ceil(specs.bytes_of(quantity) / MIB))


def url_host(bind: str) -> str:
    """The host part of a URL for a port bound to `bind`; a wildcard bind is reached locally."""
    host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
    return f"[{host}]" if ":" in host else host


def labels(values: Mapping[str, pulumi.Input[str]]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(values.items())]


# The containers msops uploads config files into (LB, Prometheus, Grafana). Not read_only:
# Docker refuses any upload (the provider copies to "/") into a container whose root
# filesystem is read-only. The non-root user, with every capability dropped, still cannot
# write the root-owned config.
UPLOADED_CONFIG_HARDENING: dict[str, Any] = {
    "read_only": False,
    "tmpfs": TMPFS,
    "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
    "security_opts": NO_NEW_PRIVILEGES,
    "destroy_grace_seconds": STOP_GRACE_SECONDS,
}


def envs(values: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[list[str]]:
    """`KEY=value` strings; the list is a secret as soon as one value is."""
    # One Output for the whole list, not one per variable: far cheaper at many replicas.
    return pulumi.Output.all(**values).apply(
        lambda resolved: [f"{key}={resolved[key]}" for key in sorted(resolved)]
    )


@dataclass(frozen=True)
class Probe:
    """A Docker health check and its timing (spec durations such as `10s`)."""

    test: tuple[str, ...]
    interval: str
    timeout: str
    retries: int
    start_period: str

    def args(self) -> docker.ContainerHealthcheckArgs:
        return docker.ContainerHealthcheckArgs(
            tests=list(self.test),
            interval=go_duration(self.interval),
            timeout=go_duration(self.timeout),
            retries=self.retries,
            start_period=go_duration(self.start_period),
        )

    def wait_seconds(self) -> int:
        """Long enough for a container to use up its start period and every retry."""
        worst = specs.parse_duration(self.start_period) + (self.retries + 1) * (
            specs.parse_duration(self.interval) + specs.parse_duration(self.timeout)
        )
        return max(MIN_WAIT_SECONDS, math.ceil(worst))


def wget_probe(port: int, path: str) -> tuple[str, ...]:
    """A health check command for images with busybox wget (nginx, Prometheus, Grafana)."""
    return ("CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}")


def replica_probe(svc: specs.Service) -> Probe:
    """The spec's health check, run inside a replica against its own port."""
    health = svc.health
    url = f"http://127.0.0.1:{svc.port}{health.path}"
    seconds = max(1, math.floor(specs.parse_duration(health.timeout)))
    return Probe(
        # The demo image, like most Python images, has no curl or wget; urlopen raises, and
        # so exits 1, on a refused connection or a non-2xx answer.
        test=(
            "CMD",
            "python",
            "-c",
            f"import urllib.request; urllib.request.urlopen({url!r}, timeout={seconds})",
        ),
        interval=health.interval,
        timeout=health.timeout,
        retries=health.retries,
        start_period=health.start_period,
    )


def published(bind: str, internal: int, external: int) -> list[docker.ContainerPortArgs]:
    return [docker.ContainerPortArgs(internal=internal, external=external, ip=bind)]


# --- components --------------------------------------------------------------------------------


def child_options(
    owner: pulumi.Resource, name: str, target: specs.Target
) -> pulumi.ResourceOptions:
    """Options for a docker or swarm platform's children.

    With `msops:target.dockerHost` set they go through an explicit Docker provider, so the
    stack file decides which daemon or swarm this is, whatever DOCKER_HOST says.
    """
    if target.docker_host is None:
        return pulumi.ResourceOptions(parent=owner)
    provider = docker.Provider(
        f"{name}-docker", host=target.docker_host, opts=pulumi.ResourceOptions(parent=owner)
    )
    return pulumi.ResourceOptions(parent=owner, providers=[provider])


class Images:
    """One RemoteImage per image reference in the stack: every LB shares one nginx pull."""

    def __init__(self, opts: pulumi.ResourceOptions) -> None:
        self._opts = opts
        self._pulled: dict[str, docker.RemoteImage] = {}

    def pull(self, ref: str) -> docker.RemoteImage:
        if ref not in self._pulled:
            self._pulled[ref] = docker.RemoteImage(
                f"image-{ref}".replace("/", "-").replace(":", "-").replace("@", "-"),
                name=ref,
                # Kept on destroy: another stack on this host may run the same image.
                keep_locally=True,
                opts=self._opts,
            )
        return self._pulled[ref]


class PostgresDatabase(pulumi.ComponentResource):
    """One Postgres server with its data on a protected, retained volume."""

    host: pulumi.Output[str]
    container_name: pulumi.Output[str]
    volume_name: pulumi.Output[str]
    image: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        db_name: str,
        db: specs.Database,
        password: pulumi.Output[str],
        network: docker.Network,
        images: Images,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Postgres", name, None, opts)
        stack, project = pulumi.get_stack(), pulumi.get_project()
        # Services reach the server by this alias, so the container itself can be auto-named
        # and two stacks on one host never clash.
        self.alias = db_name
        common = {"msops.stack": stack, "msops.database": db_name, "msops.role": "database"}

        image = images.pull(db.resolved_image)
        # A fixed name: after a destroy the retained volume is found again by the next `up`.
        volume = docker.Volume(
            f"{name}-data",
            name=f"{project}-{stack}-{db_name}-pgdata",
            labels=[
                docker.VolumeLabelArgs(label=k, value=v)
                for k, v in sorted({**common, "msops.storage": db.storage}.items())
            ],
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        probe = Probe(
            # Over TCP: during initdb the entrypoint's temporary server listens on the socket
            # only, and must not count as ready.
            test=(
                "CMD",
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-p",
                str(POSTGRES_PORT),
                "-U",
                db.user,
                "-d",
                db_name,
            ),
            interval="5s",
            timeout="3s",
            retries=10,
            start_period="30s",
        )
        self.container = docker.Container(
            name,
            image=image.name,
            envs=envs(
                {
                    "POSTGRES_USER": db.user,
                    "POSTGRES_DB": db_name,
                    "POSTGRES_PASSWORD": password,
                    "PGDATA": PGDATA,
                }
            ),
            volumes=[
                docker.ContainerVolumeArgs(volume_name=volume.name, container_path=PGDATA_MOUNT)
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[self.alias])
            ],
            healthcheck=probe.args(),
            wait=True,
            wait_timeout=probe.wait_seconds(),
            restart=RESTART,
            labels=labels(
                {
                    **common,
                    "msops.version": db.version,
                    # An explicit, reviewed exception to the containers-non-root policy.
                    f"{WAIVER}containers-non-root": "the official postgres entrypoint starts "
                    "as root only to own PGDATA, then runs the server as postgres (uid 70)",
                }
            ),
            memory=POSTGRES_MEMORY_MB,
            cpus=POSTGRES_CPUS,
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=POSTGRES_CAPS),
            security_opts=NO_NEW_PRIVILEGES,
            # Postgres finishes a fast shutdown (a checkpoint) well within this.
            destroy_grace_seconds=30,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Two servers must never open one data directory, even for a moment.
                delete_before_replace=True,
                replace_on_changes=REPLACE_ON,
                additional_secret_outputs=["envs"],
            ),
        )
        self.host = pulumi.Output.from_input(self.alias)
        self.container_name = self.container.name
        self.volume_name = volume.name
        self.image = image.name
        self.register_outputs(
            {
                "host": self.host,
                "container_name": self.container_name,
                "volume_name": self.volume_name,
                "image": self.image,
            }
        )


class DockerService(pulumi.ComponentResource):
    """One microservice: its image, N auto-named replicas and the nginx LB in front of them."""

    image: pulumi.Output[str]
    replicas: pulumi.Output[int]
    container_names: pulumi.Output[list[str]]
    lb_url: pulumi.Output[str] | None
    targets: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        *,
        svc_name: str,
        svc: specs.Service,
        spec: specs.StackConfig,
        secrets: StackSecrets,
        network: docker.Network,
        images: Images,
        db_host: str | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Service", name, None, opts)
        self._images = images
        self.svc_name = svc_name
        self.network = network
        self.metrics_path = svc.metrics_path
        stack = pulumi.get_stack()
        version = image_version(svc.image)
        common = {"msops.stack": stack, "msops.service": svc_name}

        image_ref, image_id = self._image(name, svc)
        probe = replica_probe(svc)
        resources = svc.resources
        env = secrets.service_env(spec, svc, db_host=db_host)
        has_secret_env = bool(svc.secret_env) or svc.database is not None

        self.containers: list[docker.Container] = []
        for index in range(1, svc.desired_replicas + 1):
            replica_env: dict[str, pulumi.Input[str]] = {
                # Conventions of the demo app; other images ignore them. The spec's env wins.
                "PORT": str(svc.port),
                "SERVICE_NAME": svc_name,
                "APP_VERSION": version,
                "REPLICA_ID": f"{svc_name}-{index}",
                **env,
            }
            self.containers.append(
                docker.Container(
                    # No `name`: Pulumi auto-names it, so a new image is rolled out
                    # create-before-delete, the new replica healthy before the old one goes.
                    f"{name}-{index}",
                    image=image_ref,
                    envs=envs(replica_env),
                    labels=labels(
                        {
                            **common,
                            "msops.role": "replica",
                            "msops.version": version,
                            "msops.replica": str(index),
                            # Follows a rebuild of the same tag, which the name alone hides.
                            "msops.image-id": image_id,
                        }
                    ),
                    networks_advanced=[
                        docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[svc_name])
                    ],
                    healthcheck=probe.args(),
                    wait=True,
                    wait_timeout=probe.wait_seconds(),
                    restart=RESTART,
                    memory=megabytes(resources.memory_limit),
                    memory_reservation=megabytes(resources.memory_request),
                    cpus=f"{specs.cpus(resources.cpu_limit):g}",
                    # The request as a relative weight, 1024 per CPU, as Kubernetes maps it.
                    cpu_shares=max(2, round(specs.cpus(resources.cpu_request) * 1024)),
                    user=str(svc.run_as_user),
                    read_only=True,
                    tmpfs=TMPFS,
                    capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
                    security_opts=NO_NEW_PRIVILEGES,
                    destroy_grace_seconds=STOP_GRACE_SECONDS,
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=list(depends_on),
                        replace_on_changes=REPLACE_ON,
                        # Read back from Docker, env values would otherwise be plain in state.
                        additional_secret_outputs=["envs"] if has_secret_env else None,
                    ),
                )
            )

        self.image = pulumi.Output.from_input(image_ref)
        self.replicas = pulumi.Output.from_input(len(self.containers))
        self.container_names = pulumi.Output.all(*[c.name for c in self.containers])
        port = svc.port
        self.targets = self.container_names.apply(lambda names: [f"{n}:{port}" for n in names])
        self.lb: docker.Container | None = None
        self.lb_url = None
        if self.containers:
            bind = "0.0.0.0" if svc.exposed else spec.target.bind_address
            self.lb = self._load_balancer(name, svc_name, svc, bind, common)
            if svc.lb.port is not None:
                self.lb_url = pulumi.Output.from_input(f"http://{url_host(bind)}:{svc.lb.port}")
            else:
                self.lb_url = pulumi.Output.from_input(f"http://{svc_name}-lb:{LB_PORT}")
        self.register_outputs(
            {
                "image": self.image,
                "replicas": self.replicas,
                "container_names": self.container_names,
                "lb_url": self.lb_url,
                "targets": self.targets,
            }
        )

    def _image(
        self, name: str, svc: specs.Service
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The image reference containers run and the image's ID."""
        if svc.build is not None:
            context = (PROJECT_ROOT / svc.build).resolve()
            if not (context / "Dockerfile").is_file():
                raise pulumi.RunError(
                    f"msops:services.{self.svc_name}.build: {svc.build!r} has no Dockerfile "
                    f"(looked in {context}); point build at the directory holding it"
                )
            built = docker.Image(
                f"{name}-image",
                image_name=svc.image,
                # No platform: build for the daemon's own architecture, which is what runs it.
                build=docker.DockerBuildArgs(context=str(context)),
                # Built where it runs; dev needs no registry.
                skip_push=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
            # For a local image repo_digest is the built image's ID.
            return built.image_name, built.repo_digest
        pulled = self._images.pull(svc.image)
        return pulled.name, pulled.image_id

    def _load_balancer(
        self,
        name: str,
        svc_name: str,
        svc: specs.Service,
        bind: str,
        common: Mapping[str, str],
    ) -> docker.Container:
        image = self._images.pull(svc.lb.image)
        port, algorithm, health_path = svc.port, svc.lb.algorithm, svc.health.path
        conf = self.container_names.apply(
            lambda names: nginx.render_nginx_conf(
                upstreams=[f"{n}:{port}" for n in names],
                listen=str(LB_PORT),
                algorithm=algorithm,
                health_path=health_path,
            )
        )
        probe = Probe(
            test=wget_probe(LB_PORT, nginx.LB_HEALTH_PATH),
            interval="5s",
            timeout="3s",
            retries=3,
            start_period="2s",
        )
        return docker.Container(
            f"{name}-lb",
            image=image.name,
            # `uploads` is ForceNew in the provider schema, so a changed upstream list (a scale,
            # a new image) replaces the LB; nginx resolves the names once, when it starts.
            uploads=[docker.ContainerUploadArgs(file=LB_CONF, content=conf)],
            labels=labels(
                {**common, "msops.role": "lb", **({EXPOSED_LABEL: "true"} if svc.exposed else {})}
            ),
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=self.network.name, aliases=[f"{svc_name}-lb"]
                )
            ],
            ports=None if svc.lb.port is None else published(bind, LB_PORT, svc.lb.port),
            healthcheck=probe.args(),
            wait=True,
            wait_timeout=probe.wait_seconds(),
            restart=RESTART,
            memory=LB_MEMORY_MB,
            cpus=LB_CPUS,
            user=LB_USER,
            **UPLOADED_CONFIG_HARDENING,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(self.containers),
                # Two LBs cannot hold one host port, so a published LB goes before its
                # successor starts; an unpublished one is swapped without a gap.
                delete_before_replace=svc.lb.port is not None,
                replace_on_changes=REPLACE_ON,
            ),
        )


class DockerMonitoring(pulumi.ComponentResource):
    """Prometheus scraping every replica, with msops' alert rules, and Grafana dashboards."""

    prometheus_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str] | None
    prometheus_container_name: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        spec: specs.StackConfig,
        services: Mapping[str, DockerService],
        network: docker.Network,
        images: Images,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Monitoring", name, None, opts)
        self._images = images
        self.network = network
        stack, project = pulumi.get_stack(), pulumi.get_project()
        mon = spec.monitoring
        bind = spec.target.bind_address
        common = {"msops.stack": stack, "msops.role": "monitoring"}
        # A service scaled to zero has nothing to scrape, and a scrape job needs a target.
        scraped = [s for s in services.values() if s.containers]
        replicas = [c for s in scraped for c in s.containers]

        image = images.pull(mon.prometheus_image)
        # Metrics history outlives a replaced (or destroyed) Prometheus container.
        volume = docker.Volume(
            f"{name}-prometheus-data",
            name=f"{project}-{stack}-prometheus-data",
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(common.items())],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        paths = [s.metrics_path for s in scraped]
        names = [s.svc_name for s in scraped]
        interval = mon.scrape_interval
        config = pulumi.Output.all(*[s.targets for s in scraped]).apply(
            lambda all_targets: prometheus.render_prometheus_config(
                jobs=[
                    prometheus.ScrapeJob(name=n, metrics_path=p, targets=tuple(t))
                    for n, p, t in zip(names, paths, all_targets, strict=True)
                ],
                scrape_interval=interval,
                rule_files=[PROMETHEUS_RULES],
            )
        )
        alerts = mon.alerts
        rules = prometheus.render_alert_rules(
            services=names,
            error_rate=alerts.error_rate,
            p99_latency=alerts.p99_latency,
            target_down_for=alerts.target_down_for,
            evaluate_for=alerts.evaluate_for,
        )
        probe = Probe(
            test=wget_probe(PROMETHEUS_PORT, "/-/healthy"),
            interval="10s",
            timeout="3s",
            retries=3,
            start_period="10s",
        )
        server = docker.Container(
            f"{name}-prometheus",
            image=image.name,
            uploads=[
                docker.ContainerUploadArgs(file=PROMETHEUS_CONFIG, content=config),
                docker.ContainerUploadArgs(file=PROMETHEUS_RULES, content=rules),
            ],
            volumes=[
                docker.ContainerVolumeArgs(volume_name=volume.name, container_path=PROMETHEUS_DATA)
            ],
            labels=labels({**common, "msops.component": "prometheus"}),
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[PROMETHEUS_ALIAS])
            ],
            ports=published(bind, PROMETHEUS_PORT, mon.prometheus_port),
            healthcheck=probe.args(),
            wait=True,
            wait_timeout=probe.wait_seconds(),
            restart=RESTART,
            memory=PROMETHEUS_MEMORY_MB,
            cpus=PROMETHEUS_CPUS,
            user=PROMETHEUS_USER,
            **UPLOADED_CONFIG_HARDENING,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=replicas,
                # The TSDB is locked by one server at a time, and the host port is single too.
                delete_before_replace=True,
                replace_on_changes=REPLACE_ON,
            ),
        )
        self.prometheus_container_name = server.name
        self.prometheus_url = pulumi.Output.from_input(
            f"http://{url_host(bind)}:{mon.prometheus_port}"
        )
        self.grafana: docker.Container | None = None
        self.grafana_url = None
        self.grafana_admin_password = None
        if mon.grafana:
            self._grafana(name, spec, list(services), common)
        self.register_outputs(
            {
                "prometheus_url": self.prometheus_url,
                "grafana_url": self.grafana_url,
                "prometheus_container_name": self.prometheus_container_name,
                "grafana_admin_password": self.grafana_admin_password,
            }
        )

    def _grafana(
        self, name: str, spec: specs.StackConfig, services: list[str], common: Mapping[str, str]
    ) -> None:
        mon, bind = spec.monitoring, spec.target.bind_address
        image = self._images.pull(mon.grafana_image)
        # Anonymous visitors only view; changing anything needs the admin, whose password is
        # generated and kept in state as a secret.
        password = random.RandomPassword(
            f"{name}-grafana-admin-password",
            length=24,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        uploads = [
            docker.ContainerUploadArgs(
                file=GRAFANA_DATASOURCES,
                content=grafana.render_datasource(
                    prometheus_url=f"http://{PROMETHEUS_ALIAS}:{PROMETHEUS_PORT}"
                ),
            ),
            docker.ContainerUploadArgs(
                file=GRAFANA_PROVIDERS,
                content=grafana.render_dashboard_provider(path=GRAFANA_DASHBOARDS),
            ),
            *[
                docker.ContainerUploadArgs(
                    file=f"{GRAFANA_DASHBOARDS}/{svc}.json",
                    content=grafana.render_dashboard(service=svc),
                )
                for svc in services
            ],
        ]
        settings: dict[str, pulumi.Input[str]] = {
            "GF_AUTH_ANONYMOUS_ENABLED": "true",
            "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
            "GF_SECURITY_ADMIN_USER": "admin",
            "GF_SECURITY_ADMIN_PASSWORD": pulumi.Output.secret(password.result),
            "GF_SECURITY_DISABLE_GRAVATAR": "true",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            # A dev stack may have no way out to the internet; nothing should try.
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
            "GF_NEWS_NEWS_FEED_ENABLED": "false",
        }
        if services:
            settings["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] = (
                f"{GRAFANA_DASHBOARDS}/{services[0]}.json"
            )
        probe = Probe(
            test=wget_probe(GRAFANA_PORT, "/api/health"),
            interval="10s",
            timeout="3s",
            retries=3,
            start_period="20s",
        )
        # No volume: datasource and dashboards are provisioned from the stack config, so a
        # replaced Grafana comes back the same.
        self.grafana = docker.Container(
            f"{name}-grafana",
            image=image.name,
            envs=envs(settings),
            uploads=uploads,
            labels=labels({**common, "msops.component": "grafana"}),
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=self.network.name, aliases=[GRAFANA_ALIAS]
                )
            ],
            ports=published(bind, GRAFANA_PORT, mon.grafana_port),
            healthcheck=probe.args(),
            wait=True,
            wait_timeout=probe.wait_seconds(),
            restart=RESTART,
            memory=GRAFANA_MEMORY_MB,
            cpus=GRAFANA_CPUS,
            user=GRAFANA_USER,
            **UPLOADED_CONFIG_HARDENING,
            opts=pulumi.ResourceOptions(
                parent=self,
                delete_before_replace=True,
                replace_on_changes=REPLACE_ON,
                additional_secret_outputs=["envs"],
            ),
        )
        self.grafana_url = pulumi.Output.from_input(f"http://{url_host(bind)}:{mon.grafana_port}")
        self.grafana_admin_password = pulumi.Output.secret(password.result)


class DockerPlatform(pulumi.ComponentResource):
    """Everything a docker stack runs: one network, its databases, services and monitoring."""

    urls: dict[str, pulumi.Output[str]]
    prometheus_url: pulumi.Output[str] | None
    grafana_url: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str] | None
    network_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: specs.StackConfig,
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:docker:Platform", name, None, opts)
        stack, project = pulumi.get_stack(), pulumi.get_project()

        # The components' own children inherit the provider from them.
        child = child_options(self, name, spec.target)

        # A fixed name, per project and stack: `docker run --network msops-dev-net` reaches
        # the services for debugging, and two stacks on one host stay apart.
        network = docker.Network(
            f"{name}-net",
            name=f"{project}-{stack}-net",
            driver="bridge",
            labels=[docker.NetworkLabelArgs(label="msops.stack", value=stack)],
            opts=child,
        )

        images = Images(child)
        databases: dict[str, PostgresDatabase] = {}
        for db_name, db in spec.databases.items():
            if db.external_url is not None:
                continue
            databases[db_name] = PostgresDatabase(
                f"{name}-{db_name}",
                db_name=db_name,
                db=db,
                password=secrets.db_passwords[db_name],
                network=network,
                images=images,
                opts=child,
            )

        services: dict[str, DockerService] = {}
        for svc_name, svc in spec.services.items():
            database = databases.get(svc.database) if svc.database else None
            services[svc_name] = DockerService(
                f"{name}-{svc_name}",
                svc_name=svc_name,
                svc=svc,
                spec=spec,
                secrets=secrets,
                network=network,
                images=images,
                db_host=database.alias if database else None,
                # Replicas start once their database is healthy (the container waits for it).
                depends_on=[database.container] if database else [],
                opts=child,
            )

        self.urls = {n: s.lb_url for n, s in services.items() if s.lb_url is not None}
        self.prometheus_url = None
        self.grafana_url = None
        self.grafana_admin_password = None
        if spec.monitoring.enabled:
            monitoring = DockerMonitoring(
                f"{name}-monitoring",
                spec=spec,
                services=services,
                network=network,
                images=images,
                opts=child,
            )
            self.prometheus_url = monitoring.prometheus_url
            self.grafana_url = monitoring.grafana_url
            self.grafana_admin_password = monitoring.grafana_admin_password
        self.network_name = network.name
        self.register_outputs(
            {
                "urls": self.urls,
                "prometheus_url": self.prometheus_url,
                "grafana_url": self.grafana_url,
                "network_name": self.network_name,
            }
        )


def config_problems(spec: specs.StackConfig) -> list[str]:
    """Names that two things would answer to on the stack network (checked before any resource)."""
    owners: dict[str, list[str]] = {}
    for svc_name in spec.services:
        owners.setdefault(svc_name, []).append(f"msops:services.{svc_name}")
        owners.setdefault(f"{svc_name}-lb", []).append(f"msops:services.{svc_name} (its LB)")
    for db_name, db in spec.databases.items():
        if db.external_url is None:
            owners.setdefault(db_name, []).append(f"msops:databases.{db_name}")
    if spec.monitoring.enabled:
        owners.setdefault(PROMETHEUS_ALIAS, []).append("msops:monitoring (Prometheus)")
        if spec.monitoring.grafana:
            owners.setdefault(GRAFANA_ALIAS, []).append("msops:monitoring (Grafana)")
    return [
        f"{' and '.join(keys)} both answer to {alias!r} on the docker network; rename one"
        for alias, keys in owners.items()
        if len(keys) > 1
    ]
