"""The graphs the golden test pins: the committed stacks and a matrix of variants per backend."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msops import synth

GOLDEN_DIR = Path(__file__).resolve().parent
SECRET = {"secure": "v1:golden"}


def _values(stack: str) -> dict[str, Any]:
    values, _ = synth.config_from_file(stack)
    return copy.deepcopy(values)


def _with_extras(stack: str) -> dict[str, Any]:
    """A third service with autoscaling and a secret, an external database, custom alerts."""
    values = _values(stack)
    web = values["msops:services"]["web"]
    web["secretEnv"] = {"API_KEY": "apiKey"}
    web["env"] = {"LOG_LEVEL": "debug", "FEATURE": "on"}
    values["msops:services"]["orders"] = {
        "image": "ghcr.io/msops/demo:1.1.0",
        "autoscaling": {"min": 2, "max": 4, "targetCpu": 60},
        "port": 9000,
        "database": "ledger",
        "exposed": True,
        "resources": {"cpuRequest": "200m", "cpuLimit": "1", "memoryRequest": "64Mi"},
        "health": {"path": "/live", "readinessPath": "/ready", "interval": "5s", "retries": 2},
        "metricsPath": "/prom",
        "runAsUser": 20000,
    }
    values["msops:databases"]["ledger"] = {"externalUrl": "[secret]"}
    values["msops:secrets"] = {"apiKey": "[secret]"}
    values.setdefault("msops:monitoring", {})["alerts"] = {
        "errorRate": 0.02,
        "p99Latency": 0.25,
        "targetDownFor": "30s",
        "evaluateFor": "2m",
    }
    values["msops:monitoring"]["scrapeInterval"] = "10s"
    return values


def _without_monitoring(stack: str) -> dict[str, Any]:
    values = _values(stack)
    values["msops:monitoring"] = {"enabled": False}
    return values


def _without_grafana(stack: str) -> dict[str, Any]:
    values = _values(stack)
    values["msops:monitoring"] = {"enabled": True, "grafana": False}
    return values


def _scaled_to_zero(stack: str) -> dict[str, Any]:
    values = _values(stack)
    web = values["msops:services"]["web"]
    web.pop("autoscaling", None)
    web["replicas"] = 0
    values["msops:services"]["worker"] = {"image": "ghcr.io/msops/demo:1.0.0", "replicas": 1}
    return values


def _remote_host(stack: str) -> dict[str, Any]:
    values = _values(stack)
    values["msops:target"] = {"dockerHost": "ssh://ops@10.0.0.5", "bindAddress": "10.0.0.5"}
    values["msops:databases"]["main"]["password"] = "[secret]"
    return values


def _kubernetes_full() -> dict[str, Any]:
    values = _with_extras("prod")
    values["msops:services"]["web"]["ingress"] = {
        "host": "web.example.com",
        "path": "/app",
        "className": "nginx",
        "tlsSecret": "web-tls",
    }
    values["msops:target"] = {"namespace": "orders", "kubeContext": "prod-cluster"}
    values["msops:monitoring"].update(
        {"installStack": True, "releaseLabel": "kps", "chartVersion": "65.1.0"}
    )
    return values


def _secret_keys(values: dict[str, Any]) -> list[str]:
    return [k for k, v in values.items() if synth.SECRET in json.dumps(v)]


# name -> (stack, values factory)
CASES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "dev": ("dev", lambda: _values("dev")),
    "staging": ("staging", lambda: _values("staging")),
    "prod": ("prod", lambda: _values("prod")),
    "docker-extras": ("dev", lambda: _with_extras("dev")),
    "docker-no-monitoring": ("dev", lambda: _without_monitoring("dev")),
    "docker-no-grafana": ("dev", lambda: _without_grafana("dev")),
    "docker-scaled-to-zero": ("dev", lambda: _scaled_to_zero("dev")),
    "docker-remote-host": ("dev", lambda: _remote_host("dev")),
    "swarm-extras": ("staging", lambda: _with_extras("staging")),
    "swarm-no-monitoring": ("staging", lambda: _without_monitoring("staging")),
    "swarm-no-grafana": ("staging", lambda: _without_grafana("staging")),
    "swarm-scaled-to-zero": ("staging", lambda: _scaled_to_zero("staging")),
    "swarm-remote-host": ("staging", lambda: _remote_host("staging")),
    "kubernetes-full": ("prod", _kubernetes_full),
    "kubernetes-no-monitoring": ("prod", lambda: _without_monitoring("prod")),
    "kubernetes-no-grafana": ("prod", lambda: _without_grafana("prod")),
    "kubernetes-scaled-to-zero": ("prod", lambda: _scaled_to_zero("prod")),
}


def snapshot(case: str) -> dict[str, Any]:
    """The graph of one case as plain data: every resource and the stack outputs."""
    stack, factory = CASES[case]
    values = factory()
    graph = synth.synth_config(values, stack=stack, secret_keys=_secret_keys(values))
    return {
        "resources": [
            {
                "type": r.type,
                "name": r.name,
                "urn": r.urn,
                "parent": r.parent,
                "custom": r.custom,
                "inputs": r.inputs,
                "options": r.options,
            }
            for r in graph
        ],
        "outputs": graph.outputs,
    }


def path_of(case: str) -> Path:
    return GOLDEN_DIR / f"{case}.json"


def dumps(data: Any) -> str:
    """Stable JSON; the checkout's own path (a docker build context) reads `<project>`, so the
    files hold in any clone."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    return text.replace(str(synth.PROJECT_ROOT), "<project>")


def update(cases: list[str]) -> None:
    """Rewrite the golden files of `cases` (every case when empty)."""
    for case in cases or CASES:
        path_of(case).write_text(dumps(snapshot(case)))


if __name__ == "__main__":
    update(sys.argv[1:])
