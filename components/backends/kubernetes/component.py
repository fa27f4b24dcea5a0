"""Kubernetes backend components: they register what `translate` describes, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.backends.common import Args, digest_of, grafana_admin_password
from components.backends.kubernetes import translate
from components.plan import model
from components.secrets import StackSecrets

Options = pulumi.ResourceOptions | None


def options(
    spec: Args, base: pulumi.ResourceOptions, depends_on: list[pulumi.Resource] | None = None
) -> pulumi.ResourceOptions:
    settings = dict(spec.options)
    if isinstance(settings.get("custom_timeouts"), dict):
        settings["custom_timeouts"] = pulumi.CustomTimeouts(**settings["custom_timeouts"])
    return pulumi.ResourceOptions.merge(
        base, pulumi.ResourceOptions(**settings, depends_on=depends_on or [])
    )


@dataclass(frozen=True)
class Cluster:
    """Where one stack's objects go: its plan, its provider and its namespace's name."""

    plan: model.StackPlan
    provider: k8s.Provider
    namespace: pulumi.Output[str]

    def child(self, owner: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=owner, provider=self.provider)


def load_balancer_url(status: k8s.core.v1.outputs.ServiceStatus | None, fallback: str) -> str:
    load_balancer = status.load_balancer if status is not None else None
    entries = (load_balancer.ingress if load_balancer is not None else None) or []
    return translate.load_balancer_url([e.hostname or e.ip for e in entries], fallback)


class KubePrometheusStack(pulumi.ComponentResource):
    """kube-prometheus-stack from the prometheus-community chart, at a pinned version."""

    release: k8s.helm.v3.Release
    prometheus_url: str | None
    grafana_url: str | None
    grafana_admin_password: pulumi.Output[str] | None

    def __init__(
        self, name: str, plan: model.StackPlan, provider: k8s.Provider, opts: Options
    ) -> None:
        super().__init__("msops:kubernetes:KubePrometheusStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        spec = translate.monitoring_namespace()
        namespace = k8s.core.v1.Namespace(spec.name, **spec.args, opts=options(spec, child))
        depends: list[pulumi.Resource] = []
        self.grafana_admin_password = None
        if plan.monitoring is not None and plan.monitoring.grafana is not None:
            depends.append(self._grafana_admin(name, plan, namespace.metadata.name, child))
        spec = translate.kps_release(plan, namespace=namespace.metadata.name)
        self.release = k8s.helm.v3.Release(
            spec.name, **spec.args, opts=options(spec, child, depends_on=depends)
        )
        self.prometheus_url, self.grafana_url = translate.monitoring_urls(plan)
        self.register_outputs(
            {
                "release": self.release.name,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
                "grafanaAdminPassword": self.grafana_admin_password,
            }
        )

    def _grafana_admin(
        self,
        name: str,
        plan: model.StackPlan,
        namespace: pulumi.Output[str],
        child: pulumi.ResourceOptions,
    ) -> k8s.core.v1.Secret:
        spec = grafana_admin_password(f"{name}-grafana-admin")
        password = random.RandomPassword(
            spec.name, **spec.args, opts=pulumi.ResourceOptions(parent=self)
        )
        admin_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        self.grafana_admin_password = admin_password
        spec = translate.grafana_admin_secret(
            plan, component=name, namespace=namespace, password=admin_password
        )
        return k8s.core.v1.Secret(spec.name, **spec.args, opts=options(spec, child))


class KubernetesPostgres(pulumi.ComponentResource):
    """One Postgres: a StatefulSet whose volume outlives it, behind a headless Service."""

    statefulset: k8s.apps.v1.StatefulSet
    service: k8s.core.v1.Service
    secret: k8s.core.v1.Secret

    def __init__(
        self, cluster: Cluster, db: model.Database, password: pulumi.Output[str], opts: Options
    ) -> None:
        super().__init__("msops:kubernetes:Postgres", db.name, None, opts)
        plan, namespace, child = cluster.plan, cluster.namespace, cluster.child(self)
        # Secret already, from StackSecrets; marked again so no caller can hand in a plain one.
        secret_password: pulumi.Output[str] = pulumi.Output.secret(password)
        spec = translate.postgres_secret(plan, db, namespace=namespace, password=secret_password)
        self.secret = k8s.core.v1.Secret(spec.name, **spec.args, opts=options(spec, child))
        spec = translate.postgres_service(plan, db, namespace=namespace)
        self.service = k8s.core.v1.Service(spec.name, **spec.args, opts=options(spec, child))
        spec = translate.postgres_statefulset(
            plan,
            db,
            namespace=namespace,
            service_name=self.service.metadata.name,
            secret_name=self.secret.metadata.name,
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            spec.name, **spec.args, opts=options(spec, child)
        )
        self.register_outputs(
            {"service": self.service.metadata.name, "secret": self.secret.metadata.name}
        )


class KubernetesService(pulumi.ComponentResource):
    """One microservice: Deployment, Service, and Ingress, HPA, PDB and monitoring as planned."""

    url: pulumi.Output[str]
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    # The Job that ran this release's migration, with migrations.
    migration: k8s.batch.v1.Job | None

    def __init__(
        self,
        cluster: Cluster,
        workload: model.Workload,
        secrets: StackSecrets,
        *,
        after: list[pulumi.Resource],
        monitoring_release: pulumi.Resource | None,
        opts: Options,
    ) -> None:
        super().__init__("msops:kubernetes:Service", workload.name, None, opts)
        plan, namespace, child = cluster.plan, cluster.namespace, cluster.child(self)
        env = translate.container_env(
            workload, secret_name=self._env_secret(cluster, workload, secrets)
        )
        self.migration = None
        if workload.migration is not None:
            spec = translate.migration_job(plan, workload, namespace=namespace, env=env)
            self.migration = k8s.batch.v1.Job(
                spec.name, **spec.args, opts=options(spec, child, depends_on=after)
            )
            after = [*after, self.migration]
        spec = translate.deployment(plan, workload, namespace=namespace, env=env)
        self.deployment = k8s.apps.v1.Deployment(
            spec.name,
            **spec.args,
            # A database the app cannot reach keeps it unready, and the rollout would wait
            # out its deadline; start it once the database is up, and migrated.
            opts=options(spec, child, depends_on=after),
        )
        if workload.canary is not None:
            self._canary(cluster, workload.canary, secrets, after)
        spec = translate.service(plan, workload, namespace=namespace)
        self.service = k8s.core.v1.Service(spec.name, **spec.args, opts=options(spec, child))
        self.url = self._url(plan, workload)
        self._scaling(cluster, workload)
        if plan.monitoring is not None:
            self._monitoring(cluster, workload, monitoring_release)
        self.register_outputs(
            {
                "url": self.url,
                "deployment": self.deployment.metadata.name,
                "service": self.service.metadata.name,
            }
        )

    def _canary(
        self,
        cluster: Cluster,
        canary: model.Workload,
        secrets: StackSecrets,
        after: list[pulumi.Resource],
    ) -> None:
        """The canary's own Deployment (and env Secret), beside the untouched stable one."""
        env = translate.container_env(
            canary, secret_name=self._env_secret(cluster, canary, secrets)
        )
        spec = translate.deployment(cluster.plan, canary, namespace=cluster.namespace, env=env)
        k8s.apps.v1.Deployment(
            spec.name, **spec.args, opts=options(spec, cluster.child(self), depends_on=after)
        )

    def _env_secret(
        self, cluster: Cluster, workload: model.Workload, secrets: StackSecrets
    ) -> pulumi.Output[str] | None:
        """The `<name>-env` Secret's name, or None where the service has no secret env."""
        wanted = list(workload.secret_vars)
        if not wanted:
            return None
        found = secrets.values(workload)
        values: dict[str, pulumi.Output[str]] = {
            var: pulumi.Output.secret(found[var]) for var in wanted
        }
        spec = translate.env_secret(
            cluster.plan, workload, namespace=cluster.namespace, values=values
        )
        secret = k8s.core.v1.Secret(spec.name, **spec.args, opts=options(spec, cluster.child(self)))
        return secret.metadata.name

    def _url(self, plan: model.StackPlan, workload: model.Workload) -> pulumi.Output[str]:
        known = translate.url(plan, workload)
        if known is not None:
            return pulumi.Output.from_input(known)
        fallback = translate.in_cluster_url(plan, workload)
        return self.service.status.apply(lambda status: load_balancer_url(status, fallback))

    def _scaling(self, cluster: Cluster, workload: model.Workload) -> None:
        """Ingress, HPA and PDB, each where the plan calls for one."""
        plan, namespace, child = cluster.plan, cluster.namespace, cluster.child(self)
        spec: Args | None = translate.ingress(
            plan, workload, namespace=namespace, service_name=self.service.metadata.name
        )
        if spec is not None:
            k8s.networking.v1.Ingress(spec.name, **spec.args, opts=options(spec, child))
        spec = translate.autoscaler(
            plan, workload, namespace=namespace, deployment_name=self.deployment.metadata.name
        )
        if spec is not None:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                spec.name, **spec.args, opts=options(spec, child)
            )
        spec = translate.disruption_budget(plan, workload, namespace=namespace)
        if spec is not None:
            k8s.policy.v1.PodDisruptionBudget(spec.name, **spec.args, opts=options(spec, child))

    def _monitoring(
        self, cluster: Cluster, workload: model.Workload, release: pulumi.Resource | None
    ) -> None:
        """ServiceMonitor and PrometheusRule for a scraped service, and its dashboard."""
        plan, namespace, child = cluster.plan, cluster.namespace, cluster.child(self)
        # The CRDs come with the chart; when msops installs it, wait for them.
        after_release = [release] if release is not None else []
        if translate.scraped(plan, workload):
            for spec in (
                translate.service_monitor(plan, workload, namespace=namespace),
                translate.prometheus_rule(plan, workload, namespace=namespace),
            ):
                k8s.apiextensions.CustomResource(
                    spec.name, **spec.args, opts=options(spec, child, depends_on=after_release)
                )
        dashboard = translate.dashboard(plan, workload, namespace=namespace)
        if dashboard is not None:
            k8s.core.v1.ConfigMap(dashboard.name, **dashboard.args, opts=options(dashboard, child))


class KubernetesPlatform(pulumi.ComponentResource):
    """One stack on a cluster: provider, namespace, optional kube-prometheus-stack, the rest."""

    urls: dict[str, pulumi.Output[str]]
    digests: dict[str, str | None]
    prometheus_url: str | None
    grafana_url: str | None
    grafana_admin_password: pulumi.Output[str] | None
    namespace: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(
        self, name: str, plan: model.StackPlan, secrets: StackSecrets, *, opts: Options = None
    ) -> None:
        super().__init__("msops:kubernetes:Platform", name, None, opts)
        spec = translate.provider(plan, component=name)
        self.provider = k8s.Provider(
            spec.name, **spec.args, opts=pulumi.ResourceOptions(parent=self)
        )
        spec = translate.namespace(plan)
        namespace = k8s.core.v1.Namespace(
            spec.name,
            **spec.args,
            opts=options(spec, pulumi.ResourceOptions(parent=self, provider=self.provider)),
        )
        self.namespace = namespace.metadata.name
        cluster = Cluster(plan, self.provider, self.namespace)
        # The components' children inherit the provider from them.
        child = pulumi.ResourceOptions(parent=self, providers=[self.provider])

        self.prometheus_url = self.grafana_url = None
        self.grafana_admin_password = None
        release: pulumi.Resource | None = None
        if translate.installs_stack(plan):
            stack = KubePrometheusStack(f"{name}-monitoring", plan, self.provider, child)
            release = stack.release
            self.prometheus_url, self.grafana_url = stack.prometheus_url, stack.grafana_url
            self.grafana_admin_password = stack.grafana_admin_password

        databases = {
            db.name: KubernetesPostgres(cluster, db, secrets.db_passwords[db.name], child)
            for db in plan.databases
        }
        self.urls = {}
        # Kubernetes reports no digest back here: only a pin that carries one is recorded.
        self.digests = {w.name: digest_of(w.image) for w in plan.workloads}
        for workload in plan.workloads:
            database = databases.get(workload.database) if workload.database else None
            self.urls[workload.name] = KubernetesService(
                cluster,
                workload,
                secrets,
                after=[database] if database is not None else [],
                monitoring_release=release,
                opts=child,
            ).url
        self.register_outputs(
            {
                "namespace": self.namespace,
                "urls": self.urls,
                "prometheusUrl": self.prometheus_url,
                "grafanaUrl": self.grafana_url,
            }
        )
