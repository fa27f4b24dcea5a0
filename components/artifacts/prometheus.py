"""prometheus.yml and the alert rules msops puts on every service, as plain data and YAML text."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

# The demo app's metric names; every service msops deploys is expected to expose them.
REQUESTS_TOTAL = "http_requests_total"
DURATION_BUCKET = "http_request_duration_seconds_bucket"
# The window the rate() in each alert looks back over; long enough to smooth single scrapes.
RATE_WINDOW = "5m"

_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")


@dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus scrape job: a service's static targets or its DNS-SD names (type A)."""

    name: str
    metrics_path: str = "/metrics"
    targets: tuple[str, ...] = ()
    dns_sd_names: tuple[str, ...] = ()
    dns_sd_port: int | None = None
    # How often the names are looked up again; Prometheus's default is 30s.
    dns_sd_refresh: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a scrape job needs a name (the service name)")
        # A bare string passes the type hint's spirit but iterates per character.
        for field in ("targets", "dns_sd_names"):
            if isinstance(getattr(self, field), str):
                raise TypeError(f"ScrapeJob {self.name!r}: {field} must be a tuple of strings")
        if bool(self.targets) == bool(self.dns_sd_names):
            raise ValueError(
                f"ScrapeJob {self.name!r}: give either targets or dns_sd_names, exactly one of them"
            )
        if self.dns_sd_names and self.dns_sd_port is None:
            raise ValueError(
                f"ScrapeJob {self.name!r}: an A-record lookup has no port; set dns_sd_port"
            )
        if self.targets and self.dns_sd_port is not None:
            raise ValueError(
                f"ScrapeJob {self.name!r}: dns_sd_port applies to dns_sd_names only; "
                "put the port in each target"
            )
        if not self.metrics_path.startswith("/"):
            raise ValueError(
                f"ScrapeJob {self.name!r}: metrics_path {self.metrics_path!r} must start with '/'"
            )


def _dump(data: Any) -> str:
    # Insertion order is the order a person reads the file in, and every builder here builds
    # in a fixed order. A wide line keeps each PromQL expression on one line.
    # libyaml's emitter when present: the pure-Python one dominates synth time at 100+ services.
    return yaml.dump(
        data,
        Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def _check_duration(key: str, value: str) -> None:
    if not _DURATION.match(value):
        raise ValueError(f"{key} {value!r} is not a Prometheus duration such as '15s' or '1m'")


def _scrape_config(job: ScrapeJob) -> dict[str, Any]:
    config: dict[str, Any] = {"job_name": job.name, "metrics_path": job.metrics_path}
    if job.targets:
        config["static_configs"] = [{"targets": list(job.targets)}]
    else:
        lookup: dict[str, Any] = {
            "names": list(job.dns_sd_names),
            "type": "A",
            "port": job.dns_sd_port,
        }
        if job.dns_sd_refresh is not None:
            _check_duration("dns_sd_refresh", job.dns_sd_refresh)
            lookup["refresh_interval"] = job.dns_sd_refresh
        config["dns_sd_configs"] = [lookup]
    # A relabel rule rather than static labels, so DNS-SD targets get the label as well.
    config["relabel_configs"] = [{"target_label": "service", "replacement": job.name}]
    return config


def render_prometheus_config(
    *,
    jobs: Sequence[ScrapeJob],
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
    rule_files: Sequence[str] = (),
    alertmanagers: Sequence[str] = (),
    external_labels: Mapping[str, str] | None = None,
) -> str:
    """prometheus.yml scraping each job under `job_name` = the service name.

    `evaluation_interval` defaults to `scrape_interval`, so rules see every new sample
    rather than Prometheus's default of one evaluation a minute.
    """
    names = [job.name for job in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"scrape job names must be unique; repeated: {', '.join(duplicates)}")
    _check_duration("scrape_interval", scrape_interval)
    evaluation = evaluation_interval or scrape_interval
    _check_duration("evaluation_interval", evaluation)

    global_: dict[str, Any] = {
        "scrape_interval": scrape_interval,
        "evaluation_interval": evaluation,
    }
    if external_labels:
        global_["external_labels"] = {k: external_labels[k] for k in sorted(external_labels)}
    config: dict[str, Any] = {"global": global_}
    if rule_files:
        config["rule_files"] = list(rule_files)
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    config["scrape_configs"] = [_scrape_config(job) for job in jobs]
    return _dump(config)


def _label_value(text: str) -> str:
    """A PromQL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(value: float) -> str:
    # repr keeps every digit of the threshold (0.05, not 0.050000000000000003 or 5e-02).
    return repr(float(value))


def _service_rules(
    service: str, *, error_rate: float, p99_latency: float, target_down_for: str, evaluate_for: str
) -> list[dict[str, Any]]:
    job = f"job={_label_value(service)}"
    errors = f'sum(rate({REQUESTS_TOTAL}{{{job},code=~"5.."}}[{RATE_WINDOW}]))'
    requests = f"sum(rate({REQUESTS_TOTAL}{{{job}}}[{RATE_WINDOW}]))"
    latency = (
        f"histogram_quantile(0.99, sum by (le) (rate({DURATION_BUCKET}{{{job}}}[{RATE_WINDOW}])))"
    )
    percent = f"{float(error_rate) * 100:g}%"
    millis = f"{float(p99_latency) * 1000:g}ms"
    return [
        {
            "alert": "TargetDown",
            "expr": f"up{{{job}}} == 0",
            "for": target_down_for,
            "labels": {"severity": "critical", "service": service},
            "annotations": {
                "summary": f"A replica of {service} is down",
                "description": (
                    f"Prometheus has not been able to scrape {{{{ $labels.instance }}}} "
                    f"of {service} for {target_down_for}."
                ),
            },
        },
        {
            "alert": "HighErrorRate",
            "expr": f"{errors} / {requests} > {_number(error_rate)}",
            "for": evaluate_for,
            "labels": {"severity": "warning", "service": service},
            "annotations": {
                "summary": f"{service} is answering with errors",
                "description": (
                    f"More than {percent} of requests to {service} returned 5xx over the last "
                    f"{RATE_WINDOW}, for {evaluate_for}."
                ),
            },
        },
        {
            "alert": "HighLatency",
            "expr": f"{latency} > {_number(p99_latency)}",
            "for": evaluate_for,
            "labels": {"severity": "warning", "service": service},
            "annotations": {
                "summary": f"{service} is slow",
                "description": (
                    f"The p99 latency of {service} has been above {millis} over the last "
                    f"{RATE_WINDOW}, for {evaluate_for}."
                ),
            },
        },
    ]


def alert_rules(
    *,
    services: Sequence[str],
    error_rate: float,
    p99_latency: float,
    target_down_for: str,
    evaluate_for: str,
) -> dict[str, Any]:
    """`{"groups": [...]}`, one group `msops-<service>` with TargetDown, HighErrorRate, HighLatency.

    Plain data, so the Kubernetes backend can use it as a PrometheusRule's spec unchanged.
    """
    if isinstance(services, str):
        raise TypeError("services must be a list of service names, not a single string")
    if len(set(services)) != len(services):
        raise ValueError(
            f"services {list(services)!r} repeat a name; rule group names must be unique"
        )
    if not 0 < float(error_rate) <= 1:
        raise ValueError(f"error_rate {error_rate!r} must be a fraction in (0, 1]")
    if not float(p99_latency) > 0:
        raise ValueError(f"p99_latency {p99_latency!r} must be a positive number of seconds")
    _check_duration("target_down_for", target_down_for)
    _check_duration("evaluate_for", evaluate_for)
    return {
        "groups": [
            {
                "name": f"msops-{service}",
                "rules": _service_rules(
                    service,
                    error_rate=error_rate,
                    p99_latency=p99_latency,
                    target_down_for=target_down_for,
                    evaluate_for=evaluate_for,
                ),
            }
            for service in services
        ]
    }


def render_alert_rules(
    *,
    services: Sequence[str],
    error_rate: float,
    p99_latency: float,
    target_down_for: str,
    evaluate_for: str,
) -> str:
    """The alert rules of `alert_rules` as the text of a Prometheus rules file."""
    return _dump(
        alert_rules(
            services=services,
            error_rate=error_rate,
            p99_latency=p99_latency,
            target_down_for=target_down_for,
            evaluate_for=evaluate_for,
        )
    )
