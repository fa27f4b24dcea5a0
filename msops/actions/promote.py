"""`msops promote`: copy image pins from one stack file to the next, preview, deploy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msops import releases
from msops.actions import steps
from msops.actions.base import Configuration, PinsMoved
from msops.errors import BadInput

if TYPE_CHECKING:
    from msops.actions.steps import Deployment
    from msops.releases import PinChange


@dataclass(frozen=True)
class PromoteResult:
    """The pins moved, and the deployment of DST (None: nothing to do, or a dry run)."""

    source: str
    destination: str
    changes: tuple[PinChange, ...]
    deployment: Deployment | None = None

    @property
    def dry_run(self) -> bool:
        """Pins to move, but nobody confirmed: DST's file is as it was and nothing deployed."""
        return bool(self.changes) and self.deployment is None


@dataclass
class Promote:
    """Move the image pins of `services` (default: all in both) from `source` to `destination`.

    Only images move. Without `yes` a person confirms; with nobody to ask it is a dry run.
    SRC's pins are read as data; DST's file is validated once, after the edit.
    """

    cfg: Configuration
    source: str
    destination: str
    services: tuple[str, ...] = field(default=())
    yes: bool = False

    def run(self) -> PromoteResult:
        cfg, destination = self.cfg, self.destination
        if self.source == destination:
            raise BadInput("SRC and DST are the same stack; promote from one stack to another")
        src = steps.document(cfg, self.source)
        dst = steps.document(cfg, destination)
        changes = tuple(
            releases.plan_promotion(
                src.images(),
                dst.images(),
                self.services,
                source=self.source,
                destination=destination,
            )
        )
        result = PromoteResult(source=self.source, destination=destination, changes=changes)
        if not changes:
            return result
        for change in changes:
            dst.set_image(change.service, change.after)
        cfg.events(PinsMoved(changes=changes))
        deployment = steps.apply_edit(
            cfg,
            steps.edited(dst),
            yes=self.yes,
            message=f"msops promote {', '.join(c.service for c in changes)} from {self.source}",
            what=f"the promotion from {self.source}",
            dry_run_off_terminal=True,
        )
        return PromoteResult(self.source, destination, changes, deployment)
