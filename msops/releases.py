"""Release logic on plain data: numbering history, picking a rollback target, promotion plans."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, Unpack

from components.vocabulary import SECRET_MASK, parse_image
from msops.errors import BadInput

if TYPE_CHECKING:
    from components.spec import Service, StackConfig
    from msops.lifecycle import EngineRun

SERVICES_KEY = "msops:services"
# msops.gateway masks secret stack outputs with this name; it is the vocabulary's mask.
SECRET_PLACEHOLDER = SECRET_MASK
# The messages msops records a canary's intermediate updates with; the config history keeps
# for them is the target's, which they did not deploy.
CANARY_STEP_MESSAGES = ("msops canary step", "msops canary abort")
# Pulumi's own default page size is 10; bigger pages mean fewer CLI round trips.
HISTORY_PAGE_SIZE = 50
_MAX_PAGES = 10_000


# --- what the gateway hands back -----------------------------------------------------------------


@dataclass(frozen=True)
class ConfigEntry:
    """One config value as Pulumi reports it: objects as JSON text, secrets decrypted."""

    value: str
    secret: bool = False


@dataclass(frozen=True)
class Update:
    """One entry of `pulumi stack history` (the engine lists them newest first)."""

    kind: str
    result: str
    start_time: datetime
    message: str = ""
    end_time: datetime | None = None
    # The file backend reports 0 for every update, which is why msops numbers releases itself.
    version: int | None = None
    config: Mapping[str, ConfigEntry] = field(default_factory=dict)
    changes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineNote:
    """A progress event from the engine, reduced to what the display needs."""

    kind: Literal["start", "done", "failed", "diagnostic"]
    op: str = ""
    urn: str = ""
    message: str = ""
    severity: str = ""


@dataclass(frozen=True)
class UpResult:
    """What a finished update leaves: its result, change counts and the stack outputs."""

    result: str
    outputs: Mapping[str, Any]
    changes: Mapping[str, int] = field(default_factory=dict)


OnOutput = Callable[[str], None]
OnEvent = Callable[[EngineNote], None]


class Progress(TypedDict, total=False):
    """Where an engine run reports: Pulumi's own lines, and its resource events."""

    on_output: OnOutput | None
    on_event: OnEvent | None


class Gateway(Protocol):
    """Everything msops asks of Pulumi; `msops.gateway.PulumiGateway` is the real one."""

    @property
    def backend(self) -> str: ...

    def history(self, stack: str) -> list[Update]:
        """Every update of the stack, newest first (all pages); [] for a stack never deployed."""
        ...

    def current_config(self, stack: str) -> dict[str, ConfigEntry]:
        """The stack file's config as Pulumi reads it, secrets decrypted."""
        ...

    def set_secret(self, stack: str, key: str, value: str, *, path: bool) -> None:
        """Encrypt `value` into the stack file at `key` (a `--path` key when `path`)."""
        ...

    def preview(self, stack: str, **progress: Unpack[Progress]) -> dict[str, int]:
        """Run `pulumi preview`; return the planned change counts by operation."""
        ...

    def up(
        self,
        stack: str,
        *,
        message: str | None = None,
        env: Mapping[str, str] | None = None,
        **progress: Unpack[Progress],
    ) -> UpResult:
        """Run `pulumi up` (with `env` added to the program's environment); raise
        OperationFailed (or StackLocked) when it does not succeed."""
        ...

    def outputs(self, stack: str) -> dict[str, Any]:
        """The stack outputs, secret ones replaced by "[secret]"; {} for a stack never deployed."""
        ...

    def preview_refresh(self, stack: str, **progress: Unpack[Progress]) -> EngineRun:
        """Run `pulumi refresh --preview-only`: what the providers read, changing nothing."""
        ...

    def refresh(
        self, stack: str, *, message: str | None = None, **progress: Unpack[Progress]
    ) -> EngineRun:
        """Run `pulumi refresh`: take what the providers read into the stack's state."""
        ...

    def preview_destroy(self, stack: str, **progress: Unpack[Progress]) -> EngineRun:
        """Run `pulumi destroy --preview-only --exclude-protected`."""
        ...

    def destroy(
        self, stack: str, *, message: str | None = None, **progress: Unpack[Progress]
    ) -> EngineRun:
        """Run `pulumi destroy --exclude-protected`: protected resources stay, with their state."""
        ...


# --- history --------------------------------------------------------------------------------------


def all_pages(
    fetch_page: Callable[[int, int], Sequence[Update]], page_size: int = HISTORY_PAGE_SIZE
) -> list[Update]:
    """Every entry of a paged history: pages 1, 2, ... until a short (or empty) page."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    entries: list[Update] = []
    previous: Sequence[Update] | None = None
    for page in range(1, _MAX_PAGES + 1):
        batch = fetch_page(page, page_size)
        # A CLI that ignores paging returns the same full list for every page; stop there.
        if previous is not None and list(batch) == list(previous):
            break
        entries.extend(batch)
        if len(batch) < page_size:
            break
        previous = batch
    return entries


def decode_value(value: str) -> Any:
    """A config value as data: Pulumi reports objects and lists as JSON text."""
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def decode_config(entries: Mapping[str, ConfigEntry]) -> dict[str, Any]:
    return {key: decode_value(entry.value) for key, entry in entries.items()}


@dataclass(frozen=True)
class Release:
    """One history entry with the number msops gives it (oldest = 1)."""

    number: int
    update: Update
    config: dict[str, Any]
    secret_keys: frozenset[str]

    @property
    def kind(self) -> str:
        return self.update.kind

    @property
    def result(self) -> str:
        return self.update.result

    @property
    def succeeded(self) -> bool:
        return self.update.result == "succeeded"

    @property
    def deployable(self) -> bool:
        """A successful update that deployed its config as recorded: not a canary's step or
        its abort, which deploy an intermediate state the recorded config does not show."""
        return self.update.kind == "update" and self.succeeded and not self.canary_step

    @property
    def canary_step(self) -> bool:
        return self.update.message.startswith(CANARY_STEP_MESSAGES)

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        """The service blocks this release recorded, as data."""
        raw = self.config.get(SERVICES_KEY)
        if not isinstance(raw, Mapping):
            return {}
        return {str(n): dict(s) for n, s in raw.items() if isinstance(s, Mapping)}

    def views(self) -> dict[str, ServiceView]:
        """Image and replicas of each service, as this release recorded them."""
        return recorded_views(self.config)

    def images(self) -> dict[str, str]:
        return {name: view.image for name, view in self.views().items()}

    def replicas(self) -> dict[str, str]:
        return {name: view.replicas for name, view in self.views().items()}


def number_releases(updates_newest_first: Sequence[Update]) -> list[Release]:
    """Releases oldest first, numbered 1..n by their order in history."""
    ordered = list(reversed(updates_newest_first))
    return [
        Release(
            number=i,
            update=update,
            config=decode_config(update.config),
            secret_keys=frozenset(k for k, v in update.config.items() if v.secret),
        )
        for i, update in enumerate(ordered, start=1)
    ]


# --- what a release runs, per service ------------------------------------------------------------


@dataclass(frozen=True)
class ServiceView:
    """What a summary shows of one service: its image, and its replicas as text."""

    image: str
    replicas: str


def service_view(service: Service) -> ServiceView:
    """A validated service: `2`, or `3-10 (autoscaled)`; the model supplies every default."""
    autoscaling = service.autoscaling
    if autoscaling is not None:
        return ServiceView(service.image, f"{autoscaling.min}-{autoscaling.max} (autoscaled)")
    return ServiceView(service.image, str(service.desired_replicas))


def spec_views(spec: StackConfig) -> dict[str, ServiceView]:
    """The views of a validated stack config, by service."""
    return {name: service_view(svc) for name, svc in spec.services.items()}


def recorded_views(config: Mapping[str, Any]) -> dict[str, ServiceView]:
    """The views of a recorded config (a history entry), which is data, not a validated model.

    Each service goes through today's model, so defaults come from it; one that no longer
    validates (an old release, a schema that moved on) shows what it recorded, "?" for the rest.
    """
    from pydantic import ValidationError

    from components.spec import Service

    services = config.get(SERVICES_KEY)
    if not isinstance(services, Mapping):
        return {}
    views = {}
    for name, raw in services.items():
        if not isinstance(raw, Mapping):
            continue
        try:
            views[str(name)] = service_view(Service.model_validate(dict(raw)))
        except ValidationError:
            recorded = raw.get("replicas")
            views[str(name)] = ServiceView(
                str(raw.get("image", "?")), "?" if recorded is None else str(recorded)
            )
    return views


def history_rows(releases: Sequence[Release]) -> list[dict[str, Any]]:
    """The data of `msops history --json`, newest first; no config values, so no secrets."""
    return [
        {
            "release": rel.number,
            "time": rel.update.start_time.isoformat(),
            "kind": rel.kind,
            "result": rel.result,
            "images": rel.images(),
            "replicas": rel.replicas(),
            "message": rel.update.message,
            "version": rel.update.version,
        }
        for rel in reversed(releases)
    ]


# --- rollback -------------------------------------------------------------------------------------


def _succeeded_numbers(releases: Sequence[Release]) -> str:
    numbers = [str(r.number) for r in reversed(releases) if r.deployable][:10]
    return ", ".join(numbers) if numbers else "none"


def rollback_target(
    releases: Sequence[Release], current: Mapping[str, Any], to: int | None, stack: str
) -> Release:
    """The release a rollback re-applies.

    By default the newest successful update whose config differs from `current` (the stack
    file's config, decoded and decrypted); with `to`, that release, if it succeeded.
    """
    if not releases:
        raise BadInput(
            f"stack {stack!r} has no releases yet; deploy it first with `msops up {stack}`"
        )
    if to is not None:
        if not 1 <= to <= len(releases):
            raise BadInput(
                f"release {to} does not exist; stack {stack!r} has releases 1-{len(releases)} "
                f"(see `msops history {stack}`)"
            )
        release = releases[to - 1]
        if release.kind != "update":
            raise BadInput(
                f"release {to} is a {release.kind}, not an update; pick a successful update: "
                f"{_succeeded_numbers(releases)}"
            )
        if not release.succeeded:
            raise BadInput(
                f"release {to} {release.result}, so its config never deployed; pick a release "
                f"that succeeded: {_succeeded_numbers(releases)}"
            )
        return release
    for release in reversed(releases):
        if release.deployable and release.config != dict(current):
            return release
    raise BadInput(
        f"no successful release of {stack!r} has a config different from the current stack "
        "file; there is nothing to roll back to"
    )


def newest_deployed(releases: Sequence[Release]) -> Release | None:
    """The newest successful update: what is running, as far as history knows."""
    return next((r for r in reversed(releases) if r.deployable), None)


# --- release summaries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceChange:
    """One service's image and replicas before and after (None: absent on that side)."""

    service: str
    image_before: str | None
    image_after: str | None
    replicas_before: str | None
    replicas_after: str | None

    @property
    def image_changed(self) -> bool:
        return self.image_before != self.image_after

    @property
    def replicas_changed(self) -> bool:
        return self.replicas_before != self.replicas_after

    @property
    def changed(self) -> bool:
        return self.image_changed or self.replicas_changed


def service_changes(
    before: Mapping[str, ServiceView], after: Mapping[str, ServiceView]
) -> list[ServiceChange]:
    """Image and replica changes per service, in `after`'s order, then the removed ones."""
    changes = []
    for name in [*after, *(n for n in before if n not in after)]:
        old, new = before.get(name), after.get(name)
        changes.append(
            ServiceChange(
                service=name,
                image_before=old.image if old else None,
                image_after=new.image if new else None,
                replicas_before=old.replicas if old else None,
                replicas_after=new.replicas if new else None,
            )
        )
    return changes


@dataclass(frozen=True)
class ReleaseSummary:
    """What a config changes against the newest successful release (`since` None: the first)."""

    stack: str
    since: Release | None
    changes: tuple[ServiceChange, ...]


def summarize(stack: str, history: Sequence[Release], spec: StackConfig) -> ReleaseSummary:
    """The summary of deploying `spec` after `history`."""
    since = newest_deployed(history)
    changes = service_changes(since.views() if since else {}, spec_views(spec))
    return ReleaseSummary(stack=stack, since=since, changes=tuple(changes))


# --- promotion ------------------------------------------------------------------------------------


def promoted_image(source: str, destination: str) -> str:
    """The image the destination pins after promoting `source` onto `destination`.

    The same repository in another registry (dev's locally built `msops/demo:1.2.0` onto
    staging's `ghcr.io/msops/demo:1.1.0`) keeps the destination's registry and takes the
    source's tag and digest: `ghcr.io/msops/demo:1.2.0`. A different repository is a
    deliberate change of image, so the full source reference is copied.
    """
    src, dst = parse_image(source), parse_image(destination)
    if src.path == dst.path:
        return dst.repository + src.pin
    return source


@dataclass(frozen=True)
class PinChange:
    service: str
    before: str
    after: str


def plan_promotion(
    source_images: Mapping[str, str],
    destination_images: Mapping[str, str],
    chosen: Sequence[str] = (),
    *,
    source: str,
    destination: str,
) -> list[PinChange]:
    """The image pins a promotion moves (images by service), for services in both stacks.

    With no `chosen` services, every service in both stacks; otherwise exactly those, each
    of which must exist in both. Pins that already match are left out.
    """
    if chosen:
        for name in chosen:
            for stack, services in ((source, source_images), (destination, destination_images)):
                if name not in services:
                    known = ", ".join(sorted(services)) or "none"
                    raise BadInput(
                        f"service {name!r} is not in stack {stack!r} (its services: {known})"
                    )
        names = list(dict.fromkeys(chosen))
    else:
        names = [n for n in destination_images if n in source_images]
        if not names:
            raise BadInput(f"stacks {source!r} and {destination!r} have no service in common")
    changes = []
    for name in names:
        before = destination_images[name]
        after = promoted_image(source_images[name], before)
        if after != before:
            changes.append(PinChange(service=name, before=before, after=after))
    return changes
