"""Grafana provisioning (datasource, dashboard provider) and one dashboard per service."""

from __future__ import annotations

import json
from typing import Any

import yaml

SCHEMA_VERSION = 39
# Grafana rejects dashboard uids longer than 40 characters.
MAX_UID = 40
# Short enough to follow a rollout as it happens; needs at least two scrapes at 15s.
RATE_WINDOW = "1m"


def render_datasource(*, prometheus_url: str, uid: str = "prometheus") -> str:
    """Provisioning YAML for the default Prometheus datasource, under a fixed uid.

    The fixed uid is what the dashboards' panels point at, so they work on first boot.
    """
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": uid,
                    "access": "proxy",
                    "url": prometheus_url,
                    "isDefault": True,
                    # Provisioned from the stack config; a UI edit would be lost on restart.
                    "editable": False,
                }
            ],
        },
        sort_keys=False,
    )


def render_dashboard_provider(*, path: str = "/var/lib/grafana/dashboards") -> str:
    """Provisioning YAML for a file provider loading every dashboard JSON under `path`."""
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "msops",
                    "orgId": 1,
                    "folder": "msops",
                    "type": "file",
                    # The dashboards are code: the stack config is their source, not the UI.
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 30,
                    "options": {"path": path},
                }
            ],
        },
        sort_keys=False,
    )


def _selector(service: str, extra: str = "") -> str:
    quoted = service.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{job="{quoted}"{extra}}}'


def _panel(
    panel_id: int,
    title: str,
    expr: str,
    *,
    unit: str,
    datasource_uid: str,
    grid: tuple[int, int, int, int],
    kind: str = "timeseries",
    legend: str = "",
) -> dict[str, Any]:
    x, y, w, h = grid
    datasource = {"type": "prometheus", "uid": datasource_uid}
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": datasource,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": "A", "datasource": datasource, "expr": expr, "legendFormat": legend or title}
        ],
    }


def dashboard(*, service: str, datasource_uid: str = "prometheus") -> dict[str, Any]:
    """The dashboard of one service: traffic, errors, p50 and p99 latency, replicas up."""
    if not service:
        raise ValueError("a dashboard needs a service name")
    job = _selector(service)
    errors = _selector(service, ',code=~"5.."')
    requests = f"sum(rate(http_requests_total{job}[{RATE_WINDOW}]))"
    buckets = f"sum by (le) (rate(http_request_duration_seconds_bucket{job}[{RATE_WINDOW}]))"
    ds = datasource_uid
    panels = [
        _panel(1, "Request rate", requests, unit="reqps", datasource_uid=ds, grid=(0, 0, 12, 8)),
        _panel(
            2,
            "Error rate (5xx)",
            f"sum(rate(http_requests_total{errors}[{RATE_WINDOW}])) / {requests}",
            unit="percentunit",
            datasource_uid=ds,
            grid=(12, 0, 12, 8),
        ),
        _panel(
            3,
            "Latency p50",
            f"histogram_quantile(0.5, {buckets})",
            unit="s",
            datasource_uid=ds,
            grid=(0, 8, 12, 8),
        ),
        _panel(
            4,
            "Latency p99",
            f"histogram_quantile(0.99, {buckets})",
            unit="s",
            datasource_uid=ds,
            grid=(12, 8, 12, 8),
        ),
        _panel(
            5,
            "Replicas up",
            f"sum(up{job})",
            unit="none",
            datasource_uid=ds,
            grid=(0, 16, 6, 4),
            kind="stat",
        ),
    ]
    return {
        "uid": f"msops-{service}"[:MAX_UID],
        "title": f"msops / {service}",
        "tags": ["msops", service],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": []},
        "panels": panels,
    }


def render_dashboard(*, service: str, datasource_uid: str = "prometheus") -> str:
    """`dashboard` as JSON text with sorted keys, so an unchanged dashboard diffs as unchanged."""
    return (
        json.dumps(
            dashboard(service=service, datasource_uid=datasource_uid), indent=2, sort_keys=True
        )
        + "\n"
    )
