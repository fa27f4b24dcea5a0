"""What the backends' translations share: one resource's arguments, duration text, and what
docker and swarm both map the same way (health check blocks, alert rules)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from components.artifacts import prometheus
from components.plan import model
from components.vocabulary import DIGEST, SECRET_MASK


@dataclass(frozen=True)
class Args:
    """One provider resource as a translator describes it.

    `args` are the keyword arguments of the provider SDK's class, snake_case as it takes them;
    `options` are `pulumi.ResourceOptions` fields (protect, delete_before_replace, ...). The
    component adds parent, provider and dependencies.
    """

    name: str
    args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def go_duration(seconds: float, *, trim: bool = False) -> str:
    """A duration as Go's time.Duration prints it (`60` → `1m0s`), the way providers read one
    back, so that writing it this way keeps `pulumi preview` free of diffs like `60s` → `1m0s`.

    `trim` drops zero trailing units (`1m`, `1h`), the form Docker's swarm API hands back.
    """
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s" if trim else "0ms"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"
    if trim:
        text = text.removesuffix("m0s") + "m" if text.endswith("m0s") else text
        text = text.removesuffix("h0m") + "h" if text.endswith("h0m") else text
    return text


def healthcheck(
    check: model.HealthCheck, tests: Sequence[str], *, trim: bool = False
) -> dict[str, Any]:
    """A check as pulumi-docker takes it, on a Container and a Service's task alike; `trim` as
    in `go_duration` (swarm reads durations back trimmed, a container untrimmed)."""
    return {
        "tests": list(tests),
        "interval": go_duration(check.interval, trim=trim),
        "timeout": go_duration(check.timeout, trim=trim),
        "retries": check.retries,
        "start_period": go_duration(check.start_period, trim=trim),
    }


def http_check_command(check: model.HealthCheck) -> list[str]:
    """A health check command that works in most images: wget, else curl, else Python.

    The demo image (python:slim) has neither wget nor curl; alpine and busybox images have
    wget. Every part is shell-quoted because the path comes from the stack config.
    """
    url = check.url
    limit = max(1, int(check.timeout))
    python = f"import urllib.request; urllib.request.urlopen({json.dumps(url)}, timeout={limit})"
    quoted = shlex.quote(url)
    return [
        "CMD-SHELL",
        f"wget -q -O /dev/null {quoted} || curl -fsS -o /dev/null {quoted} "
        # Docker reserves every exit code but 0 and 1; whichever tool ran last, say "unhealthy".
        f"|| python3 -c {shlex.quote(python)} || exit 1",
    ]


def monitoring_of(plan: model.StackPlan) -> model.Monitoring:
    assert plan.monitoring is not None, "the stack runs no monitoring"
    return plan.monitoring


def alert_rules(plan: model.StackPlan) -> str:
    """The rules file of a plan, one group per scraped service: the same text wherever msops
    runs Prometheus itself (docker, swarm)."""
    mon = monitoring_of(plan)
    alerts = mon.alerts
    return prometheus.render_alert_rules(
        services=[job.service for job in mon.jobs],
        error_rate=alerts.error_rate,
        p99_latency=alerts.p99_latency,
        target_down_for=alerts.target_down_for,
        evaluate_for=alerts.evaluate_for,
    )


# --- Grafana, the same wherever msops configures it --------------------------------------------

# Generated with pulumi-random and kept in state; no special characters, which would need
# quoting in env files and URLs.
GRAFANA_ADMIN_PASSWORD_LENGTH = 32


def grafana_admin_password(name: str) -> Args:
    """Grafana would otherwise start with a public default admin password."""
    return Args(name, {"length": GRAFANA_ADMIN_PASSWORD_LENGTH, "special": False})


def grafana_ini(plan: model.StackPlan, dashboards_path: str | None = None) -> dict[str, Any]:
    """Grafana's settings as grafana.ini sections, on every backend: anonymous visitors view
    only if monitoring.grafanaAnonymous says so, nobody signs up, and nothing calls home (a
    stack may have no way out to the internet). With `dashboards_path`, the first service's
    dashboard is the home page."""
    graf = monitoring_of(plan).grafana
    assert graf is not None
    ini: dict[str, dict[str, Any]] = {
        "auth.anonymous": {
            "enabled": "true" if graf.anonymous_viewing else "false",
            "org_role": "Viewer",
        },
        "security": {"admin_user": graf.admin_user, "disable_gravatar": "true"},
        "users": {"allow_sign_up": "false"},
        "analytics": {
            "reporting_enabled": "false",
            "check_for_updates": "false",
            "check_for_plugin_updates": "false",
        },
        "news": {"news_feed_enabled": "false"},
    }
    if dashboards_path is not None and graf.dashboards:
        home = f"{dashboards_path}/{graf.dashboards[0]}.json"
        ini["dashboards"] = {"default_home_dashboard_path": home}
    return ini


def grafana_env(ini: dict[str, Any]) -> dict[str, str]:
    """grafana.ini sections as the GF_<SECTION>_<KEY> variables Grafana reads."""
    return {
        f"GF_{section.upper().replace('.', '_')}_{key.upper()}": value
        for section, keys in ini.items()
        for key, value in keys.items()
    }


# --- migrations in a one-off container (docker, swarm) -----------------------------------------

# Where a one-off migration container finds its secrets, one file per variable, as Docker
# and Swarm secrets are mounted and as images following the `<VAR>_FILE` convention read them.
SECRETS_DIR = "/run/secrets"
# The lines of a failed migration's output that its error shows.
MIGRATION_LOG_LINES = 5
MIGRATION_LOG_LINE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MigrationFailed(Exception):
    """A migration exited non-zero; the message says what to do, with no secret in it."""


def migration_of(workload: model.Workload) -> model.Migration:
    assert workload.migration is not None, f"{workload.name} has no migrations"
    return workload.migration


def migration_name(workload: model.Workload) -> str:
    """`<service>-migrate`: the migration's name on swarm, in Compose and on Kubernetes."""
    return f"{workload.name}-migrate"


def secret_files(workload: model.Workload, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A workload's secret variables as files to upload, at /run/secrets/<VAR>.

    Owned by root, as an upload always is, so readable by all: the container runs nothing but
    the migration, as a user that is not root.
    """
    return [
        {"file": f"{SECRETS_DIR}/{var}", "content": values[var], "permissions": "0444"}
        for var in workload.secret_vars
    ]


def migration_env(workload: model.Workload) -> dict[str, str]:
    """The workload's plain variables, and `<VAR>_FILE` naming each secret's file: the values
    themselves never go into the environment, which `docker inspect` shows."""
    files = {f"{var}_FILE": f"{SECRETS_DIR}/{var}" for var in workload.secret_vars}
    return {**dict(workload.env), **files}


def log_tail(logs: str | None, hidden: Sequence[str]) -> list[str]:
    """The last lines of a container's output, each secret value masked, control bytes (a log
    stream's frame headers) dropped, long lines cut."""
    text = logs or ""
    # A URL's password can be printed without the rest of the URL.
    passwords = [_url_password(v) for v in hidden]
    for value in sorted({v for v in [*hidden, *passwords] if v}, key=len, reverse=True):
        text = text.replace(value, SECRET_MASK)
    lines = [_CONTROL.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line][-MIGRATION_LOG_LINES:]
    return [
        line if len(line) <= MIGRATION_LOG_LINE_CHARS else line[:MIGRATION_LOG_LINE_CHARS] + "..."
        for line in lines
    ]


def _url_password(value: str) -> str | None:
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def migration_gate(
    workload: model.Workload, exit_code: int | None, logs: str | None, hidden: Sequence[str]
) -> str:
    """The schema the replicas of this release run on, known once the migration exited 0.

    The replicas take it as an input (a label), so a failed migration stops the update
    before any of them is created or replaced. `hidden` are the secret values the container
    had, masked in the output that the error quotes (on one line: the engine reports an
    error's first line).
    """
    migration = migration_of(workload)
    if exit_code == 0:
        return str(migration.schema_version)
    command = shlex.join(migration.command)
    tail = " | ".join(log_tail(logs, hidden)) or "(no output)"
    outcome = "reported no exit code" if exit_code is None else f"exited {exit_code}"
    raise MigrationFailed(
        f"msops:services.{workload.name}.migrations: the migration `{command}` {outcome}, so "
        "no replica of this release was started and the ones before keep serving; its last "
        f"output: {tail}. The next `msops up` runs it again once its image, command, env or "
        "schemaVersion change; to run the same one again, replace the migration container "
        "(`pulumi up --replace <its URN>`)"
    )


_DIGEST_IN = re.compile(rf"(?:^|@)({DIGEST})$")


def digest_of(reference: Any) -> str | None:
    """The `sha256:<64 hex>` a provider reports for an image (`repo@sha256:...` from a pull,
    a bare `sha256:...` image ID from a local build), or None when it carries none."""
    if not isinstance(reference, str):
        return None
    match = _DIGEST_IN.search(reference)
    return match.group(1) if match else None
