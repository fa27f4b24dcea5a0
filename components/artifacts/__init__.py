"""Pure renderers of msops's text artifacts: nginx.conf, Prometheus config and rules, Grafana."""

from components.artifacts.grafana import (
    dashboard,
    render_dashboard,
    render_dashboard_provider,
    render_datasource,
)
from components.artifacts.nginx import render_nginx_conf
from components.artifacts.prometheus import (
    ScrapeJob,
    alert_rules,
    render_alert_rules,
    render_prometheus_config,
)

__all__ = [
    "ScrapeJob",
    "alert_rules",
    "dashboard",
    "render_alert_rules",
    "render_dashboard",
    "render_dashboard_provider",
    "render_datasource",
    "render_nginx_conf",
    "render_prometheus_config",
]
