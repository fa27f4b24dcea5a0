"""Release verification for `msops up --atomic`: health endpoints and Prometheus, in a deadline."""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.artifacts.prometheus import REQUESTS_TOTAL
from components.spec import StackConfig, parse_duration

# fetch(url, timeout) -> (HTTP status, body); raises OSError when nothing answers.
Fetch = Callable[[str, float], tuple[int, bytes]]

# Each round asks every service this many times in a row, at least; see `needed_successes`.
CONSECUTIVE = 3
REQUEST_TIMEOUT = 3.0


class Unreachable(OSError):
    """The host name does not resolve here: an address inside the stack's own network."""


def http_fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url`; any HTTP status is an answer, a connection failure raises OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": "msops-verify"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(1 << 20)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):
            raise Unreachable(f"{urllib.parse.urlsplit(url).hostname} does not resolve") from None
        raise OSError(str(exc.reason)) from None
    except TimeoutError:
        raise OSError(f"no answer within {timeout:g}s") from None


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
    )


class PrometheusError(Exception):
    """Prometheus did not answer a query with data."""


def query(prometheus_url: str, expr: str, fetch: Fetch) -> list[dict[str, Any]]:
    """The result vector of an instant query (HTTP API /api/v1/query)."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        status, body = fetch(url, REQUEST_TIMEOUT)
    except Unreachable:
        raise
    except OSError as exc:
        raise PrometheusError(f"Prometheus at {prometheus_url} did not answer: {exc}") from None
    try:
        payload = json.loads(body)
    except ValueError:
        raise PrometheusError(f"Prometheus answered {status} with no JSON to {expr}") from None
    if status != 200 or payload.get("status") != "success":
        error = payload.get("error", f"HTTP {status}") if isinstance(payload, dict) else status
        raise PrometheusError(f"Prometheus rejected {expr}: {error}")
    result = payload.get("data", {}).get("result", [])
    return result if isinstance(result, list) else []


def _value(sample: Mapping[str, Any]) -> float:
    try:
        return float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan


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
        up = int(_value(result[0])) if result else 0
        if up < target.replicas:
            problems.append(f"{target.name}: Prometheus sees {up} of {target.replicas} replicas up")
        job = f'job="{target.name}"'
        window = plan.rate_window
        expr = (
            f'sum(rate({REQUESTS_TOTAL}{{{job},code=~"5.."}}[{window}])) / '
            f"sum(rate({REQUESTS_TOTAL}{{{job}}}[{window}]))"
        )
        rates = query(prom, expr, fetch)
        rate = _value(rates[0]) if rates else math.nan
        # NaN is 0/0: no requests in the window, so no errors either.
        if not math.isnan(rate) and rate > plan.error_rate:
            problems.append(
                f"{target.name}: error rate {rate:.1%} over the last {window} is above the "
                f"{plan.error_rate:.1%} threshold (monitoring.alerts.errorRate)"
            )
    return problems


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
