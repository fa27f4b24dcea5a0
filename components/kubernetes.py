"""The kubernetes backend: Deployments, Services, HPAs, PDBs, Postgres, kube-prometheus-stack."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.artifacts import grafana, prometheus
from components.secrets import StackSecrets
from components.spec import Database, Service, StackConfig, parse_duration

MANAGED_BY = "msops"
EXPOSED_ANNOTATION = "msops.dev/exposed"
VERSION_ANNOTATION = "msops.dev/version"
PORT_NAME = "http"
SERVICE_PORT = 80

KPS_CHART = "kube-prometheus-stack"
KPS_REPO = "https://prometheus-community.github.io/helm-charts"
# kube-prometheus-stack is cluster infrastructure (CRDs, node-exporter on every node), installed
# once per cluster; it gets its own namespace because node-exporter needs host access that the
# restricted Pod Security level of the application namespace forbids.
MONITORING_NAMESPACE = "monitoring"
# The chart truncates its fullname to 26 characters, and every Service name derives from it.
KPS_FULLNAME_MAX = 26
PROMETHEUS_PORT = 9090
# kube-prometheus-stack provisions its Prometheus datasource under this uid, which the
# dashboards' panels point at.
GRAFANA_DATASOURCE_UID = "prometheus"
DASHBOARD_LABEL = "grafana_dashboard"

POSTGRES_PORT = 5432
# The uid and gid of `postgres` in the official alpine images.
POSTGRES_UID = 70
POSTGRES_DATA = "/var/lib/postgresql/data"
# A subdirectory, because initdb refuses a volume root that holds lost+found, and creating it
# as the postgres user makes it owned by that user whatever the volume's root ownership is.
POSTGRES_PGDATA = f"{POSTGRES_DATA}/pgdata"
# The database has no resources section in the spec; a small fixed reservation keeps it
# schedulable on a shared cluster while the limit stops a runaway query starving the node.
POSTGRES_RESOURCES: k8s.core.v1.ResourceRequirementsArgsDict = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE_MAX = 63


# --- plain helpers -----------------------------------------------------------------------------


def image_version(image: str) -> tuple[str, str]:
    """The version of an image pin as (label value, annotation value).

    The tag when there is one, else the digest; the label is cut to what a label value may
    hold (63 alphanumerics, '-', '_', '.'), so a digest becomes `sha256-<12 hex>`.
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if tag:
        full, label = tag, tag
    else:
        full = digest
        algorithm, _, hex_digits = digest.partition(":")
        label = f"{algorithm}-{hex_digits[:12]}"
    label = re.sub(r"[^A-Za-z0-9_.-]", "-", label)[:_LABEL_VALUE_MAX]
    label = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", label)
    return label, full


def seconds(duration: str, minimum: int = 1) -> int:
    """Whole seconds in a duration, rounded up (Kubernetes probe fields take integers)."""
    return max(minimum, math.ceil(parse_duration(duration)))


def selector_labels(name: str, instance: str) -> dict[str, str]:
    """The labels a selector matches on: only ones that never change for the object's lifetime.

    A Deployment's selector is immutable, so the version must never be part of it.
    """
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance}


def common_labels(name: str, instance: str) -> dict[str, str]:
    """Labels on every object msops creates for one service or database."""
    return {**selector_labels(name, instance), "app.kubernetes.io/managed-by": MANAGED_BY}


def kps_fullname(release: str) -> str:
    """The name kube-prometheus-stack derives its objects' names from (its fullnameOverride)."""
    return release[:KPS_FULLNAME_MAX].rstrip("-")


def cluster_host(name: str, namespace: str) -> str:
    """The cluster DNS name of a Service."""
    return f"{name}.{namespace}.svc.cluster.local"


def restricted_container_security(run_as_user: int) -> k8s.core.v1.SecurityContextArgsDict:
    """The container securityContext that passes the `restricted` Pod Security Standard."""
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "read_only_root_filesystem": True,
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def _http_probe(path: str, svc: Service, *, initial_delay: int = 0) -> k8s.core.v1.ProbeArgsDict:
    return {
        "http_get": {"path": path, "port": PORT_NAME},
        "initial_delay_seconds": initial_delay,
        "period_seconds": seconds(svc.health.interval),
        "timeout_seconds": seconds(svc.health.timeout),
        "failure_threshold": svc.health.retries,
    }


# --- components --------------------------------------------------------------------------------


class KubernetesPlatform(pulumi.ComponentResource):
    """One stack on a cluster: provider, namespace, optional kube-prometheus-stack, the rest."""

    urls: dict[str, pulumi.Output[str]]
    prometheus_url: pulumi.Output[str] | None
    grafana_url: pulumi.Output[str] | None
    namespace: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(
        self,
        name: str,
        spec: StackConfig,
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:kubernetes:Platform", name, None, opts)
        instance = pulumi.get_stack()
        namespace_name = spec.target.namespace or instance

        # Explicit, so the stack never deploys into whatever context kubectl last switched to
        # unless the config says so; the namespace is left unset so that every object names
        # its own and none lands in `default` by accident.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            context=spec.target.kube_context,
            # By default the provider replaces a Secret or ConfigMap whose data changes, and
            # with the fixed names msops uses that means delete-then-create: a window in which
            # a starting pod finds no `<svc>-env`. Updating in place has no such window.
            enable_secret_mutable=True,
            enable_config_map_mutable=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)

        namespace = k8s.core.v1.Namespace(
            namespace_name,
            metadata={
                "name": namespace_name,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    "app.kubernetes.io/instance": instance,
                    # Every pod msops runs meets `restricted`; enforcing it stops anything
                    # weaker being added to the namespace by hand.
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=child,
        )
        self.namespace = namespace.metadata.name

        self.prometheus_url = None
        self.grafana_url = None
        monitoring_release: pulumi.Resource | None = None
        if spec.monitoring.enabled and spec.monitoring.install_stack:
            stack = KubePrometheusStack(
                f"{name}-monitoring",
                spec,
                provider=self.provider,
                opts=pulumi.ResourceOptions(parent=self, providers=[self.provider]),
            )
            monitoring_release = stack.release
            self.prometheus_url = stack.prometheus_url
            self.grafana_url = stack.grafana_url

        databases: dict[str, KubernetesPostgres] = {}
        for db_name, db in spec.databases.items():
            if db.external_url is not None:
                continue
            databases[db_name] = KubernetesPostgres(
                db_name,
                db,
                secrets.db_passwords[db_name],
                namespace=self.namespace,
                instance=instance,
                provider=self.provider,
                opts=pulumi.ResourceOptions(parent=self, providers=[self.provider]),
            )

        self.urls = {}
        for svc_name, svc in spec.services.items():
            database = databases.get(svc.database) if svc.database else None
            component = KubernetesService(
                svc_name,
                spec,
                svc,
                secrets,
                namespace=self.namespace,
                namespace_name=namespace_name,
                instance=instance,
                provider=self.provider,
                database=database,
                monitoring_release=monitoring_release,
                opts=pulumi.ResourceOptions(parent=self, providers=[self.provider]),
            )
            self.urls[svc_name] = component.url

        self.register_outputs(
            {
                "namespace": self.namespace,
                "urls": self.urls,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
            }
        )


def config_problems(spec: StackConfig) -> list[str]:
    """Names the cluster would refuse, or that would make two objects collide."""
    problems: list[str] = []
    namespace = spec.target.namespace or pulumi.get_stack()
    if not _DNS_LABEL.match(namespace):
        problems.append(
            f"msops:target.namespace: the namespace defaults to the stack name {namespace!r}, "
            "which is not a DNS-1123 label; set msops:target.namespace to one such as 'orders-prod'"
        )
    installs = spec.monitoring.enabled and spec.monitoring.install_stack
    if namespace == MONITORING_NAMESPACE and installs:
        problems.append(
            f"msops:target.namespace: {namespace!r} is where msops installs "
            "kube-prometheus-stack (msops:monitoring.installStack); choose another namespace"
        )
    # A database's headless Service is named after it, as is a service's Service.
    problems += [
        f"msops:databases.{name}: a service and a database are both named {name!r}, "
        "and on kubernetes both need a Service of that name; rename one of them"
        for name in sorted(set(spec.services) & set(spec.databases))
    ]
    return problems


class KubePrometheusStack(pulumi.ComponentResource):
    """kube-prometheus-stack from the prometheus-community chart, at a pinned version."""

    release: k8s.helm.v3.Release
    prometheus_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        spec: StackConfig,
        *,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:kubernetes:KubePrometheusStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        monitoring = spec.monitoring
        # The chart's Prometheus selects ServiceMonitors and PrometheusRules by
        # `release: <release name>`, so the release is named after the configured label.
        release_name = monitoring.release_label
        fullname = kps_fullname(release_name)

        namespace = k8s.core.v1.Namespace(
            MONITORING_NAMESPACE,
            metadata={
                "name": MONITORING_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            },
            opts=child,
        )
        grafana_values: dict[str, object] = {"enabled": monitoring.grafana}
        depends: list[pulumi.Resource] = []
        if monitoring.grafana:
            # The chart's default admin password is public ("prom-operator"); this one is
            # generated, kept in state, and never appears in the release values.
            password = random.RandomPassword(
                f"{name}-grafana-admin",
                length=24,
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            admin_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
            admin = k8s.core.v1.Secret(
                f"{name}-grafana-admin",
                metadata={
                    "name": "grafana-admin",
                    "namespace": namespace.metadata.name,
                    "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                },
                type="Opaque",
                string_data={
                    "admin-user": "admin",
                    "admin-password": admin_password,
                },
                opts=child,
            )
            depends.append(admin)
            grafana_values.update(
                {
                    "fullnameOverride": f"{fullname}-grafana",
                    "admin": {
                        "existingSecret": "grafana-admin",
                        "userKey": "admin-user",
                        "passwordKey": "admin-password",
                    },
                    "sidecar": {
                        "dashboards": {
                            "enabled": True,
                            "label": DASHBOARD_LABEL,
                            "labelValue": "1",
                            # The dashboards live next to the services, not in `monitoring`.
                            "searchNamespace": "ALL",
                        },
                        "datasources": {"uid": GRAFANA_DATASOURCE_UID},
                    },
                }
            )
        values = {
            "fullnameOverride": fullname,
            "grafana": grafana_values,
            "prometheus": {
                "prometheusSpec": {
                    "scrapeInterval": monitoring.scrape_interval,
                    "evaluationInterval": monitoring.scrape_interval,
                }
            },
        }
        self.release = k8s.helm.v3.Release(
            release_name,
            name=release_name,
            chart=KPS_CHART,
            version=monitoring.chart_version,
            repository_opts={"repo": KPS_REPO},
            namespace=namespace.metadata.name,
            values=values,
            # A failed upgrade rolls back by itself instead of leaving the release half-applied.
            atomic=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=depends)),
        )
        prometheus_host = cluster_host(f"{fullname}-prometheus", MONITORING_NAMESPACE)
        self.prometheus_url = pulumi.Output.from_input(
            f"http://{prometheus_host}:{PROMETHEUS_PORT}"
        )
        self.grafana_url = None
        if monitoring.grafana:
            grafana_host = cluster_host(f"{fullname}-grafana", MONITORING_NAMESPACE)
            self.grafana_url = pulumi.Output.from_input(f"http://{grafana_host}")
        self.register_outputs(
            {
                "release": self.release.name,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
            }
        )


class KubernetesPostgres(pulumi.ComponentResource):
    """One Postgres: a StatefulSet whose volume outlives it, behind a headless Service."""

    statefulset: k8s.apps.v1.StatefulSet

    def __init__(
        self,
        name: str,
        db: Database,
        password: pulumi.Output[str],
        *,
        namespace: pulumi.Input[str],
        instance: str,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:kubernetes:Postgres", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = {**common_labels(name, instance), "app.kubernetes.io/component": "database"}
        selector = selector_labels(name, instance)
        version, _ = image_version(db.resolved_image)
        # Secret already, from StackSecrets; marked again so no caller can hand in a plain one.
        password_value: pulumi.Output[str] = pulumi.Output.secret(password)

        secret = k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={"name": f"{name}-credentials", "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data={"password": password_value},
            opts=child,
        )
        # Headless: the name resolves straight to the one pod, which is what a StatefulSet's
        # stable network identity is built on.
        service = k8s.core.v1.Service(
            name,
            metadata={"name": name, "namespace": namespace, "labels": labels},
            spec={
                "cluster_ip": "None",
                "selector": selector,
                "ports": [
                    {
                        "name": "postgres",
                        "port": POSTGRES_PORT,
                        "target_port": "postgres",
                        "protocol": "TCP",
                    }
                ],
            },
            opts=child,
        )
        pg_isready = [
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-p",
            str(POSTGRES_PORT),
            "-U",
            db.user,
            "-d",
            name,
        ]
        self.statefulset = k8s.apps.v1.StatefulSet(
            name,
            metadata={"name": name, "namespace": namespace, "labels": labels},
            spec={
                "service_name": service.metadata.name,
                "replicas": 1,
                "selector": {"match_labels": selector},
                # Deleting or scaling down the StatefulSet must never take the data with it.
                "persistent_volume_claim_retention_policy": {
                    "when_deleted": "Retain",
                    "when_scaled": "Retain",
                },
                "template": {
                    "metadata": {
                        "labels": {**labels, "app.kubernetes.io/version": version},
                    },
                    "spec": {
                        "automount_service_account_token": False,
                        "security_context": {
                            "run_as_non_root": True,
                            "run_as_user": POSTGRES_UID,
                            "run_as_group": POSTGRES_UID,
                            # Makes the volume group-writable by postgres on first mount.
                            "fs_group": POSTGRES_UID,
                            "seccomp_profile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "postgres",
                                "image": db.resolved_image,
                                "image_pull_policy": "IfNotPresent",
                                "ports": [
                                    {
                                        "name": "postgres",
                                        "container_port": POSTGRES_PORT,
                                        "protocol": "TCP",
                                    }
                                ],
                                "env": [
                                    {"name": "POSTGRES_USER", "value": db.user},
                                    {"name": "POSTGRES_DB", "value": name},
                                    {"name": "PGDATA", "value": POSTGRES_PGDATA},
                                    {
                                        "name": "POSTGRES_PASSWORD",
                                        "value_from": {
                                            "secret_key_ref": {
                                                "name": secret.metadata.name,
                                                "key": "password",
                                            }
                                        },
                                    },
                                ],
                                "readiness_probe": {
                                    "exec_": {"command": pg_isready},
                                    "period_seconds": 10,
                                    "timeout_seconds": 5,
                                    "failure_threshold": 6,
                                },
                                # Liveness only asks whether the port accepts connections, and
                                # waits out a minute of failures: restarting a database that is
                                # merely slow under load makes things worse.
                                "liveness_probe": {
                                    "tcp_socket": {"port": 5432},
                                    "initial_delay_seconds": 30,
                                    "period_seconds": 10,
                                    "timeout_seconds": 5,
                                    "failure_threshold": 6,
                                },
                                "resources": POSTGRES_RESOURCES,
                                "security_context": restricted_container_security(POSTGRES_UID),
                                "volume_mounts": [
                                    {"name": "data", "mount_path": POSTGRES_DATA},
                                    # The root filesystem is read-only: the socket and temp
                                    # files need somewhere writable.
                                    {"name": "run", "mount_path": "/var/run/postgresql"},
                                    {"name": "tmp", "mount_path": "/tmp"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "run", "empty_dir": {}},
                            {"name": "tmp", "empty_dir": {}},
                        ],
                    },
                },
                "volume_claim_templates": [
                    {
                        "metadata": {"name": "data", "labels": labels},
                        "spec": {
                            "access_modes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": db.storage}},
                        },
                    }
                ],
            },
            # `pulumi destroy` or removing the database from the config leaves the StatefulSet
            # (and with the retention policy its PVC) in the cluster: data is deleted by hand.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        self.register_outputs({"service": service.metadata.name, "secret": secret.metadata.name})


class KubernetesService(pulumi.ComponentResource):
    """One microservice: Deployment, Service, and Ingress, HPA, PDB and monitoring as configured."""

    url: pulumi.Output[str]
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service

    def __init__(
        self,
        name: str,
        spec: StackConfig,
        svc: Service,
        secrets: StackSecrets,
        *,
        namespace: pulumi.Input[str],
        namespace_name: str,
        instance: str,
        provider: k8s.Provider,
        database: KubernetesPostgres | None = None,
        monitoring_release: pulumi.Resource | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("msops:kubernetes:Service", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = common_labels(name, instance)
        selector = selector_labels(name, instance)
        version_label, version = image_version(svc.image)

        db_host = None
        if svc.database is not None:
            db_host = cluster_host(svc.database, namespace_name)
        env = secrets.service_env(spec, svc, db_host)
        env_vars: list[k8s.core.v1.EnvVarArgsDict] = [
            {"name": var, "value": value} for var, value in svc.env.items()
        ]
        secret_vars = sorted(var for var in env if var not in svc.env)
        if secret_vars:
            secret_data: dict[str, pulumi.Input[str]] = {}
            for var in secret_vars:
                value: pulumi.Output[str] = pulumi.Output.secret(env[var])
                secret_data[var] = value
            env_secret = k8s.core.v1.Secret(
                f"{name}-env",
                metadata={"name": f"{name}-env", "namespace": namespace, "labels": labels},
                type="Opaque",
                string_data=secret_data,
                opts=child,
            )
            env_vars.extend(
                {
                    "name": var,
                    "value_from": {
                        "secret_key_ref": {"name": env_secret.metadata.name, "key": var}
                    },
                }
                for var in secret_vars
            )

        depends = [database] if database is not None else []
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata={"name": name, "namespace": namespace, "labels": labels},
            spec=self._deployment_spec(
                name, svc, labels, selector, version_label, version, env_vars
            ),
            # A database the app cannot reach keeps it unready, and the rollout would wait
            # out its deadline; start it once the database is up.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=depends)),
        )
        self.service = k8s.core.v1.Service(
            name,
            metadata={
                "name": name,
                "namespace": namespace,
                "labels": labels,
                # The policy pack allows a LoadBalancer Service only with this mark.
                **({"annotations": {EXPOSED_ANNOTATION: "true"}} if svc.exposed else {}),
            },
            spec={
                "type": "LoadBalancer" if svc.exposed else "ClusterIP",
                "selector": selector,
                "ports": [
                    {
                        "name": PORT_NAME,
                        "port": SERVICE_PORT,
                        "target_port": PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
            opts=child,
        )
        in_cluster = f"http://{cluster_host(name, namespace_name)}"

        if svc.ingress is not None:
            ingress = svc.ingress
            ingress_spec: k8s.networking.v1.IngressSpecArgsDict = {
                "rules": [
                    {
                        "host": ingress.host,
                        "http": {
                            "paths": [
                                {
                                    "path": ingress.path,
                                    "path_type": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": self.service.metadata.name,
                                            "port": {"name": PORT_NAME},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
            }
            if ingress.class_name is not None:
                ingress_spec["ingress_class_name"] = ingress.class_name
            if ingress.tls_secret is not None:
                ingress_spec["tls"] = [{"hosts": [ingress.host], "secret_name": ingress.tls_secret}]
            k8s.networking.v1.Ingress(
                name,
                metadata={"name": name, "namespace": namespace, "labels": labels},
                spec=ingress_spec,
                opts=child,
            )
            scheme = "https" if ingress.tls_secret is not None else "http"
            self.url = pulumi.Output.from_input(f"{scheme}://{ingress.host}{ingress.path}")
        elif svc.exposed:
            self.url = self.service.status.apply(
                lambda status: _load_balancer_url(status, in_cluster)
            )
        else:
            self.url = pulumi.Output.from_input(in_cluster)

        if svc.autoscaling is not None:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                name,
                metadata={"name": name, "namespace": namespace, "labels": labels},
                spec={
                    "scale_target_ref": {
                        "api_version": "apps/v1",
                        "kind": "Deployment",
                        "name": self.deployment.metadata.name,
                    },
                    "min_replicas": svc.autoscaling.min,
                    "max_replicas": svc.autoscaling.max,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "average_utilization": svc.autoscaling.target_cpu,
                                },
                            },
                        }
                    ],
                },
                opts=child,
            )

        if svc.max_replicas >= 2:
            k8s.policy.v1.PodDisruptionBudget(
                name,
                metadata={"name": name, "namespace": namespace, "labels": labels},
                spec={
                    # maxUnavailable rather than minAvailable: it holds whatever the HPA has
                    # scaled to, and at one replica it still lets a node drain finish, where
                    # minAvailable 1 would block every voluntary eviction forever.
                    "max_unavailable": 1,
                    "selector": {"match_labels": selector},
                    # A pod that is not ready serves nothing; evicting it costs no capacity,
                    # and keeping it would let a crash-looping pod block a drain.
                    "unhealthy_pod_eviction_policy": "AlwaysAllow",
                },
                opts=child,
            )

        if spec.monitoring.enabled:
            self._monitoring(name, spec, svc, namespace, labels, child, monitoring_release)

        self.register_outputs(
            {
                "url": self.url,
                "deployment": self.deployment.metadata.name,
                "service": self.service.metadata.name,
            }
        )

    @staticmethod
    def _deployment_spec(
        name: str,
        svc: Service,
        labels: Mapping[str, str],
        selector: Mapping[str, str],
        version_label: str,
        version: str,
        env: Sequence[k8s.core.v1.EnvVarArgsDict],
    ) -> k8s.apps.v1.DeploymentSpecArgsDict:
        deployment_spec: k8s.apps.v1.DeploymentSpecArgsDict = {
            "selector": {"match_labels": dict(selector)},
            "strategy": {
                "type": "RollingUpdate",
                "rolling_update": {
                    "max_surge": svc.rollout.max_surge,
                    "max_unavailable": svc.rollout.max_unavailable,
                },
            },
            "revision_history_limit": svc.rollout.history_limit,
            "progress_deadline_seconds": svc.rollout.progress_deadline,
            "template": {
                "metadata": {
                    # The version lives only here: changing the image changes the pod
                    # template and nothing else, which Kubernetes rolls out in place.
                    "labels": {**labels, "app.kubernetes.io/version": version_label},
                    "annotations": {VERSION_ANNOTATION: version},
                },
                "spec": {
                    # The app never talks to the Kubernetes API; no token to steal.
                    "automount_service_account_token": False,
                    "security_context": {
                        "run_as_non_root": True,
                        "run_as_user": svc.run_as_user,
                        "seccomp_profile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": name,
                            "image": svc.image,
                            "image_pull_policy": "IfNotPresent",
                            "ports": [
                                {
                                    "name": PORT_NAME,
                                    "container_port": svc.port,
                                    "protocol": "TCP",
                                }
                            ],
                            "env": list(env),
                            "readiness_probe": _http_probe(svc.health.readiness_path, svc),
                            # The start period guards against a slow start being killed;
                            # readiness needs no delay, it only holds traffic back.
                            "liveness_probe": _http_probe(
                                svc.health.path,
                                svc,
                                initial_delay=seconds(svc.health.start_period, minimum=0),
                            ),
                            "resources": {
                                "requests": {
                                    "cpu": svc.resources.cpu_request,
                                    "memory": svc.resources.memory_request,
                                },
                                "limits": {
                                    "cpu": svc.resources.cpu_limit,
                                    "memory": svc.resources.memory_limit,
                                },
                            },
                            "security_context": restricted_container_security(svc.run_as_user),
                            "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
                        }
                    ],
                    # The only writable path on a read-only root filesystem.
                    "volumes": [{"name": "tmp", "empty_dir": {}}],
                },
            },
        }
        # Left unset under an HPA: a fixed count here would reset the HPA's choice on every
        # update (the convention of the Helm scaffold and cdk8s-plus).
        if svc.autoscaling is None:
            deployment_spec["replicas"] = svc.desired_replicas
        return deployment_spec

    def _monitoring(
        self,
        name: str,
        spec: StackConfig,
        svc: Service,
        namespace: pulumi.Input[str],
        labels: Mapping[str, str],
        child: pulumi.ResourceOptions,
        monitoring_release: pulumi.Resource | None,
    ) -> None:
        monitoring = spec.monitoring
        release_labels = {**labels, "release": monitoring.release_label}
        # The CRDs come with the chart; when msops installs it, wait for them.
        crd_opts = pulumi.ResourceOptions.merge(
            child,
            pulumi.ResourceOptions(depends_on=[monitoring_release] if monitoring_release else []),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata={"name": name, "namespace": namespace, "labels": release_labels},
            spec={
                # The job label takes the service name, which the alert rules and the
                # dashboard select on (job="<service>").
                "jobLabel": "app.kubernetes.io/name",
                "selector": {"matchLabels": dict(labels)},
                "endpoints": [
                    {
                        "port": PORT_NAME,
                        "path": svc.metrics_path,
                        "interval": monitoring.scrape_interval,
                    }
                ],
            },
            opts=crd_opts,
        )
        alerts = monitoring.alerts
        k8s.apiextensions.CustomResource(
            f"{name}-prometheusrule",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": name, "namespace": namespace, "labels": release_labels},
            spec=prometheus.alert_rules(
                services=[name],
                error_rate=alerts.error_rate,
                p99_latency=alerts.p99_latency,
                target_down_for=alerts.target_down_for,
                evaluate_for=alerts.evaluate_for,
            ),
            opts=crd_opts,
        )
        if monitoring.grafana:
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                metadata={
                    "name": f"{name}-dashboard",
                    "namespace": namespace,
                    "labels": {**labels, DASHBOARD_LABEL: "1"},
                },
                data={
                    f"{name}.json": grafana.render_dashboard(
                        service=name, datasource_uid=GRAFANA_DATASOURCE_UID
                    )
                },
                opts=child,
            )


def _load_balancer_url(status: k8s.core.v1.outputs.ServiceStatus | None, fallback: str) -> str:
    """The URL of a LoadBalancer Service's first external address, else the in-cluster one."""
    load_balancer = status.load_balancer if status is not None else None
    for entry in (load_balancer.ingress if load_balancer is not None else None) or []:
        address = entry.hostname or entry.ip
        if address:
            return f"http://{address}"
    return fallback
