"""The swarm backend: replicated docker services on a Docker Swarm, behind the routing mesh."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import spec as specs
from components.artifacts import grafana, prometheus
from components.backends.docker.component import child_options
from components.secrets import StackSecrets

# Docker rejects service names longer than a DNS label.
MAX_SERVICE_NAME = 63
# Docker rejects config names longer than this.
MAX_CONFIG_NAME = 64
POSTGRES_PORT = 5432
POSTGRES_MEMORY = 512 * 1024 * 1024
POSTGRES_NANO_CPUS = 1_000_000_000
# A subdirectory, as on the docker backend: initdb refuses a non-empty directory, and a volume
# root can hold lost+found.
PGDATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{PGDATA_MOUNT}/pgdata"
# The official entrypoint starts as root, chowns PGDATA and steps down to `postgres`; these are
# the capabilities that needs, every other one is dropped.
POSTGRES_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
MONITORING_MEMORY = 512 * 1024 * 1024
MONITORING_NANO_CPUS = 1_000_000_000
# A reviewed exception to one policy of the pack (policies/rules.py reads it).
WAIVER = "msops.dev/policy-waiver."
GRAFANA_STATE_BYTES = 256 * 1024 * 1024
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
# Prefix of the monitoring services' names; stack services and databases may not use it.
MONITORING_PREFIX = "msops-"
PROMETHEUS_CONFIG_PATH = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES_PATH = "/etc/prometheus/rules/msops.rules.yml"
# Outside /var/lib/grafana, which is a tmpfs: a config file inside another mount would be
# hidden by it or not, depending on the order Docker sets the mounts up in.
GRAFANA_DASHBOARDS_PATH = "/etc/grafana/dashboards"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
SECRETS_DIR = "/run/secrets"
# The official images' own non-root users, stated so that no image change can make them root.
GRAFANA_UID = "472"
PROMETHEUS_UID = "65534"
# How often Pulumi looks at a service while it waits for it to converge.
CONVERGE_DELAY = "5s"
UPDATE_DELAY = "5s"
NO_FAILURES = "0.0"
TMP_BYTES = 64 * 1024 * 1024
# Time for in-flight requests to finish on SIGTERM. The provider also waits this long for
# tasks to go away on delete, so the overlay network is not removed while they still use it.
STOP_GRACE = "10s"
POSTGRES_STOP_GRACE = "30s"


# --- plain helpers -----------------------------------------------------------------------------


def docker_duration(seconds: float) -> str:
    """A duration the way the Docker provider reads one back (Go's time.Duration, trimmed).

    `10s`, `1m30s`, `1m`, `1h`, `500ms`: writing the same text the provider reads back keeps
    `pulumi preview` free of diffs such as `90s` → `1m30s` on every run.
    """
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"
    # Go's Duration.String always ends in seconds; the provider trims empty units the same way.
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


def swarm_name(stack: str, name: str) -> str:
    """The Swarm object name `<stack>_<name>`, the way `docker stack deploy` names services.

    The stack part is reduced to a DNS label, so the separator `_` appears only once and two
    (stack, name) pairs can never produce the same name.
    """
    full = f"{stack_prefix(stack)}_{name}"
    if len(full) > MAX_SERVICE_NAME:
        raise ValueError(
            f"swarm service name {full!r} is {len(full)} characters, more than Docker's "
            f"{MAX_SERVICE_NAME}; shorten the stack name or msops:services/databases key {name!r}"
        )
    return full


def stack_prefix(stack: str) -> str:
    """The stack name reduced to a DNS label, the first part of every Swarm object name."""
    return re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-") or "msops"


def config_name(stack: str, kind: str, data: str) -> str:
    """A Swarm config name carrying a hash of its content.

    Swarm configs cannot change, so new content must be a new config; a new name lets Pulumi
    create it before deleting the old one, and the service update that swaps them rolls the
    tasks like any other update.
    """
    digest = hashlib.sha256(data.encode()).hexdigest()[:12]
    head = f"{stack_prefix(stack)}_{kind}"[: MAX_CONFIG_NAME - len(digest) - 1]
    return f"{head}-{digest}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_b64(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """Base64 of a value for a docker.Secret, secret whatever the value was marked as."""
    encoded: pulumi.Output[str] = pulumi.Output.from_input(value).apply(b64)
    return pulumi.Output.secret(encoded)


def image_version(image: str) -> str:
    """The pinned version of an image reference: its digest, else its tag."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else image


def health_monitor_seconds(health: specs.Health) -> float:
    """How long Swarm watches a new task before it moves on to the next one.

    Long enough for a cold start plus `retries` failed checks, so a task that never becomes
    healthy fails the update instead of slipping through.
    """
    return to_seconds(health.start_period) + to_seconds(health.interval) * health.retries


def to_seconds(duration: str) -> float:
    return specs.parse_duration(duration)


def http_health_test(port: int, path: str, timeout: str) -> list[str]:
    """A health check command that works in most images: wget, else curl, else Python.

    The demo image (python:slim) has neither wget nor curl; alpine and busybox images have
    wget. Every part is shell-quoted because the path comes from the stack config.
    """
    url = f"http://127.0.0.1:{port}{path}"
    limit = max(1, int(to_seconds(timeout)))
    python = f"import urllib.request; urllib.request.urlopen({json.dumps(url)}, timeout={limit})"
    quoted = shlex.quote(url)
    return [
        "CMD-SHELL",
        f"wget -q -O /dev/null {quoted} || curl -fsS -o /dev/null {quoted} "
        # Docker reserves every exit code but 0 and 1; whichever tool ran last, say "unhealthy".
        f"|| python3 -c {shlex.quote(python)} || exit 1",
    ]


def public_host(target: specs.Target, environ: Mapping[str, str] | None = None) -> str:
    """The host shown in URLs: the manager msops talks to, else the bind address.

    The routing mesh publishes a port on every node, so any node's address works; the
    manager is the one the operator already knows. A local socket means this machine.
    """
    environ = os.environ if environ is None else environ
    for candidate in (target.docker_host, environ.get("DOCKER_HOST")):
        if candidate and urlsplit(candidate).scheme in ("ssh", "tcp", "http", "https"):
            host = urlsplit(candidate).hostname
            if host:
                return f"[{host}]" if ":" in host else host
    if target.bind_address in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{target.bind_address}]" if ":" in target.bind_address else target.bind_address


def scraped_services(spec: specs.StackConfig) -> list[str]:
    """The services Prometheus scrapes and alerts on: those with at least one replica.

    The same choice as the docker backend's, so both render the same rules for one spec; a
    service scaled to zero has no task to scrape, and its name would not resolve.
    """
    return [name for name, svc in spec.services.items() if svc.desired_replicas > 0]


def alert_rules_text(spec: specs.StackConfig) -> str:
    """The rules file for this spec, one group per scraped service."""
    alerts = spec.monitoring.alerts
    return prometheus.render_alert_rules(
        services=scraped_services(spec),
        error_rate=alerts.error_rate,
        p99_latency=alerts.p99_latency,
        target_down_for=alerts.target_down_for,
        evaluate_for=alerts.evaluate_for,
    )


def config_problems(spec: specs.StackConfig) -> list[str]:
    """Names that would clash on the swarm (checked by the Platform before any resource)."""
    return name_problems(pulumi.get_stack(), spec)


def name_problems(stack: str, spec: specs.StackConfig) -> list[str]:
    """Names that would clash on the swarm: each becomes a service name and a network alias."""
    problems: list[str] = []
    # An external database runs nothing on the swarm, so its name takes nothing there.
    databases = [n for n, db in spec.databases.items() if db.external_url is None]
    for section, names in (("services", list(spec.services)), ("databases", databases)):
        for name in names:
            key = f"msops:{section}.{name}"
            if name.startswith(MONITORING_PREFIX):
                problems.append(
                    f"{key}: names starting with {MONITORING_PREFIX!r} are kept for msops' "
                    "monitoring services on swarm; rename it"
                )
            try:
                swarm_name(stack, name)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
    for name in sorted(set(spec.services) & set(databases)):
        problems.append(
            f"msops:databases.{name}: {name!r} is also a service; on swarm both would answer "
            "to that name on the stack network, so rename one"
        )
    if spec.monitoring.enabled:
        try:
            swarm_name(stack, MONITORING_PREFIX + "prometheus")
        except ValueError as exc:
            problems.append(f"msops:monitoring: {exc}")
    return problems


def _labels(**values: str) -> list[docker.ServiceLabelArgs]:
    return [docker.ServiceLabelArgs(label=k, value=v) for k, v in sorted(values.items())]


def _container_labels(**values: str) -> list[docker.ServiceTaskSpecContainerSpecLabelArgs]:
    return [
        docker.ServiceTaskSpecContainerSpecLabelArgs(label=k, value=v)
        for k, v in sorted(values.items())
    ]


def _update_config(order: str, monitor: str) -> docker.ServiceUpdateConfigArgs:
    return docker.ServiceUpdateConfigArgs(
        parallelism=1,
        delay=UPDATE_DELAY,
        order=order,
        # Swarm itself restores the previous spec the moment one task fails its checks.
        failure_action="rollback",
        monitor=monitor,
        # No failed task is tolerated. A string, written the way the provider reads it back
        # ("0.0"), so a refresh shows no change.
        max_failure_ratio=NO_FAILURES,
    )


def _rollback_config(order: str, monitor: str) -> docker.ServiceRollbackConfigArgs:
    return docker.ServiceRollbackConfigArgs(
        parallelism=1,
        delay="0s",
        order=order,
        # A rollback that fails leaves the service as it is for a person to look at; rolling
        # "forward" again would bring back the version that just failed.
        failure_action="pause",
        monitor=monitor,
        max_failure_ratio=NO_FAILURES,
    )


def _converge_config(timeout_seconds: float) -> docker.ServiceConvergeConfigArgs:
    return docker.ServiceConvergeConfigArgs(
        delay=CONVERGE_DELAY, timeout=docker_duration(timeout_seconds)
    )


def _config_mount(
    config: docker.ServiceConfig, path: str
) -> docker.ServiceTaskSpecContainerSpecConfigArgs:
    return docker.ServiceTaskSpecContainerSpecConfigArgs(
        config_id=config.id, config_name=config.name, file_name=path
    )


def _tmp_mount() -> docker.ServiceTaskSpecContainerSpecMountArgs:
    # With a read-only root filesystem, /tmp is the one place many programs expect to write.
    # No mode: Docker's default for a tmpfs mount is 1777, and the provider reads the mode back
    # without the sticky bit, so writing 0o1777 would show as a change on every refresh.
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        type="tmpfs",
        target="/tmp",
        tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
            size_bytes=TMP_BYTES
        ),
    )


def _network(
    network_id: pulumi.Input[str], alias: str
) -> docker.ServiceTaskSpecNetworksAdvancedArgs:
    # The ID, not the name: the provider reads the ID back, and a name would diff every run.
    return docker.ServiceTaskSpecNetworksAdvancedArgs(name=network_id, aliases=[alias])


# --- components --------------------------------------------------------------------------------


class SwarmService(pulumi.ComponentResource):
    """One microservice as a replicated Swarm service, updated in place task by task."""

    service_name: str
    url: pulumi.Output[str]
    service: docker.Service

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        svc: specs.Service,
        env: Mapping[str, pulumi.Input[str]],
        secret_vars: Sequence[str],
        network_id: pulumi.Input[str],
        public_host: str,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:swarm:Service", name, None, opts)
        # Fixed, not auto-named: Prometheus finds the tasks at `tasks.<service name>`, and a
        # swarm service is updated in place, so the name never has to change.
        self.service_name = swarm_name(stack, name)
        version = image_version(svc.image)
        health = svc.health
        monitor = docker_duration(health_monitor_seconds(health))

        # Every secret value is also a Docker secret, a file only this service's tasks see, at
        # /run/secrets/<VAR>: apps that read it there need not trust the env var, which Swarm
        # keeps in the service spec for `docker service inspect` to show. No `<VAR>_FILE` is
        # set: images following that convention refuse to start when both are present.
        secret_refs: list[docker.ServiceTaskSpecContainerSpecSecretArgs] = []
        for var in secret_vars:
            secret = docker.Secret(
                f"{name}-{var.lower().replace('_', '-')}",
                data=secret_b64(env[var]),
                labels=[
                    docker.SecretLabelArgs(label="msops.stack", value=stack),
                    docker.SecretLabelArgs(label="msops.service", value=name),
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            secret_refs.append(
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=secret.id,
                    secret_name=secret.name,
                    file_name=f"{SECRETS_DIR}/{var}",
                    file_uid=str(svc.run_as_user),
                    file_gid=str(svc.run_as_user),
                    file_mode=0o400,
                )
            )

        # The service's own values win; these only fill in what the demo app reads.
        full_env: dict[str, pulumi.Input[str]] = {
            "PORT": str(svc.port),
            "SERVICE_NAME": name,
            "APP_VERSION": version,
            **env,
        }
        resources = svc.resources
        ports = (
            [
                docker.ServiceEndpointSpecPortArgs(
                    name="http",
                    protocol="tcp",
                    target_port=svc.port,
                    published_port=svc.lb.port,
                    # The routing mesh: every node accepts the port and balances across tasks.
                    publish_mode="ingress",
                )
            ]
            if svc.lb.port is not None
            else []
        )
        self.service = docker.Service(
            name,
            name=self.service_name,
            labels=_labels(
                **{
                    "msops.stack": stack,
                    "msops.service": name,
                    "msops.image": svc.image,
                    "msops.version": version,
                }
            ),
            mode=docker.ServiceModeArgs(
                replicated=docker.ServiceModeReplicatedArgs(replicas=svc.desired_replicas)
            ),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=svc.image,
                    env=full_env,
                    user=f"{svc.run_as_user}:{svc.run_as_user}",
                    read_only=True,
                    # A non-root process has no use for capabilities (Docker lets any user
                    # bind low ports inside a container), so none are left to misuse.
                    cap_drops=["ALL"],
                    labels=_container_labels(**{"msops.service": name, "msops.version": version}),
                    healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                        tests=http_health_test(svc.port, health.path, health.timeout),
                        interval=docker_duration(to_seconds(health.interval)),
                        timeout=docker_duration(to_seconds(health.timeout)),
                        retries=health.retries,
                        start_period=docker_duration(to_seconds(health.start_period)),
                    ),
                    mounts=[_tmp_mount()],
                    secrets=secret_refs or None,
                    stop_grace_period=STOP_GRACE,
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        nano_cpus=round(specs.cpus(resources.cpu_limit) * 1e9),
                        memory_bytes=specs.bytes_of(resources.memory_limit),
                    ),
                    reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                        nano_cpus=round(specs.cpus(resources.cpu_request) * 1e9),
                        memory_bytes=specs.bytes_of(resources.memory_request),
                    ),
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition="any", delay=UPDATE_DELAY
                ),
                networks_advanceds=[_network(network_id, name)],
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(mode="vip", ports=ports or None),
            # start-first: the new task must be healthy before an old one stops, so an update
            # never lowers capacity. One task at a time whatever `rollout` says: its surge and
            # unavailability counts are Kubernetes settings, Swarm has no equivalent for them.
            update_config=_update_config("start-first", monitor),
            # start-first as well: the version being restored is known good, so it comes up
            # next to the failing one and the service never drops below its replica count.
            rollback_config=_rollback_config("start-first", monitor),
            # Pulumi waits until every task runs the new spec, or reports the failure.
            converge_config=_converge_config(svc.rollout.progress_deadline),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(depends_on),
                # The name is fixed, so a replacement (only ever for a change of name or mode)
                # must remove the old service before it can create the new one.
                delete_before_replace=True,
                # Read back from the swarm, the env would otherwise be plain in state.
                additional_secret_outputs=["taskSpec"]
                if svc.secret_env or svc.database is not None
                else None,
            ),
        )
        if svc.lb.port is not None:
            self.url = pulumi.Output.from_input(f"http://{public_host}:{svc.lb.port}")
        else:
            # Not published: reachable at its alias from the stack's overlay network only.
            self.url = pulumi.Output.from_input(f"http://{name}:{svc.port}")
        self.register_outputs(
            {"serviceName": self.service_name, "url": self.url, "serviceId": self.service.id}
        )


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
        *,
        stack: str,
        database: specs.Database,
        password: pulumi.Input[str],
        network_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:swarm:Postgres", name, None, opts)
        self.service_name = swarm_name(stack, name)
        # Services reach the database at its name on the overlay network (DATABASE_URL's host).
        self.host = name
        # A local volume lives on one node, so the task must always land on that node. A label
        # rather than node.role == manager: a swarm with three managers would move the database
        # to an empty volume on another manager.
        self.placement_label = f"msops.db.{name}"
        image = database.resolved_image
        secret_file = f"{SECRETS_DIR}/postgres-password"

        password_secret = docker.Secret(
            f"{name}-password",
            data=secret_b64(password),
            labels=[
                docker.SecretLabelArgs(label="msops.stack", value=stack),
                docker.SecretLabelArgs(label="msops.database", value=name),
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.volume = docker.Volume(
            f"{name}-data",
            # Fixed: after a destroy the retained volume is found again by the next `up`, and
            # Swarm creates a volume of this name on the labelled node when it is not there.
            name=f"{pulumi.get_project()}-{stack}-{name}-pgdata",
            driver="local",
            # No size label: any change to a volume replaces it, which protect forbids, so a
            # new `storage` would block every deploy. The local driver cannot enforce it anyway.
            labels=[
                docker.VolumeLabelArgs(label="msops.stack", value=stack),
                docker.VolumeLabelArgs(label="msops.database", value=name),
            ],
            # The data outlives the stack: `pulumi destroy` leaves it, and deleting it from the
            # program fails until someone unprotects it on purpose.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        health_interval, health_retries, health_start = 5.0, 10, 30.0
        monitor = docker_duration(health_start + health_interval * health_retries)
        self.service = docker.Service(
            name,
            name=self.service_name,
            labels=_labels(
                **{
                    "msops.stack": stack,
                    "msops.database": name,
                    "msops.image": image,
                    "msops.version": database.version,
                    f"{WAIVER}containers-non-root": "the official postgres entrypoint starts "
                    "as root only to own PGDATA, then runs the server as postgres (uid 70)",
                }
            ),
            mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=image,
                    env={
                        "POSTGRES_USER": database.user,
                        "POSTGRES_DB": name,
                        # The official image reads the password from this file, so it is in
                        # no env var and no service spec.
                        "POSTGRES_PASSWORD_FILE": secret_file,
                        "PGDATA": PGDATA,
                    },
                    secrets=[
                        docker.ServiceTaskSpecContainerSpecSecretArgs(
                            secret_id=password_secret.id,
                            secret_name=password_secret.name,
                            file_name=secret_file,
                            # The entrypoint reads it as root, before it drops to postgres.
                            file_uid="0",
                            file_gid="0",
                            file_mode=0o400,
                        )
                    ],
                    mounts=[
                        docker.ServiceTaskSpecContainerSpecMountArgs(
                            type="volume",
                            source=self.volume.name,
                            target=PGDATA_MOUNT,
                        )
                    ],
                    cap_drops=["ALL"],
                    cap_adds=POSTGRES_CAPS,
                    labels=_container_labels(
                        **{"msops.database": name, "msops.version": database.version}
                    ),
                    healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                        # Over TCP: during initdb the entrypoint's temporary server listens on
                        # the socket only, and must not count as ready.
                        tests=[
                            "CMD",
                            "pg_isready",
                            "-h",
                            "127.0.0.1",
                            "-p",
                            str(POSTGRES_PORT),
                            "-U",
                            database.user,
                            "-d",
                            name,
                        ],
                        interval=docker_duration(health_interval),
                        timeout=docker_duration(3),
                        retries=health_retries,
                        # initdb on a fresh volume takes a while before the server listens.
                        start_period=docker_duration(health_start),
                    ),
                    stop_grace_period=POSTGRES_STOP_GRACE,
                ),
                placement=docker.ServiceTaskSpecPlacementArgs(
                    constraints=[f"node.labels.{self.placement_label} == true"],
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        memory_bytes=POSTGRES_MEMORY, nano_cpus=POSTGRES_NANO_CPUS
                    )
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition="any", delay=UPDATE_DELAY
                ),
                networks_advanceds=[_network(network_id, name)],
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(mode="vip"),
            # stop-first, both ways: two servers on one data directory corrupt it.
            update_config=_update_config("stop-first", monitor),
            rollback_config=_rollback_config("stop-first", monitor),
            converge_config=_converge_config(600),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
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
    prometheus_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str] | None
    prometheus_config: str
    rules: str

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        spec: specs.StackConfig,
        service_names: Mapping[str, str],
        network_id: pulumi.Input[str],
        public_host: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:swarm:Monitoring", name, None, opts)
        self._prefix = name
        monitoring = spec.monitoring
        self.prometheus_service_name = swarm_name(stack, MONITORING_PREFIX + "prometheus")
        # Each service's own A records, one per running task: every replica is scraped, not
        # whichever one the service's virtual IP happens to pick.
        jobs: list[prometheus.ScrapeJob] = []
        for svc_name in scraped_services(spec):
            svc = spec.services[svc_name]
            jobs.append(
                prometheus.ScrapeJob(
                    name=svc_name,
                    metrics_path=svc.metrics_path,
                    dns_sd_names=(f"tasks.{service_names[svc_name]}",),
                    dns_sd_port=svc.port,
                )
            )
        self.prometheus_config = prometheus.render_prometheus_config(
            jobs=jobs,
            scrape_interval=monitoring.scrape_interval,
            rule_files=[PROMETHEUS_RULES_PATH],
            external_labels={"stack": stack},
        )
        self.rules = alert_rules_text(spec)
        prom_config = self._config(
            "prometheus-config", stack, "prometheus-yml", self.prometheus_config
        )
        rules_config = self._config("prometheus-rules", stack, "prometheus-rules", self.rules)
        # Metrics history outlives a replaced (or destroyed) Prometheus, as on the docker backend.
        prom_data = docker.Volume(
            f"{name}-prometheus-data",
            name=f"{pulumi.get_project()}-{stack}-prometheus-data",
            driver="local",
            labels=[docker.VolumeLabelArgs(label="msops.stack", value=stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self._service(
            "prometheus",
            stack=stack,
            image=monitoring.prometheus_image,
            container_port=PROMETHEUS_PORT,
            published_port=monitoring.prometheus_port,
            health_path="/-/healthy",
            user=PROMETHEUS_UID,
            args=[
                f"--config.file={PROMETHEUS_CONFIG_PATH}",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=15d",
            ],
            configs=[
                _config_mount(prom_config, PROMETHEUS_CONFIG_PATH),
                _config_mount(rules_config, PROMETHEUS_RULES_PATH),
            ],
            mounts=[
                docker.ServiceTaskSpecContainerSpecMountArgs(
                    type="volume", source=prom_data.name, target="/prometheus"
                )
            ],
            # Its data is in a local volume, so it stays on the managers; a swarm with one
            # manager keeps it on one node.
            constraints=["node.role == manager"],
            # Prometheus locks its TSDB, so a second task on the same volume could not start.
            order="stop-first",
            network_id=network_id,
        )
        self.prometheus_url = pulumi.Output.from_input(
            f"http://{public_host}:{monitoring.prometheus_port}"
        )

        self.grafana_url = None
        self.grafana_admin_password = None
        if monitoring.grafana:
            self._grafana(stack, spec, network_id)
            self.grafana_url = pulumi.Output.from_input(
                f"http://{public_host}:{monitoring.grafana_port}"
            )
        self.register_outputs(
            {
                "prometheusServiceName": self.prometheus_service_name,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
                "grafanaAdminPassword": self.grafana_admin_password,
            }
        )

    def _config(self, resource: str, stack: str, kind: str, data: str) -> docker.ServiceConfig:
        return docker.ServiceConfig(
            f"{self._prefix}-{resource}",
            name=config_name(stack, kind, data),
            data=b64(data),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _grafana(self, stack: str, spec: specs.StackConfig, network_id: pulumi.Input[str]) -> None:
        monitoring = spec.monitoring
        prometheus_internal = f"http://{self.prometheus_service_name}:{PROMETHEUS_PORT}"
        configs = [
            _config_mount(
                self._config(
                    "grafana-datasource",
                    stack,
                    "grafana-datasource",
                    grafana.render_datasource(prometheus_url=prometheus_internal),
                ),
                f"{GRAFANA_PROVISIONING}/datasources/msops.yaml",
            ),
            _config_mount(
                self._config(
                    "grafana-dashboards",
                    stack,
                    "grafana-dashboards",
                    grafana.render_dashboard_provider(path=GRAFANA_DASHBOARDS_PATH),
                ),
                f"{GRAFANA_PROVISIONING}/dashboards/msops.yaml",
            ),
        ]
        for svc_name in spec.services:
            configs.append(
                _config_mount(
                    self._config(
                        f"dashboard-{svc_name}",
                        stack,
                        f"dashboard-{svc_name}",
                        grafana.render_dashboard(service=svc_name),
                    ),
                    f"{GRAFANA_DASHBOARDS_PATH}/{svc_name}.json",
                )
            )
        # Grafana would otherwise start with admin/admin on a port every node publishes.
        admin_password = random.RandomPassword(
            f"{self._prefix}-grafana-admin",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.grafana_admin_password = pulumi.Output.secret(admin_password.result)
        admin_secret = docker.Secret(
            f"{self._prefix}-grafana-admin",
            data=secret_b64(self.grafana_admin_password),
            labels=[docker.SecretLabelArgs(label="msops.stack", value=stack)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret_file = f"{SECRETS_DIR}/grafana-admin-password"
        self._service(
            "grafana",
            stack=stack,
            image=monitoring.grafana_image,
            container_port=GRAFANA_PORT,
            published_port=monitoring.grafana_port,
            health_path="/api/health",
            user=GRAFANA_UID,
            env={
                # Grafana reads any GF_* setting from the file named by GF_*__FILE.
                "GF_SECURITY_ADMIN_PASSWORD__FILE": secret_file,
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_AUTH_ANONYMOUS_ENABLED": "false",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            },
            configs=configs,
            secrets=[
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=admin_secret.id,
                    secret_name=admin_secret.name,
                    file_name=secret_file,
                    file_uid=GRAFANA_UID,
                    file_gid="0",
                    file_mode=0o400,
                )
            ],
            # No volume: datasource and dashboards are provisioned from the stack config, so a
            # Grafana started anywhere in the swarm comes back the same.
            mounts=[
                docker.ServiceTaskSpecContainerSpecMountArgs(
                    type="tmpfs",
                    target="/var/lib/grafana",
                    tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
                        size_bytes=GRAFANA_STATE_BYTES
                    ),
                )
            ],
            constraints=[],
            # Nothing is shared between two Grafana tasks, so dashboards stay up during updates.
            order="start-first",
            network_id=network_id,
        )

    def _service(
        self,
        role: str,
        *,
        stack: str,
        image: str,
        container_port: int,
        published_port: int,
        health_path: str,
        user: str,
        network_id: pulumi.Input[str],
        configs: Sequence[docker.ServiceTaskSpecContainerSpecConfigArgs],
        mounts: Sequence[docker.ServiceTaskSpecContainerSpecMountArgs],
        constraints: Sequence[str],
        order: str,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Sequence[docker.ServiceTaskSpecContainerSpecSecretArgs] | None = None,
    ) -> docker.Service:
        interval, retries, start = 10.0, 3, 20.0
        monitor = docker_duration(start + interval * retries)
        url = f"http://127.0.0.1:{container_port}{health_path}"
        version = image_version(image)
        return docker.Service(
            f"{self._prefix}-{role}",
            name=swarm_name(stack, MONITORING_PREFIX + role),
            labels=_labels(
                **{
                    "msops.stack": stack,
                    "msops.monitoring": role,
                    "msops.image": image,
                    "msops.version": version,
                }
            ),
            mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=image,
                    args=list(args) if args else None,
                    env=dict(env) if env else None,
                    user=user,
                    read_only=True,
                    cap_drops=["ALL"],
                    configs=list(configs),
                    secrets=list(secrets) if secrets else None,
                    mounts=[*mounts, _tmp_mount()],
                    labels=_container_labels(**{"msops.monitoring": role}),
                    healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                        # Both images ship busybox wget.
                        tests=["CMD", "wget", "-q", "-O", "/dev/null", url],
                        interval=docker_duration(interval),
                        timeout=docker_duration(3),
                        retries=retries,
                        start_period=docker_duration(start),
                    ),
                    stop_grace_period=STOP_GRACE,
                ),
                placement=docker.ServiceTaskSpecPlacementArgs(
                    constraints=list(constraints) or None
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        memory_bytes=MONITORING_MEMORY, nano_cpus=MONITORING_NANO_CPUS
                    )
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition="any", delay=UPDATE_DELAY
                ),
                networks_advanceds=[_network(network_id, MONITORING_PREFIX + role)],
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(
                mode="vip",
                ports=[
                    docker.ServiceEndpointSpecPortArgs(
                        name="http",
                        protocol="tcp",
                        target_port=container_port,
                        published_port=published_port,
                        publish_mode="ingress",
                    )
                ],
            ),
            update_config=_update_config(order, monitor),
            rollback_config=_rollback_config(order, monitor),
            converge_config=_converge_config(300),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )


class SwarmPlatform(pulumi.ComponentResource):
    """Everything a stack owns on a swarm: its overlay network, databases, services, monitoring."""

    urls: dict[str, pulumi.Output[str]]
    prometheus_url: pulumi.Output[str] | None
    grafana_url: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str] | None
    network: docker.Network
    services: dict[str, SwarmService]
    databases: dict[str, SwarmPostgres]
    monitoring: SwarmMonitoring | None

    def __init__(
        self,
        name: str,
        spec: specs.StackConfig,
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:swarm:Platform", name, None, opts)
        stack = name
        host = public_host(spec.target)
        child = child_options(self, name, spec.target.docker_host)

        self.network = docker.Network(
            f"{name}-network",
            driver="overlay",
            # Attachable, so `docker run --network` can reach the services to debug them.
            attachable=True,
            labels=[docker.NetworkLabelArgs(label="msops.stack", value=stack)],
            opts=child,
        )

        self.databases = {}
        for db_name, database in spec.databases.items():
            if db_name in secrets.external_db_urls:
                continue
            self.databases[db_name] = SwarmPostgres(
                db_name,
                stack=stack,
                database=database,
                password=secrets.db_passwords[db_name],
                network_id=self.network.id,
                opts=child,
            )

        self.services = {}
        for svc_name, svc in spec.services.items():
            db = self.databases.get(svc.database) if svc.database else None
            secret_vars = sorted(svc.secret_env) + (["DATABASE_URL"] if svc.database else [])
            self.services[svc_name] = SwarmService(
                svc_name,
                stack=stack,
                svc=svc,
                env=secrets.service_env(spec, svc, db.host if db else None),
                secret_vars=secret_vars,
                network_id=self.network.id,
                public_host=host,
                depends_on=[db.service] if db else [],
                opts=child,
            )
        self.urls = {svc_name: s.url for svc_name, s in self.services.items()}

        self.monitoring = None
        self.prometheus_url = None
        self.grafana_url = None
        self.grafana_admin_password = None
        if spec.monitoring.enabled:
            self.monitoring = SwarmMonitoring(
                f"{name}-monitoring",
                stack=stack,
                spec=spec,
                service_names={n: s.service_name for n, s in self.services.items()},
                network_id=self.network.id,
                public_host=host,
                opts=child,
            )
            self.prometheus_url = self.monitoring.prometheus_url
            self.grafana_url = self.monitoring.grafana_url
            self.grafana_admin_password = self.monitoring.grafana_admin_password

        self._warn_about_mesh(spec, host)
        self.register_outputs(
            {
                "urls": self.urls,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
                "network": self.network.name,
            }
        )

    def _warn_about_mesh(self, spec: specs.StackConfig, host: str) -> None:
        """Say once which ports the mesh opens to the network although nothing asked for it."""
        ports = [
            f"services.{n}.lb.port {s.lb.port}"
            for n, s in spec.services.items()
            if s.lb.port is not None and not s.exposed
        ]
        if spec.monitoring.enabled:
            ports.append(f"monitoring.prometheusPort {spec.monitoring.prometheus_port}")
            if spec.monitoring.grafana:
                ports.append(f"monitoring.grafanaPort {spec.monitoring.grafana_port}")
        if ports:
            pulumi.log.warn(
                "the swarm routing mesh publishes "
                + ", ".join(ports)
                + f" on every interface of every node ({host} included); Swarm cannot bind "
                "them to target.bindAddress, so limit who reaches them with a firewall",
                resource=self,
            )
