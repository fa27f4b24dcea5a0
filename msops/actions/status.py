"""`msops status`: the stack's URLs and, per service, its image, replicas and live health."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msops.actions import steps
from msops.actions.base import Configuration

if TYPE_CHECKING:
    from components.spec import Service
    from msops.verify import Fetch

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class ServiceStatus:
    """One service: pinned and deployed image, desired replicas, URL and one health probe."""

    service: str
    image: str
    deployed_image: str | None
    # A fixed count, or (min, max) when it autoscales.
    replicas: int | tuple[int, int]
    url: str | None
    health: str
    # A canary in progress: its image, replicas, weight and step from the stack outputs, and
    # the last analysis `msops up` recorded on this machine.
    canary: Mapping[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        replicas = self.replicas
        shown = (
            {"min": replicas[0], "max": replicas[1]} if isinstance(replicas, tuple) else replicas
        )
        return {
            "service": self.service,
            "image": self.image,
            "deployedImage": self.deployed_image,
            "replicas": shown,
            "url": self.url,
            "health": self.health,
            "canary": dict(self.canary) if self.canary else None,
        }


@dataclass(frozen=True)
class StatusResult:
    stack: str
    deployed: bool
    urls: dict[str, Any]
    services: tuple[ServiceStatus, ...]

    def data(self) -> dict[str, Any]:
        """What `--json` prints."""
        return {
            "stack": self.stack,
            "deployed": self.deployed,
            "urls": self.urls,
            "services": [s.data() for s in self.services],
        }


def probe(url: str | None, health_path: str, fetch: Fetch) -> str:
    """One health request, as a word and the status."""
    from msops import verify

    if not url:
        return "no URL"
    try:
        status, _ = fetch(url.rstrip("/") + health_path, PROBE_TIMEOUT)
    except verify.Unreachable:
        return "unreachable from here"
    except OSError as exc:
        return f"down ({exc})"
    return f"healthy ({status})" if 200 <= status < 300 else f"unhealthy ({status})"


@dataclass
class Status:
    """Read the stack file (validated once) and the stack outputs, probe each service once."""

    cfg: Configuration
    stack: str

    def run(self) -> StatusResult:
        from msops import verify

        spec = steps.load(self.cfg, self.stack).spec
        outputs = self.cfg.gateway.outputs(self.stack)
        fetch = self.cfg.fetch or verify.http_fetch
        deployed = outputs.get("services")
        rows = []
        for name, svc in spec.services.items():
            out = deployed.get(name) if isinstance(deployed, Mapping) else None
            out = out if isinstance(out, Mapping) else {}
            url = out.get("url")
            health = probe(url, svc.health.path, fetch) if outputs else "not deployed"
            rows.append(
                ServiceStatus(
                    name,
                    svc.image,
                    out.get("image"),
                    _replicas(svc),
                    url,
                    health,
                    canary=self._canary(name, out.get("canary")),
                )
            )
        urls = {k: v for k, v in outputs.items() if k.endswith("Url") and v}
        return StatusResult(self.stack, bool(outputs), urls, tuple(rows))

    def _canary(self, name: str, deployed: Any) -> dict[str, Any] | None:
        """The canary the stack runs for `name`, with the last analysis recorded here."""
        if not isinstance(deployed, Mapping):
            return None
        from msops.actions.canary import STATUS_DIR, status_path

        found = dict(deployed)
        path = status_path(self.stack, self.cfg.state_dir or STATUS_DIR)
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = {}
        if isinstance(recorded, dict) and recorded.get("service") == name:
            found["steps"] = recorded.get("steps")
            found["lastAnalysis"] = recorded.get("lastAnalysis")
        return found


def _replicas(svc: Service) -> int | tuple[int, int]:
    if svc.autoscaling is not None:
        return (svc.autoscaling.min, svc.autoscaling.max)
    return svc.desired_replicas
