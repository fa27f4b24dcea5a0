"""`msops scale`: set a service's fixed replica count in the stack file and deploy it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msops import stackfiles
from msops.actions import steps
from msops.actions.base import Configuration, Notice
from msops.errors import BadInput, MsopsError
from msops.releases import whole_number

if TYPE_CHECKING:
    from msops.actions.steps import Deployment, Edit


@dataclass(frozen=True)
class Deployed:
    """What the deployed release runs of a service: `replicas` (None: the stack is not
    deployed, or does not run the service), or why msops could not ask (`unknown`)."""

    replicas: int | None = None
    stack_deployed: bool = False
    unknown: str | None = None


@dataclass(frozen=True)
class ScaleResult:
    """The count asked for, whether the file changed, the deployment (None: nothing deployed),
    and, when the file already held the count, what the deployed release runs."""

    stack: str
    service: str
    replicas: int
    changed: bool
    deployment: Deployment | None = None
    deployed: Deployed | None = None

    def nothing_done(self) -> str | None:
        """Why nothing was deployed, for the person who asked; None when something was."""
        if self.changed or self.deployment is not None or self.deployed is None:
            return None
        held = (
            f"{self.service} already has {self.replicas} replica(s) in "
            f"stacks/Pulumi.{self.stack}.yaml"
        )
        deployed = self.deployed
        if deployed.unknown is not None:
            return (
                f"{held}; msops could not compare that with the deployed release "
                f"({deployed.unknown}), so nothing was deployed."
            )
        if not deployed.stack_deployed:
            return (
                f"{held}; stack {self.stack!r} is not deployed: `msops up {self.stack}` deploys it."
            )
        if deployed.replicas is None:
            return (
                f"{held}; the deployed release does not run {self.service} yet: "
                f"`msops up {self.stack}` deploys it."
            )
        return f"{held}, and the deployed release runs {deployed.replicas}; nothing to do."


@dataclass
class Scale:
    """Set `service` to `replicas` (0 or more); a service that autoscales is refused.

    The file decides what to write and the deployed release what to deploy: a file that
    already holds the count (a hand edit) is deployed when the release runs another count.
    An engine failure after the file was written puts back its exact previous bytes.
    """

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
        before = loaded.doc.path.read_bytes()
        spec = loaded.doc.set_replicas(self.service, self.replicas, loaded.spec)
        was = loaded.spec.services[self.service].desired_replicas
        edit = steps.Edit(stack=stack, doc=loaded.doc, spec=spec)
        if loaded.doc.changed:
            deployment = self._deploy(edit, before, was)
            return ScaleResult(stack, self.service, self.replicas, True, deployment)
        deployed = deployed_replicas(cfg, stack, self.service)
        result = ScaleResult(stack, self.service, self.replicas, False, deployed=deployed)
        if deployed.replicas is None or deployed.replicas == self.replicas:
            return result
        cfg.events(
            Notice(
                f"{self.service} already has {self.replicas} replica(s) in "
                f"stacks/{loaded.doc.path.name}, but the deployed release runs "
                f"{deployed.replicas}: deploying the file."
            )
        )
        return ScaleResult(
            stack, self.service, self.replicas, False, self._deploy(edit, before, was), deployed
        )

    def _deploy(self, edit: Edit, before: bytes, was: int) -> Deployment | None:
        """Deploy the edit; if that fails with the edit on disk, put the old bytes back."""
        path = edit.doc.path
        try:
            return steps.apply_edit(
                self.cfg,
                edit,
                yes=self.yes,
                message=f"msops scale {self.service} to {self.replicas}",
                what=f"{self.replicas} replica(s) of {self.service}",
            )
        except (MsopsError, KeyboardInterrupt) as exc:
            if path.read_bytes() == before:
                raise
            stackfiles.write_bytes(path, before)
            note = (
                f"stacks/{path.name} was put back as it was before this scale, byte for "
                f"byte ({self.service}: {was} replica(s)). The engine may have changed part of "
                "the stack before it stopped: "
                f"`msops up {self.stack} --yes` brings the stack back to the file; "
                f"`msops scale {self.stack} {self.service} {self.replicas} --yes` tries again"
            )
            if isinstance(exc, KeyboardInterrupt):
                self.cfg.events(Notice(note + "."))
                raise
            # The file is back: the general "the file keeps the edit" note no longer holds.
            raise steps.with_note(getattr(exc, "bare", exc), note) from None


def deployed_replicas(cfg: Configuration, stack: str, service: str) -> Deployed:
    """The service's replica count in the stack outputs the last update left."""
    try:
        outputs = cfg.gateway.outputs(stack)
    except MsopsError as exc:
        # On one line: it goes inside a sentence.
        return Deployed(unknown=" ".join(line.strip() for line in str(exc).splitlines()))
    services = outputs.get("services")
    found = services.get(service) if isinstance(services, Mapping) else None
    count = whole_number(found.get("replicas")) if isinstance(found, Mapping) else None
    return Deployed(replicas=count, stack_deployed=bool(outputs))
