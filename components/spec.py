"""The stack config model: every `msops:*` key of a stack file, validated before any resource."""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.vocabulary import IMAGE_REFERENCE, SECRET_MASK, VERSION_PLACEHOLDER

NAMESPACE = "msops"

# --- scalar checks -----------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# Kubernetes resource.Quantity: a decimal number and an optional binary/decimal suffix or exponent.
_QUANTITY = re.compile(
    r"^(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIX_FACTOR: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h))+$")


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity (`500m` → 0.5, `1Gi` → 1073741824)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    suffix = match["suffix"] or ""
    number = Decimal(match["num"])
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX_FACTOR[suffix]


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus/Docker duration such as `1m30s`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", text))


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label; use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'orders-api')"
        )
    return value


# A host name as an Ingress rule takes it: DNS-1123 labels joined by dots, at most 253
# characters, optionally led by one `*.` wildcard label (no IP address, no port, no scheme).
_DNS_NAME = re.compile(
    r"^(?:\*\.)?[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*$"
)


def _dns_name(value: str) -> str:
    if len(value) > 253 or not _DNS_NAME.match(value) or re.fullmatch(r"[0-9.]+", value):
        raise ValueError(
            f"{value!r} is not a DNS name; write a lowercase host name such as "
            "'web.example.com' (or '*.example.com'), without scheme, port or path"
        )
    return value


def _pinned_image(value: str) -> str:
    match = IMAGE_REFERENCE.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a valid image reference; write it as "
            "[registry/]repository:tag or repository@sha256:<64 hex digits>, in lowercase"
        )
    if match["digest"]:
        return value
    if not match["tag"]:
        raise ValueError(
            f"{value!r} is not pinned: it has no tag, so it means ':latest'; "
            f"pin an exact version such as '{value}:1.2.3' or a digest '@sha256:...'"
        )
    if match["tag"] == "latest":
        raise ValueError(
            f"{value!r} is not pinned: ':latest' moves under you and cannot be rolled back; "
            "pin an exact version such as ':1.2.3' or a digest '@sha256:...'"
        )
    return value


def _quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity; write a number with an optional suffix, "
            "such as '250m' or '0.5' for CPU and '256Mi' or '1Gi' for memory"
        )
    return value


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"{value!r} is not a duration; write it like '30s', '1m' or '1m30s'")
    return value


def _path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an HTTP path; it must start with '/', e.g. '/healthz'")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
Image = Annotated[str, AfterValidator(_pinned_image)]
Quantity = Annotated[str, AfterValidator(_quantity)]
Duration = Annotated[str, AfterValidator(_duration)]
HttpPath = Annotated[str, AfterValidator(_path)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    """Frozen, unknown keys rejected, camelCase keys in YAML like every other Pulumi config."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=False,
        # Strict: `replicas: yes` or `port: "80"` is a mistake in a stack file, not a number.
        strict=True,
    )


# --- sections ----------------------------------------------------------------------------------


class Target(_Model):
    """Where the backend deploys."""

    docker_host: str | None = Field(
        None,
        description="Docker daemon for the docker and swarm backends, e.g. `ssh://ops@host`. "
        "Default: unset, so DOCKER_HOST or the local socket is used.",
    )
    kube_context: str | None = Field(
        None,
        description="kubeconfig context for the kubernetes backend. Default: unset, so the "
        "current context of KUBECONFIG (or ~/.kube/config) is used.",
    )
    namespace: DnsLabel | None = Field(
        None,
        description="Kubernetes namespace msops creates and deploys into. Default: the stack name.",
    )
    bind_address: str = Field(
        "127.0.0.1",
        description="Host address that docker-published ports (LB, Prometheus, Grafana) bind to. "
        "Default: 127.0.0.1, so nothing is reachable from the network unless a service is "
        "marked `exposed`. On swarm the routing mesh publishes on every node whatever this "
        "says; there it is only the host shown in URLs.",
    )


class Resources(_Model):
    """CPU and memory requests and limits, as Kubernetes quantities."""

    cpu_request: Quantity = Field("100m", description="CPU reserved. Default: 100m.")
    cpu_limit: Quantity = Field("500m", description="CPU cap. Default: 500m.")
    memory_request: Quantity = Field("128Mi", description="Memory reserved. Default: 128Mi.")
    memory_limit: Quantity = Field(
        "256Mi", description="Memory cap; the container is killed above it. Default: 256Mi."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self, f"{kind}_request"), getattr(self, f"{kind}_limit")
            if parse_quantity(request) > parse_quantity(limit):
                raise ValueError(
                    f"{kind}Request {request!r} is above {kind}Limit {limit!r}; "
                    f"raise {kind}Limit or lower {kind}Request"
                )
        return self


class Autoscaling(_Model):
    """Horizontal autoscaling; on kubernetes an HPA, elsewhere the fixed count `min`."""

    min: int = Field(2, description="Fewest replicas. Default: 2, so one can fail.")
    max: int = Field(5, description="Most replicas. Default: 5.")
    target_cpu: int = Field(
        70, ge=1, le=100, description="Average CPU utilisation (%) to hold. Default: 70."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min < 1:
            raise ValueError(f"min is {self.min}; autoscaling needs min of at least 1")
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); set min <= max")
        return self


class Health(_Model):
    """Probe paths and timing, shared by Docker health checks and Kubernetes probes."""

    path: HttpPath = Field("/healthz", description="Liveness path. Default: /healthz.")
    readiness_path: HttpPath = Field(
        "/readyz", description="Readiness path (checks dependencies). Default: /readyz."
    )
    interval: Duration = Field("10s", description="Time between checks. Default: 10s.")
    timeout: Duration = Field("3s", description="Time one check may take. Default: 3s.")
    retries: int = Field(3, ge=1, le=20, description="Failures before unhealthy. Default: 3.")
    start_period: Duration = Field("5s", description="Grace period after start. Default: 5s.")


class CanaryStep(_Model):
    """One step of a canary: the share of the traffic the new version gets, and for how long."""

    weight: int = Field(
        ge=1,
        le=99,
        description="Percent of the service's replicas (so of its traffic) running the new "
        "version during the step, 1-99. Required.",
    )
    pause: Duration = Field(
        description="How long the step runs, and is analysed, before the next one, e.g. "
        "`30s`. Required.",
    )


class Analysis(_Model):
    """How a canary is judged at each step, from the stack's Prometheus."""

    interval: Duration = Field(
        "10s", description="Time between two looks at the canary's metrics. Default: 10s."
    )
    failure_limit: int = Field(
        2,
        ge=1,
        le=20,
        description="Failed looks in a row that abort the release. Default: 2, so a bad "
        "version is aborted after about interval x 2.",
    )
    error_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Highest share of 5xx answers the canary may have. Default: unset, so "
        "monitoring.alerts.errorRate.",
    )
    p99_latency: float | None = Field(
        None,
        gt=0,
        description="Highest p99 latency in seconds. Default: unset, so "
        "monitoring.alerts.p99Latency.",
    )
    min_requests: int = Field(
        20,
        ge=1,
        description="Requests the canary must serve (probes and scrapes do not count) before "
        "a step can pass; with fewer the analysis waits, so an idle service is never promoted "
        "on no data. Default: 20.",
    )


class Rollout(_Model):
    """How a new version replaces the old one."""

    strategy: Literal["rolling", "canary"] = Field(
        "rolling",
        description="`rolling`: replicas are replaced one by one, each healthy before the "
        "next. `canary`: `msops up` first runs the new version on a share of the replicas "
        "for each of `steps`, judged by `analysis`, and aborts on a bad one. Default: rolling.",
    )
    steps: list[CanaryStep] = Field(
        default_factory=list,
        description="The canary's steps, weights ascending, e.g. `[{weight: 25, pause: 30s}, "
        "{weight: 50, pause: 30s}]`. Required with strategy canary. Default: none.",
    )
    analysis: Analysis = Field(default_factory=Analysis, description="See Analysis.")

    max_surge: int | str = Field(
        1, description="Extra replicas allowed during an update (number or %). Default: 1."
    )
    max_unavailable: int | str = Field(
        0,
        description="Replicas that may be down during an update (number or %). "
        "Default: 0, so an update never lowers capacity.",
    )
    progress_deadline: int = Field(
        600, ge=1, description="Seconds before a stuck rollout fails. Default: 600."
    )
    history_limit: int = Field(
        10, ge=0, description="Old ReplicaSets kept for `kubectl rollout undo`. Default: 10."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Rollout:
        for key in ("max_surge", "max_unavailable"):
            value = getattr(self, key)
            if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,3}%", value):
                raise ValueError(
                    f"{to_camel(key)} {value!r} must be a count or a percentage like '25%'"
                    + (
                        f"; write {to_camel(key)}: {value} without quotes"
                        if value.isdigit()
                        else ""
                    )
                )
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{to_camel(key)} {value} must be 0 or more")
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError(
                "maxSurge and maxUnavailable are both 0, so no rollout can progress; "
                "set maxSurge to 1"
            )
        if self.strategy == "canary" and not self.steps:
            raise ValueError(
                "strategy canary has no steps; add some, e.g. steps: [{weight: 25, pause: 30s}]"
            )
        if self.strategy == "rolling" and self.steps:
            raise ValueError("steps are only for strategy canary; set strategy: canary")
        weights = [step.weight for step in self.steps]
        if weights != sorted(set(weights)):
            raise ValueError(
                f"step weights {weights} must go up, each above the one before (e.g. 25, 50)"
            )
        return self


class LoadBalancer(_Model):
    """The load balancer in front of the replicas (nginx on docker, the mesh on swarm)."""

    port: Port | None = Field(
        None,
        description="Host port the LB publishes. Default: unset, so nothing is published and "
        "the service is reachable only inside the stack network.",
    )
    image: Image = Field(
        "nginx:1.27.3-alpine",
        description="nginx image of the docker LB. Default: nginx:1.27.3-alpine.",
    )


class Ingress(_Model):
    """A Kubernetes Ingress for the service."""

    host: DnsName = Field(
        description="Host name routed to the service, a DNS name such as `web.example.com` "
        "(a leading `*.` wildcard is allowed). Required."
    )
    path: HttpPath = Field("/", description="Path prefix. Default: /.")
    class_name: str | None = Field(
        None, description="IngressClass. Default: unset, so the cluster default is used."
    )
    tls_secret: DnsLabel | None = Field(
        None, description="Secret holding the TLS certificate. Default: unset, so plain HTTP."
    )


def _command(value: list[str]) -> list[str]:
    if not value or not value[0].strip():
        raise ValueError(
            "the command is empty; give the program and its arguments as a list, e.g. "
            "['python', '-m', 'demo.migrate', 'up']"
        )
    return value


def _up_command(value: list[str]) -> list[str]:
    if any(VERSION_PLACEHOLDER in part for part in value):
        raise ValueError(
            f"{VERSION_PLACEHOLDER} belongs in `down` only: `command` migrates up to "
            "schemaVersion, which the image reads from SCHEMA_VERSION; remove it"
        )
    return value


def _down_command(value: list[str]) -> list[str]:
    if not any(VERSION_PLACEHOLDER in part for part in value):
        raise ValueError(
            f"the down command has no {VERSION_PLACEHOLDER}, where msops puts the version to "
            "migrate down to; add it, "
            "e.g. ['python', '-m', 'demo.migrate', 'down', '--to', '{version}']"
        )
    return value


Command = Annotated[list[str], AfterValidator(_command)]


class Migrations(_Model):
    """Schema migrations a release runs with the service's image, env and database
    credentials, to completion, before any new replica of it starts. A failed migration fails
    the update and leaves the old replicas serving. See docs/operations.md, "Ship a schema
    change and roll it back"."""

    command: Annotated[Command, AfterValidator(_up_command)] = Field(
        description="The container's command (Docker CMD, Kubernetes args: the image's "
        "entrypoint, if it has one, runs it) that migrates the database up to schemaVersion, "
        "which it also gets as SCHEMA_VERSION; it must exit 0 when there is nothing to do. "
        "Secrets arrive as files on docker and swarm (`<VAR>_FILE`). Required."
    )
    schema_version: int = Field(
        ge=1,
        description="The schema version this image needs; the service's SCHEMA_VERSION, and "
        "what each release records. A rollback to a release that needs an older one migrates "
        "down first (`--migrate-down`) or refuses. Required.",
    )
    down: Annotated[Command, AfterValidator(_down_command)] | None = Field(
        None,
        description="The command that migrates the database down to `{version}` (msops puts "
        "the version there), run with this release's image before a rollback to a release "
        "that needs an older schema. Default: unset, so such a rollback is refused unless "
        "`--ignore-schema` accepts the risk.",
    )
    timeout: Duration = Field(
        "10m",
        description="How long the migration may run before the update fails. Default: 10m.",
    )


class Service(_Model):
    """One microservice: its image, replicas, probes and how it is reached."""

    image: Image = Field(description="Exact image pin, tag or digest. Required; never :latest.")
    build: str | None = Field(
        None,
        description="Docker backend only: build `image` from this local context (e.g. `app`) "
        "instead of pulling it. Default: unset, so the image is pulled.",
    )
    replicas: int | None = Field(
        None,
        ge=0,
        description="Fixed replica count. Default: unset, meaning 1, or autoscaling.min when "
        "autoscaling is set. Do not set both.",
    )
    autoscaling: Autoscaling | None = Field(
        None, description="Autoscale between min and max on CPU. Default: unset (fixed replicas)."
    )
    port: Port = Field(8080, description="Port the container listens on. Default: 8080.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Plain environment variables; no secret goes here (a URL with a password "
        "in it is refused: use secretEnv). Default: none.",
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables whose values come from `msops:secrets`, as "
        "ENV_NAME: secretName. On swarm (and in migrations) each is a file at "
        "/run/secrets/<ENV_NAME>, named by ENV_NAME_FILE, never the value in the env; on docker "
        "a secret variable, on Kubernetes a secretKeyRef. Default: none.",
    )
    upstreams: dict[str, DnsLabel] = Field(
        default_factory=dict,
        description="Services of this stack that this one calls, as ENV_NAME: serviceName, "
        "e.g. `UPSTREAM_URL: api`. msops passes each one's in-stack URL (`http://host:port`) "
        "in ENV_NAME: on docker its nginx LB (`http://api-lb:8080`), on swarm its service "
        "name on the overlay network (`http://api:8080`, the service's virtual IP), on "
        "kubernetes its Service (`http://api.<namespace>.svc.cluster.local:80`). "
        "Default: none.",
    )
    resources: Resources = Field(default_factory=Resources, description="See Resources.")
    health: Health = Field(default_factory=Health, description="See Health.")
    metrics_path: HttpPath = Field(
        "/metrics", description="Prometheus scrape path. Default: /metrics."
    )
    rollout: Rollout = Field(default_factory=Rollout, description="See Rollout.")
    database: DnsLabel | None = Field(
        None,
        description="Name of an entry in `msops:databases`; its URL is passed as DATABASE_URL "
        "(a secret: on swarm, the file named by DATABASE_URL_FILE). Default: none.",
    )
    exposed: bool = Field(
        False,
        description="Reachable from outside the host or cluster (LB bound to 0.0.0.0, a "
        "Kubernetes LoadBalancer Service). Default: false.",
    )
    lb: LoadBalancer = Field(default_factory=LoadBalancer, description="See LoadBalancer.")
    ingress: Ingress | None = Field(None, description="Kubernetes Ingress. Default: none.")
    migrations: Migrations | None = Field(
        None,
        description="Schema migrations of the service's database, run before its replicas. "
        "Needs `database`. Default: none, so nothing runs and SCHEMA_VERSION is 0.",
    )
    run_as_user: int = Field(
        10001, ge=1, description="Non-root UID the container runs as. Default: 10001."
    )

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> Service:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError(
                f"both replicas ({self.replicas}) and autoscaling are set; "
                "keep autoscaling and remove replicas, or the reverse"
            )
        for name in self.env:
            if name in self.secret_env:
                raise ValueError(f"env var {name!r} is in both env and secretEnv; keep one")
        if self.database is not None and "DATABASE_URL" in self.env:
            raise ValueError(
                f"env var 'DATABASE_URL' is set both in env and by database {self.database!r}; "
                "remove it from env (msops passes the database's URL as a secret)"
            )
        return self

    @property
    def desired_replicas(self) -> int:
        """The replica count to run where nothing autoscales."""
        if self.autoscaling is not None:
            return self.autoscaling.min
        return 1 if self.replicas is None else self.replicas

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max if self.autoscaling else self.desired_replicas


class Database(_Model):
    """A Postgres database, run by msops or supplied from outside."""

    version: str = Field(
        "16.4",
        pattern=r"^[0-9]+\.[0-9]+$",
        description="Postgres major.minor, pinned. Default: 16.4.",
    )
    image: Image | None = Field(
        None, description="Postgres image. Default: postgres:<version>-alpine."
    )
    storage: Quantity = Field("1Gi", description="Volume size. Default: 1Gi.")
    user: DnsLabel = Field("app", description="Login role. Default: app.")
    password: SecretStr | None = Field(
        None,
        description="Set it encrypted: `msops secret set STACK msops:databases.<name>.password` "
        "or `pulumi config set --secret --path 'msops:databases.<name>.password'`; a plain-text "
        "value is refused. Default: unset, so msops generates one with pulumi-random and keeps "
        "it in state.",
    )
    external_url: SecretStr | None = Field(
        None,
        description="Use an existing database at this URL instead of running Postgres; a "
        "secret, set encrypted like password (a plain-text value is refused). Default: unset.",
    )

    @property
    def resolved_image(self) -> str:
        return self.image or f"postgres:{self.version}-alpine"


class Alerts(_Model):
    """Alert thresholds, the same on every backend."""

    error_rate: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Fraction of 5xx responses that fires HighErrorRate. Default: 0.05.",
    )
    p99_latency: float = Field(
        0.5, gt=0, description="p99 latency in seconds that fires HighLatency. Default: 0.5."
    )
    target_down_for: Duration = Field(
        "1m", description="How long a replica is down before TargetDown fires. Default: 1m."
    )
    evaluate_for: Duration = Field(
        "5m", description="How long error rate or latency must hold before firing. Default: 5m."
    )


class Monitoring(_Model):
    """Prometheus, alert rules and Grafana."""

    enabled: bool = Field(True, description="Deploy monitoring. Default: true.")
    grafana: bool = Field(True, description="Deploy Grafana with dashboards. Default: true.")
    grafana_anonymous: bool = Field(
        False,
        description="Let visitors view the dashboards without logging in (Grafana's Viewer "
        "role); changing anything still needs the admin, whose password is the stack output "
        "grafanaAdminPassword. The same on every backend. Default: false.",
    )
    alerts: Alerts = Field(default_factory=Alerts, description="See Alerts.")
    scrape_interval: Duration = Field("15s", description="Scrape interval. Default: 15s.")
    prometheus_image: Image = Field(
        "prom/prometheus:v2.55.1", description="Default: prom/prometheus:v2.55.1."
    )
    grafana_image: Image = Field(
        "grafana/grafana:11.3.1", description="Default: grafana/grafana:11.3.1."
    )
    prometheus_port: Port = Field(9090, description="Host port for Prometheus. Default: 9090.")
    grafana_port: Port = Field(3000, description="Host port for Grafana. Default: 3000.")
    release_label: str = Field(
        "kube-prometheus-stack",
        description="Kubernetes: value of the `release` label kube-prometheus-stack selects "
        "ServiceMonitors and PrometheusRules by. Default: kube-prometheus-stack.",
    )
    install_stack: bool = Field(
        False,
        description="Kubernetes: install kube-prometheus-stack with Helm. Default: false "
        "(use the one already in the cluster).",
    )
    chart_version: str = Field(
        "65.8.1", description="Pinned kube-prometheus-stack chart version. Default: 65.8.1."
    )


class StackConfig(_Model):
    """Everything under `msops:` in one stack file."""

    backend: Literal["docker", "swarm", "kubernetes"] = Field(
        "docker", description="Where the stack runs. Default: docker (one machine)."
    )
    target: Target = Field(default_factory=Target, description="See Target.")
    services: dict[DnsLabel, Service] = Field(
        min_length=1, description="The microservices, by name. Required, at least one."
    )
    databases: dict[DnsLabel, Database] = Field(
        default_factory=dict, description="Databases, by name. Default: none."
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Named secrets for `secretEnv`; set each encrypted with `msops secret set "
        "STACK msops:secrets.<name>` or `pulumi config set --secret --path "
        "'msops:secrets.<name>'`; a plain-text value is refused. Default: none.",
    )
    monitoring: Monitoring = Field(default_factory=Monitoring, description="See Monitoring.")

    @model_validator(mode="after")
    def _cross_references(self) -> StackConfig:
        problems = cross_reference_problems(self.model_dump(by_alias=True))
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _upstream_problems(name: str, svc: dict[str, Any], services: dict[str, Any]) -> list[str]:
    """An upstream that is not a service of the stack, or is this one, or whose variable the
    service already sets another way."""
    upstreams = svc.get("upstreams")
    if not isinstance(upstreams, dict):
        return []
    env, secret_env = svc.get("env"), svc.get("secretEnv")
    taken = {
        *(env if isinstance(env, dict) else {}),
        *(secret_env if isinstance(secret_env, dict) else {}),
    }
    if isinstance(svc.get("database"), str):
        taken.add("DATABASE_URL")
    problems = []
    for var, target in upstreams.items():
        key = f"services.{name}.upstreams.{var}"
        if not isinstance(target, str):
            continue
        if target == name:
            problems.append(
                f"{key}: {target!r} is this service itself; name another service of the stack"
            )
        elif target not in services:
            known = ", ".join(sorted(s for s in services if s != name)) or "none"
            problems.append(
                f"{key}: {target!r} is not in msops:services (other services: {known}); "
                "add that service or fix the name"
            )
        if var in taken:
            problems.append(
                f"{key}: {var} is also set by env, secretEnv or database; msops passes the "
                f"URL of {target!r} in it, so remove it there or pick another variable name"
            )
    return problems


def cross_reference_problems(raw: Mapping[str, Any]) -> list[str]:
    """Problems between sections (unknown database or secret, a port published twice).

    Works on the raw dict, so that `load` can report these together with field errors.
    """

    def section(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    services = section(raw.get("services"))
    databases, secrets = section(raw.get("databases")), section(raw.get("secrets"))
    monitoring = section(raw.get("monitoring"))
    problems: list[str] = []
    published: list[tuple[str, Any]] = []
    for name, svc in services.items():
        svc = section(svc)
        db = svc.get("database")
        # Values of the wrong type are reported by the field validators; skip them here.
        if isinstance(db, str) and db not in databases:
            known = ", ".join(sorted(databases)) or "none are defined"
            problems.append(
                f"services.{name}.database: {db!r} is not in msops:databases ({known}); "
                "add it there or fix the name"
            )
        if isinstance(svc.get("migrations"), dict) and not isinstance(db, str):
            problems.append(
                f"services.{name}.migrations: a migrations block needs a database to migrate; "
                f"set services.{name}.database, or remove the block"
            )
        for env_name, secret in section(svc.get("secretEnv")).items():
            if isinstance(secret, str) and secret not in secrets:
                problems.append(
                    f"services.{name}.secretEnv.{env_name}: {secret!r} is not in msops:secrets; "
                    f"set it with pulumi config set --secret --path 'msops:secrets.{secret}'"
                )
        problems += _upstream_problems(name, svc, services)
        published.append((f"services.{name}.lb.port", section(svc.get("lb")).get("port")))
        strategy = section(svc.get("rollout")).get("strategy")
        if strategy == "canary" and monitoring.get("enabled", True) is False:
            problems.append(
                f"services.{name}.rollout.strategy: 'canary' is judged by the stack's "
                "Prometheus, and msops:monitoring.enabled is false; enable monitoring or use "
                "strategy 'rolling'"
            )
    if monitoring.get("enabled", True) and raw.get("backend", "docker") != "kubernetes":
        published.append(("monitoring.prometheusPort", monitoring.get("prometheusPort", 9090)))
        if monitoring.get("grafana", True):
            published.append(("monitoring.grafanaPort", monitoring.get("grafanaPort", 3000)))
    owners: dict[Any, str] = {}
    for key, port in published:
        if not isinstance(port, int) or isinstance(port, bool):
            continue
        if port in owners:
            problems.append(
                f"{key}: port {port} is already published by {owners[port]}; "
                "give each a different port"
            )
        else:
            owners[port] = key
    return problems


# --- loading and errors ------------------------------------------------------------------------


class ConfigError(Exception):
    """A stack config that does not validate; `problems` holds one line per mistake."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        super().__init__(problems_text(stack, problems, "; nothing was deployed"))


def problems_text(stack: str, problems: list[str], note: str = "") -> str:
    """`stack 'dev': the msops config has 2 problems<note>:` and one indented line each."""
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"stack {stack!r}: the msops config has {count}{note}:\n{lines}"


def raw_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `msops:*` keys of a Pulumi config map as one nested dict (JSON strings decoded)."""
    raw: dict[str, Any] = {}
    prefix = f"{NAMESPACE}:"
    for key, value in values.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value) if value[:1] in "{[" else value
        raw[key[len(prefix) :]] = value
    return raw


def load(raw: Mapping[str, Any], stack: str = "stack") -> StackConfig:
    """Validate a raw config dict; raise ConfigError listing every problem at once.

    Keys the stack's backend would ignore and sizes above its limits are problems too, found
    on the raw dict (what the file sets, not the defaults) before anything is synthesized.
    """
    ignored = [f"{NAMESPACE}:{p}" for p in backend_problems(raw)]
    sizes = [f"{NAMESPACE}:{p}" for p in size_problems(raw)]
    limits = ignored + sizes
    try:
        config = StackConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = _unique(line for err in exc.errors() for line in describe(err))
        # The model's own cross-reference check did not run if a field failed; run it here.
        extra = [f"{NAMESPACE}:{p}" for p in cross_reference_problems(raw)]
        # A size the field already refuses (`replicas: .nan`) is named once.
        sizes = _keys_not_in(sizes, problems)
        raise ConfigError(stack, _unique(problems + extra + ignored + sizes)) from None
    if limits:
        raise ConfigError(stack, limits)
    return config


def _unique(lines: Any) -> list[str]:
    """Lines in order, each once (a union field fails once per member type)."""
    return list(dict.fromkeys(lines))


def problem_key(line: str) -> str:
    """The key a problem line is about: what precedes its first `: `."""
    return line.split(": ", 1)[0]


def _keys_not_in(lines: list[str], others: list[str]) -> list[str]:
    """The lines about a key none of `others` is about."""
    named = {problem_key(p) for p in others}
    return [p for p in lines if problem_key(p) not in named]


def describe(err: Any) -> list[str]:
    """Lines for one pydantic error: `msops:key.path: got <value>; what is wrong and the fix`."""
    # A list index reads as in `pulumi config set --path`: `command[1]`, not `command.1`.
    loc = _loc(p for p in err["loc"] if p != "[key]")
    message = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return [f"{_key(loc)}: unknown key; remove it or fix the spelling ({hint})"]
    if kind == "missing":
        return [f"{_key(loc)}: required key is missing; add it"]
    if not loc:
        # Cross-reference errors from StackConfig carry their own key paths, one per line.
        return [f"{NAMESPACE}:{line}" for line in message.split("\n")]
    value = err.get("input")
    loc = _without_union_member(loc)
    annotation = field_at(loc)
    if _unwrap(annotation) is SecretStr:
        # Never echo a secret, not even a mistyped one.
        return [f"{_key(loc)}: {type_fix(kind, value, loc, err.get('ctx'), annotation)}"]
    quiet = value is None or (kind == "value_error" and repr(value) in message)
    shown = "" if quiet else f" got {_show(value)};"
    fix = type_fix(kind, value, loc, err.get("ctx"), annotation) or _plain(message)
    return [f"{_key(loc)}:{shown} {fix}"]


def _loc(parts: Iterable[str | int]) -> list[str]:
    """Key path parts as `_key` joins them: a list index reads `[1]`."""
    return [f"[{p}]" if isinstance(p, int) else str(p) for p in parts]


def _key(loc: list[str]) -> str:
    return f"{NAMESPACE}:{'.'.join(loc).replace('.[', '[')}" if loc else NAMESPACE


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(value)


def _allowed_keys(loc: list[str]) -> list[str]:
    """The camelCase keys the model at `loc` accepts (dict keys such as names are skipped)."""
    model: Any = StackConfig
    for part in loc:
        if model is None:
            break
        field = next(
            (f for n, f in model.model_fields.items() if to_camel(n) == part or n == part), None
        )
        if field is None:
            # A dict key (service or database name): step into the dict's value model.
            continue
        model = model_of(field.annotation)
    if model is None or not hasattr(model, "model_fields"):
        return []
    return sorted(to_camel(n) for n in model.model_fields)


def model_of(annotation: Any) -> Any:
    """The BaseModel inside Optional[M] or dict[str, M], else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(getattr(annotation, "__args__", ())):
        found = model_of(arg)
        if found is not None:
            return found
    return None


# --- type errors: what to write instead ----------------------------------------------------------

# pydantic tags each member of a union in an error's location (`maxSurge.int`, `maxSurge.str`).
_UNION_MEMBER = re.compile(r"^(?:int|str|float|bool|function-[a-z]+\[.*\])$")
_NUMBER_WORDS = {
    w: n
    for n, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}


def _without_union_member(loc: list[str]) -> list[str]:
    if len(loc) > 1 and _UNION_MEMBER.match(loc[-1]) and field_at(loc[:-1]) is not None:
        return loc[:-1]
    return loc


def field_at(loc: list[str]) -> Any:
    """The annotation of the value at a key path (None when the path names nothing)."""
    annotation: Any = StackConfig
    for part in loc:
        annotation = _unwrap(annotation)
        if hasattr(annotation, "__metadata__"):
            annotation = annotation.__origin__
        model = annotation if isinstance(annotation, type) else None
        if model is not None and issubclass(model, BaseModel):
            found = next(
                (f for n, f in model.model_fields.items() if part in (n, to_camel(n))), None
            )
            if found is None:
                return None
            # pydantic keeps an Annotated type's metadata (a Duration's check) apart.
            annotation = (
                Annotated[(found.annotation, *found.metadata)]
                if found.metadata
                else found.annotation
            )
        elif getattr(annotation, "__origin__", None) is dict:
            annotation = annotation.__args__[1]
        elif getattr(annotation, "__origin__", None) is list:
            annotation = annotation.__args__[0]
        else:
            return None
    return annotation


def _unwrap(annotation: Any) -> Any:
    """`X` for `X | None`; a union of several types and Annotated types stay as they are."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if type(None) in getattr(annotation, "__args__", ()) and len(args) == 1:
        return args[0]
    return annotation


def _kind_of(annotation: Any) -> str:
    """What a key holds, in the words a fix uses: duration, quantity, int, str, mapping..."""
    named = {Duration: "duration", Quantity: "quantity", Port: "int", HttpPath: "path"}
    base = annotation
    for _ in range(3):
        # Annotated[X | None, ...] or Annotated[X, ...] | None, in either order.
        kind = next((k for alias, k in named.items() if base == alias), None)
        if kind is not None:
            return kind
        base = _unwrap(base.__origin__ if hasattr(base, "__metadata__") else base)
    if base is bool:
        return "bool"
    if base is int:
        return "int"
    if base is float:
        return "float"
    if base is str:
        return "str"
    if getattr(base, "__origin__", None) is list or base is list:
        return "list"
    if getattr(base, "__origin__", None) is dict or (
        isinstance(base, type) and issubclass(base, BaseModel)
    ):
        return "mapping"
    if set(getattr(base, "__args__", ())) == {int, str}:
        return "count"
    return "other"


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def type_fix(kind: str, value: Any, loc: list[str], ctx: Any, annotation: Any) -> str | None:
    """The message for a pydantic error, as what to write instead; None: keep pydantic's."""
    fix = _fix(kind, value, loc, ctx, annotation)
    if fix is not None and loc and loc[-1].startswith("["):
        # A list item has no key to write before its value.
        fix = fix.replace(f"{loc[-1]}: ", "")
    return fix


def _fix(kind: str, value: Any, loc: list[str], ctx: Any, annotation: Any) -> str | None:
    key = loc[-1] if loc else NAMESPACE
    if _unwrap(annotation) is SecretStr:
        return (
            "must be set as a secret: pulumi config set --secret --path "
            f"'{_key(loc)}' (it reads the value from a prompt or stdin)"
        )
    if value is None and loc == ["services"]:
        return "has no value; it needs at least one service, e.g. services: {web: {image: ...}}"
    if value is None and kind.endswith("_type"):
        return f"has no value; give {key} a value, or remove the key to get its default"
    wants = _kind_of(annotation)
    if wants == "count" and kind.endswith(("_type", "_parsing")):
        # One message for every member of the union, so that the key gets one line.
        return f"write a whole number or a percentage in quotes: {key}: 1 or {key}: '25%'"
    if kind in ("int_type", "int_parsing", "int_from_float", "float_type", "float_parsing"):
        return _number_fix(key, value, wants)
    if kind == "string_type":
        return _text_fix(key, value, wants)
    if kind == "bool_type":
        word = str(value).strip().lower()
        guess = "true" if word in ("yes", "y", "on", "true", "1") else "false"
        return f"write true or false, without quotes: {key}: {guess}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return (
            f"must be a mapping: indented `name: value` lines under `{key}:` (see docs/config.md)"
        )
    if kind == "list_type":
        return f"must be a list, e.g. {key}: [python, -m, app] (see docs/config.md)"
    if kind == "literal_error" and ctx:
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        aliases = {"k8s": "kubernetes", "kube": "kubernetes", "compose": "docker"}
        alias = aliases.get(str(value).lower())
        close = difflib.get_close_matches(str(value), choices, n=1) or ([alias] if alias else [])
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"must be one of {', '.join(repr(c) for c in choices)}{hint}"
    if kind == "string_pattern_mismatch" and loc[-1:] == ["version"]:
        return 'write major.minor in quotes, e.g. version: "16.4"'
    if kind == "too_short" and loc == ["services"]:
        return "needs at least one service, e.g. services: {web: {image: ghcr.io/acme/web:1.0.0}}"
    bounds = {"greater_than_equal": "{ge} or more", "less_than_equal": "{le} or less"}
    bounds |= {"greater_than": "more than {gt}", "less_than": "less than {lt}"}
    if kind in bounds and ctx:
        return f"must be {bounds[kind].format(**ctx)}"
    return None


def _number_fix(key: str, value: Any, wants: str) -> str:
    whole = wants in ("int", "count")
    example = "1" if whole else "0.5"
    if isinstance(value, str):
        text = value.strip()
        word = _NUMBER_WORDS.get(text.lower())
        if word is not None:
            return f"write the number in digits: {key}: {word}"
        with contextlib.suppress(ValueError):
            number = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
            if math.isfinite(number) and (not whole or number.is_integer()):
                return f"write the number without quotes: {key}: {_yaml_text(number)}"
    if whole and isinstance(value, float) and not isinstance(value, bool):
        if wants == "count":
            return f"write a whole number or a percentage in quotes: {key}: 1 or {key}: '25%'"
        return f"write a whole number: {key}: {round(value) if math.isfinite(value) else 1}"
    if isinstance(value, bool):
        return f"write a number, not true/false: {key}: {example}"
    return f"write a {'whole ' if whole else ''}number: {key}: {example}"


def _text_fix(key: str, value: Any, wants: str) -> str:
    if isinstance(value, dict | list):
        return f"must be a single value, not a {'mapping' if isinstance(value, dict) else 'list'}"
    text = _yaml_text(value)
    if wants == "duration" and isinstance(value, int | float) and not isinstance(value, bool):
        # Durations are whole numbers of a unit: 1.5 seconds is 1500ms.
        shown = f"{text}s" if float(value).is_integer() else f"{round(value * 1000)}ms"
        return f"write a duration with its unit: {key}: {shown}"
    if wants == "count":
        return f"write a whole number or a percentage in quotes: {key}: 1 or {key}: '25%'"
    return f'write it in quotes, so YAML reads it as text: {key}: "{text}"'


def _plain(message: str) -> str:
    """pydantic's wording made direct: "Input should be X" → "must be X"."""
    message = re.sub(r"^(?:Input|String|Value) should (?:be|have)", "must be", message)
    return message.replace("a valid dictionary or instance of", "a mapping, a")


# --- keys per backend, sizes and namespaces ----------------------------------------------------

BACKENDS = ("docker", "swarm", "kubernetes")

# Every key that means something on some backends only: where it does, and what it is. Set on
# any other backend it would be ignored without a word, so it is an error naming where it
# belongs. `*` stands for a name (a service's). docs/config.md shows this table.
BACKEND_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "target.dockerHost": (("docker", "swarm"), "the Docker daemon to deploy to"),
    "target.bindAddress": (("docker", "swarm"), "the host address published ports bind to"),
    "target.kubeContext": (("kubernetes",), "the kubeconfig context"),
    "target.namespace": (("kubernetes",), "the namespace msops deploys into"),
    "services.*.build": (
        ("docker",),
        "a build on the deploying machine; swarm and kubernetes pull `image` from a registry",
    ),
    "services.*.lb.port": (
        ("docker", "swarm"),
        "the host port the LB publishes; on kubernetes set `exposed` or `ingress`",
    ),
    "services.*.lb.image": (
        ("docker",),
        "the nginx LB container; swarm's routing mesh and a Kubernetes Service need none",
    ),
    "services.*.ingress": (("kubernetes",), "a Kubernetes Ingress; elsewhere publish `lb.port`"),
    "services.*.rollout.maxSurge": (("kubernetes",), "a Deployment's rolling update"),
    "services.*.rollout.maxUnavailable": (("kubernetes",), "a Deployment's rolling update"),
    "services.*.rollout.historyLimit": (("kubernetes",), "old ReplicaSets kept"),
    "services.*.rollout.progressDeadline": (
        ("swarm", "kubernetes"),
        "how long a rollout may take to converge",
    ),
    "monitoring.prometheusPort": (("docker", "swarm"), "Prometheus' published host port"),
    "monitoring.grafanaPort": (("docker", "swarm"), "Grafana's published host port"),
    "monitoring.prometheusImage": (
        ("docker", "swarm"),
        "the Prometheus container; kube-prometheus-stack brings its own",
    ),
    "monitoring.grafanaImage": (
        ("docker", "swarm"),
        "the Grafana container; kube-prometheus-stack brings its own",
    ),
    "monitoring.releaseLabel": (("kubernetes",), "kube-prometheus-stack's selector label"),
    "monitoring.installStack": (("kubernetes",), "installing kube-prometheus-stack with Helm"),
    "monitoring.chartVersion": (("kubernetes",), "the kube-prometheus-stack chart version"),
}

# The most replicas one service may ask for on each backend (replicas, autoscaling.min/max).
# Above it the number is a typo far more often than a plan, and on docker it would make the
# offline synth alone take minutes (2,000 replicas: 25 s and 685 MB).
MAX_REPLICAS: dict[str, tuple[int, str]] = {
    "docker": (
        100,
        "one machine runs every replica as a container of its own: 100 at the default "
        "memoryRequest of 128Mi already ask for 12.5 GiB",
    ),
    "swarm": (
        1000,
        "a replicated service's tasks all go through the managers' Raft store; 1,000 tasks "
        "is 10 per node on a 100-node swarm",
    ),
    "kubernetes": (
        5000,
        "Kubernetes supports clusters of at most 5,000 nodes and 150,000 pods (110 per node); "
        "5,000 pods of one Deployment is the largest plausible plan",
    ),
}
# Every number a stack file can hold ends up in a Kubernetes int32, a Docker API field or a
# duration: larger is never meant.
MAX_NUMBER = 2**31 - 1


def backend_of(raw: Mapping[str, Any]) -> str | None:
    """The stack's backend, or None when the file names none msops knows (reported elsewhere)."""
    backend = raw.get("backend", "docker")
    return backend if isinstance(backend, str) and backend in BACKENDS else None


def _set_at(raw: Any, pattern: str) -> list[tuple[str, Any]]:
    """The keys a dotted pattern (`*` for any name) matches in the raw config, with values."""
    found: list[tuple[str, Any]] = [("", raw)]
    for part in pattern.split("."):
        step: list[tuple[str, Any]] = []
        for path, node in found:
            if not isinstance(node, Mapping):
                continue
            names = [str(k) for k in node] if part == "*" else [part]
            for name in names:
                if name in node:
                    step.append((f"{path}.{name}" if path else name, node[name]))
        found = step
    return [(path, value) for path, value in found if value is not None]


def backend_problems(raw: Mapping[str, Any]) -> list[str]:
    """Keys set in the file that the stack's backend would ignore, each naming its backends."""
    backend = backend_of(raw)
    if backend is None:
        return []
    problems: list[str] = []
    for pattern, (backends, meaning) in BACKEND_KEYS.items():
        if backend in backends:
            continue
        for path, _ in _set_at(raw, pattern):
            only = " and ".join(backends)
            problems.append(
                f"{path}: {only} only ({meaning}); msops:backend is {backend}, where it would "
                "be ignored, so remove it"
            )
    return problems


def size_problems(raw: Mapping[str, Any]) -> list[str]:
    """Replica counts above the backend's limit, and numbers too large for any key."""
    problems: list[str] = []
    backend = backend_of(raw)
    if backend is not None:
        limit = MAX_REPLICAS[backend][0]
        for pattern in (
            "services.*.replicas",
            "services.*.autoscaling.min",
            "services.*.autoscaling.max",
        ):
            for path, value in _set_at(raw, pattern):
                if _is_int(value) and limit < value <= MAX_NUMBER:
                    problems.append(
                        over_replica_limit(path, value, backend, "see docs/config.md, Limits")
                    )
    problems.extend(_huge_numbers(raw, ""))
    return problems


def over_replica_limit(key: str, replicas: int, backend: str, where: str) -> str:
    """The line for a replica count above the backend's MAX_REPLICAS; `where` ends it."""
    limit, why = MAX_REPLICAS[backend]
    return (
        f"{key}: {replicas} replicas is above the {backend} limit of {limit} per service "
        f"({why}); use {limit} or fewer ({where})"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _huge_numbers(node: Any, path: str) -> list[str]:
    if isinstance(node, Mapping):
        return [
            p for k, v in node.items() for p in _huge_numbers(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _huge_numbers(v, f"{path}[{i}]")]
    if _is_int(node) and abs(node) > MAX_NUMBER:
        return [f"{path}: the number is too large (over {MAX_NUMBER}); write a realistic value"]
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{path}: {node} is not a usable number; write a finite one, e.g. 0.5"]
    return []


def meant_keys(values: Mapping[Any, Any]) -> set[str]:
    """The msops keys that namespace_problems suggests for misplaced keys."""
    meant = set()
    for key in values:
        if isinstance(key, str) and not key.startswith(f"{NAMESPACE}:"):
            namespace, colon, name = key.partition(":")
            if not colon or difflib.get_close_matches(namespace.lower(), [NAMESPACE], cutoff=0.6):
                meant.add(f"{NAMESPACE}:{name if colon else key}")
    return meant


def namespace_problems(values: Mapping[Any, Any]) -> list[str]:
    """Stack file keys meant for msops that msops never reads: `msop:services`, `services`."""
    problems: list[str] = []
    for key in values:
        if not isinstance(key, str):
            problems.append(f"{key!r}: a config key must be text such as 'msops:services'")
            continue
        namespace, colon, name = key.partition(":")
        if not colon:
            problems.append(
                f"{key}: a config key needs a namespace; did you mean '{NAMESPACE}:{key}'?"
            )
        elif namespace != NAMESPACE and difflib.get_close_matches(
            namespace.lower(), [NAMESPACE], n=1, cutoff=0.6
        ):
            problems.append(
                f"{key}: namespace {namespace!r} is not {NAMESPACE!r}, so msops never reads "
                f"this key; did you mean '{NAMESPACE}:{name}'?"
            )
    return problems


def cpus(text: str) -> float:
    """CPUs in a quantity (`500m` → 0.5)."""
    return float(parse_quantity(text))


def bytes_of(text: str) -> int:
    """Bytes in a quantity (`256Mi` → 268435456)."""
    return int(parse_quantity(text))


# --- secrets: never plaintext in a stack file ----------------------------------------------------

# Where a value sits in the raw config: (top-level key without `msops:`, then keys and indexes).
ConfigPath = tuple[str | int, ...]
# Whether the value at a path reached msops encrypted. Two ways to know: a stack file read by
# the CLI masks every `{secure: ...}` leaf as SECRET_MASK (`masked_secure`), while the program
# only learns, per top-level key, which keys Pulumi marked secret (`keys_secure`).
SecurePredicate = Callable[[ConfigPath, Any], bool]

# `scheme://user:password@host`; the user may be empty (`redis://:password@host`). A scheme
# starts where no scheme character precedes it, so a long text is scanned once (no ReDoS).
_URL_PASSWORD = re.compile(
    r"(?P<head>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#@]+(?=@)"
)


def masked_secure(_path: ConfigPath, value: Any) -> bool:
    """Secure in a stack file the CLI read: stackfiles masks each `{secure: ...}` value."""
    return value == SECRET_MASK


def keys_secure(secret_keys: Collection[str]) -> SecurePredicate:
    """Secure in the program: Pulumi marks secrecy per top-level key (`msops:databases`), so
    any leaf of a key it marked counts; leaf by leaf is what `msops check` adds."""
    marked = frozenset(secret_keys)
    return lambda path, _value: f"{NAMESPACE}:{path[0]}" in marked


def plaintext_secret_problems(
    raw: Mapping[str, Any], secure: SecurePredicate, stack: str = "STACK"
) -> list[str]:
    """Every secret field set in plain text, and every plain value that holds a password.

    Values are never shown, except a URL with its password replaced by `***`.
    """
    fields = set(_secret_fields(StackConfig, raw, ()))
    problems = []
    for path in sorted(fields, key=str):
        value = _value_at(raw, path)
        if value is not None and not secure(path, value):
            key = _config_key(path)
            problems.append(
                f"{key}: a secret in plain text in the stack file (value not shown); "
                f"{set_secret_hint(stack, key)}"
            )
    for path, text in _strings(raw, ()):
        if "://" not in text or path in fields or secure(path, text):
            continue
        if not _URL_PASSWORD.search(text):
            continue
        problems.append(
            f"{_config_key(path)}: got {redact_url(text)!r}, a URL with a password in plain "
            f"text; {_url_fix(path, stack)}"
        )
    return problems


def set_secret_hint(stack: str, key: str) -> str:
    """How to set a config key encrypted: msops's command, or Pulumi's."""
    return (
        f"set it encrypted with `msops secret set {stack} {key}` (it reads the value from "
        f"stdin or a prompt) or `pulumi config set --secret --path '{key}' --stack {stack}`"
    )


def redact_url(text: str) -> str:
    """A text with the password of every URL in it replaced by `***`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def _url_fix(path: ConfigPath, stack: str) -> str:
    if len(path) == 4 and path[0] == "services" and path[2] == "env":
        secret = str(path[3]).lower().replace("_", "-")
        return (
            f"move it to a secret: {set_secret_hint(stack, f'{NAMESPACE}:secrets.{secret}')}, "
            f"then replace env.{path[3]} with secretEnv: {{{path[3]}: {secret}}}"
        )
    return "remove the password from it, and pass the password as a secret (secretEnv)"


def secret_file_env_problems(raw: Mapping[str, Any]) -> list[str]:
    """`<VAR>_FILE` set in env beside a secret variable: an app following the convention
    refuses to start with both, and swarm and migrations set it themselves."""
    problems = []
    services = raw.get("services")
    for name, svc in (services if isinstance(services, Mapping) else {}).items():
        if not isinstance(svc, Mapping):
            continue
        env, secret_env = svc.get("env"), svc.get("secretEnv")
        env = env if isinstance(env, Mapping) else {}
        secret_vars = [*(secret_env if isinstance(secret_env, Mapping) else {})]
        secret_vars += ["DATABASE_URL"] if svc.get("database") else []
        for var in secret_vars:
            if f"{var}_FILE" in env:
                problems.append(
                    f"{NAMESPACE}:services.{name}.env.{var}_FILE: msops sets it to the file of "
                    f"the secret {var}; remove it from env"
                )
    return problems


def load_secured(raw: Mapping[str, Any], stack: str, secure: SecurePredicate) -> StackConfig:
    """`load`, and no secret in plain text: every problem of both, at once."""
    problems = plaintext_secret_problems(raw, secure, stack) + secret_file_env_problems(raw)
    try:
        config = load(raw, stack)
    except ConfigError as exc:
        # A plaintext secret's own line says all there is to say about its key.
        raise ConfigError(stack, _keys_not_in(exc.problems, problems) + problems) from None
    if problems:
        raise ConfigError(stack, problems)
    return config


def _secret_fields(model: Any, value: Any, path: ConfigPath) -> Iterator[ConfigPath]:
    """The paths of the values in `value` that the schema types as secrets (SecretStr)."""
    if not isinstance(value, Mapping):
        return
    for name, info in model.model_fields.items():
        alias = to_camel(name)
        if alias not in value:
            continue
        yield from _secret_values(info.annotation, value[alias], (*path, alias))


def _secret_values(annotation: Any, value: Any, path: ConfigPath) -> Iterator[ConfigPath]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is dict:
        for key, item in value.items() if isinstance(value, Mapping) else ():
            yield from _secret_values(args[1], item, (*path, str(key)))
    elif annotation is SecretStr or SecretStr in args:
        yield path
    elif (found := model_of(annotation)) is not None:
        yield from _secret_fields(found, value, path)


def _strings(value: Any, path: ConfigPath) -> Iterator[tuple[ConfigPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _value_at(raw: Mapping[str, Any], path: ConfigPath) -> Any:
    node: Any = raw
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _config_key(path: ConfigPath) -> str:
    return _key(_loc(path))
