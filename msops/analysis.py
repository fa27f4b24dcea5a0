"""Judging a release from the stack's Prometheus: the rules `up --atomic` and a canary share.

A release is judged on the requests its own replicas served: their error rate (5xx share) and
their p99 latency, against the stack's thresholds and, where the stable version has traffic,
against the stable version. Probe and metrics requests do not count, so a service nobody uses
is never judged healthy on its own health checks.

Counts come from the counters themselves, as deltas from a baseline msops reads when a step
starts: a canary's replicas start at zero, so they are judged from their first scrape on, not
after the two samples `rate()` needs inside its window.
"""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from components.artifacts.prometheus import DURATION_BUCKET, REQUESTS_TOTAL

# fetch(url, timeout) -> (HTTP status, body); raises OSError when nothing answers.
Fetch = Callable[[str, float], tuple[int, bytes]]

REQUEST_TIMEOUT = 3.0
# A canary's p99 more than this many times the stable version's fails, whatever the threshold.
LATENCY_FACTOR = 2.0


class Unreachable(OSError):
    """The host name does not resolve here: an address inside the stack's own network."""


class PrometheusError(Exception):
    """Prometheus did not answer a query with data."""


def http_fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url`; any HTTP status is an answer, a connection failure raises OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": "msops"})
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


def value_of(sample: Mapping[str, Any]) -> float:
    try:
        return float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan


# --- what counts ----------------------------------------------------------------------------------


def _matcher(value: str) -> str:
    return json.dumps(value)


@dataclass(frozen=True)
class Series:
    """The requests of one service that count: its job, and optionally one version of it.

    `version_from` says how a series knows its version: "label", a label the scrape target
    carries (Kubernetes copies the pod's version label); "app_info", the app's own
    `app_info{version}` gauge joined on the instance (docker and swarm discover replicas by DNS,
    which carries no labels).
    """

    job: str
    version: str | None = None
    version_from: Literal["label", "app_info"] = "app_info"
    # With version_from "label": the series label that holds the version.
    label: str = "version"
    # Paths that are not users' requests: the probes and the scrape itself.
    excluded_paths: tuple[str, ...] = ()

    def selector(self, *extra: str) -> str:
        parts = [f"job={_matcher(self.job)}", *extra]
        if self.excluded_paths:
            paths = "|".join(sorted(self.excluded_paths))
            parts.append(f"path!~{_matcher(paths)}")
        if self.version is not None and self.version_from == "label":
            parts.append(f"{self.label}={_matcher(self.version)}")
        return "{" + ",".join(parts) + "}"

    def _counted(self, counter: str, window: str | None) -> str:
        """The counter, as it is or increased over `window`, for this version only."""
        expr = f"increase({counter}[{window}])" if window else counter
        if self.version is None or self.version_from == "label":
            return expr
        info = f"app_info{{job={_matcher(self.job)},version={_matcher(self.version)}}}"
        return f"({expr} * on(instance) group_left() {info})"

    def requests(self, window: str | None = None) -> str:
        return f"sum({self._counted(REQUESTS_TOTAL + self.selector(), window)})"

    def errors(self, window: str | None = None) -> str:
        counter = REQUESTS_TOTAL + self.selector('code=~"5.."')
        return f"sum({self._counted(counter, window)})"

    def buckets(self, window: str | None = None) -> str:
        return f"sum by (le) ({self._counted(DURATION_BUCKET + self.selector(), window)})"

    def describe(self) -> str:
        return self.job + (f" {self.version}" if self.version else "")


@dataclass(frozen=True)
class Counters:
    """Request counters of one Series at one moment (cumulative since each replica started)."""

    requests: float = 0.0
    errors: float = 0.0
    # (upper bound, cumulative count), ascending, +Inf last.
    buckets: tuple[tuple[float, float], ...] = ()

    def since(self, base: Counters) -> Counters:
        """What happened after `base`; a counter that went down was reset, so it counts whole."""

        def minus(now: float, then: float) -> float:
            return now - then if now >= then else now

        old = dict(base.buckets)
        return Counters(
            requests=minus(self.requests, base.requests),
            errors=minus(self.errors, base.errors),
            buckets=tuple((le, minus(n, old.get(le, 0.0))) for le, n in self.buckets),
        )


def read_counters(
    prometheus_url: str, series: Series, fetch: Fetch, window: str | None = None
) -> Counters:
    """The series' counters now, or what they increased by over the last `window`."""

    def total(expr: str) -> float:
        result = query(prometheus_url, expr, fetch)
        found = value_of(result[0]) if result else 0.0
        return 0.0 if math.isnan(found) else found

    buckets = []
    for sample in query(prometheus_url, series.buckets(window), fetch):
        le = sample.get("metric", {}).get("le")
        if le is not None:
            buckets.append((float(le), value_of(sample)))
    return Counters(
        requests=total(series.requests(window)),
        errors=total(series.errors(window)),
        buckets=tuple(sorted(buckets)),
    )


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """histogram_quantile's estimate: linear inside the bucket the rank falls in."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                # Prometheus returns the highest finite bound here.
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = upper, count
    return lower_bound


# --- judging --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """What fails a release: the same numbers the alert rules fire on, unless a canary says."""

    error_rate: float
    p99_latency: float | None = None
    # Fewer requests than this and there is nothing to judge yet.
    min_requests: int = 0


@dataclass(frozen=True)
class Measurement:
    requests: float
    error_rate: float | None
    p99: float | None

    @classmethod
    def of(cls, counters: Counters) -> Measurement:
        rate = counters.errors / counters.requests if counters.requests > 0 else None
        return cls(counters.requests, rate, quantile(0.99, counters.buckets))

    def text(self) -> str:
        rate = "-" if self.error_rate is None else f"{self.error_rate:.2%}"
        p99 = "-" if self.p99 is None else f"{self.p99:.3f}s"
        return f"{self.requests:g} requests, error rate {rate}, p99 {p99}"


Status = Literal["pass", "fail", "wait"]


@dataclass(frozen=True)
class Judgement:
    """One look at a release: pass, fail (with why), or wait (too little traffic to say)."""

    status: Status
    problems: tuple[str, ...] = ()
    measured: Measurement | None = None
    baseline: Measurement | None = None


def judge(
    measured: Measurement,
    thresholds: Thresholds,
    *,
    baseline: Measurement | None = None,
    name: str = "the release",
) -> Judgement:
    """The verdict on one measurement, against the thresholds and, with enough traffic of its
    own, the stable version's `baseline`."""
    if measured.requests < thresholds.min_requests or measured.requests <= 0:
        return Judgement("pass" if thresholds.min_requests <= 0 else "wait", (), measured, baseline)
    problems = []
    rate, p99 = measured.error_rate or 0.0, measured.p99
    if rate > thresholds.error_rate:
        problems.append(
            f"{name}: error rate {rate:.2%} is above the {thresholds.error_rate:.2%} threshold"
        )
    if thresholds.p99_latency is not None and p99 is not None and p99 > thresholds.p99_latency:
        problems.append(
            f"{name}: p99 latency {p99:.3f}s is above the {thresholds.p99_latency:g}s threshold"
        )
    if baseline is not None and baseline.requests >= max(1, thresholds.min_requests):
        stable_rate = baseline.error_rate or 0.0
        if rate > stable_rate + thresholds.error_rate:
            problems.append(
                f"{name}: error rate {rate:.2%} is more than {thresholds.error_rate:.2%} above "
                f"the stable version's {stable_rate:.2%}"
            )
        if p99 is not None and baseline.p99 and p99 > LATENCY_FACTOR * baseline.p99:
            problems.append(
                f"{name}: p99 latency {p99:.3f}s is more than {LATENCY_FACTOR:g}x the stable "
                f"version's {baseline.p99:.3f}s"
            )
    return Judgement("fail" if problems else "pass", tuple(problems), measured, baseline)


# --- a canary step --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """How long one step lasts and how it is looked at."""

    pause: float
    interval: float
    failure_limit: int
    # The step gives up this long after it started when traffic never reached min_requests.
    deadline: float


@dataclass
class StepOutcome:
    """How a step ended: passed, failed (aborted), or ran out of time waiting for traffic."""

    status: Literal["passed", "failed", "no-traffic"]
    judgements: list[Judgement] = field(default_factory=list)
    elapsed: float = 0.0
    queries: tuple[str, ...] = ()

    @property
    def last(self) -> Judgement | None:
        return self.judgements[-1] if self.judgements else None

    def report(self) -> str:
        """The failing queries and their values, for the user."""
        last = self.last
        lines = list(last.problems) if last else []
        if last is not None and last.measured is not None:
            lines.append(f"canary: {last.measured.text()}")
        if last is not None and last.baseline is not None:
            lines.append(f"stable: {last.baseline.text()}")
        lines += [f"query: {q}" for q in self.queries]
        return "\n".join(lines)


def analyze_step(
    prometheus_url: str,
    *,
    canary: Series,
    stable: Series | None,
    thresholds: Thresholds,
    step: Step,
    fetch: Fetch = http_fetch,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_judgement: Callable[[Judgement], None] | None = None,
) -> StepOutcome:
    """Look at the canary every `interval` until the pause is over and it passes, it fails
    `failure_limit` times in a row, or the deadline passes with too little traffic."""
    started = clock()
    base = read_counters(prometheus_url, canary, fetch)
    stable_base = read_counters(prometheus_url, stable, fetch) if stable else None
    queries = (canary.requests(), canary.errors(), canary.buckets())
    outcome = StepOutcome("no-traffic", queries=queries)
    failures = 0
    while True:
        sleep(max(0.0, min(step.interval, started + step.deadline - clock())))
        measured = Measurement.of(read_counters(prometheus_url, canary, fetch).since(base))
        baseline = None
        if stable is not None and stable_base is not None:
            now = read_counters(prometheus_url, stable, fetch)
            baseline = Measurement.of(now.since(stable_base))
        verdict = judge(measured, thresholds, baseline=baseline, name=canary.describe())
        outcome.judgements.append(verdict)
        outcome.elapsed = clock() - started
        if on_judgement is not None:
            on_judgement(verdict)
        failures = failures + 1 if verdict.status == "fail" else 0
        if failures >= step.failure_limit:
            outcome.status = "failed"
            return outcome
        if verdict.status == "pass" and outcome.elapsed >= step.pause:
            outcome.status = "passed"
            return outcome
        if outcome.elapsed >= step.deadline:
            return outcome


@dataclass(frozen=True)
class Check:
    """One canary step to analyse: where, what, against which thresholds, for how long."""

    prometheus_url: str
    canary: Series
    stable: Series | None
    thresholds: Thresholds
    step: Step


def run_check(
    check: Check,
    fetch: Fetch = http_fetch,
    on_judgement: Callable[[Judgement], None] | None = None,
) -> StepOutcome:
    return analyze_step(
        check.prometheus_url,
        canary=check.canary,
        stable=check.stable,
        thresholds=check.thresholds,
        step=check.step,
        fetch=fetch,
        on_judgement=on_judgement,
    )
