"""Builds the StackPlan from a validated StackConfig: every default and derivation is here."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Literal

from pydantic import ValidationError

from components import spec as specs
from components.plan import model
from components.plan import rollout as rollouts
from components.vocabulary import MIGRATE_DOWN_ENV, down_command, parse_image

# --- constants of what msops runs next to the services ----------------------------------------

# The port nginx listens on inside the LB container, and the uid of `nginx` in its image.
LB_PORT = 8080
LB_USER = 101
LB_HEALTH_PATH = "/lb-healthz"

# The port a Kubernetes Service of a workload listens on, whatever the container's port.
KUBERNETES_SERVICE_PORT = 80

POSTGRES_PORT = 5432
# The uid and gid of `postgres` in the official alpine images.
POSTGRES_UID = 70
# The official entrypoint starts as root, chowns PGDATA and steps down to `postgres`; these
# are the capabilities that needs where it starts as root (docker, swarm).
POSTGRES_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
PGDATA_MOUNT = "/var/lib/postgresql/data"
# A subdirectory, not the mount point itself: initdb refuses a non-empty directory, and a
# volume root can hold lost+found.
PGDATA = f"{PGDATA_MOUNT}/pgdata"

PROMETHEUS_PORT = 9090
PROMETHEUS_UID = 65534
PROMETHEUS_ALIAS = "prometheus"
PROMETHEUS_RETENTION = "15d"
GRAFANA_PORT = 3000
GRAFANA_UID = 472
GRAFANA_ALIAS = "grafana"
# kube-prometheus-stack provisions its Prometheus datasource under this uid, and msops'
# own Grafana uses the same one, so a dashboard works in both.
GRAFANA_DATASOURCE_UID = "prometheus"
# Prefix of the monitoring services' names on swarm; stack services may not use it.
SWARM_MONITORING_PREFIX = "msops-"
DISCOVERY_REFRESH = "5s"
# SIGTERM, then this long to finish in-flight requests before SIGKILL, on every backend.
STOP_GRACE_SECONDS = 15
# Postgres finishes a fast shutdown (a checkpoint) well within this.
POSTGRES_STOP_GRACE_SECONDS = 30
# The provider's own minimum; health waits are never shorter than this.
MIN_WAIT_SECONDS = 60

MIB = 1024 * 1024

# Kubernetes: one more pod after a failed one, for what a cluster does to pods (an eviction, a
# node lost); docker and swarm run the migration once. A migration must be safe to re-run.
MIGRATION_RETRIES = 1
# A day to read a finished migration's logs (`kubectl logs job/<name>`) before Kubernetes
# deletes the Job; Pulumi's state keeps it until a refresh (docs/kubernetes.md).
MIGRATION_KEEP_FINISHED_SECONDS = 86400


# --- small derivations ----------------------------------------------------------------------------


def millicpu(quantity: str) -> int:
    """CPU in millicpu, rounded up as Kubernetes rounds a finer quantity."""
    return math.ceil(specs.parse_quantity(quantity) * Decimal(1000))


def resources(
    cpu_request: str, cpu_limit: str, memory_request: str, memory_limit: str
) -> model.Resources:
    return model.Resources(
        cpu_request=millicpu(cpu_request),
        cpu_limit=millicpu(cpu_limit),
        memory_request=specs.bytes_of(memory_request),
        memory_limit=specs.bytes_of(memory_limit),
        cpu_request_text=cpu_request,
        cpu_limit_text=cpu_limit,
        memory_request_text=memory_request,
        memory_limit_text=memory_limit,
    )


def health_check(
    path: str,
    port: int,
    *,
    interval: float,
    timeout: float,
    retries: int,
    start_period: float,
    command: tuple[str, ...] = (),
) -> model.HealthCheck:
    """A check with its derived deadlines.

    `unhealthy_after`: the start period plus `retries` failed checks, when Docker and Swarm
    call a task that never passes unhealthy. `wait`: long enough for a container to use up
    its start period and every retry, never under the provider's minimum.
    """
    worst = start_period + (retries + 1) * (interval + timeout)
    return model.HealthCheck(
        path=path,
        port=port,
        interval=interval,
        timeout=timeout,
        retries=retries,
        start_period=start_period,
        command=command,
        unhealthy_after=start_period + interval * retries,
        wait=max(MIN_WAIT_SECONDS, math.ceil(worst)),
    )


def stack_prefix(stack: str) -> str:
    """The stack name reduced to a DNS label, the first part of every swarm object name."""
    return re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-") or "msops"


def label_version(ref: str, backend: str) -> str:
    """The version an image is labelled with: on docker and swarm its digest when the pin has
    one, else its tag; on Kubernetes its tag, as `app.kubernetes.io/version` means it."""
    image = parse_image(ref)
    return image.version if backend == "kubernetes" else (image.digest or image.version)


def lb_alias(service: str) -> str:
    """The docker LB's name on the stack network."""
    return f"{service}-lb"


def cluster_host(name: str, namespace: str) -> str:
    """The cluster DNS name of a Kubernetes Service."""
    return f"{name}.{namespace}.svc.cluster.local"


def upstream_url(service: str, svc: specs.Service, config: specs.StackConfig, stack: str) -> str:
    """Where another service of the stack reaches `service`, through what balances its
    replicas: on docker its nginx LB; on swarm its network alias, which Docker's DNS answers
    with the service's virtual IP (a canary's too, as it shares the alias); on kubernetes
    its Service. Never a replica's own address, so a scale or a rollout changes nothing."""
    if config.backend == "docker":
        return f"http://{lb_alias(service)}:{LB_PORT}"
    if config.backend == "swarm":
        return f"http://{service}:{svc.port}"
    namespace = config.target.namespace or stack
    return f"http://{cluster_host(service, namespace)}:{KUBERNETES_SERVICE_PORT}"


def _upstreams(
    svc: specs.Service, config: specs.StackConfig, stack: str
) -> tuple[model.Upstream, ...]:
    # The spec has checked that every name is another service of the stack.
    return tuple(
        model.Upstream(var, name, upstream_url(name, config.services[name], config, stack))
        for var, name in svc.upstreams.items()
    )


def bind_for(exposed: bool, target: specs.Target) -> str:
    """Where a published port binds: everywhere for an exposed service, else the target's."""
    return "0.0.0.0" if exposed else target.bind_address


# --- sections -------------------------------------------------------------------------------------


def _probe(svc: specs.Service, path: str) -> model.HealthCheck:
    health = svc.health
    return health_check(
        path,
        svc.port,
        interval=specs.parse_duration(health.interval),
        timeout=specs.parse_duration(health.timeout),
        retries=health.retries,
        start_period=specs.parse_duration(health.start_period),
    )


def _load_balancer(name: str, svc: specs.Service, target: specs.Target) -> model.LoadBalancer:
    return model.LoadBalancer(
        image=svc.lb.image,
        published_port=svc.lb.port,
        bind_address=bind_for(svc.exposed, target),
        port=LB_PORT,
        alias=lb_alias(name),
        health=health_check(
            LB_HEALTH_PATH, LB_PORT, interval=5, timeout=3, retries=3, start_period=2
        ),
        resources=resources("1", "1", "128Mi", "128Mi"),
        security=model.Security(user=LB_USER, read_only_root=False),
        stop_grace=STOP_GRACE_SECONDS,
    )


def _env(
    name: str, svc: specs.Service, version: str, upstreams: tuple[model.Upstream, ...]
) -> tuple[tuple[str, str], ...]:
    """The demo app's conventions, which other images ignore, then the upstreams' URLs, then
    the spec's env, which wins. The same on every backend. SCHEMA_VERSION is the schema the
    image needs, from its migrations block; 0 without one: nothing says which schema it
    needs, so readiness checks the database connection only."""
    schema = svc.migrations.schema_version if svc.migrations is not None else 0
    conventions = {
        "PORT": str(svc.port),
        "SERVICE_NAME": name,
        "APP_VERSION": version,
        "SCHEMA_VERSION": str(schema),
    }
    urls = {u.var: u.url for u in upstreams}
    return tuple({**conventions, **urls, **svc.env}.items())


def _migration(svc: specs.Service, down_to: int | None) -> model.Migration | None:
    """The service's migration step: its `command`, or with `down_to` (the down step of a
    rollback) its `down` to that version."""
    block = svc.migrations
    if block is None:
        return None
    down = tuple(block.down) if block.down is not None else None
    command, target = tuple(block.command), block.schema_version
    direction: Literal["up", "down"] = "up"
    if down_to is not None and down is not None:
        command, target, direction = down_command(down, down_to), down_to, "down"
    return model.Migration(
        command=command,
        direction=direction,
        schema_version=block.schema_version,
        target_version=target,
        down=down,
        timeout=math.ceil(specs.parse_duration(block.timeout)),
        retries=MIGRATION_RETRIES,
        keep_finished=MIGRATION_KEEP_FINISHED_SECONDS,
    )


def _secret_env(svc: specs.Service) -> tuple[model.SecretEnv, ...]:
    found = [model.SecretEnv(var, "secret", ref) for var, ref in svc.secret_env.items()]
    if svc.database is not None:
        found.append(model.SecretEnv("DATABASE_URL", "database-url", svc.database))
    return tuple(sorted(found, key=lambda s: s.var))


def _workload(
    name: str,
    svc: specs.Service,
    config: specs.StackConfig,
    stack: str,
    down_to: int | None = None,
) -> model.Workload:
    image = parse_image(svc.image)
    version = label_version(svc.image, config.backend)
    autoscaling = svc.autoscaling
    upstreams = _upstreams(svc, config, stack)
    lb = None
    if config.backend == "docker" and svc.desired_replicas > 0:
        lb = _load_balancer(name, svc, config.target)
    return model.Workload(
        name=name,
        image=svc.image,
        version=version,
        version_label=image.version_label,
        build=svc.build,
        replicas=svc.desired_replicas,
        max_replicas=svc.max_replicas,
        autoscaling=model.Autoscaling(autoscaling.min, autoscaling.max, autoscaling.target_cpu)
        if autoscaling is not None
        else None,
        port=svc.port,
        env=_env(name, svc, version, upstreams),
        secret_env=_secret_env(svc),
        liveness=_probe(svc, svc.health.path),
        readiness=_probe(svc, svc.health.readiness_path),
        resources=resources(
            svc.resources.cpu_request,
            svc.resources.cpu_limit,
            svc.resources.memory_request,
            svc.resources.memory_limit,
        ),
        security=model.Security(user=svc.run_as_user),
        stop_grace=STOP_GRACE_SECONDS,
        metrics_path=svc.metrics_path,
        rollout=_rollout(svc.rollout, config.monitoring.alerts),
        database=svc.database,
        exposed=svc.exposed,
        published_port=svc.lb.port,
        lb=lb,
        ingress=model.Ingress(
            host=svc.ingress.host,
            path=svc.ingress.path,
            class_name=svc.ingress.class_name,
            tls_secret=svc.ingress.tls_secret,
        )
        if svc.ingress is not None
        else None,
        migration=_migration(svc, down_to),
        upstreams=upstreams,
    )


def _rollout(rollout: specs.Rollout, alerts: specs.Alerts) -> model.Rollout:
    """The rollout settings; a canary's thresholds default to the stack's alert thresholds,
    so a release is aborted on what would page someone after it shipped."""
    analysis = rollout.analysis
    return model.Rollout(
        max_surge=rollout.max_surge,
        max_unavailable=rollout.max_unavailable,
        progress_deadline=rollout.progress_deadline,
        history_limit=rollout.history_limit,
        strategy=rollout.strategy,
        steps=tuple(
            model.CanaryStep(step.weight, specs.parse_duration(step.pause))
            for step in rollout.steps
        ),
        analysis=model.CanaryAnalysis(
            interval=specs.parse_duration(analysis.interval),
            failure_limit=analysis.failure_limit,
            error_rate=analysis.error_rate or alerts.error_rate,
            p99_latency=analysis.p99_latency or alerts.p99_latency,
            min_requests=analysis.min_requests,
        )
        if rollout.strategy == "canary"
        else None,
    )


def _released(
    name: str,
    svc: specs.Service,
    config: specs.StackConfig,
    state: rollouts.CanaryState | None,
    stack: str,
    down_to: int | None = None,
) -> model.Workload:
    """A service as this update deploys it. Mid-canary that is the stable release's block,
    with the stack file's version beside it on its share of replicas."""
    if state is None:
        return _workload(name, svc, config, stack, down_to)
    try:
        stable_svc = specs.Service.model_validate(state.stable)
    except ValidationError as exc:
        # The stable release's config no longer validates against today's spec.
        problems = [
            f"{rollouts.ENV_VAR} (the stable release of {name}): {line}"
            for err in exc.errors()
            for line in specs.describe(err)
        ]
        raise specs.ConfigError(stack, problems) from None
    target = _workload(name, svc, config, stack)
    # The release runs by the target's strategy (what Prometheus watches for a canary, how
    # it is judged); the stable replicas keep everything else of their own.
    stable = _workload(name, stable_svc, config, stack)
    stable = replace(
        stable,
        rollout=replace(
            stable.rollout,
            strategy=target.rollout.strategy,
            steps=target.rollout.steps,
            analysis=target.rollout.analysis,
        ),
    )
    replicas = rollouts.canary_replicas(stable.replicas, state.weight)
    if replicas == 0:
        return stable
    canary = replace(
        target,
        track="canary",
        replicas=replicas,
        max_replicas=replicas,
        autoscaling=None,
        lb=None,
    )
    return replace(stable, canary=canary, canary_step=state.step)


def pg_isready(user: str, database: str) -> tuple[str, ...]:
    """Over TCP: during initdb the entrypoint's temporary server listens on the socket only,
    and must not count as ready."""
    return (
        "pg_isready",
        "-h",
        "127.0.0.1",
        "-p",
        str(POSTGRES_PORT),
        "-U",
        user,
        "-d",
        database,
    )


def _postgres_health(user: str, database: str) -> model.HealthCheck:
    """pg_isready every 5s, after a start period: initdb on a fresh volume takes a while
    before the server listens. The same check on every backend (Kubernetes' readiness probe;
    its liveness probe takes the timing too)."""
    return health_check(
        "",
        POSTGRES_PORT,
        interval=5,
        timeout=3,
        retries=10,
        start_period=30,
        command=pg_isready(user, database),
    )


def _postgres_security(backend: str) -> model.Security:
    """On docker and swarm the entrypoint starts as root and needs a writable root and the
    capabilities to own PGDATA; a Kubernetes pod starts as `postgres` itself (the restricted
    Pod Security level forbids root), owns the volume through fsGroup, and writes only to
    its volume and emptyDirs."""
    if backend == "kubernetes":
        return model.Security(user=POSTGRES_UID, run_as_group=POSTGRES_UID)
    return model.Security(
        user=POSTGRES_UID,
        run_as_group=POSTGRES_UID,
        capabilities=POSTGRES_CAPS,
        read_only_root=False,
    )


def _database(
    name: str, db: specs.Database, config: specs.StackConfig, project: str, stack: str
) -> model.Database:
    image = db.resolved_image
    namespace = config.target.namespace or stack
    host = name if config.backend != "kubernetes" else cluster_host(name, namespace)
    return model.Database(
        name=name,
        image=image,
        version=db.version,
        version_label=parse_image(image).version_label,
        storage=specs.bytes_of(db.storage),
        storage_text=db.storage,
        user=db.user,
        generated_password=db.password is None,
        host=host,
        port=POSTGRES_PORT,
        health=_postgres_health(db.user, name),
        resources=resources("100m", "1", "256Mi", "512Mi"),
        security=_postgres_security(config.backend),
        stop_grace=POSTGRES_STOP_GRACE_SECONDS,
        volume_name=f"{project}-{stack}-{name}-pgdata",
        data_mount=PGDATA_MOUNT,
        data_dir=PGDATA,
        placement_label=f"msops.db.{name}",
    )


def _prometheus(config: specs.StackConfig, project: str, stack: str) -> model.Prometheus:
    mon = config.monitoring
    swarm = config.backend == "swarm"
    return model.Prometheus(
        image=mon.prometheus_image,
        version=label_version(mon.prometheus_image, config.backend),
        published_port=mon.prometheus_port,
        port=PROMETHEUS_PORT,
        alias=f"{SWARM_MONITORING_PREFIX}prometheus" if swarm else PROMETHEUS_ALIAS,
        health=health_check(
            "/-/healthy",
            PROMETHEUS_PORT,
            interval=10,
            timeout=3,
            retries=3,
            # Time to replay the write-ahead log of a TSDB kept on its volume.
            start_period=20,
        ),
        resources=resources("1", "1", "512Mi", "512Mi"),
        security=model.Security(user=PROMETHEUS_UID, read_only_root=swarm),
        stop_grace=STOP_GRACE_SECONDS,
        volume_name=f"{project}-{stack}-prometheus-data",
        retention=PROMETHEUS_RETENTION,
    )


def _grafana(
    config: specs.StackConfig, workloads: tuple[model.Workload, ...]
) -> model.Grafana | None:
    mon = config.monitoring
    if not mon.grafana:
        return None
    swarm = config.backend == "swarm"
    return model.Grafana(
        image=mon.grafana_image,
        version=label_version(mon.grafana_image, config.backend),
        published_port=mon.grafana_port,
        port=GRAFANA_PORT,
        alias=f"{SWARM_MONITORING_PREFIX}grafana" if swarm else GRAFANA_ALIAS,
        health=health_check(
            "/api/health", GRAFANA_PORT, interval=10, timeout=3, retries=3, start_period=20
        ),
        resources=resources("1" if swarm else "500m", "1" if swarm else "500m", "512Mi", "512Mi"),
        security=model.Security(user=GRAFANA_UID, read_only_root=swarm),
        stop_grace=STOP_GRACE_SECONDS,
        anonymous_viewing=mon.grafana_anonymous,
        admin_user="admin",
        dashboards=tuple(w.name for w in workloads),
        datasource_uid=GRAFANA_DATASOURCE_UID,
    )


def _monitoring(
    config: specs.StackConfig, workloads: tuple[model.Workload, ...], project: str, stack: str
) -> model.Monitoring | None:
    mon = config.monitoring
    if not mon.enabled:
        return None
    # A service scaled to zero has nothing to scrape, and a scrape job needs a target.
    jobs = tuple(
        model.ScrapeJob(w.name, w.metrics_path, w.port) for w in workloads if w.replicas > 0
    )
    return model.Monitoring(
        scrape_interval=mon.scrape_interval,
        scrape_interval_seconds=specs.parse_duration(mon.scrape_interval),
        # A new replica is scraped within seconds, which `up --atomic` and a canary's
        # analysis both wait for; Prometheus's own default is 30s.
        discovery_refresh=DISCOVERY_REFRESH,
        jobs=jobs,
        alerts=model.Alerts(
            error_rate=mon.alerts.error_rate,
            p99_latency=mon.alerts.p99_latency,
            target_down_for=mon.alerts.target_down_for,
            evaluate_for=mon.alerts.evaluate_for,
        ),
        prometheus=_prometheus(config, project, stack),
        grafana=_grafana(config, workloads),
        kube_prometheus_stack=model.KubePrometheusStack(
            release_label=mon.release_label,
            install=mon.install_stack,
            chart_version=mon.chart_version,
        ),
    )


def migrate_down_problems(config: specs.StackConfig, down_to: Mapping[str, int]) -> list[str]:
    """What makes a down step impossible: a service without a down command, or a version that
    is not below the one its image needs."""
    problems = []
    for name, version in down_to.items():
        svc = config.services.get(name)
        block = svc.migrations if svc is not None else None
        if block is None or block.down is None:
            problems.append(
                f"{MIGRATE_DOWN_ENV}: services.{name} has no migrations.down to migrate down with"
            )
        elif not 0 <= version < block.schema_version:
            problems.append(
                f"{MIGRATE_DOWN_ENV}: services.{name} cannot migrate down to {version}: its "
                f"image needs schema {block.schema_version}; a down step goes below it"
            )
    return problems


def build(
    config: specs.StackConfig,
    *,
    stack: str,
    project: str = "msops",
    rollout: Mapping[str, rollouts.CanaryState] | None = None,
    down_to: Mapping[str, int] | None = None,
) -> model.StackPlan:
    """The plan of one stack: what it runs, with every default filled in and every value
    derived; `rollout` is a canary in progress (see components.plan.rollout).

    `down_to` (service → version) makes this the down step of a rollback: those services'
    migrations run their `down` to that version, with the image the config pins now, and
    nothing else changes (see `migrate_down_problems`).
    """
    states = rollout or {}
    down = down_to or {}
    workloads = tuple(
        _released(n, s, config, states.get(n), stack, down.get(n))
        for n, s in config.services.items()
    )
    return model.StackPlan(
        project=project,
        stack=stack,
        backend=config.backend,
        target=model.Target(
            docker_host=config.target.docker_host,
            kube_context=config.target.kube_context,
            namespace=config.target.namespace or stack,
            bind_address=config.target.bind_address,
        ),
        prefix=stack_prefix(stack),
        network_name=f"{project}-{stack}-net",
        workloads=workloads,
        databases=tuple(
            _database(n, db, config, project, stack)
            for n, db in config.databases.items()
            if db.external_url is None
        ),
        external_databases=tuple(
            n for n, db in config.databases.items() if db.external_url is not None
        ),
        secrets=tuple(config.secrets),
        monitoring=_monitoring(config, workloads, project, stack),
    )
