"""What one stack runs, as immutable plain data: the model every backend translates.

Nothing here imports Pulumi or a provider SDK, and nothing here decides anything: the values
are filled in by `components.plan.build`, which holds every default and every derivation.
Durations are seconds, CPU is millicpu, memory and storage are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["docker", "swarm", "kubernetes"]


@dataclass(frozen=True)
class Resources:
    """Requests and limits; `*_text` are the Kubernetes quantities they came from."""

    cpu_request: int
    cpu_limit: int
    memory_request: int
    memory_limit: int
    cpu_request_text: str
    cpu_limit_text: str
    memory_request_text: str
    memory_limit_text: str


@dataclass(frozen=True)
class HealthCheck:
    """A check run inside the container, and its timing in seconds."""

    # An HTTP path on `port`, or for a command check (Postgres) the empty string.
    path: str
    port: int
    interval: float
    timeout: float
    retries: int
    start_period: float
    # The command where it is not an HTTP GET (pg_isready), else ().
    command: tuple[str, ...] = ()
    # When Docker or Swarm would call a task that never passes unhealthy.
    unhealthy_after: float = 0.0
    # How long a deploy waits for a new container to become healthy.
    wait: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class Security:
    """How a container runs: every workload is non-root with no capabilities by default."""

    user: int
    read_only_root: bool = True
    # Capabilities added back after dropping all of them.
    capabilities: tuple[str, ...] = ()
    run_as_group: int | None = None


@dataclass(frozen=True)
class Autoscaling:
    min: int
    max: int
    target_cpu: int


@dataclass(frozen=True)
class CanaryStep:
    weight: int
    pause: float


@dataclass(frozen=True)
class CanaryAnalysis:
    """How each step is judged; thresholds already resolved against the stack's alerts."""

    interval: float
    failure_limit: int
    error_rate: float
    p99_latency: float
    min_requests: int


@dataclass(frozen=True)
class Rollout:
    """How a new version replaces the old one (Kubernetes counts; Swarm goes one by one)."""

    max_surge: int | str
    max_unavailable: int | str
    progress_deadline: int
    history_limit: int
    strategy: Literal["rolling", "canary"] = "rolling"
    steps: tuple[CanaryStep, ...] = ()
    analysis: CanaryAnalysis | None = None


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable whose value is a secret: a named secret or a database URL."""

    var: str
    kind: Literal["secret", "database-url"]
    # The `msops:secrets` name, or the database name.
    ref: str


@dataclass(frozen=True)
class Upstream:
    """Another service of the stack this one calls, and the URL it is passed in `var`."""

    var: str
    service: str
    # Where `service` answers inside the stack, on this backend: its LB, VIP or Service.
    url: str


@dataclass(frozen=True)
class LoadBalancer:
    """The LB in front of a workload's replicas (nginx on docker, the mesh on swarm)."""

    image: str
    # Host port it publishes, or None for a stack-internal LB.
    published_port: int | None
    # The host address a published port binds to.
    bind_address: str
    # The port nginx listens on inside its container.
    port: int
    # The LB's own name on the stack network.
    alias: str
    health: HealthCheck
    resources: Resources
    security: Security
    # Seconds a stopping container gets to finish its requests after SIGTERM.
    stop_grace: int


@dataclass(frozen=True)
class Ingress:
    host: str
    path: str
    class_name: str | None
    tls_secret: str | None


@dataclass(frozen=True)
class Migration:
    """What runs against a workload's database before any new replica of it starts: up to the
    schema its image needs, or, in the down step of a rollback, down to an older one."""

    # The command this update runs: the spec's `command`, or its `down` with the version in.
    command: tuple[str, ...]
    direction: Literal["up", "down"]
    # The schema the image needs (its SCHEMA_VERSION), whichever way this update goes.
    schema_version: int
    # The schema the database is at once the command has succeeded.
    target_version: int
    # The spec's down command with `{version}` still in it, or None when it has none.
    down: tuple[str, ...] | None
    # Seconds the command may run before the update fails.
    timeout: int
    # Kubernetes: new pods after a failed one (the Job's backoffLimit).
    retries: int
    # Kubernetes: seconds a finished Job (and its pod's logs) is kept (ttlSecondsAfterFinished).
    keep_finished: int


@dataclass(frozen=True)
class Workload:
    """One microservice: what runs, how many, how it is checked and reached."""

    name: str
    image: str
    version: str
    version_label: str
    build: str | None
    replicas: int
    max_replicas: int
    autoscaling: Autoscaling | None
    port: int
    # Plain variables in the order the container gets them: the demo app's conventions
    # (PORT, SERVICE_NAME, APP_VERSION) first, then the upstreams' URLs, then the spec's,
    # which win.
    env: tuple[tuple[str, str], ...]
    secret_env: tuple[SecretEnv, ...]
    liveness: HealthCheck
    readiness: HealthCheck
    resources: Resources
    security: Security
    # Seconds a stopping replica gets to finish its requests after SIGTERM.
    stop_grace: int
    metrics_path: str
    rollout: Rollout
    database: str | None
    exposed: bool
    # The host port `lb.port` publishes the service on, whether or not an LB runs: the
    # docker LB's, or swarm's routing mesh, which has no LB of its own. None publishes none.
    published_port: int | None
    lb: LoadBalancer | None
    ingress: Ingress | None
    # Schema migrations run before the replicas, or None: nothing runs.
    migration: Migration | None = None
    # The services this one calls, each URL also in `env` under its variable.
    upstreams: tuple[Upstream, ...] = ()
    # "canary": the new version's replicas beside the stable ones during a canary step.
    track: Literal["stable", "canary"] = "stable"
    # The canary running beside this (stable) workload while a canary step is deployed, and
    # that step's number (1-based).
    canary: Workload | None = None
    canary_step: int = 0

    @property
    def canary_weight(self) -> int:
        """The canary's share of all the service's replicas, in percent (0 without one)."""
        if self.canary is None:
            return 0
        return round(100 * self.canary.replicas / (self.canary.replicas + self.replicas))

    @property
    def secret_vars(self) -> tuple[str, ...]:
        return tuple(s.var for s in self.secret_env)


@dataclass(frozen=True)
class Database:
    """A Postgres server msops runs; external databases appear only as `external_databases`."""

    name: str
    image: str
    version: str
    version_label: str
    storage: int
    storage_text: str
    user: str
    # Generate a password with pulumi-random, or use the configured secret.
    generated_password: bool
    # How services reach it on the stack network.
    host: str
    port: int
    health: HealthCheck
    resources: Resources
    security: Security
    # Seconds Postgres gets for its shutdown checkpoint after SIGTERM.
    stop_grace: int
    volume_name: str
    # Where the volume is mounted, and PGDATA inside it.
    data_mount: str
    data_dir: str
    # Swarm: the node label that pins it to the node holding its volume.
    placement_label: str


@dataclass(frozen=True)
class ScrapeJob:
    """One service Prometheus scrapes and alerts on."""

    service: str
    metrics_path: str
    port: int


@dataclass(frozen=True)
class Alerts:
    error_rate: float
    p99_latency: float
    target_down_for: str
    evaluate_for: str


@dataclass(frozen=True)
class Prometheus:
    image: str
    version: str
    published_port: int
    port: int
    alias: str
    health: HealthCheck
    resources: Resources
    security: Security
    stop_grace: int
    volume_name: str
    retention: str


@dataclass(frozen=True)
class Grafana:
    image: str
    version: str
    published_port: int
    port: int
    alias: str
    health: HealthCheck
    resources: Resources
    security: Security
    stop_grace: int
    # Visitors may view dashboards without logging in (monitoring.grafanaAnonymous).
    anonymous_viewing: bool
    admin_user: str
    # Services with a dashboard, in spec order; the first is the home dashboard.
    dashboards: tuple[str, ...]
    datasource_uid: str


@dataclass(frozen=True)
class KubePrometheusStack:
    """Kubernetes: the release label msops' objects carry, and the optional chart install."""

    release_label: str
    install: bool
    chart_version: str


@dataclass(frozen=True)
class Monitoring:
    scrape_interval: str
    scrape_interval_seconds: float
    # How often Prometheus looks the replicas up again in DNS (docker, swarm).
    discovery_refresh: str
    jobs: tuple[ScrapeJob, ...]
    alerts: Alerts
    prometheus: Prometheus
    grafana: Grafana | None
    kube_prometheus_stack: KubePrometheusStack


@dataclass(frozen=True)
class Target:
    docker_host: str | None
    kube_context: str | None
    namespace: str
    bind_address: str


@dataclass(frozen=True)
class StackPlan:
    """Everything one stack runs, built once from its validated config."""

    project: str
    stack: str
    backend: Backend
    target: Target
    # A DNS-label form of the stack name, the first part of every swarm object name.
    prefix: str
    network_name: str
    workloads: tuple[Workload, ...]
    databases: tuple[Database, ...]
    # Databases used at a URL from `msops:databases.<name>.externalUrl`.
    external_databases: tuple[str, ...]
    # Named secrets of `msops:secrets`; the values stay in the config.
    secrets: tuple[str, ...]
    monitoring: Monitoring | None

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)

    def database(self, name: str) -> Database | None:
        return next((d for d in self.databases if d.name == name), None)
