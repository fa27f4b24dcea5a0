"""prometheus.yml and the alert rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.artifacts import (
    ScrapeJob,
    alert_rules,
    render_alert_rules,
    render_prometheus_config,
)
from components.spec import Alerts, parse_duration

# The evaluation and sample step of every promtool unit test; fine enough to tell 45s from 75s.
STEP = 15
# The rate() window of the alert expressions; the series must cover it before the `for` starts.
RATE_WINDOW = 300
SERVICE = "orders"
INSTANCE = "127.0.0.1:8081"

THRESHOLDS = {
    "custom": Alerts(error_rate=0.1, p99_latency=0.25, target_down_for="1m", evaluate_for="2m"),
    "defaults": Alerts(),
    "slow": Alerts(error_rate=0.5, p99_latency=2.0, target_down_for="3m", evaluate_for="10m"),
}


@pytest.fixture(params=sorted(THRESHOLDS), ids=sorted(THRESHOLDS))
def thresholds(request: pytest.FixtureRequest) -> Alerts:
    return THRESHOLDS[request.param]


def rules_for(alerts: Alerts, services: list[str]) -> dict[str, Any]:
    return alert_rules(
        services=services,
        error_rate=alerts.error_rate,
        p99_latency=alerts.p99_latency,
        target_down_for=alerts.target_down_for,
        evaluate_for=alerts.evaluate_for,
    )


def write_rules(directory: Path, alerts: Alerts, services: list[str]) -> Path:
    path = directory / "rules.yml"
    path.write_text(
        render_alert_rules(
            services=services,
            error_rate=alerts.error_rate,
            p99_latency=alerts.p99_latency,
            target_down_for=alerts.target_down_for,
            evaluate_for=alerts.evaluate_for,
        )
    )
    return path


def expected_alert(
    alerts: Alerts, alertname: str, service: str = SERVICE, **series_labels: str
) -> dict[str, Any]:
    """The alert promtool must see: the rule's labels and annotations, templates expanded."""
    group = next(g for g in rules_for(alerts, [service])["groups"] if g["name"].endswith(service))
    rule = next(r for r in group["rules"] if r["alert"] == alertname)
    annotations = {
        key: value.replace("{{ $labels.instance }}", series_labels.get("instance", ""))
        for key, value in rule["annotations"].items()
    }
    return {"exp_labels": {**series_labels, **rule["labels"]}, "exp_annotations": annotations}


def promtool_test(
    promtool: Any,
    directory: Path,
    alerts: Alerts,
    *,
    series: list[dict[str, str]],
    alertname: str,
    eval_seconds: int,
    expected: list[dict[str, Any]],
    services: tuple[str, ...] = (SERVICE,),
) -> Any:
    """Runs `promtool test rules` on the rendered rules with one alert_rule_test."""
    write_rules(directory, alerts, list(services))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{STEP}s",
        "tests": [
            {
                "interval": f"{STEP}s",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": f"{eval_seconds}s",
                        "alertname": alertname,
                        "exp_alerts": expected,
                    }
                ],
            }
        ],
    }
    path = directory / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return promtool.run("test", "rules", path.name, cwd=directory)


def steps_until(seconds: float) -> int:
    """Samples enough to cover `seconds`, plus a margin past the evaluation."""
    return int(seconds // STEP) + 4


# --- prometheus.yml ----------------------------------------------------------------------------


def static_job(name: str = SERVICE) -> ScrapeJob:
    return ScrapeJob(name=name, targets=("127.0.0.1:8081", "127.0.0.1:8082"))


def dns_job(name: str = SERVICE, refresh: str | None = None) -> ScrapeJob:
    return ScrapeJob(
        name=name, dns_sd_names=(f"tasks.{name}",), dns_sd_port=8080, dns_sd_refresh=refresh
    )


def test_config_with_static_jobs_passes_check_config(promtool: Any, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config(jobs=[static_job("orders"), static_job("users")]))
    result = promtool.run("check", "config", str(config))
    assert result.ok, result.report()


def test_config_with_dns_sd_jobs_passes_check_config(promtool: Any, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config(jobs=[dns_job("orders"), dns_job("users")]))
    result = promtool.run("check", "config", str(config))
    assert result.ok, result.report()


def test_config_with_a_dns_refresh_interval_passes_check_config(
    promtool: Any, tmp_path: Path
) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config(jobs=[dns_job("orders", refresh="5s")]))
    result = promtool.run("check", "config", str(config))
    assert result.ok, result.report()


def test_dns_refresh_interval_is_written_when_given() -> None:
    config = yaml.safe_load(render_prometheus_config(jobs=[dns_job("users", refresh="5s")]))
    assert config["scrape_configs"][0]["dns_sd_configs"][0]["refresh_interval"] == "5s"


def test_config_with_rule_files_and_alertmanager_passes_check_config(
    promtool: Any, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path, Alerts(), ["orders", "users"])
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_prometheus_config(
            jobs=[static_job("orders"), dns_job("users")],
            scrape_interval="10s",
            evaluation_interval="30s",
            rule_files=[str(rules)],
            alertmanagers=["127.0.0.1:9093"],
            external_labels={"stack": "dev", "cluster": "local"},
        )
    )
    result = promtool.run("check", "config", str(config))
    # promtool checks the listed rule files too; 2 services x 3 alerts.
    assert result.ok and "6 rules found" in result.stdout, result.report()


def test_job_name_is_the_service_name() -> None:
    config = yaml.safe_load(render_prometheus_config(jobs=[static_job("orders"), dns_job("users")]))
    assert [job["job_name"] for job in config["scrape_configs"]] == ["orders", "users"]


def test_every_job_gets_a_service_label_equal_to_its_name() -> None:
    config = yaml.safe_load(render_prometheus_config(jobs=[static_job("orders"), dns_job("users")]))
    labels = {
        job["job_name"]: [
            r["replacement"] for r in job["relabel_configs"] if r["target_label"] == "service"
        ]
        for job in config["scrape_configs"]
    }
    assert labels == {"orders": ["orders"], "users": ["users"]}


def test_dns_sd_job_looks_up_a_records_with_the_port() -> None:
    config = yaml.safe_load(render_prometheus_config(jobs=[dns_job("users")]))
    assert config["scrape_configs"][0]["dns_sd_configs"] == [
        {"names": ["tasks.users"], "type": "A", "port": 8080}
    ]


def test_evaluation_interval_defaults_to_scrape_interval() -> None:
    config = yaml.safe_load(render_prometheus_config(jobs=[static_job()], scrape_interval="5s"))
    assert config["global"]["evaluation_interval"] == "5s"


def test_config_rendering_is_deterministic() -> None:
    def render() -> str:
        return render_prometheus_config(
            jobs=[static_job("orders"), dns_job("users")],
            external_labels={"stack": "dev", "cluster": "local"},
        )

    assert render() == render()


def test_external_labels_come_out_sorted() -> None:
    config = yaml.safe_load(
        render_prometheus_config(jobs=[static_job()], external_labels={"z": "1", "a": "2"})
    )
    assert list(config["global"]["external_labels"]) == ["a", "z"]


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"targets": ("a:1",), "dns_sd_names": ("tasks.a",), "dns_sd_port": 1},
        {"dns_sd_names": ("tasks.a",)},
        {"targets": ("a:1",), "dns_sd_port": 1},
    ],
    ids=["neither", "both", "dns-without-port", "port-without-dns"],
)
def test_scrape_job_needs_exactly_one_way_to_find_targets(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ScrapeJob 'a'"):
        ScrapeJob(name="a", **arguments)


def test_duplicate_job_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match="orders"):
        render_prometheus_config(jobs=[static_job("orders"), dns_job("orders")])


# --- alert rules: structure and promtool check -------------------------------------------------


@pytest.mark.parametrize("services", [["orders"], ["orders", "users", "payments"]], ids=len)
def test_rules_pass_check_rules(promtool: Any, tmp_path: Path, services: list[str]) -> None:
    rules = write_rules(tmp_path, Alerts(), services)
    result = promtool.run("check", "rules", str(rules))
    assert result.ok and f"{3 * len(services)} rules found" in result.stdout, result.report()


def test_one_group_per_service_with_the_three_alerts() -> None:
    groups = rules_for(Alerts(), ["orders", "users"])["groups"]
    shape = {g["name"]: [r["alert"] for r in g["rules"]] for g in groups}
    alerts = ["TargetDown", "HighErrorRate", "HighLatency"]
    assert shape == {"msops-orders": alerts, "msops-users": alerts}


def test_rules_carry_severity_and_service_labels() -> None:
    rules = rules_for(Alerts(), ["orders"])["groups"][0]["rules"]
    labels = {r["alert"]: r["labels"] for r in rules}
    assert labels == {
        "TargetDown": {"severity": "critical", "service": "orders"},
        "HighErrorRate": {"severity": "warning", "service": "orders"},
        "HighLatency": {"severity": "warning", "service": "orders"},
    }


def test_rules_carry_summary_and_description() -> None:
    rules = rules_for(Alerts(), ["orders"])["groups"][0]["rules"]
    keys = {r["alert"]: sorted(r["annotations"]) for r in rules}
    assert keys == {a: ["description", "summary"] for a in keys} and len(keys) == 3


def test_rendered_rules_are_the_rules_dict_as_yaml() -> None:
    alerts = Alerts()
    text = render_alert_rules(
        services=["orders"],
        error_rate=alerts.error_rate,
        p99_latency=alerts.p99_latency,
        target_down_for=alerts.target_down_for,
        evaluate_for=alerts.evaluate_for,
    )
    assert yaml.safe_load(text) == rules_for(alerts, ["orders"])


# --- alert rules: promtool test rules at the configured thresholds ----------------------------


def up_series(value: int, seconds: float) -> list[dict[str, str]]:
    series = f'up{{job="{SERVICE}",instance="{INSTANCE}"}}'
    return [{"series": series, "values": f"{value}x{steps_until(seconds)}"}]


def test_target_down_fires_after_its_for(promtool: Any, tmp_path: Path, thresholds: Alerts) -> None:
    after = int(parse_duration(thresholds.target_down_for)) + STEP
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=up_series(0, after),
        alertname="TargetDown",
        eval_seconds=after,
        expected=[expected_alert(thresholds, "TargetDown", job=SERVICE, instance=INSTANCE)],
    )
    assert result.ok, result.report()


def test_target_down_does_not_fire_before_its_for(
    promtool: Any, tmp_path: Path, thresholds: Alerts
) -> None:
    before = int(parse_duration(thresholds.target_down_for)) - STEP
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=up_series(0, before),
        alertname="TargetDown",
        eval_seconds=before,
        expected=[],
    )
    assert result.ok, result.report()


def test_target_down_does_not_fire_while_up(
    promtool: Any, tmp_path: Path, thresholds: Alerts
) -> None:
    after = int(parse_duration(thresholds.target_down_for)) + STEP
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=up_series(1, after),
        alertname="TargetDown",
        eval_seconds=after,
        expected=[],
    )
    assert result.ok, result.report()


def test_target_down_fires_only_for_the_service_that_is_down(promtool: Any, tmp_path: Path) -> None:
    alerts = THRESHOLDS["custom"]
    after = int(parse_duration(alerts.target_down_for)) + STEP
    users = {
        "series": 'up{job="users",instance="127.0.0.1:8082"}',
        "values": f"1x{steps_until(after)}",
    }
    result = promtool_test(
        promtool,
        tmp_path,
        alerts,
        series=[*up_series(0, after), users],
        alertname="TargetDown",
        eval_seconds=after,
        expected=[expected_alert(alerts, "TargetDown", job=SERVICE, instance=INSTANCE)],
        services=(SERVICE, "users", "payments"),
    )
    assert result.ok, result.report()


def request_series(error_fraction: float, seconds: float) -> list[dict[str, str]]:
    """Counters growing by 100 requests a step, `error_fraction` of them 500s."""
    per_step = 100.0
    errors = per_step * error_fraction
    steps = steps_until(seconds)
    labels = f'job="{SERVICE}",method="GET",path="/orders"'
    return [
        {
            "series": f'http_requests_total{{{labels},code="200"}}',
            "values": f"0+{per_step - errors}x{steps}",
        },
        {"series": f'http_requests_total{{{labels},code="500"}}', "values": f"0+{errors}x{steps}"},
    ]


def settled(alerts: Alerts) -> int:
    """A time by which a condition true from the start has held for `evaluate_for`."""
    return RATE_WINDOW + int(parse_duration(alerts.evaluate_for)) + STEP


def test_high_error_rate_fires_above_the_threshold(
    promtool: Any, tmp_path: Path, thresholds: Alerts
) -> None:
    # A quarter over the threshold (or halfway to 100% where that would pass 100%).
    above = min(thresholds.error_rate * 1.25, (thresholds.error_rate + 1) / 2)
    assert thresholds.error_rate < above <= 1
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=request_series(above, settled(thresholds)),
        alertname="HighErrorRate",
        eval_seconds=settled(thresholds),
        expected=[expected_alert(thresholds, "HighErrorRate")],
    )
    assert result.ok, result.report()


def test_high_error_rate_does_not_fire_below_the_threshold(
    promtool: Any, tmp_path: Path, thresholds: Alerts
) -> None:
    below = thresholds.error_rate * 0.75
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=request_series(below, settled(thresholds)),
        alertname="HighErrorRate",
        eval_seconds=settled(thresholds),
        expected=[],
    )
    assert result.ok, result.report()


def latency_series(threshold: float, slow: bool, seconds: float) -> list[dict[str, str]]:
    """Histogram buckets around `threshold`, with every observation in one bucket.

    Slow: all in (1.1t, 1.3t], so p99 is about 1.3t. Fast: all in (0.6t, 0.8t], so about 0.8t.
    """
    bounds = [threshold * f for f in (0.6, 0.8, 1.0, 1.1, 1.3)]
    landing = bounds[4] if slow else bounds[1]
    per_step = 100
    steps = steps_until(seconds)
    labels = f'job="{SERVICE}",method="GET",path="/orders"'
    series = []
    for le in [*(repr(b) for b in bounds), "+Inf"]:
        count = per_step if le == "+Inf" or float(le) >= landing else 0
        series.append(
            {
                "series": f'http_request_duration_seconds_bucket{{{labels},le="{le}"}}',
                "values": f"0+{count}x{steps}",
            }
        )
    return series


def test_high_latency_fires_above_the_threshold(
    promtool: Any, tmp_path: Path, thresholds: Alerts
) -> None:
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=latency_series(thresholds.p99_latency, True, settled(thresholds)),
        alertname="HighLatency",
        eval_seconds=settled(thresholds),
        expected=[expected_alert(thresholds, "HighLatency")],
    )
    assert result.ok, result.report()


def test_high_latency_does_not_fire_below_the_threshold(
    promtool: Any, tmp_path: Path, thresholds: Alerts
) -> None:
    result = promtool_test(
        promtool,
        tmp_path,
        thresholds,
        series=latency_series(thresholds.p99_latency, False, settled(thresholds)),
        alertname="HighLatency",
        eval_seconds=settled(thresholds),
        expected=[],
    )
    assert result.ok, result.report()
