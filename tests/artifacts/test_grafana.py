"""The Grafana dashboard and provisioning files: their shape, and their PromQL through promtool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.artifacts import (
    dashboard,
    render_dashboard,
    render_dashboard_provider,
    render_datasource,
)

SERVICE = "orders"


def targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in board["panels"] for target in panel["targets"]]


def test_rendered_dashboard_is_json_of_the_dashboard_dict() -> None:
    assert json.loads(render_dashboard(service=SERVICE)) == dashboard(service=SERVICE)


def test_rendered_dashboard_has_sorted_keys_and_two_space_indent() -> None:
    text = render_dashboard(service=SERVICE)
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_dashboard_has_five_panels_with_unique_ids() -> None:
    ids = [panel["id"] for panel in dashboard(service=SERVICE)["panels"]]
    assert len(ids) == 5 and len(set(ids)) == 5, ids


def test_panels_are_four_timeseries_and_a_replicas_up_stat() -> None:
    panels = dashboard(service=SERVICE)["panels"]
    kinds = sorted((p["type"], p["title"]) for p in panels if p["type"] == "stat")
    assert kinds == [("stat", "Replicas up")] and len(panels) - len(kinds) == 4


def test_dashboard_uid_title_and_schema_version() -> None:
    board = dashboard(service=SERVICE)
    assert (board["uid"], board["title"], board["schemaVersion"]) == (
        "msops-orders",
        "msops / orders",
        39,
    )


def test_dashboard_uid_is_cut_to_forty_characters() -> None:
    service = "a" * 63
    assert dashboard(service=service)["uid"] == f"msops-{service}"[:40]


def test_every_target_selects_the_service_job() -> None:
    exprs = [target["expr"] for target in targets(dashboard(service=SERVICE))]
    missing = [expr for expr in exprs if f'job="{SERVICE}"' not in expr]
    assert exprs and not missing, f"expressions without job={SERVICE!r}: {missing}"


def test_every_panel_has_grid_position_datasource_and_ref_ids() -> None:
    problems = []
    for panel in dashboard(service=SERVICE, datasource_uid="prom-main")["panels"]:
        if set(panel["gridPos"]) != {"x", "y", "w", "h"}:
            problems.append(f"panel {panel['id']}: gridPos {panel['gridPos']}")
        if panel["datasource"] != {"type": "prometheus", "uid": "prom-main"}:
            problems.append(f"panel {panel['id']}: datasource {panel['datasource']}")
        if not panel["targets"] or not all(t.get("refId") for t in panel["targets"]):
            problems.append(f"panel {panel['id']}: targets {panel['targets']}")
    assert not problems, problems


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Request rate", 'sum(rate(http_requests_total{job="orders"}[1m]))'),
        ("Replicas up", 'sum(up{job="orders"})'),
    ],
)
def test_panel_expression(title: str, expected: str) -> None:
    panel = next(p for p in dashboard(service=SERVICE)["panels"] if p["title"] == title)
    assert [t["expr"] for t in panel["targets"]] == [expected]


@pytest.mark.parametrize(("title", "quantile"), [("Latency p50", "0.5"), ("Latency p99", "0.99")])
def test_latency_panels_take_the_quantile_of_the_histogram(title: str, quantile: str) -> None:
    panel = next(p for p in dashboard(service=SERVICE)["panels"] if p["title"] == title)
    expr = panel["targets"][0]["expr"]
    assert expr.startswith(f"histogram_quantile({quantile}, sum by (le) (rate(")
    assert "http_request_duration_seconds_bucket" in expr, expr


def test_error_rate_panel_divides_5xx_by_all_requests() -> None:
    panel = next(p for p in dashboard(service=SERVICE)["panels"] if "Error" in p["title"])
    errors, _, total = panel["targets"][0]["expr"].partition(" / ")
    assert ('code=~"5.."' in errors, 'code=~"5.."' in total) == (True, False), errors + total


def test_every_expression_parses_as_promql(promtool: Any, tmp_path: Path) -> None:
    # promtool has no offline "parse this query", but it parses every rule's expr.
    rules = [
        {"record": f"msops:panel_{i}", "expr": target["expr"]}
        for i, target in enumerate(targets(dashboard(service=SERVICE)))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool.run("check", "rules", str(path))
    assert result.ok and f"{len(rules)} rules found" in result.stdout, result.report()


def test_datasource_is_the_default_prometheus_with_a_fixed_uid() -> None:
    config = yaml.safe_load(render_datasource(prometheus_url="http://prometheus:9090"))
    assert config["apiVersion"] == 1 and config["datasources"] == [
        {
            "name": "Prometheus",
            "type": "prometheus",
            "uid": "prometheus",
            "access": "proxy",
            "url": "http://prometheus:9090",
            "isDefault": True,
            "editable": False,
        }
    ]


def test_datasource_uid_matches_the_dashboard_panels() -> None:
    config = yaml.safe_load(render_datasource(prometheus_url="http://p:9090", uid="prom-main"))
    board = dashboard(service=SERVICE, datasource_uid="prom-main")
    uids = {p["datasource"]["uid"] for p in board["panels"]}
    assert uids == {config["datasources"][0]["uid"]}


def test_dashboard_provider_loads_files_from_the_path() -> None:
    config = yaml.safe_load(render_dashboard_provider(path="/etc/dashboards"))
    provider = config["providers"][0]
    assert (config["apiVersion"], provider["type"], provider["options"]) == (
        1,
        "file",
        {"path": "/etc/dashboards"},
    )


def test_dashboard_provider_has_the_keys_grafana_needs() -> None:
    provider = yaml.safe_load(render_dashboard_provider())["providers"][0]
    assert {"name", "orgId", "folder", "type", "options"} <= set(provider), provider
