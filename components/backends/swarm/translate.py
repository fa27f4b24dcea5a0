"""The swarm backend's whole mapping: plan → pulumi-docker arguments, as plain data.

Each function returns the keyword arguments of one provider resource (snake_case, as the
pulumi_docker classes take them, nested blocks as plain dicts) and the options it needs.
Values only known at deploy time (the overlay network's ID, a secret's or config's ID, a
secret value, DOCKER_HOST) come in as parameters and are placed unchanged, so these functions
run, and are tested, without Pulumi.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from components.artifacts import grafana as grafana_files
from components.artifacts import prometheus as prometheus_files
from components.backends import common
from components.backends.common import (
    Args,
    alert_rules,
    go_duration,
    grafana_env,
    grafana_ini,
    monitoring_of,
)
from components.backends.docker import translate as docker_translate
from components.plan import model
from components.plan.builder import SWARM_MONITORING_PREFIX
from components.vocabulary import (
    LABEL_DATABASE,
    LABEL_IMAGE,
    LABEL_MONITORING,
    LABEL_SCHEMA,
    LABEL_SERVICE,
    LABEL_STACK,
    LABEL_TRACK,
    LABEL_VERSION,
    TRACK_CANARY,
    WAIVER_PREFIX,
)

# Docker rejects service names longer than a DNS label, and config names longer than 64.
MAX_SERVICE_NAME = 63
MAX_CONFIG_NAME = 64
SECRETS_DIR = common.SECRETS_DIR
PROMETHEUS_CONFIG_PATH = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES_PATH = "/etc/prometheus/rules/msops.rules.yml"
PROMETHEUS_DATA_PATH = "/prometheus"
# Outside /var/lib/grafana, which is a tmpfs: a config file inside another mount would be
# hidden by it or not, depending on the order Docker sets the mounts up in.
GRAFANA_DASHBOARDS_PATH = "/etc/grafana/dashboards"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
GRAFANA_STATE_PATH = "/var/lib/grafana"
GRAFANA_STATE_BYTES = 256 * 1024 * 1024
GRAFANA_ADMIN_FILE = f"{SECRETS_DIR}/grafana-admin-password"
# Longer than docker's 24: Grafana's port is published on every node of the swarm.
POSTGRES_PASSWORD_FILE = f"{SECRETS_DIR}/postgres-password"
# How often Pulumi looks at a service while it waits for it to converge, and how long it waits
# for one without a progress deadline of its own.
CONVERGE_DELAY = "5s"
POSTGRES_CONVERGE_SECONDS = 600
MONITORING_CONVERGE_SECONDS = 300
UPDATE_DELAY = "5s"
# No failed task is tolerated. A string, written the way the provider reads it back ("0.0"),
# so a refresh shows no change.
NO_FAILURES = "0.0"
TMP_BYTES = 64 * 1024 * 1024
# Time for in-flight requests to finish on SIGTERM. The provider also waits this long for
# tasks to go away on delete, so the overlay network is not removed while they still use it.
POSTGRES_WAIVER = (
    "the official postgres entrypoint starts as root only to own PGDATA, then runs the server "
    "as postgres (uid 70)"
)
# The routing mesh opens a published port on every interface of every node.
MESH_WARNING = (
    "the swarm routing mesh publishes {ports} on every interface of every node ({host} "
    "included); Swarm cannot bind them to target.bindAddress, so limit who reaches them with "
    "a firewall"
)


# --- names and values -----------------------------------------------------------------------------


def swarm_name(plan: model.StackPlan, name: str) -> str:
    """The Swarm object name `<stack>_<name>`, the way `docker stack deploy` names services.

    The stack part is reduced to a DNS label, so the separator `_` appears only once and two
    (stack, name) pairs can never produce the same name.
    """
    full = f"{plan.prefix}_{name}"
    if len(full) > MAX_SERVICE_NAME:
        raise ValueError(
            f"swarm service name {full!r} is {len(full)} characters, more than Docker's "
            f"{MAX_SERVICE_NAME}; shorten the stack name or msops:services/databases key {name!r}"
        )
    return full


def config_name(plan: model.StackPlan, kind: str, data: str) -> str:
    """A Swarm config name carrying a hash of its content.

    Swarm configs cannot change, so new content must be a new config; a new name lets Pulumi
    create it before deleting the old one, and the service update that swaps them rolls the
    tasks like any other update.
    """
    digest = hashlib.sha256(data.encode()).hexdigest()[:12]
    head = f"{plan.prefix}_{kind}"[: MAX_CONFIG_NAME - len(digest) - 1]
    return f"{head}-{digest}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def duration(seconds: float) -> str:
    """Go's time.Duration, trimmed (`1m`, `1m30s`): what the provider reads back from Swarm."""
    return go_duration(seconds, trim=True)


def labels(values: Mapping[str, str], *, sort: bool = True) -> list[dict[str, str]]:
    items = sorted(values.items()) if sort else list(values.items())
    return [{"label": k, "value": v} for k, v in items]


def public_host(target: model.Target, environ: Mapping[str, str]) -> str:
    """The host shown in URLs: the manager msops talks to, else the bind address.

    The routing mesh publishes a port on every node, so any node's address works; the
    manager is the one the operator already knows. A local socket means this machine.
    """
    for candidate in (target.docker_host, environ.get("DOCKER_HOST")):
        if candidate and urlsplit(candidate).scheme in ("ssh", "tcp", "http", "https"):
            host = urlsplit(candidate).hostname
            if host:
                return f"[{host}]" if ":" in host else host
    if target.bind_address in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{target.bind_address}]" if ":" in target.bind_address else target.bind_address


def service_url(workload: model.Workload, host: str) -> str:
    if workload.published_port is not None:
        return f"http://{host}:{workload.published_port}"
    # Not published: reachable at its alias from the stack's overlay network only.
    return f"http://{workload.name}:{workload.port}"


def monitoring_urls(plan: model.StackPlan, host: str) -> tuple[str, str | None]:
    mon = monitoring_of(plan)
    grafana_url = f"http://{host}:{mon.grafana.published_port}" if mon.grafana else None
    return f"http://{host}:{mon.prometheus.published_port}", grafana_url


def mesh_warning(plan: model.StackPlan, host: str) -> str | None:
    """What the mesh opens to the network although nothing asked for it, or None."""
    ports = [
        f"services.{w.name}.lb.port {w.published_port}"
        for w in plan.workloads
        if w.published_port is not None and not w.exposed
    ]
    if plan.monitoring is not None:
        ports.append(f"monitoring.prometheusPort {plan.monitoring.prometheus.published_port}")
        if plan.monitoring.grafana is not None:
            ports.append(f"monitoring.grafanaPort {plan.monitoring.grafana.published_port}")
    return MESH_WARNING.format(ports=", ".join(ports), host=host) if ports else None


# --- blocks of a docker.Service -------------------------------------------------------------------


def healthcheck(check: model.HealthCheck, tests: Sequence[str]) -> dict[str, Any]:
    return common.healthcheck(check, tests, trim=True)


def update_config(order: str, monitor: float) -> dict[str, Any]:
    """One task at a time; `monitor` is how long Swarm watches a new task before the next one.

    Swarm itself restores the previous spec the moment one task fails its checks.
    """
    return {
        "parallelism": 1,
        "delay": UPDATE_DELAY,
        "order": order,
        "failure_action": "rollback",
        "monitor": duration(monitor),
        "max_failure_ratio": NO_FAILURES,
    }


def rollback_config(order: str, monitor: float) -> dict[str, Any]:
    """A rollback that fails leaves the service as it is for a person to look at; rolling
    "forward" again would bring back the version that just failed."""
    return {
        "parallelism": 1,
        "delay": "0s",
        "order": order,
        "failure_action": "pause",
        "monitor": duration(monitor),
        "max_failure_ratio": NO_FAILURES,
    }


def converge_config(timeout_seconds: float) -> dict[str, str]:
    """Pulumi waits until every task runs the new spec, or reports the failure."""
    return {"delay": CONVERGE_DELAY, "timeout": duration(timeout_seconds)}


def tmpfs_mount(target: str, size_bytes: int) -> dict[str, Any]:
    # No mode: Docker's default for a tmpfs mount is 1777, and the provider reads the mode back
    # without the sticky bit, so writing 0o1777 would show as a change on every refresh.
    return {"type": "tmpfs", "target": target, "tmpfs_options": {"size_bytes": size_bytes}}


def tmp_mount() -> dict[str, Any]:
    """With a read-only root filesystem, /tmp is the one place many programs expect to write."""
    return tmpfs_mount("/tmp", TMP_BYTES)


def volume_mount(source: Any, target: str) -> dict[str, Any]:
    return {"type": "volume", "source": source, "target": target}


def config_mount(config_id: Any, name: Any, path: str) -> dict[str, Any]:
    return {"config_id": config_id, "config_name": name, "file_name": path}


def secret_mount(secret_id: Any, name: Any, path: str, *, uid: int, gid: int) -> dict[str, Any]:
    """A secret file only the owner may read."""
    return {
        "secret_id": secret_id,
        "secret_name": name,
        "file_name": path,
        "file_uid": str(uid),
        "file_gid": str(gid),
        "file_mode": 0o400,
    }


def network_attachment(network_id: Any, alias: str) -> dict[str, Any]:
    # The ID, not the name: the provider reads the ID back, and a name would diff every run.
    return {"name": network_id, "aliases": [alias]}


def nano_cpus(millis: int) -> int:
    return millis * 1_000_000


def limits(resources: model.Resources) -> dict[str, int]:
    return {
        "nano_cpus": nano_cpus(resources.cpu_limit),
        "memory_bytes": resources.memory_limit,
    }


def reservations(resources: model.Resources) -> dict[str, Any]:
    return {
        "limits": limits(resources),
        "reservation": {
            "nano_cpus": nano_cpus(resources.cpu_request),
            "memory_bytes": resources.memory_request,
        },
    }


def endpoint(target_port: int, published_port: int | None) -> dict[str, Any]:
    """A virtual IP, and the port the routing mesh publishes: every node accepts it and
    balances across the tasks."""
    if published_port is None:
        return {"mode": "vip"}
    port = {
        "name": "http",
        "protocol": "tcp",
        "target_port": target_port,
        "published_port": published_port,
        "publish_mode": "ingress",
    }
    return {"mode": "vip", "ports": [port]}


def task_spec(
    container: dict[str, Any],
    *,
    resources: dict[str, Any],
    network_id: Any,
    alias: str,
    constraints: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A task: its container, resources, restart policy, network and, given, its placement."""
    task: dict[str, Any] = {
        "container_spec": {k: v for k, v in container.items() if v is not None},
        "resources": resources,
        "restart_policy": {"condition": "any", "delay": UPDATE_DELAY},
        "networks_advanceds": [network_attachment(network_id, alias)],
    }
    if constraints is not None:
        task["placement"] = {"constraints": list(constraints)} if constraints else {}
    return task


def replicated(
    name: str,
    service_labels: Mapping[str, str],
    *,
    replicas: int,
    task: dict[str, Any],
    endpoint_spec: dict[str, Any],
    order: str,
    monitor: float,
    converge_seconds: float,
) -> dict[str, Any]:
    """A replicated service; updates and rollbacks go task by task in `order`."""
    return {
        "name": name,
        "labels": labels(service_labels),
        "mode": {"replicated": {"replicas": replicas}},
        "task_spec": task,
        "endpoint_spec": endpoint_spec,
        "update_config": update_config(order, monitor),
        "rollback_config": rollback_config(order, monitor),
        "converge_config": converge_config(converge_seconds),
    }


# --- the stack network ----------------------------------------------------------------------------


def network(plan: model.StackPlan, *, component: str) -> Args:
    """An overlay, attachable so that `docker run --network` can reach the services to debug
    them. Auto-named: nothing outside the stack looks it up by name."""
    return Args(
        f"{component}-network",
        {
            "driver": "overlay",
            "attachable": True,
            "labels": labels({LABEL_STACK: plan.stack}),
        },
    )


# --- a microservice -------------------------------------------------------------------------------


def service_key(workload: model.Workload) -> str:
    """The service's own name in the stack: `web`, or `web-canary` for its canary, a second
    swarm service beside the stable one."""
    return f"{workload.name}-canary" if workload.track == TRACK_CANARY else workload.name


def service_secret(plan: model.StackPlan, workload: model.Workload, var: str, *, data: Any) -> Args:
    """The secret value of one variable, as a Docker secret only this service's tasks see."""
    return Args(
        f"{service_key(workload)}-{var.lower().replace('_', '-')}",
        {
            "data": data,
            "labels": labels({LABEL_STACK: plan.stack, LABEL_SERVICE: workload.name}, sort=False),
        },
    )


def group_of(security: model.Security) -> int:
    """The group a workload runs as: its own uid's, unless the plan names one."""
    return security.user if security.run_as_group is None else security.run_as_group


def service_secret_mount(
    workload: model.Workload, var: str, secret_id: Any, name: Any
) -> dict[str, Any]:
    """At /run/secrets/<VAR>, owned by the service's user; `service_env` names it."""
    uid = workload.security.user
    path = f"{SECRETS_DIR}/{var}"
    return secret_mount(secret_id, name, path, uid=uid, gid=group_of(workload.security))


def service_env(workload: model.Workload) -> dict[str, str]:
    """A service's environment: its plain variables, and `<VAR>_FILE=/run/secrets/<VAR>` for
    each secret one (DATABASE_URL_FILE among them). Never a secret's value: Swarm keeps the env
    in the service spec, which `docker service inspect` shows to anyone on a manager. The
    same as a migration container's (`common.migration_env`)."""
    return common.migration_env(workload)


def service_container(
    workload: model.Workload, env: Mapping[str, Any], secrets: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """`env` is `service_env`: the secrets are only files (`secrets`)."""
    # Liveness, not readiness: Swarm replaces a task that turns unhealthy, so a database
    # outage must not fail every task at once (Docker does not; its replicas gate on /readyz).
    security, check = workload.security, workload.liveness
    return {
        "image": workload.image,
        "env": dict(env),
        "user": f"{security.user}:{group_of(security)}",
        "read_only": security.read_only_root,
        # A non-root process has no use for capabilities (Docker lets any user bind low
        # ports inside a container), so none are left to misuse.
        "cap_drops": ["ALL"],
        "labels": labels({LABEL_SERVICE: workload.name, LABEL_VERSION: workload.version}),
        "healthcheck": healthcheck(check, common.http_check_command(check)),
        "mounts": [tmp_mount()],
        "secrets": list(secrets) or None,
        "stop_grace_period": duration(workload.stop_grace),
    }


def migration(
    plan: model.StackPlan,
    workload: model.Workload,
    *,
    image: Any,
    image_id: Any,
    network_id: Any,
    envs: Any,
    uploads: Any,
) -> Args:
    """The service's migration as a one-off container on the manager (the Docker provider's
    daemon), attached to the stack's overlay network, which is attachable for this; the
    pulumi-docker schema has no replicated-job mode for a `docker.Service`, and a replicated
    service is restarted, not run once. The docker backend's container, the same way: the
    service takes its result as an input (`schema`), so a failed migration updates no task.
    The manager pulls the image (`image`) itself.
    """
    return docker_translate.migration(
        plan,
        workload,
        name=common.migration_name(workload),
        image=image,
        image_id=image_id,
        network=network_id,
        envs=envs,
        uploads=uploads,
    )


def _marks(canary: bool, schema: Any) -> dict[str, Any]:
    """A canary's track label, and the migration's result (what makes the tasks wait)."""
    track = {LABEL_TRACK: TRACK_CANARY} if canary else {}
    return track | ({LABEL_SCHEMA: schema} if schema is not None else {})


def service(
    plan: model.StackPlan,
    workload: model.Workload,
    *,
    network_id: Any,
    env: Mapping[str, Any],
    secrets: Sequence[dict[str, Any]],
    schema: Any = None,
) -> Args:
    """One microservice as a replicated Swarm service, updated in place task by task.

    Fixed name, not auto-named: Prometheus finds the tasks at `tasks.<service name>`, and a
    swarm service is updated in place, so the name never has to change.

    A canary is a service of its own with the stable one's network alias, so whoever calls
    the service by name reaches it too: Docker's DNS answers the alias with both services'
    virtual IPs, and a client picking one at random sends each about half its requests,
    whatever their replica counts. It publishes no port: the routing mesh sends a published
    port only to the service that publishes it, the stable one.

    `schema`, with migrations, is the migration's result: known only once it exited 0, so a
    release whose migration failed changes no task.
    """
    canary = workload.track == TRACK_CANARY
    resources = reservations(workload.resources)
    service_labels = {
        LABEL_STACK: plan.stack,
        LABEL_SERVICE: workload.name,
        LABEL_IMAGE: workload.image,
        LABEL_VERSION: workload.version,
    } | _marks(canary, schema)
    task = task_spec(
        service_container(workload, env, secrets),
        resources=resources,
        network_id=network_id,
        alias=workload.name,
    )
    args = replicated(
        swarm_name(plan, service_key(workload)),
        service_labels,
        replicas=workload.replicas,
        task=task,
        endpoint_spec=endpoint(workload.port, None if canary else workload.published_port),
        # start-first: the new task must be healthy before an old one stops, so an update
        # never lowers capacity; a rollback restores a known-good version the same way. One
        # task at a time whatever `rollout` says: its surge and unavailability counts are
        # Kubernetes settings, Swarm has no equivalent for them.
        order="start-first",
        monitor=workload.liveness.unhealthy_after,
        converge_seconds=workload.rollout.progress_deadline,
    )
    options = {
        # The name is fixed, so a replacement (only ever for a change of name or mode) must
        # remove the old service before it can create the new one.
        "delete_before_replace": True,
    }
    return Args(service_key(workload), args, options)


# --- Postgres -------------------------------------------------------------------------------------


def database_secret(plan: model.StackPlan, db: model.Database, *, data: Any) -> Args:
    return Args(
        f"{db.name}-password",
        {
            "data": data,
            "labels": labels({LABEL_STACK: plan.stack, LABEL_DATABASE: db.name}, sort=False),
        },
    )


def database_volume(plan: model.StackPlan, db: model.Database) -> Args:
    """A fixed name: after a destroy the retained volume is found again by the next `up`, and
    Swarm creates a volume of this name on the labelled node when it is not there.

    No size label: any change to a volume replaces it, which protect forbids, so a new
    `storage` would block every deploy. The local driver cannot enforce it anyway.
    """
    return Args(
        f"{db.name}-data",
        {
            "name": db.volume_name,
            "driver": "local",
            "labels": labels({LABEL_STACK: plan.stack, LABEL_DATABASE: db.name}, sort=False),
        },
        # The data outlives the stack: `pulumi destroy` leaves it, and deleting it from the
        # program fails until someone unprotects it on purpose.
        {"protect": True, "retain_on_delete": True},
    )


def placement_constraint(db: model.Database) -> str:
    """A local volume lives on one node, so the task must always land on that node. A label
    rather than node.role == manager: a swarm with three managers would move the database to
    an empty volume on another manager."""
    return f"node.labels.{db.placement_label} == true"


def database_secret_mount(secret_id: Any, name: Any) -> dict[str, Any]:
    """The password file. The entrypoint reads it as root, before it drops to postgres."""
    return secret_mount(secret_id, name, POSTGRES_PASSWORD_FILE, uid=0, gid=0)


def database(
    plan: model.StackPlan,
    db: model.Database,
    *,
    network_id: Any,
    volume_name: Any,
    secrets: Sequence[dict[str, Any]],
) -> Args:
    """Postgres as one replica pinned to its node. Services reach it at its name on the overlay
    network; the official image reads the password from a file, so it is in no env var and no
    service spec."""
    container = {
        "image": db.image,
        "env": {
            "POSTGRES_USER": db.user,
            "POSTGRES_DB": db.name,
            "POSTGRES_PASSWORD_FILE": POSTGRES_PASSWORD_FILE,
            "PGDATA": db.data_dir,
        },
        "secrets": list(secrets),
        "mounts": [volume_mount(volume_name, db.data_mount)],
        "cap_drops": ["ALL"],
        "cap_adds": list(db.security.capabilities),
        "labels": labels({LABEL_DATABASE: db.name, LABEL_VERSION: db.version}),
        "healthcheck": healthcheck(db.health, ["CMD", *db.health.command]),
        "stop_grace_period": duration(db.stop_grace),
    }
    service_labels = {
        LABEL_STACK: plan.stack,
        LABEL_DATABASE: db.name,
        LABEL_IMAGE: db.image,
        LABEL_VERSION: db.version,
        # An explicit, reviewed exception to the containers-non-root policy.
        f"{WAIVER_PREFIX}containers-non-root": POSTGRES_WAIVER,
    }
    task = task_spec(
        container,
        resources=reservations(db.resources),
        network_id=network_id,
        alias=db.name,
        constraints=[placement_constraint(db)],
    )
    args = replicated(
        swarm_name(plan, db.name),
        service_labels,
        replicas=1,
        task=task,
        # DNS round robin, no virtual IP: one task needs no balancing, and its name then
        # answers with the task's own address.
        endpoint_spec={"mode": "dnsrr"},
        # stop-first, both ways: two servers on one data directory corrupt it.
        order="stop-first",
        monitor=db.health.unhealthy_after,
        converge_seconds=POSTGRES_CONVERGE_SECONDS,
    )
    return Args(db.name, args, {"delete_before_replace": True})


# --- monitoring -----------------------------------------------------------------------------------


def scrape_names(plan: model.StackPlan, service: str) -> tuple[str, ...]:
    """The service's tasks, and those of its canary for a service rolled out by canary: the
    name is in the config whether a canary runs or not (it then resolves to nothing), so a
    canary starting or ending leaves Prometheus as it is."""
    names = [f"tasks.{swarm_name(plan, service)}"]
    if plan.workload(service).rollout.strategy == "canary":
        names.append(f"tasks.{swarm_name(plan, service + '-canary')}")
    return tuple(names)


def scrape_jobs(plan: model.StackPlan) -> list[prometheus_files.ScrapeJob]:
    """Each scraped service's own A records, one per running task: every replica is scraped,
    not whichever one the service's virtual IP happens to pick."""
    return [
        prometheus_files.ScrapeJob(
            name=job.service,
            metrics_path=job.metrics_path,
            dns_sd_names=scrape_names(plan, job.service),
            dns_sd_port=job.port,
            dns_sd_refresh=monitoring_of(plan).discovery_refresh,
        )
        for job in monitoring_of(plan).jobs
    ]


def prometheus_config(plan: model.StackPlan) -> str:
    return prometheus_files.render_prometheus_config(
        jobs=scrape_jobs(plan),
        scrape_interval=monitoring_of(plan).scrape_interval,
        rule_files=[PROMETHEUS_RULES_PATH],
        external_labels={"stack": plan.stack},
    )


def service_config(
    plan: model.StackPlan, *, component: str, resource: str, kind: str, data: str
) -> Args:
    return Args(
        f"{component}-{resource}",
        {"name": config_name(plan, kind, data), "data": b64(data)},
    )


def prometheus_configs(plan: model.StackPlan, *, component: str) -> list[tuple[Args, str]]:
    """The Prometheus config and rules, each a ServiceConfig and the path it is mounted at."""
    return [
        (
            service_config(
                plan,
                component=component,
                resource="prometheus-config",
                kind="prometheus-yml",
                data=prometheus_config(plan),
            ),
            PROMETHEUS_CONFIG_PATH,
        ),
        (
            service_config(
                plan,
                component=component,
                resource="prometheus-rules",
                kind="prometheus-rules",
                data=alert_rules(plan),
            ),
            PROMETHEUS_RULES_PATH,
        ),
    ]


def prometheus_volume(plan: model.StackPlan, *, component: str) -> Args:
    """Metrics history outlives a replaced (or destroyed) Prometheus, as on the docker backend."""
    return Args(
        f"{component}-prometheus-data",
        {
            "name": monitoring_of(plan).prometheus.volume_name,
            "driver": "local",
            "labels": labels({LABEL_STACK: plan.stack}),
        },
        {"retain_on_delete": True},
    )


def prometheus(
    plan: model.StackPlan,
    *,
    component: str,
    network_id: Any,
    configs: Sequence[dict[str, Any]],
    volume_name: Any,
) -> Args:
    prom = monitoring_of(plan).prometheus
    container = {
        "args": [
            f"--config.file={PROMETHEUS_CONFIG_PATH}",
            f"--storage.tsdb.path={PROMETHEUS_DATA_PATH}",
            f"--storage.tsdb.retention.time={prom.retention}",
        ],
        "configs": list(configs),
        "mounts": [volume_mount(volume_name, PROMETHEUS_DATA_PATH), tmp_mount()],
    }
    return _monitoring_service(
        plan,
        "prometheus",
        prom,
        container,
        component=component,
        network_id=network_id,
        # Its data is in a local volume, so it stays on the managers; a swarm with one
        # manager keeps it on one node.
        constraints=["node.role == manager"],
        # Prometheus locks its TSDB, so a second task on the same volume could not start.
        order="stop-first",
    )


def grafana_admin_secret(plan: model.StackPlan, *, component: str, data: Any) -> Args:
    return Args(
        f"{component}-grafana-admin",
        {"data": data, "labels": labels({LABEL_STACK: plan.stack})},
    )


def grafana_configs(plan: model.StackPlan, *, component: str) -> list[tuple[Args, str]]:
    """Datasource, dashboard provider and one dashboard per service, each a ServiceConfig and
    the path it is mounted at. Prometheus is reached at its service name."""
    mon = monitoring_of(plan)
    assert mon.grafana is not None
    prom = mon.prometheus
    prometheus_url = f"http://{swarm_name(plan, prom.alias)}:{prom.port}"
    files = [
        (
            "grafana-datasource",
            f"{GRAFANA_PROVISIONING}/datasources/msops.yaml",
            grafana_files.render_datasource(prometheus_url=prometheus_url),
        ),
        (
            "grafana-dashboards",
            f"{GRAFANA_PROVISIONING}/dashboards/msops.yaml",
            grafana_files.render_dashboard_provider(path=GRAFANA_DASHBOARDS_PATH),
        ),
    ]
    files += [
        (
            f"dashboard-{svc}",
            f"{GRAFANA_DASHBOARDS_PATH}/{svc}.json",
            grafana_files.render_dashboard(service=svc),
        )
        for svc in mon.grafana.dashboards
    ]
    return [
        (service_config(plan, component=component, resource=kind, kind=kind, data=data), path)
        for kind, path, data in files
    ]


def grafana(
    plan: model.StackPlan,
    *,
    component: str,
    network_id: Any,
    configs: Sequence[dict[str, Any]],
    admin_secret_id: Any,
    admin_secret_name: Any,
) -> Args:
    graf = monitoring_of(plan).grafana
    assert graf is not None
    container = {
        "env": {
            **grafana_env(grafana_ini(plan, GRAFANA_DASHBOARDS_PATH)),
            # Grafana reads any GF_* setting from the file named by GF_*__FILE.
            "GF_SECURITY_ADMIN_PASSWORD__FILE": GRAFANA_ADMIN_FILE,
        },
        "configs": list(configs),
        "secrets": [
            secret_mount(
                admin_secret_id,
                admin_secret_name,
                GRAFANA_ADMIN_FILE,
                uid=graf.security.user,
                gid=0,
            )
        ],
        # No volume: datasource and dashboards are provisioned from the stack config, so a
        # Grafana started anywhere in the swarm comes back the same.
        "mounts": [tmpfs_mount(GRAFANA_STATE_PATH, GRAFANA_STATE_BYTES), tmp_mount()],
    }
    return _monitoring_service(
        plan,
        "grafana",
        graf,
        container,
        component=component,
        network_id=network_id,
        constraints=[],
        # Nothing is shared between two Grafana tasks, so dashboards stay up during updates.
        order="start-first",
    )


def _monitoring_service(
    plan: model.StackPlan,
    role: str,
    server: model.Prometheus | model.Grafana,
    container: dict[str, Any],
    *,
    component: str,
    network_id: Any,
    constraints: Sequence[str],
    order: str,
) -> Args:
    """What Prometheus and Grafana share: one replica of a read-only, non-root container with
    its health check (both images ship busybox wget) and its published port."""
    check = server.health
    full = {
        "image": server.image,
        "user": str(server.security.user),
        "read_only": server.security.read_only_root,
        "cap_drops": ["ALL"],
        "labels": labels({LABEL_MONITORING: role}),
        "healthcheck": healthcheck(check, ["CMD", "wget", "-q", "-O", "/dev/null", check.url]),
        "stop_grace_period": duration(server.stop_grace),
        **container,
    }
    service_labels = {
        LABEL_STACK: plan.stack,
        LABEL_MONITORING: role,
        LABEL_IMAGE: server.image,
        LABEL_VERSION: server.version,
    }
    task = task_spec(
        full,
        resources={"limits": limits(server.resources)},
        network_id=network_id,
        alias=server.alias,
        constraints=constraints,
    )
    args = replicated(
        swarm_name(plan, server.alias),
        service_labels,
        replicas=1,
        task=task,
        endpoint_spec=endpoint(server.port, server.published_port),
        order=order,
        monitor=check.unhealthy_after,
        converge_seconds=MONITORING_CONVERGE_SECONDS,
    )
    return Args(f"{component}-{role}", args, {"delete_before_replace": True})


# --- config rules ---------------------------------------------------------------------------------


def config_problems(plan: model.StackPlan) -> list[str]:
    """Names that would clash on the swarm: each becomes a service name and a network alias.

    Checked by the Platform before any resource is registered. An external database runs
    nothing on the swarm, so its name takes nothing there.
    """
    problems: list[str] = []
    services = [w.name for w in plan.workloads]
    databases = [db.name for db in plan.databases]
    for section, names in (("services", services), ("databases", databases)):
        for name in names:
            key = f"msops:{section}.{name}"
            if name.startswith(SWARM_MONITORING_PREFIX):
                problems.append(
                    f"{key}: names starting with {SWARM_MONITORING_PREFIX!r} are kept for msops' "
                    "monitoring services on swarm; rename it"
                )
            problems += _name_problem(plan, name, key)
    for workload in plan.workloads:
        if workload.rollout.strategy == "canary":
            key = f"msops:services.{workload.name}.rollout.strategy"
            problems += _name_problem(plan, f"{workload.name}-canary", key)
    for name in sorted(set(services) & set(databases)):
        problems.append(
            f"msops:databases.{name}: {name!r} is also a service; on swarm both would answer "
            "to that name on the stack network, so rename one"
        )
    if plan.monitoring is not None:
        # The longer of the two monitoring names.
        problems += _name_problem(plan, plan.monitoring.prometheus.alias, "msops:monitoring")
    return problems


def _name_problem(plan: model.StackPlan, name: str, key: str) -> list[str]:
    try:
        swarm_name(plan, name)
    except ValueError as exc:
        return [f"{key}: {exc}"]
    return []
