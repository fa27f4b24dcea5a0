"""Monitoring: Prometheus scrapes every service, through a scrape job or a ServiceMonitor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    Severity,
    StackValidationArgs,
)

from .base import Problem, Settings, StackPolicy, schema
from .view import (
    DOCKER_CONTAINER,
    DOCKER_SERVICE_CONFIG,
    K8S_DEPLOYMENT,
    K8S_POD_MONITOR,
    K8S_SERVICE,
    K8S_SERVICE_MONITOR,
    get,
    items,
    k8s_labels,
    k8s_name,
    mapping,
    namespace,
    selects,
)
from .workloads import of_type, pod_labels, replica_groups

# libyaml's loader where PyYAML was built with it: the same documents, parsed ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class _ScrapeJob:
    targets: tuple[str, ...]
    dns_names: tuple[str, ...]


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _prometheus_texts(args: StackValidationArgs) -> list[str]:
    """Every file the stack uploads to a container or stores as a swarm config, as text."""
    texts: list[str] = []
    for res in of_type(args, DOCKER_CONTAINER):
        for upload in items(res.props.get("uploads")):
            content = get(upload, "content")
            if isinstance(content, str):
                texts.append(content)
            encoded = get(upload, "contentBase64")
            if isinstance(encoded, str):
                texts.append(_b64(encoded))
    for res in of_type(args, DOCKER_SERVICE_CONFIG):
        data = res.props.get("data")
        if isinstance(data, str):
            texts.append(_b64(data))
    return texts


def _job(job: Any) -> _ScrapeJob:
    targets = [
        str(t)
        for static in items(get(job, "static_configs"))
        for t in items(get(static, "targets"))
    ]
    names = [str(n) for dns in items(get(job, "dns_sd_configs")) for n in items(get(dns, "names"))]
    return _ScrapeJob(tuple(targets), tuple(names))


def _scrape_jobs(args: StackValidationArgs) -> dict[str, _ScrapeJob] | None:
    """Scrape jobs of every Prometheus config in the stack by job name; None when there is none."""
    jobs: dict[str, _ScrapeJob] | None = None
    for text in _prometheus_texts(args):
        # Most uploads are dashboards and rules; parsing them was most of the pack's time.
        if "scrape_configs" not in text:
            continue
        try:
            doc = yaml.load(text, Loader=_YAML_LOADER)
        except yaml.YAMLError:
            continue
        if not isinstance(doc, Mapping) or "scrape_configs" not in doc:
            continue
        jobs = jobs or {}
        for job in items(doc.get("scrape_configs")):
            job_name = get(job, "job_name")
            if isinstance(job_name, str):
                jobs[job_name] = _job(job)
    return jobs


def _unscraped(service: str, jobs: dict[str, _ScrapeJob] | None) -> str | None:
    """What is wrong with how Prometheus scrapes a docker or swarm service; None if nothing."""
    job = (jobs or {}).get(service)
    if job is None and jobs is None:
        return f"service {service!r} is not scraped: the stack has no Prometheus config"
    if job is None:
        return (
            f"service {service!r} has no scrape job named {service!r} in the stack's "
            "Prometheus config"
        )
    if not job.targets and not job.dns_names:
        return f"the scrape job of service {service!r} has no targets"
    return None


def _unscraped_services(args: StackValidationArgs) -> Iterator[Problem]:
    jobs = _scrape_jobs(args)
    for service, res, _count, _how in replica_groups(args):
        detail = None if res.resource_type == K8S_DEPLOYMENT else _unscraped(service, jobs)
        if detail is not None:
            fix = "turn on msops:monitoring.enabled, which adds a scrape job for every service."
            yield Problem(detail, fix, resource=res)


def _watches(monitor: PolicyResource, where: str) -> bool:
    """Whether a Service/PodMonitor watches `where`: its own namespace, or its namespaceSelector."""
    selector = mapping(get(monitor.props, "spec", "namespaceSelector"))
    if selector.get("any") is True:
        return True
    names = items(selector.get("matchNames"))
    if names:
        return where in names
    return namespace(monitor.props) == where


def _monitored(args: StackValidationArgs, deployment: PolicyResource) -> bool:
    """Whether a ServiceMonitor (through a Service in front) or a PodMonitor selects the pods."""
    labels, where = pod_labels(deployment), namespace(deployment.props)
    fronting = [
        s
        for s in of_type(args, K8S_SERVICE)
        if namespace(s.props) == where
        and mapping(get(s.props, "spec", "selector"))
        and selects({"matchLabels": get(s.props, "spec", "selector")}, labels)
    ]
    return any(
        _watches(m, where) and selects(get(m.props, "spec", "selector"), k8s_labels(s.props))
        for s in fronting
        for m in of_type(args, K8S_SERVICE_MONITOR)
    ) or any(
        _watches(p, where) and selects(get(p.props, "spec", "selector"), labels)
        for p in of_type(args, K8S_POD_MONITOR)
    )


def unmonitored_services(args: StackValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every service no Prometheus scrapes: no scrape job (docker, swarm), no monitor (k8s)."""
    yield from _unscraped_services(args)
    for res in of_type(args, K8S_DEPLOYMENT):
        if not _monitored(args, res):
            yield Problem(
                f"Deployment {k8s_name(res.props) or res.name!r} is selected by no "
                "ServiceMonitor (through a Service) or PodMonitor",
                "turn on msops:monitoring.enabled, or add a ServiceMonitor whose selector "
                "matches the labels of the Service in front of the Deployment.",
                resource=res,
            )


SERVICES_MONITORED = StackPolicy(
    name="services-monitored",
    description="Every service is scraped by Prometheus: a ServiceMonitor or a scrape job.",
    why="a service nobody scrapes has no metrics, no alerts and no dashboard, so an outage is "
    "found by its users.",
    check=unmonitored_services,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.MEDIUM,
    config_schema=schema(),
    remediation_steps="Turn on msops:monitoring.enabled.",
)
