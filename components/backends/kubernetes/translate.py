"""The kubernetes backend's whole mapping: plan → pulumi-kubernetes arguments, as plain data.

Each function returns the keyword arguments of one provider resource (snake_case where the
pulumi_kubernetes classes take typed args, camelCase inside a custom resource's `spec` or a
Helm release's `values`, which reach the cluster as written) and the options it needs.
Values only known at deploy time (the namespace's name, another object's name, a secret)
come in as parameters and are placed unchanged, so these functions run, and are tested,
without Pulumi.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from components.artifacts import grafana as grafana_files
from components.artifacts import prometheus as prometheus_files
from components.backends.common import (
    Args,
    grafana_ini,
    migration_name,
    migration_of,
    monitoring_of,
)
from components.plan import model
from components.plan.builder import KUBERNETES_SERVICE_PORT, cluster_host
from components.vocabulary import (
    EXPOSED_MARK,
    GRAFANA_DASHBOARD_LABEL,
    K8S_COMPONENT,
    K8S_INSTANCE,
    K8S_MANAGED_BY,
    K8S_NAME,
    K8S_VERSION,
    K8S_VERSION_ANNOTATION,
    LABEL_TRACK,
    MANAGED_BY,
    TRACK_CANARY,
)

# The container port's name: Service, Ingress, probes and ServiceMonitor all refer to it, so
# a changed container port changes one place.
PORT_NAME = "http"
SERVICE_PORT = KUBERNETES_SERVICE_PORT
POSTGRES_PORT_NAME = "postgres"
# The socket directory, writable under a read-only root.
POSTGRES_RUN = "/var/run/postgresql"

# Every pod msops runs meets `restricted`; enforcing it on the namespace stops anything
# weaker being added to it by hand.
POD_SECURITY_LEVEL = "restricted"
SECCOMP = {"type": "RuntimeDefault"}

KPS_CHART = "kube-prometheus-stack"
KPS_REPO = "https://prometheus-community.github.io/helm-charts"
# kube-prometheus-stack is cluster infrastructure (CRDs, node-exporter on every node), installed
# once per cluster; it gets its own namespace because node-exporter needs host access that the
# restricted Pod Security level of the application namespace forbids.
MONITORING_NAMESPACE = "monitoring"
# The chart truncates its fullname to 26 characters, and every Service name derives from it.
KPS_FULLNAME_MAX = 26
# The port of the chart's Prometheus Service.
KPS_PROMETHEUS_PORT = 9090
GRAFANA_ADMIN_SECRET = "grafana-admin"

# A PodDisruptionBudget only where a service may run two or more pods: with one, any budget
# either blocks every drain or protects nothing.
PDB_MIN_REPLICAS = 2

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# --- values ---------------------------------------------------------------------------------------


def seconds(value: float, minimum: int = 1) -> int:
    """Whole seconds, rounded up (Kubernetes probe fields take integers)."""
    return max(minimum, math.ceil(value))


def selector_labels(name: str, instance: str) -> dict[str, str]:
    """The labels a selector matches on: only ones that never change for the object's lifetime.

    A Deployment's selector is immutable, so the version must never be part of it.
    """
    return {K8S_NAME: name, K8S_INSTANCE: instance}


def common_labels(name: str, instance: str) -> dict[str, str]:
    """Labels on every object msops creates for one service or database."""
    return {**selector_labels(name, instance), K8S_MANAGED_BY: MANAGED_BY}


def database_labels(plan: model.StackPlan, db: model.Database) -> dict[str, str]:
    return {**common_labels(db.name, plan.stack), K8S_COMPONENT: "database"}


def kps_fullname(release: str) -> str:
    """The name kube-prometheus-stack derives its objects' names from (its fullnameOverride)."""
    return release[:KPS_FULLNAME_MAX].rstrip("-")


def metadata(name: str, namespace: Any, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels, **extra}


def own_metadata(
    plan: model.StackPlan, workload: model.Workload, namespace: Any, **extra: Any
) -> dict[str, Any]:
    """The metadata of an object named after its service."""
    return metadata(workload.name, namespace, common_labels(workload.name, plan.stack), **extra)


def workload_key(workload: model.Workload) -> str:
    """`web`, or `web-canary`: a canary is a Deployment (and env Secret) of its own."""
    return f"{workload.name}-canary" if workload.track == TRACK_CANARY else workload.name


def track_labels(workload: model.Workload) -> dict[str, str]:
    """What tells a canary's pods from the stable ones; stable pods carry nothing new, so a
    canary starting leaves the stable Deployment exactly as it was."""
    return {LABEL_TRACK: TRACK_CANARY} if workload.track == TRACK_CANARY else {}


def container_security(security: model.Security) -> dict[str, Any]:
    """The container securityContext that passes the `restricted` Pod Security Standard.

    Capabilities are all dropped: the plan adds none back on kubernetes, and `restricted`
    would allow only NET_BIND_SERVICE.
    """
    return {
        "run_as_non_root": True,
        "run_as_user": security.user,
        "read_only_root_filesystem": security.read_only_root,
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": dict(SECCOMP),
    }


def pod_security(security: model.Security) -> dict[str, Any]:
    context: dict[str, Any] = {"run_as_non_root": True, "run_as_user": security.user}
    if security.run_as_group is not None:
        # fsGroup makes a volume group-writable by that group on first mount.
        context |= {"run_as_group": security.run_as_group, "fs_group": security.run_as_group}
    return {**context, "seccomp_profile": dict(SECCOMP)}


def resources(res: model.Resources) -> dict[str, Any]:
    """Requests and limits as the quantities they were written as."""
    return {
        "requests": {"cpu": res.cpu_request_text, "memory": res.memory_request_text},
        "limits": {"cpu": res.cpu_limit_text, "memory": res.memory_limit_text},
    }


def probe_timing(check: model.HealthCheck, *, initial_delay: float | None = None) -> dict[str, Any]:
    timing: dict[str, Any] = {
        "period_seconds": seconds(check.interval),
        "timeout_seconds": seconds(check.timeout),
        "failure_threshold": check.retries,
    }
    if initial_delay is not None:
        timing["initial_delay_seconds"] = seconds(initial_delay, minimum=0)
    return timing


def http_probe(check: model.HealthCheck, *, initial_delay: float = 0) -> dict[str, Any]:
    return {
        "http_get": {"path": check.path, "port": PORT_NAME},
        **probe_timing(check, initial_delay=initial_delay),
    }


def container_port(name: str, port: int) -> list[dict[str, Any]]:
    return [{"name": name, "container_port": port, "protocol": "TCP"}]


def service_port(name: str, port: int) -> list[dict[str, Any]]:
    return [{"name": name, "port": port, "target_port": name, "protocol": "TCP"}]


def secret_ref(var: str, secret_name: Any, key: str) -> dict[str, Any]:
    return {"name": var, "value_from": {"secret_key_ref": {"name": secret_name, "key": key}}}


# --- the stack: provider, namespace ---------------------------------------------------------------


def provider(plan: model.StackPlan, *, component: str) -> Args:
    """Explicit, so the stack never deploys into whatever context kubectl last switched to
    unless the config says so; the namespace is left unset so that every object names its
    own and none lands in `default` by accident."""
    return Args(
        f"{component}-k8s",
        {
            "context": plan.target.kube_context,
            # By default the provider replaces a Secret or ConfigMap whose data changes, and
            # with the fixed names msops uses that means delete-then-create: a window in which
            # a starting pod finds no `<svc>-env`. Updating in place has no such window.
            "enable_secret_mutable": True,
            "enable_config_map_mutable": True,
        },
    )


def namespace(plan: model.StackPlan) -> Args:
    """The stack's namespace. Where it holds a database it is retained on delete: deleting a
    namespace deletes everything in it, the retained StatefulSet and its PVC included."""
    name = plan.target.namespace
    return Args(
        name,
        {
            "metadata": {
                "name": name,
                "labels": {
                    K8S_MANAGED_BY: MANAGED_BY,
                    K8S_INSTANCE: plan.stack,
                    "pod-security.kubernetes.io/enforce": POD_SECURITY_LEVEL,
                    "pod-security.kubernetes.io/warn": POD_SECURITY_LEVEL,
                },
            }
        },
        {"retain_on_delete": True} if plan.databases else {},
    )


# --- a service ------------------------------------------------------------------------------------


def env_secret(
    plan: model.StackPlan, workload: model.Workload, *, namespace: Any, values: dict[str, Any]
) -> Args:
    """The service's secret variables (named secrets, DATABASE_URL), `values` by variable."""
    name = f"{workload_key(workload)}-env"
    return Args(
        name,
        {
            "metadata": metadata(name, namespace, common_labels(workload.name, plan.stack)),
            "type": "Opaque",
            "string_data": values,
        },
    )


def container_env(workload: model.Workload, *, secret_name: Any) -> list[dict[str, Any]]:
    """Plain variables as values, then the secret ones as references into `secret_name`."""
    plain = [{"name": var, "value": value} for var, value in workload.env]
    return plain + [secret_ref(var, secret_name, var) for var in workload.secret_vars]


def container(workload: model.Workload, env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": workload.name,
        "image": workload.image,
        "image_pull_policy": "IfNotPresent",
        "ports": container_port(PORT_NAME, workload.port),
        "env": env,
        # Readiness needs no delay, it only holds traffic back.
        "readiness_probe": http_probe(workload.readiness),
        # The start period guards against a slow start being killed.
        "liveness_probe": http_probe(
            workload.liveness, initial_delay=workload.liveness.start_period
        ),
        "resources": resources(workload.resources),
        "security_context": container_security(workload.security),
        "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
    }


def pod_template(
    plan: model.StackPlan, workload: model.Workload, env: list[dict[str, Any]]
) -> dict[str, Any]:
    labels = common_labels(workload.name, plan.stack)
    return {
        "metadata": {
            # The version lives only here: changing the image changes the pod template and
            # nothing else, which Kubernetes rolls out in place.
            "labels": {**labels, K8S_VERSION: workload.version_label, **track_labels(workload)},
            "annotations": {K8S_VERSION_ANNOTATION: workload.version},
        },
        "spec": {
            # The app never talks to the Kubernetes API; no token to steal.
            "automount_service_account_token": False,
            "security_context": pod_security(workload.security),
            "termination_grace_period_seconds": workload.stop_grace,
            "containers": [container(workload, env)],
            # The only writable path on a read-only root filesystem.
            "volumes": [{"name": "tmp", "empty_dir": {}}],
        },
    }


def deployment(
    plan: model.StackPlan, workload: model.Workload, *, namespace: Any, env: list[dict[str, Any]]
) -> Args:
    """The service's Deployment; a canary's is a second one, selected by the same Service,
    so its pods get their share of the traffic by their number."""
    rollout = workload.rollout
    selector = {**selector_labels(workload.name, plan.stack), **track_labels(workload)}
    spec: dict[str, Any] = {
        "selector": {"match_labels": selector},
        "strategy": {
            "type": "RollingUpdate",
            "rolling_update": {
                "max_surge": rollout.max_surge,
                "max_unavailable": rollout.max_unavailable,
            },
        },
        "revision_history_limit": rollout.history_limit,
        "progress_deadline_seconds": rollout.progress_deadline,
        "template": pod_template(plan, workload, env),
    }
    # Left unset under an HPA: a fixed count here would reset the HPA's choice on every
    # update (the convention of the Helm scaffold and cdk8s-plus).
    if workload.autoscaling is None:
        spec["replicas"] = workload.replicas
    key = workload_key(workload)
    labels = {**common_labels(workload.name, plan.stack), **track_labels(workload)}
    return Args(key, {"metadata": metadata(key, namespace, labels), "spec": spec})


def migration_labels(plan: model.StackPlan, workload: model.Workload) -> dict[str, str]:
    """Not the service's selector labels: its Service, Deployment and PodDisruptionBudget must
    never count a migration pod among their pods."""
    return {
        K8S_NAME: migration_name(workload),
        K8S_INSTANCE: plan.stack,
        K8S_MANAGED_BY: MANAGED_BY,
        K8S_COMPONENT: "migration",
    }


def migration_job_name(workload: model.Workload) -> str:
    """`<service>-migrate-<hash>`: a Job's pod template cannot change, so a release that runs
    another migration (image, command, env, schema) gets a Job of another name, and Pulumi
    replaces the old one; a release that does not keeps the finished Job as it is."""
    migration = migration_of(workload)
    facts = [
        workload.image,
        list(migration.command),
        list(workload.env),
        list(workload.secret_vars),
        migration.target_version,
        migration.timeout,
        [workload.resources.cpu_limit_text, workload.resources.memory_limit_text],
        workload.security.user,
    ]
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:8]
    return f"{workload.name[: 63 - len('-migrate-') - len(digest)]}-migrate-{digest}"


def migration_job(
    plan: model.StackPlan, workload: model.Workload, *, namespace: Any, env: list[dict[str, Any]]
) -> Args:
    """The service's migration as a Job the Deployment waits on: pulumi-kubernetes waits for a
    Job to complete and fails the update when it fails, so a failed migration leaves the
    Deployment, and its pods, as they were.

    The same pod as the service's (image, env and secret references, resources, the restricted
    security context), running `command` as the container's args, as Docker runs a CMD;
    `backoffLimit` new pods after a failed one; `ttlSecondsAfterFinished` later Kubernetes
    deletes the Job, which Pulumi's state keeps until a refresh (docs/kubernetes.md).
    `replaceUnready` makes the next update replace a Job that failed instead of waiting on it
    again, so fixing the cause and deploying runs it again.
    """
    migration = migration_of(workload)
    name = migration_job_name(workload)
    labels = migration_labels(plan, workload)
    migrate = {
        "name": "migrate",
        "image": workload.image,
        "image_pull_policy": "IfNotPresent",
        "args": list(migration.command),
        "env": env,
        "resources": resources(workload.resources),
        "security_context": container_security(workload.security),
        "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
    }
    annotations = {
        K8S_VERSION_ANNOTATION: workload.version,
        "pulumi.com/replaceUnready": "true",
    }
    spec = {
        "backoff_limit": migration.retries,
        "active_deadline_seconds": migration.timeout,
        "ttl_seconds_after_finished": migration.keep_finished,
        "template": {
            "metadata": {"labels": {**labels, K8S_VERSION: workload.version_label}},
            "spec": {
                "restart_policy": "Never",
                "automount_service_account_token": False,
                "security_context": pod_security(workload.security),
                "containers": [migrate],
                "volumes": [{"name": "tmp", "empty_dir": {}}],
            },
        },
    }
    return Args(
        migration_name(workload),
        {"metadata": metadata(name, namespace, labels, annotations=annotations), "spec": spec},
        {
            # replaceUnready replaces a failed Job under the same name, which must go first.
            "delete_before_replace": True,
            # Past activeDeadlineSeconds the Job fails by itself; a minute more for the pod
            # to be scheduled and its image pulled.
            "custom_timeouts": {"create": f"{migration.timeout + 60}s"},
        },
    )


def service(plan: model.StackPlan, workload: model.Workload, *, namespace: Any) -> Args:
    """ClusterIP, or a LoadBalancer for an exposed service, with the mark the policy pack
    requires of a LoadBalancer."""
    marks = {"annotations": {EXPOSED_MARK: "true"}} if workload.exposed else {}
    return Args(
        workload.name,
        {
            "metadata": own_metadata(plan, workload, namespace, **marks),
            "spec": {
                "type": "LoadBalancer" if workload.exposed else "ClusterIP",
                "selector": selector_labels(workload.name, plan.stack),
                "ports": service_port(PORT_NAME, SERVICE_PORT),
            },
        },
    )


def ingress(
    plan: model.StackPlan, workload: model.Workload, *, namespace: Any, service_name: Any
) -> Args | None:
    route = workload.ingress
    if route is None:
        return None
    backend = {"service": {"name": service_name, "port": {"name": PORT_NAME}}}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": route.host,
                "http": {
                    "paths": [{"path": route.path, "path_type": "Prefix", "backend": backend}]
                },
            }
        ],
    }
    if route.class_name is not None:
        spec["ingress_class_name"] = route.class_name
    if route.tls_secret is not None:
        spec["tls"] = [{"hosts": [route.host], "secret_name": route.tls_secret}]
    key = workload_key(workload)
    labels = {**common_labels(workload.name, plan.stack), **track_labels(workload)}
    return Args(key, {"metadata": metadata(key, namespace, labels), "spec": spec})


def in_cluster_url(plan: model.StackPlan, workload: model.Workload) -> str:
    return f"http://{cluster_host(workload.name, plan.target.namespace)}"


def url(plan: model.StackPlan, workload: model.Workload) -> str | None:
    """Where a service is reached, where the plan knows it: its Ingress, or for a service
    that is not exposed its in-cluster name. An exposed one's is its LoadBalancer's address,
    known once the Service has one (`load_balancer_url`)."""
    route = workload.ingress
    if route is not None:
        scheme = "https" if route.tls_secret is not None else "http"
        return f"{scheme}://{route.host}{route.path}"
    return None if workload.exposed else in_cluster_url(plan, workload)


def load_balancer_url(addresses: list[str | None], fallback: str) -> str:
    """The URL of a LoadBalancer Service's first external address, else the in-cluster one."""
    return next((f"http://{a}" for a in addresses if a), fallback)


def autoscaler(
    plan: model.StackPlan, workload: model.Workload, *, namespace: Any, deployment_name: Any
) -> Args | None:
    scaling = workload.autoscaling
    if scaling is None:
        return None
    cpu = {"type": "Utilization", "average_utilization": scaling.target_cpu}
    return Args(
        workload.name,
        {
            "metadata": own_metadata(plan, workload, namespace),
            "spec": {
                "scale_target_ref": {
                    "api_version": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment_name,
                },
                "min_replicas": scaling.min,
                "max_replicas": scaling.max,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": cpu}}],
            },
        },
    )


def disruption_budget(
    plan: model.StackPlan, workload: model.Workload, *, namespace: Any
) -> Args | None:
    if workload.max_replicas < PDB_MIN_REPLICAS:
        return None
    return Args(
        workload.name,
        {
            "metadata": own_metadata(plan, workload, namespace),
            "spec": {
                # maxUnavailable rather than minAvailable: it holds whatever the HPA has
                # scaled to, and at one replica it still lets a node drain finish, where
                # minAvailable 1 would block every voluntary eviction forever.
                "max_unavailable": 1,
                "selector": {"match_labels": selector_labels(workload.name, plan.stack)},
                # A pod that is not ready serves nothing; evicting it costs no capacity,
                # and keeping it would let a crash-looping pod block a drain.
                "unhealthy_pod_eviction_policy": "AlwaysAllow",
            },
        },
    )


# --- a service's monitoring -----------------------------------------------------------------------


def release_labels(plan: model.StackPlan, workload: model.Workload) -> dict[str, str]:
    """kube-prometheus-stack's Prometheus selects ServiceMonitors and PrometheusRules by
    `release: <its release name>`."""
    release = monitoring_of(plan).kube_prometheus_stack.release_label
    return {**common_labels(workload.name, plan.stack), "release": release}


def scraped(plan: model.StackPlan, workload: model.Workload) -> bool:
    """Whether Prometheus scrapes and alerts on the service: as on every backend, those with a
    replica (monitoring.jobs)."""
    return any(job.service == workload.name for job in monitoring_of(plan).jobs)


def service_monitor(plan: model.StackPlan, workload: model.Workload, *, namespace: Any) -> Args:
    """The service scraped through its Service."""
    return Args(
        f"{workload.name}-servicemonitor",
        {
            "api_version": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": metadata(workload.name, namespace, release_labels(plan, workload)),
            "spec": {
                # The job label takes the service name, which the alert rules and the
                # dashboard select on (job="<service>").
                "jobLabel": K8S_NAME,
                "selector": {"matchLabels": common_labels(workload.name, plan.stack)},
                # The pods' version (and a canary's track) become labels of every series
                # they serve, which a canary's analysis selects on.
                "podTargetLabels": [K8S_VERSION, LABEL_TRACK],
                "endpoints": [
                    {
                        "port": PORT_NAME,
                        "path": workload.metrics_path,
                        "interval": monitoring_of(plan).scrape_interval,
                    }
                ],
            },
        },
    )


def prometheus_rule(plan: model.StackPlan, workload: model.Workload, *, namespace: Any) -> Args:
    alerts = monitoring_of(plan).alerts
    return Args(
        f"{workload.name}-prometheusrule",
        {
            "api_version": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": metadata(workload.name, namespace, release_labels(plan, workload)),
            "spec": prometheus_files.alert_rules(
                services=[workload.name],
                error_rate=alerts.error_rate,
                p99_latency=alerts.p99_latency,
                target_down_for=alerts.target_down_for,
                evaluate_for=alerts.evaluate_for,
            ),
        },
    )


def dashboard(plan: model.StackPlan, workload: model.Workload, *, namespace: Any) -> Args | None:
    """A ConfigMap Grafana's dashboard sidecar loads, in the service's own namespace."""
    graf = monitoring_of(plan).grafana
    if graf is None or workload.name not in graf.dashboards:
        return None
    name = f"{workload.name}-dashboard"
    labels = {**common_labels(workload.name, plan.stack), GRAFANA_DASHBOARD_LABEL: "1"}
    body = grafana_files.render_dashboard(service=workload.name, datasource_uid=graf.datasource_uid)
    return Args(
        name,
        {"metadata": metadata(name, namespace, labels), "data": {f"{workload.name}.json": body}},
    )


# --- a database -----------------------------------------------------------------------------------


def postgres_secret(
    plan: model.StackPlan, db: model.Database, *, namespace: Any, password: Any
) -> Args:
    name = f"{db.name}-credentials"
    return Args(
        name,
        {
            "metadata": metadata(name, namespace, database_labels(plan, db)),
            "type": "Opaque",
            "string_data": {"password": password},
        },
    )


def postgres_service(plan: model.StackPlan, db: model.Database, *, namespace: Any) -> Args:
    """Headless: the name resolves straight to the one pod, which is what a StatefulSet's
    stable network identity is built on."""
    return Args(
        db.name,
        {
            "metadata": metadata(db.name, namespace, database_labels(plan, db)),
            "spec": {
                "cluster_ip": "None",
                "selector": selector_labels(db.name, plan.stack),
                "ports": service_port(POSTGRES_PORT_NAME, db.port),
            },
        },
    )


def postgres_container(db: model.Database, *, secret_name: Any) -> dict[str, Any]:
    return {
        "name": "postgres",
        "image": db.image,
        "image_pull_policy": "IfNotPresent",
        "ports": container_port(POSTGRES_PORT_NAME, db.port),
        "env": [
            {"name": "POSTGRES_USER", "value": db.user},
            {"name": "POSTGRES_DB", "value": db.name},
            {"name": "PGDATA", "value": db.data_dir},
            secret_ref("POSTGRES_PASSWORD", secret_name, "password"),
        ],
        "readiness_probe": {
            "exec_": {"command": list(db.health.command)},
            **probe_timing(db.health),
        },
        # Liveness only asks whether the port accepts connections, and waits out a minute
        # of failures: restarting a database that is merely slow under load makes it worse.
        "liveness_probe": {
            "tcp_socket": {"port": db.port},
            **probe_timing(db.health, initial_delay=db.health.start_period),
        },
        "resources": resources(db.resources),
        "security_context": container_security(db.security),
        "volume_mounts": [
            {"name": "data", "mount_path": db.data_mount},
            # The root filesystem is read-only: the socket and temp files need somewhere
            # writable.
            {"name": "run", "mount_path": POSTGRES_RUN},
            {"name": "tmp", "mount_path": "/tmp"},
        ],
    }


def postgres_statefulset(
    plan: model.StackPlan,
    db: model.Database,
    *,
    namespace: Any,
    service_name: Any,
    secret_name: Any,
) -> Args:
    labels = database_labels(plan, db)
    template = {
        "metadata": {"labels": {**labels, K8S_VERSION: db.version_label}},
        "spec": {
            "automount_service_account_token": False,
            "security_context": pod_security(db.security),
            "termination_grace_period_seconds": db.stop_grace,
            "containers": [postgres_container(db, secret_name=secret_name)],
            "volumes": [{"name": "run", "empty_dir": {}}, {"name": "tmp", "empty_dir": {}}],
        },
    }
    claim = {
        "metadata": {"name": "data", "labels": labels},
        "spec": {
            "access_modes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": db.storage_text}},
        },
    }
    spec = {
        "service_name": service_name,
        "replicas": 1,
        "selector": {"match_labels": selector_labels(db.name, plan.stack)},
        # Deleting or scaling down the StatefulSet must never take the data with it.
        "persistent_volume_claim_retention_policy": {
            "when_deleted": "Retain",
            "when_scaled": "Retain",
        },
        "template": template,
        "volume_claim_templates": [claim],
    }
    return Args(
        db.name,
        {"metadata": metadata(db.name, namespace, labels), "spec": spec},
        # `pulumi destroy` or removing the database from the config leaves the StatefulSet
        # (and with the retention policy its PVC) in the cluster: data is deleted by hand.
        {"retain_on_delete": True},
    )


# --- kube-prometheus-stack ------------------------------------------------------------------------


def installs_stack(plan: model.StackPlan) -> bool:
    return plan.monitoring is not None and plan.monitoring.kube_prometheus_stack.install


def monitoring_namespace() -> Args:
    return Args(
        MONITORING_NAMESPACE,
        {"metadata": {"name": MONITORING_NAMESPACE, "labels": {K8S_MANAGED_BY: MANAGED_BY}}},
    )


def grafana_admin_secret(
    plan: model.StackPlan, *, component: str, namespace: Any, password: Any
) -> Args:
    """Where the chart's Grafana reads its admin from, so the password never appears in the
    release values."""
    graf = monitoring_of(plan).grafana
    assert graf is not None
    return Args(
        f"{component}-grafana-admin",
        {
            "metadata": metadata(GRAFANA_ADMIN_SECRET, namespace, {K8S_MANAGED_BY: MANAGED_BY}),
            "type": "Opaque",
            "string_data": {"admin-user": graf.admin_user, "admin-password": password},
        },
    )


def kps_grafana_values(plan: model.StackPlan) -> dict[str, Any]:
    graf = monitoring_of(plan).grafana
    if graf is None:
        return {"enabled": False}
    release = monitoring_of(plan).kube_prometheus_stack.release_label
    return {
        "enabled": True,
        "fullnameOverride": f"{kps_fullname(release)}-grafana",
        "admin": {
            "existingSecret": GRAFANA_ADMIN_SECRET,
            "userKey": "admin-user",
            "passwordKey": "admin-password",
        },
        # The same settings as msops' own Grafana on docker and swarm; the admin comes from
        # the Secret above.
        "grafana.ini": grafana_ini(plan),
        "sidecar": {
            "dashboards": {
                "enabled": True,
                "label": GRAFANA_DASHBOARD_LABEL,
                "labelValue": "1",
                # The dashboards live next to the services, not in `monitoring`.
                "searchNamespace": "ALL",
            },
            "datasources": {"uid": graf.datasource_uid},
        },
    }


def kps_release(plan: model.StackPlan, *, namespace: Any) -> Args:
    """The chart at its pinned version. The release is named after the configured release
    label, since its Prometheus selects ServiceMonitors and PrometheusRules by
    `release: <release name>`."""
    mon = monitoring_of(plan)
    release = mon.kube_prometheus_stack.release_label
    values = {
        "fullnameOverride": kps_fullname(release),
        "grafana": kps_grafana_values(plan),
        "prometheus": {
            "prometheusSpec": {
                "scrapeInterval": mon.scrape_interval,
                "evaluationInterval": mon.scrape_interval,
            }
        },
    }
    return Args(
        release,
        {
            "name": release,
            "chart": KPS_CHART,
            "version": mon.kube_prometheus_stack.chart_version,
            "repository_opts": {"repo": KPS_REPO},
            "namespace": namespace,
            "values": values,
            # A failed upgrade rolls back by itself instead of leaving the release half-applied.
            "atomic": True,
        },
    )


def monitoring_urls(plan: model.StackPlan) -> tuple[str | None, str | None]:
    """The in-cluster URLs of the Prometheus and Grafana msops installs; where it does not
    install the stack, it cannot know where an existing one lives."""
    if not installs_stack(plan):
        return None, None
    mon = monitoring_of(plan)
    fullname = kps_fullname(mon.kube_prometheus_stack.release_label)
    prometheus_host = cluster_host(f"{fullname}-prometheus", MONITORING_NAMESPACE)
    prometheus_url = f"http://{prometheus_host}:{KPS_PROMETHEUS_PORT}"
    if mon.grafana is None:
        return prometheus_url, None
    return prometheus_url, f"http://{cluster_host(f'{fullname}-grafana', MONITORING_NAMESPACE)}"


# --- config ---------------------------------------------------------------------------------------


def config_problems(plan: model.StackPlan) -> list[str]:
    """Names the cluster would refuse, or that would make two objects collide."""
    problems: list[str] = []
    name = plan.target.namespace
    if not _DNS_LABEL.match(name):
        problems.append(
            f"msops:target.namespace: the namespace defaults to the stack name {name!r}, "
            "which is not a DNS-1123 label; set msops:target.namespace to one such as 'orders-prod'"
        )
    if name == MONITORING_NAMESPACE and installs_stack(plan):
        problems.append(
            f"msops:target.namespace: {name!r} is where msops installs "
            "kube-prometheus-stack (msops:monitoring.installStack); choose another namespace"
        )
    # A database's headless Service is named after it, as is a service's Service; an
    # external database gets none, so its name is free.
    databases = {db.name for db in plan.databases}
    problems += [
        f"msops:databases.{clash}: a service and a database are both named {clash!r}, "
        "and on kubernetes both need a Service of that name; rename one of them"
        for clash in sorted({w.name for w in plan.workloads} & databases)
    ]
    return problems
