"""`msops scale`: set a service's fixed replica count in the stack file and deploy it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from msops.actions import steps
from msops.actions.base import Configuration
from msops.errors import BadInput

if TYPE_CHECKING:
    from msops.actions.steps import Deployment


@dataclass(frozen=True)
class ScaleResult:
    """The count asked for, whether the file changed, and the deployment (None: no change)."""

    stack: str
    service: str
    replicas: int
    changed: bool
    deployment: Deployment | None = None


@dataclass
class Scale:
    """Set `service` to `replicas` (0 or more); a service that autoscales is refused."""

    cfg: Configuration
    stack: str
    service: str
    replicas: int
    yes: bool = False

    def run(self) -> ScaleResult:
        cfg, stack = self.cfg, self.stack
        if self.replicas < 0:
            raise BadInput(f"replicas must be 0 or more, got {self.replicas}")
        loaded = steps.load(cfg, stack)
        spec = loaded.doc.set_replicas(self.service, self.replicas, loaded.spec)
        result = ScaleResult(stack, self.service, self.replicas, changed=loaded.doc.changed)
        if not result.changed:
            return result
        deployment = steps.apply_edit(
            cfg,
            steps.Edit(stack=stack, doc=loaded.doc, spec=spec),
            yes=self.yes,
            message=f"msops scale {self.service} to {self.replicas}",
            what=f"{self.replicas} replica(s) of {self.service}",
        )
        return ScaleResult(stack, self.service, self.replicas, True, deployment)
