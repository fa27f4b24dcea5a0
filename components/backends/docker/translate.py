"""The docker backend's whole mapping: plan → pulumi-docker arguments, as plain data.

Each function returns the keyword arguments of one provider resource (snake_case, as the
pulumi_docker classes take them) and the options it needs. Values only known at deploy time
(a network's name, an image ID, a secret) come in as parameters and are placed unchanged,
so these functions run, and are tested, without Pulumi.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.artifacts import grafana as grafana_files
from components.artifacts import nginx, prometheus
from components.backends.common import (
    Args,
    alert_rules,
    grafana_env,
    grafana_ini,
    healthcheck,
    http_check_command,
    migration_of,
    monitoring_of,
)
from components.plan import model
from components.vocabulary import (
    EXPOSED_MARK,
    LABEL_COMPONENT,
    LABEL_DATABASE,
    LABEL_IMAGE_ID,
    LABEL_REPLICA,
    LABEL_ROLE,
    LABEL_SCHEMA,
    LABEL_SECRET_ENV,
    LABEL_SERVICE,
    LABEL_STACK,
    LABEL_TRACK,
    LABEL_VERSION,
    ROLE_DATABASE,
    ROLE_LB,
    ROLE_MIGRATION,
    ROLE_MONITORING,
    ROLE_REPLICA,
    TRACK_CANARY,
    WAIVER_PREFIX,
)

# Every container msops runs restarts after a crash or a daemon restart, not after `docker stop`.
RESTART = "unless-stopped"
NO_NEW_PRIVILEGES = ["no-new-privileges:true"]
# The writable scratch space of a read-only or non-root container; noexec so nothing dropped
# there can be run.
TMPFS = {"/tmp": "rw,noexec,nosuid,size=64m"}
# The provider has no update for these and does not mark them ForceNew, so a change would be
# recorded in state without reaching the container; replacing is the only way to apply it.
REPLACE_ON = ["healthcheck", "tmpfs"]

LB_CONF = "/etc/nginx/nginx.conf"
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES = "/etc/prometheus/rules/msops.rules.yml"
PROMETHEUS_DATA = "/prometheus"
GRAFANA_DATASOURCES = "/etc/grafana/provisioning/datasources/msops.yaml"
GRAFANA_PROVIDERS = "/etc/grafana/provisioning/dashboards/msops.yaml"
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"

MIB = 1024 * 1024


# --- values ---------------------------------------------------------------------------------------


def megabytes(size: int) -> int:
    """Bytes in whole MB, rounded up, as the provider's `memory` takes it (6 MB at least)."""
    return max(6, math.ceil(size / MIB))


def cpus(millis: int) -> str:
    return f"{millis / 1000:g}"


def url_host(bind: str) -> str:
    """The host part of a URL for a port bound to `bind`; a wildcard bind is reached locally."""
    host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
    return f"[{host}]" if ":" in host else host


def labels(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"label": k, "value": v} for k, v in sorted(values.items())]


def secret_env_mark(names: Sequence[str]) -> dict[str, str]:
    """The label naming the variables whose values are Pulumi secrets ({} when there are none):
    the policies check every other variable as plain (LABEL_SECRET_ENV)."""
    return {LABEL_SECRET_ENV: ",".join(sorted(names))} if names else {}


def wget_test(check: model.HealthCheck) -> list[str]:
    """A health check command for images with busybox wget (nginx, Prometheus, Grafana)."""
    return ["CMD", "wget", "-q", "-O", "/dev/null", check.url]


def published(bind: str, internal: int, external: int) -> list[dict[str, Any]]:
    return [{"internal": internal, "external": external, "ip": bind}]


def network_attachment(network: Any, alias: str) -> list[dict[str, Any]]:
    return [{"name": network, "aliases": [alias]}]


def limits(resources: model.Resources) -> dict[str, Any]:
    return {"memory": megabytes(resources.memory_limit), "cpus": cpus(resources.cpu_limit)}


def reservations(resources: model.Resources) -> dict[str, Any]:
    """Limits and requests: the request as a memory reservation, and as a relative CPU
    weight, 1024 per CPU, as Kubernetes maps it."""
    return {
        **limits(resources),
        "memory_reservation": megabytes(resources.memory_request),
        "cpu_shares": max(2, round(resources.cpu_request * 1024 / 1000)),
    }


def uploaded_config_hardening(stop_grace: int) -> dict[str, Any]:
    """The containers msops uploads config into (LB, Prometheus, Grafana).

    Not read_only: Docker refuses any upload (the provider copies to "/") into a container
    whose root filesystem is read-only. The non-root user, with every capability dropped,
    still cannot write the root-owned config.
    """
    return {
        "read_only": False,
        "tmpfs": TMPFS,
        "capabilities": {"drops": ["ALL"]},
        "security_opts": NO_NEW_PRIVILEGES,
        # SIGTERM and time to drain; the provider otherwise removes with SIGKILL.
        "destroy_grace_seconds": stop_grace,
    }


def waited(check: model.HealthCheck, test: Sequence[str]) -> dict[str, Any]:
    """A health check and a deploy that waits for it, restarting after a crash."""
    return {
        "healthcheck": healthcheck(check, test),
        "wait": True,
        "wait_timeout": check.wait,
        "restart": RESTART,
    }


# --- resources ------------------------------------------------------------------------------------


def network(plan: model.StackPlan) -> Args:
    """A fixed name, per project and stack: `docker run --network msops-dev-net` reaches the
    services for debugging, and two stacks on one host stay apart."""
    return Args(
        f"{plan.stack}-net",
        {
            "name": plan.network_name,
            "driver": "bridge",
            "labels": [{"label": LABEL_STACK, "value": plan.stack}],
        },
    )


def remote_image(ref: str) -> Args:
    """One pull per image reference in the stack, kept on destroy: another stack on this host
    may run the same image."""
    name = f"image-{ref}".replace("/", "-").replace(":", "-").replace("@", "-")
    return Args(name, {"name": ref, "keep_locally": True})


def built_image(component: str, workload: model.Workload, project_root: Path) -> Args:
    """Build the image from its local context, for the daemon's own architecture; dev needs
    no registry, so nothing is pushed."""
    assert workload.build is not None
    context = (project_root / workload.build).resolve()
    return Args(
        f"{component}-image",
        {"image_name": workload.image, "build": {"context": str(context)}, "skip_push": True},
    )


def replica_number(workload: model.Workload, index: int) -> str:
    """`2`, or `canary-1` for a canary's replica: how replicas are told apart in names."""
    return f"canary-{index}" if workload.track == TRACK_CANARY else str(index)


def replica_id(workload: model.Workload, index: int) -> str:
    """`web-2`, or `web-canary-1` for a canary's replica."""
    return f"{workload.name}-{replica_number(workload, index)}"


def replica_env(workload: model.Workload, index: int) -> dict[str, str]:
    """A replica's plain environment; REPLICA_ID exists only where replicas are numbered.
    The spec's own env wins over it."""
    return {"REPLICA_ID": replica_id(workload, index), **dict(workload.env)}


def replica(
    plan: model.StackPlan,
    workload: model.Workload,
    index: int,
    *,
    component: str,
    image: Any,
    image_id: Any,
    network_name: Any,
    envs: Any,
    schema: Any = None,
) -> Args:
    """One replica. No `name`: Pulumi auto-names it, so a new image is rolled out
    create-before-delete, the new replica healthy before the old one goes. A canary's
    replicas answer to the same alias, so the LB sends them their share of the requests.

    `schema`, for a service with migrations, is its migration's result
    (`common.migration_gate`): known only once the migration exited 0, so no replica of a
    release whose migration failed is created, and the old ones stay."""
    res = workload.resources
    marks = {LABEL_SCHEMA: schema} if schema is not None else {}
    track = {LABEL_TRACK: TRACK_CANARY} if workload.track == TRACK_CANARY else {}
    return Args(
        f"{component}-{replica_number(workload, index)}",
        {
            "image": image,
            "envs": envs,
            "labels": labels(
                {
                    LABEL_STACK: plan.stack,
                    LABEL_SERVICE: workload.name,
                    LABEL_ROLE: ROLE_REPLICA,
                    LABEL_VERSION: workload.version,
                    LABEL_REPLICA: str(index),
                    # Follows a rebuild of the same tag, which the name alone hides.
                    LABEL_IMAGE_ID: image_id,
                }
                | marks
                | track
                | secret_env_mark(workload.secret_vars)
            ),
            "networks_advanced": network_attachment(network_name, workload.name),
            # Readiness: Docker does not restart an unhealthy container, and `wait` holds a
            # rollout until the new replica is ready, before the old one is removed.
            **waited(workload.readiness, http_check_command(workload.readiness)),
            **reservations(res),
            "user": str(workload.security.user),
            "read_only": workload.security.read_only_root,
            "tmpfs": TMPFS,
            "capabilities": {"drops": ["ALL"]},
            "security_opts": NO_NEW_PRIVILEGES,
            "destroy_grace_seconds": workload.stop_grace,
        },
        {
            "replace_on_changes": REPLACE_ON,
            # Read back from Docker, env values would otherwise be plain in state.
            "additional_secret_outputs": ["envs"] if workload.secret_env else None,
        },
    )


def migration(
    plan: model.StackPlan,
    workload: model.Workload,
    *,
    name: str,
    image: Any,
    image_id: Any,
    network: Any,
    envs: Any,
    uploads: Any,
) -> Args:
    """The one-off container that runs a service's migration to completion before its replicas.

    `attach` makes the provider wait for it to exit and record `exit_code` and (`logs`) its
    output, but a non-zero exit does not fail the resource: the replicas take the result of
    `common.migration_gate` as an input instead. `must_run` false, never restarted, never
    removed on exit (`rm` would make the provider lose it): it stays, exited, until the next
    migration replaces it. Auto-named, so a new one runs before the old one goes. On the
    stack network with no alias: nothing finds it by name. The secrets are files (`uploads`),
    which a read-only root filesystem would refuse.
    """
    migration = migration_of(workload)
    res = workload.resources
    return Args(
        name,
        {
            "image": image,
            "command": list(migration.command),
            "envs": envs,
            "uploads": uploads,
            "labels": labels(
                {
                    LABEL_STACK: plan.stack,
                    LABEL_SERVICE: workload.name,
                    LABEL_ROLE: ROLE_MIGRATION,
                    LABEL_VERSION: workload.version,
                    LABEL_SCHEMA: str(migration.target_version),
                    LABEL_IMAGE_ID: image_id,
                }
            ),
            "networks_advanced": [{"name": network}],
            "must_run": False,
            "attach": True,
            "logs": True,
            "rm": False,
            "restart": "no",
            **limits(res),
            "user": str(workload.security.user),
            "read_only": False,
            "tmpfs": TMPFS,
            "capabilities": {"drops": ["ALL"]},
            "security_opts": NO_NEW_PRIVILEGES,
        },
        {
            # Its output could quote a secret, and the uploads are the secrets.
            "additional_secret_outputs": ["uploads", "containerLogs"],
            # The provider waits this long for the container to exit, then fails the update.
            "custom_timeouts": {"create": f"{migration.timeout}s"},
        },
    )


def lb_conf(workload: model.Workload) -> str:
    """The LB's nginx.conf: it finds the replicas at run time through the service's network
    alias in Docker's DNS, so it is the same whatever replicas run, and never replaced by a
    scale, a rollout or a rollback."""
    lb = workload.lb
    assert lb is not None
    return nginx.render_nginx_conf(
        service=workload.name,
        port=workload.port,
        listen=str(lb.port),
        health_path=workload.liveness.path,
        resolver=nginx.DOCKER_DNS,
    )


def load_balancer(
    plan: model.StackPlan,
    workload: model.Workload,
    *,
    component: str,
    image: Any,
    network_name: Any,
) -> Args:
    """The service's nginx LB, with its config uploaded into it."""
    lb = workload.lb
    assert lb is not None
    marks = {EXPOSED_MARK: "true"} if workload.exposed else {}
    return Args(
        f"{component}-lb",
        {
            "image": image,
            # `uploads` is ForceNew in the provider schema: a config that changed with the
            # replicas would replace the LB on every rollout, which this one never does.
            "uploads": [{"file": LB_CONF, "content": lb_conf(workload)}],
            "labels": labels(
                {LABEL_STACK: plan.stack, LABEL_SERVICE: workload.name, LABEL_ROLE: ROLE_LB} | marks
            ),
            "networks_advanced": network_attachment(network_name, lb.alias),
            "ports": None
            if lb.published_port is None
            else published(lb.bind_address, lb.port, lb.published_port),
            **waited(lb.health, wget_test(lb.health)),
            **limits(lb.resources),
            "user": str(lb.security.user),
            **uploaded_config_hardening(lb.stop_grace),
        },
        {
            # Two LBs cannot hold one host port, so a published LB goes before its
            # successor starts; an unpublished one is swapped without a gap.
            "delete_before_replace": lb.published_port is not None,
            "replace_on_changes": REPLACE_ON,
        },
    )


def lb_url(workload: model.Workload) -> str | None:
    lb = workload.lb
    if lb is None:
        return None
    if lb.published_port is not None:
        return f"http://{url_host(lb.bind_address)}:{lb.published_port}"
    return f"http://{lb.alias}:{lb.port}"


def database_volume(plan: model.StackPlan, db: model.Database, *, component: str) -> Args:
    """A fixed name: after a destroy the retained volume is found again by the next `up`."""
    return Args(
        f"{component}-data",
        {
            "name": db.volume_name,
            "labels": labels(
                {
                    LABEL_STACK: plan.stack,
                    LABEL_DATABASE: db.name,
                    LABEL_ROLE: ROLE_DATABASE,
                }
            ),
        },
        # No size label: a changed label replaces a volume, which protect refuses, so a new
        # `storage` would block every deploy; the local driver cannot enforce a size anyway.
        {"protect": True, "retain_on_delete": True},
    )


DATABASE_PASSWORD_VAR = "POSTGRES_PASSWORD"
GRAFANA_PASSWORD_VAR = "GF_SECURITY_ADMIN_PASSWORD"


def database_env(db: model.Database, password: Any) -> dict[str, Any]:
    return {
        "POSTGRES_USER": db.user,
        "POSTGRES_DB": db.name,
        DATABASE_PASSWORD_VAR: password,
        "PGDATA": db.data_dir,
    }


def database(
    plan: model.StackPlan,
    db: model.Database,
    *,
    component: str,
    image: Any,
    network_name: Any,
    volume_name: Any,
    envs: Any,
) -> Args:
    """Postgres with its data on the volume. Services reach it by its alias, so the container
    itself is auto-named and two stacks on one host never clash."""
    return Args(
        component,
        {
            "image": image,
            "envs": envs,
            "volumes": [{"volume_name": volume_name, "container_path": db.data_mount}],
            "networks_advanced": network_attachment(network_name, db.name),
            **waited(db.health, ["CMD", *db.health.command]),
            "labels": labels(
                {
                    LABEL_STACK: plan.stack,
                    LABEL_DATABASE: db.name,
                    LABEL_ROLE: ROLE_DATABASE,
                    LABEL_VERSION: db.version,
                    # An explicit, reviewed exception to the containers-non-root policy.
                    f"{WAIVER_PREFIX}containers-non-root": "the official postgres entrypoint "
                    "starts as root only to own PGDATA, then runs the server as postgres (uid 70)",
                }
                | secret_env_mark([DATABASE_PASSWORD_VAR])
            ),
            **reservations(db.resources),
            "capabilities": {"drops": ["ALL"], "adds": list(db.security.capabilities)},
            "security_opts": NO_NEW_PRIVILEGES,
            "destroy_grace_seconds": db.stop_grace,
        },
        {
            # Two servers must never open one data directory, even for a moment.
            "delete_before_replace": True,
            "replace_on_changes": REPLACE_ON,
            "additional_secret_outputs": ["envs"],
        },
    )


def prometheus_volume(plan: model.StackPlan, *, component: str) -> Args:
    """Metrics history outlives a replaced (or destroyed) Prometheus container."""
    return Args(
        f"{component}-prometheus-data",
        {
            "name": monitoring_of(plan).prometheus.volume_name,
            "labels": labels({LABEL_STACK: plan.stack, LABEL_ROLE: ROLE_MONITORING}),
        },
        {"retain_on_delete": True},
    )


def prometheus_config(plan: model.StackPlan) -> str:
    """Every scraped service's replicas found through its network alias (DNS A records, as
    on swarm), so a scale or a rollout leaves the config, and Prometheus, as they are."""
    mon = monitoring_of(plan)
    return prometheus.render_prometheus_config(
        jobs=[
            prometheus.ScrapeJob(
                name=job.service,
                metrics_path=job.metrics_path,
                dns_sd_names=(job.service,),
                dns_sd_port=job.port,
                dns_sd_refresh=mon.discovery_refresh,
            )
            for job in mon.jobs
        ],
        scrape_interval=mon.scrape_interval,
        rule_files=[PROMETHEUS_RULES],
        external_labels={"stack": plan.stack},
    )


def prometheus_server(
    plan: model.StackPlan,
    *,
    component: str,
    image: Any,
    network_name: Any,
    volume_name: Any,
) -> Args:
    prom = monitoring_of(plan).prometheus
    return Args(
        f"{component}-prometheus",
        {
            "image": image,
            "uploads": [
                {"file": PROMETHEUS_CONFIG, "content": prometheus_config(plan)},
                {"file": PROMETHEUS_RULES, "content": alert_rules(plan)},
            ],
            "volumes": [{"volume_name": volume_name, "container_path": PROMETHEUS_DATA}],
            "labels": labels(
                {
                    LABEL_STACK: plan.stack,
                    LABEL_ROLE: ROLE_MONITORING,
                    LABEL_COMPONENT: "prometheus",
                }
            ),
            "networks_advanced": network_attachment(network_name, prom.alias),
            "ports": published(plan.target.bind_address, prom.port, prom.published_port),
            **waited(prom.health, wget_test(prom.health)),
            **limits(prom.resources),
            "user": str(prom.security.user),
            **uploaded_config_hardening(prom.stop_grace),
        },
        {
            # The TSDB is locked by one server at a time, and the host port is single too.
            "delete_before_replace": True,
            "replace_on_changes": REPLACE_ON,
        },
    )


def grafana_uploads(plan: model.StackPlan) -> list[dict[str, Any]]:
    """Datasource, dashboard provider and one dashboard per service."""
    mon = monitoring_of(plan)
    graf = mon.grafana
    assert graf is not None
    prom = mon.prometheus
    return [
        {
            "file": GRAFANA_DATASOURCES,
            "content": grafana_files.render_datasource(
                prometheus_url=f"http://{prom.alias}:{prom.port}"
            ),
        },
        {
            "file": GRAFANA_PROVIDERS,
            "content": grafana_files.render_dashboard_provider(path=GRAFANA_DASHBOARDS),
        },
        *[
            {
                "file": f"{GRAFANA_DASHBOARDS}/{svc}.json",
                "content": grafana_files.render_dashboard(service=svc),
            }
            for svc in graf.dashboards
        ],
    ]


def grafana_settings(plan: model.StackPlan, admin_password: Any) -> dict[str, Any]:
    env: dict[str, Any] = grafana_env(grafana_ini(plan, GRAFANA_DASHBOARDS))
    return {**env, GRAFANA_PASSWORD_VAR: admin_password}


def grafana(
    plan: model.StackPlan,
    *,
    component: str,
    image: Any,
    network_name: Any,
    envs: Any,
    uploads: list[dict[str, Any]],
) -> Args:
    """No volume: datasource and dashboards are provisioned from the stack config, so a
    replaced Grafana comes back the same."""
    graf = monitoring_of(plan).grafana
    assert graf is not None
    return Args(
        f"{component}-grafana",
        {
            "image": image,
            "envs": envs,
            "uploads": uploads,
            "labels": labels(
                {LABEL_STACK: plan.stack, LABEL_ROLE: ROLE_MONITORING, LABEL_COMPONENT: "grafana"}
                | secret_env_mark([GRAFANA_PASSWORD_VAR])
            ),
            "networks_advanced": network_attachment(network_name, graf.alias),
            "ports": published(plan.target.bind_address, graf.port, graf.published_port),
            **waited(graf.health, wget_test(graf.health)),
            **limits(graf.resources),
            "user": str(graf.security.user),
            **uploaded_config_hardening(graf.stop_grace),
        },
        {
            "delete_before_replace": True,
            "replace_on_changes": REPLACE_ON,
            "additional_secret_outputs": ["envs"],
        },
    )


def monitoring_urls(plan: model.StackPlan) -> tuple[str, str | None]:
    mon = monitoring_of(plan)
    host = url_host(plan.target.bind_address)
    grafana_url = f"http://{host}:{mon.grafana.published_port}" if mon.grafana else None
    return f"http://{host}:{mon.prometheus.published_port}", grafana_url


def config_problems(plan: model.StackPlan) -> list[str]:
    """Names that two things would answer to on the stack network."""
    owners: dict[str, list[str]] = {}
    for w in plan.workloads:
        owners.setdefault(w.name, []).append(f"msops:services.{w.name}")
        owners.setdefault(f"{w.name}-lb", []).append(f"msops:services.{w.name} (its LB)")
    for db in plan.databases:
        owners.setdefault(db.name, []).append(f"msops:databases.{db.name}")
    if plan.monitoring is not None:
        owners.setdefault(plan.monitoring.prometheus.alias, []).append(
            "msops:monitoring (Prometheus)"
        )
        if plan.monitoring.grafana is not None:
            owners.setdefault(plan.monitoring.grafana.alias, []).append(
                "msops:monitoring (Grafana)"
            )
    return [
        f"{' and '.join(keys)} both answer to {alias!r} on the docker network; rename one"
        for alias, keys in owners.items()
        if len(keys) > 1
    ]
