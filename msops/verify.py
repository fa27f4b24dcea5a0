"""Release verification for `msops up --atomic`: health endpoints and Prometheus, in a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.spec import StackConfig, parse_duration
from msops import analysis
from msops.analysis import Fetch, PrometheusError, Unreachable, http_fetch, query

__all__ = ["Fetch", "PrometheusError", "Unreachable", "http_fetch", "query"]

# Each round asks every service this many times in a row, at least; see `needed_successes`.
CONSECUTIVE = 3
REQUEST_TIMEOUT = 3.0


@dataclass(frozen=True)
class ServiceTarget:
    """One service to verify: where users reach it and how many replicas must be up."""

    name: str
    url: str | None
    health_path: str
    replicas: int

    @property
    def health_url(self) -> str | None:
        return self.url.rstrip("/") + self.health_path if self.url else None

    @property
    def needed_successes(self) -> int:
        # Through a load balancer one request reaches one replica; twice as many requests as
        # replicas in a row makes a sick replica behind round-robin or least_conn show up.
        return max(CONSECUTIVE, 2 * self.replicas)


@dataclass(frozen=True)
class Plan:
    """What to verify for one release."""

    services: tuple[ServiceTarget, ...]
    prometheus_url: str | None
    error_rate: float
    rate_window: str = "1m"
    p99_latency: float | None = None
    # Per service: the paths that are not users' requests (probes, the scrape itself).
    excluded_paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Verdict:
    """The outcome: `problems` empty means verified; `notes` say what could not be checked."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rounds: int = 0


def plan_for(outputs: Mapping[str, Any], spec: StackConfig) -> Plan:
    """The checks a release needs, from its stack outputs and its validated config."""
    urls = outputs.get("services") if isinstance(outputs.get("services"), Mapping) else {}
    targets = []
    for name, svc in spec.services.items():
        out = urls.get(name) if isinstance(urls, Mapping) else None
        url = out.get("url") if isinstance(out, Mapping) else None
        targets.append(
            ServiceTarget(
                name=name,
                url=url if isinstance(url, str) and url else None,
                health_path=svc.health.path,
                replicas=svc.desired_replicas,
            )
        )
    prometheus_url = outputs.get("prometheusUrl")
    monitoring = spec.monitoring
    # rate() needs at least two samples inside its window.
    window = max(60, int(4 * parse_duration(monitoring.scrape_interval)))
    return Plan(
        services=tuple(targets),
        prometheus_url=prometheus_url
        if monitoring.enabled and isinstance(prometheus_url, str) and prometheus_url
        else None,
        error_rate=monitoring.alerts.error_rate,
        rate_window=f"{window}s",
        p99_latency=monitoring.alerts.p99_latency,
        excluded_paths={
            name: (svc.health.path, svc.health.readiness_path, svc.metrics_path)
            for name, svc in spec.services.items()
        },
    )


def prometheus_problems(plan: Plan, fetch: Fetch) -> list[str]:
    """No target down, every replica scraped, and the error rate under the threshold."""
    if plan.prometheus_url is None:
        return []
    prom = plan.prometheus_url
    names = [t.name for t in plan.services]
    problems: list[str] = []
    jobs = "|".join(names)
    for sample in query(prom, f'up{{job=~"{jobs}"}} == 0', fetch):
        metric = sample.get("metric", {})
        problems.append(
            f"{metric.get('job', '?')}: Prometheus cannot scrape {metric.get('instance', '?')} "
            "(up == 0)"
        )
    for target in plan.services:
        if target.replicas == 0:
            continue
        result = query(prom, f'count(up{{job="{target.name}"}} == 1)', fetch)
        up = int(analysis.value_of(result[0])) if result else 0
        if up < target.replicas:
            problems.append(f"{target.name}: Prometheus sees {up} of {target.replicas} replicas up")
        problems.extend(traffic_problems(plan, target, fetch))
    return problems


def traffic_problems(plan: Plan, target: ServiceTarget, fetch: Fetch) -> list[str]:
    """The service's users' requests over the last window, judged by the rules a canary is
    judged by (msops.analysis); no requests, nothing to judge."""
    assert plan.prometheus_url is not None
    series = analysis.Series(
        job=target.name, excluded_paths=tuple(plan.excluded_paths.get(target.name, ()))
    )
    counters = analysis.read_counters(plan.prometheus_url, series, fetch, plan.rate_window)
    thresholds = analysis.Thresholds(error_rate=plan.error_rate, p99_latency=plan.p99_latency)
    measured = analysis.Measurement.of(counters)
    verdict = analysis.judge(measured, thresholds, name=target.name)
    window = f"over the last {plan.rate_window} (monitoring.alerts)"
    return [f"{problem} {window}" for problem in verdict.problems]


def health_problem(target: ServiceTarget, fetch: Fetch) -> str | None:
    """None after `needed_successes` healthy answers in a row, else what went wrong."""
    url = target.health_url
    assert url is not None
    needed = target.needed_successes
    for done in range(needed):
        try:
            status, _ = fetch(url, REQUEST_TIMEOUT)
        except Unreachable:
            raise
        except OSError as exc:
            return f"{target.name}: GET {url} failed after {done}/{needed} healthy answers: {exc}"
        if not 200 <= status < 300:
            return (
                f"{target.name}: GET {url} answered {status} after {done}/{needed} healthy answers"
            )
    return None


def verify(
    plan: Plan,
    *,
    fetch: Fetch = http_fetch,
    timeout: float = 120.0,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Check the release until every check passes in one round, or `timeout` seconds pass."""
    deadline = clock() + timeout
    notes: list[str] = []
    unreachable: set[str] = set()
    prometheus_reachable = plan.prometheus_url is not None
    for target in plan.services:
        if target.replicas == 0:
            notes.append(f"{target.name}: runs 0 replicas, so it has nothing to check")
        elif target.url is None:
            unreachable.add(target.name)
    rounds = 0
    while True:
        rounds += 1
        problems: list[str] = []
        for target in plan.services:
            if target.replicas == 0 or target.name in unreachable:
                continue
            try:
                problem = health_problem(target, fetch)
            except Unreachable:
                unreachable.add(target.name)
                continue
            if problem:
                problems.append(problem)
        if prometheus_reachable:
            try:
                problems.extend(prometheus_problems(plan, fetch))
            except Unreachable:
                prometheus_reachable = False
                notes.append(
                    f"Prometheus at {plan.prometheus_url} is not reachable from this machine; "
                    "its checks were skipped"
                )
            except PrometheusError as exc:
                problems.append(str(exc))
        if not problems or clock() >= deadline:
            break
        sleep(min(interval, max(0.0, deadline - clock())))
    for name in sorted(unreachable):
        target = next(t for t in plan.services if t.name == name)
        where = f"its URL {target.url} is" if target.url else "it has no URL that is"
        covered = "Prometheus checked it" if prometheus_reachable else "nothing checked it"
        notes.append(f"{name}: {where} not reachable from this machine; {covered}")
    return Verdict(ok=not problems, problems=problems, notes=notes, rounds=rounds)
