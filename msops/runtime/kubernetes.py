"""Kubernetes through the `kubernetes` client: Deployment rollout status and pod logs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from components.vocabulary import K8S_INSTANCE, K8S_NAME, K8S_VERSION
from msops import runtime
from msops.runtime import LogLine, LogQuery, Readiness, Unreachable

if TYPE_CHECKING:
    from components.plan.model import StackPlan, Workload

T = TypeVar("T")


def kubeconfig_path(environ: Mapping[str, str]) -> str:
    """KUBECONFIG (one path or several, `:`-separated), else ~/.kube/config, as kubectl."""
    return environ.get("KUBECONFIG") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".kube", "config"
    )


class KubernetesRuntime:
    """A kubernetes stack: each service is a Deployment named after it in the stack namespace."""

    readiness_source = (
        "kubernetes: ready = the Deployment's readyReplicas (its readiness probe); the "
        "rollout is the Deployment's status, read as `kubectl rollout status` reads it"
    )

    def __init__(self, plan: StackPlan, api: k8s.ApiClient, where: str) -> None:
        self.plan = plan
        self.namespace = plan.target.namespace
        self.where = where
        self.apps = k8s.AppsV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self._api = api

    @classmethod
    def connect(cls, plan: StackPlan, environ: Mapping[str, str]) -> KubernetesRuntime:
        path = kubeconfig_path(environ)
        context = plan.target.kube_context
        which = (
            f"kube context {context!r} (msops:target.kubeContext)"
            if context
            else "the kubeconfig's current context (msops:target.kubeContext is not set)"
        )
        try:
            api = kubeconfig.new_client_from_config(
                config_file=path, context=context, persist_config=False
            )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise Unreachable(
                f"cannot reach the cluster of {which} in kubeconfig {path}: {exc}. Point "
                "KUBECONFIG at the cluster's kubeconfig, or msops:target.kubeContext at its "
                "context"
            ) from None
        where = f"the cluster at {api.configuration.host} ({which}, kubeconfig {path})"
        return cls(plan, api, where)

    def close(self) -> None:
        self._api.close()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """One API call; None for 404, Unreachable (naming the cluster) for anything else."""
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise Unreachable(
                f"{self.where} answered {exc.status} {exc.reason}: {(exc.body or '')[:300]}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"cannot reach {self.where}: {exc}") from None

    def pods(self, workload: Workload) -> list[Any]:
        """The service's pods, oldest first (replica 1 is the oldest)."""
        selector = f"{K8S_NAME}={workload.name},{K8S_INSTANCE}={self.plan.stack}"
        found = self._call(self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        items = list(found.items) if found is not None else []
        return sorted(items, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))

    def replicas(self, workload: Workload) -> list[str]:
        return [p.metadata.name for p in self.pods(workload)]

    def readiness(self, workload: Workload) -> Readiness:
        dep = self._call(self.apps.read_namespaced_deployment, workload.name, self.namespace)
        if dep is None:
            return Readiness(
                workload.name,
                workload.replicas,
                0,
                0,
                0,
                f"no Deployment {self.namespace}/{workload.name} (not deployed?)",
                False,
            )
        status = dep.status or k8s.V1DeploymentStatus()
        desired = dep.spec.replicas if dep.spec.replicas is not None else 1
        labels = (dep.spec.template.metadata.labels or {}) if dep.spec.template.metadata else {}
        pinned = labels.get(K8S_VERSION) == workload.version_label
        updated = status.updated_replicas or 0
        state, done, failed = rollout_state(dep, desired, pinned, workload.version_label)
        return Readiness(
            service=workload.name,
            desired=desired,
            ready=status.ready_replicas or 0,
            total=status.replicas or 0,
            current=updated if pinned else 0,
            state=state,
            converged=done,
            failed=failed,
        )

    def logs(self, workload: Workload, query: LogQuery) -> Iterator[LogLine]:
        pods = self.replicas(workload)
        chosen = [pods[i] for i in runtime.pick(pods, query.replica, workload.name)]
        options: dict[str, Any] = {"container": workload.name, "timestamps": True}
        if query.tail is not None:
            options["tail_lines"] = query.tail
        if query.since_seconds is not None:
            options["since_seconds"] = max(1, int(query.since_seconds))
        if query.follow:
            return runtime.as_they_come([self._stream(pod, options) for pod in chosen])
        return iter(runtime.in_time_order(self._lines(pod, options) for pod in chosen))

    def _lines(self, pod: str, options: dict[str, Any]) -> list[LogLine]:
        text = self._call(self.core.read_namespaced_pod_log, pod, self.namespace, **options)
        return [_line(pod, raw) for raw in runtime.lines_of([text or ""])]

    def _stream(self, pod: str, options: dict[str, Any]) -> Iterator[LogLine]:
        # Without preloading, the client hands back the raw urllib3 response to stream from.
        response: Any = self._call(
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            follow=True,
            _preload_content=False,
            **options,
        )
        if response is None:
            return
        try:
            for raw in runtime.lines_of(response.stream(4096)):
                yield _line(pod, raw)
        finally:
            response.release_conn()


def _line(pod: str, raw: str) -> LogLine:
    when, text = runtime.split_stamp(raw)
    return LogLine(replica=pod, text=text, time=when)


def rollout_state(dep: Any, desired: int, pinned: bool, version: str) -> tuple[str, bool, bool]:
    """(what a person reads, converged, failed) of a Deployment, as `kubectl rollout status`."""
    status = dep.status or k8s.V1DeploymentStatus()
    if (dep.metadata.generation or 0) > (status.observed_generation or 0):
        return "waiting for the Deployment's new spec to be observed", False, False
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return "the rollout exceeded its progress deadline", False, True
    if not pinned:
        return f"the Deployment does not run {version}, which the stack file pins", False, False
    updated = status.updated_replicas or 0
    total = status.replicas or 0
    available = status.available_replicas or 0
    if updated < desired:
        return f"rolling out: {updated} of {desired} updated", False, False
    if total > updated:
        return f"rolling out: {total - updated} old replica(s) pending termination", False, False
    if available < updated:
        return f"rolling out: {available} of {updated} updated replica(s) available", False, False
    return "ready", True, False
