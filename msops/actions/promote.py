"""`msops promote`: copy image pins from one stack file to the next, preview, deploy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msops import registry, releases
from msops.actions import steps
from msops.actions.base import Configuration, PinsMoved
from msops.errors import BadInput
from msops.registry import Answer, ImagesMissing, Unpushed
from msops.releases import SERVICES_KEY, PinChange

if TYPE_CHECKING:
    from msops.actions.steps import Deployment
    from msops.stackfiles import StackDocument

# Asks DST's registry about one image (msops.registry.Registry.lookup in real use).
ImageLookup = Callable[[str], Answer]


@dataclass(frozen=True)
class PromoteResult:
    """The pins moved, and the deployment of DST (None: nothing to do, or a dry run)."""

    source: str
    destination: str
    changes: tuple[PinChange, ...]
    deployment: Deployment | None = None
    # What DST's registry said about each image promoted; () when the check was skipped.
    checked: tuple[Answer, ...] = ()

    @property
    def dry_run(self) -> bool:
        """Pins to move, but nobody confirmed: DST's file is as it was and nothing deployed."""
        return bool(self.changes) and self.deployment is None


@dataclass
class Promote:
    """Move the image pins of `services` (default: all in both) from `source` to `destination`.

    Only images move. Without `yes` a person confirms; with nobody to ask it is a dry run.
    SRC's pins are read as data; DST's file is validated once, after the edit. Then, before
    anything is shown or written, DST's registry is asked for every image to be pinned
    (`verify_images`); one it lacks refuses the whole promotion.
    """

    cfg: Configuration
    source: str
    destination: str
    services: tuple[str, ...] = field(default=())
    yes: bool = False
    verify_images: bool = True
    # None: the registry client with the user's docker config (msops.registry.from_environment).
    lookup: ImageLookup | None = None

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
                built=[n for n in src.images() if src.service(n).get("build")],
            )
        )
        result = PromoteResult(source=self.source, destination=destination, changes=changes)
        if not changes:
            return result
        for change in changes:
            dst.set_image(change.service, change.after)
        edit = steps.edited(dst)
        checked = self._check_images(changes, src) if self.verify_images else ()
        cfg.events(PinsMoved(changes=changes))
        deployment = steps.apply_edit(
            cfg,
            edit,
            yes=self.yes,
            message=f"msops promote {', '.join(c.service for c in changes)} from {self.source}",
            what=f"the promotion from {self.source}",
            dry_run_off_terminal=True,
        )
        return PromoteResult(self.source, destination, changes, deployment, checked)

    def _check_images(
        self, changes: tuple[PinChange, ...], src: StackDocument
    ) -> tuple[Answer, ...]:
        """Ask DST's registry for each image to be pinned; refuse if any is not there."""
        lookup = self.lookup or registry.from_environment().lookup
        answers = tuple(lookup(change.after) for change in changes)
        unpushed = [
            Unpushed(f"{SERVICES_KEY}.{change.service}.image", answer, _built(src, change))
            for change, answer in zip(changes, answers, strict=True)
            if answer.presence != "present"
        ]
        if unpushed:
            raise ImagesMissing(self.source, self.destination, unpushed)
        return answers


def _built(src: StackDocument, change: PinChange) -> tuple[str, str] | None:
    """SRC's image and build directory when SRC builds the service itself (`build:`)."""
    context = src.service(change.service).get("build")
    if not context:
        return None
    return src.images()[change.service], str(context).rstrip("/")


@dataclass(frozen=True)
class PromotedImage:
    """An image a promotion pins in DST, and SRC's build directory when SRC builds it."""

    service: str
    image: str
    context: str | None


def promoted_images(
    cfg: Configuration, source: str, destination: str, services: tuple[str, ...] = ()
) -> list[PromotedImage]:
    """Every image promoting SRC onto DST pins, changed or not: what must be pushed first.

    CI builds and pushes these before it deploys SRC (the `images` job of deploy.yml), so
    that the promotion's registry check finds them. Nothing is checked or written.
    """
    src, dst = steps.document(cfg, source), steps.document(cfg, destination)
    src_images, dst_images = src.images(), dst.images()
    names = list(services) or [n for n in dst_images if n in src_images]
    found = []
    for name in names:
        for doc in (src, dst):
            doc.service(name)  # as a promotion: a service not in both stacks is bad input
        context = src.service(name).get("build")
        image = releases.promoted_image(src_images[name], dst_images[name], built=bool(context))
        found.append(PromotedImage(name, image, str(context).rstrip("/") if context else None))
    return found
