"""Release logic on plain data: numbering history, picking a rollback target, promotion plans."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, Unpack

from components.vocabulary import DIGEST, SECRET_MASK, down_command, parse_image
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
    # The digests the stack outputs held when this update started (`with_digests`): what the
    # release deployed before it ran. Its message is kept without that trailer.
    ran_before: Mapping[str, str] = field(default_factory=dict)

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

    def schemas(self) -> dict[str, Schema]:
        """The schema each service with migrations needs, as this release recorded it."""
        return recorded_schemas(self.config)

    def schema_left(self) -> dict[str, int]:
        """The schema version each service's database was left at, if this update finished:
        what its config needs, or where its down step (`migrate_down_message`) took it."""
        left = {name: schema.version for name, schema in self.schemas().items()}
        downs = migrated_down(self.update.message)
        return {name: downs.get(name, version) for name, version in left.items()}


def number_releases(updates_newest_first: Sequence[Update]) -> list[Release]:
    """Releases oldest first, numbered 1..n by their order in history."""
    ordered = list(reversed(updates_newest_first))
    numbered = []
    for i, update in enumerate(ordered, start=1):
        message, ran = split_digests(update.message)
        numbered.append(
            Release(
                number=i,
                update=dataclasses.replace(update, message=message) if ran else update,
                config=decode_config(update.config),
                secret_keys=frozenset(k for k, v in update.config.items() if v.secret),
                ran_before=ran,
            )
        )
    return numbered


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


def rfc3339(moment: datetime) -> str:
    """A time as --json prints it: RFC 3339 in UTC, `Z`. Pulumi reports update times in UTC
    without a zone, so a time without one is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_AUTOSCALED = re.compile(r"^(\d+)-(\d+) \(autoscaled\)$")


def replicas_data(text: str) -> int | dict[str, int] | None:
    """A ServiceView's replicas as --json prints them, as `status --json` does: a number,
    `{min, max}` when autoscaled, or null when a release recorded none that reads as one."""
    if text.isdigit():
        return int(text)
    autoscaled = _AUTOSCALED.match(text)
    if autoscaled:
        return {"min": int(autoscaled[1]), "max": int(autoscaled[2])}
    return None


def history_rows(
    releases: Sequence[Release], outputs: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The data of `msops history --json`, newest first; no config values, so no secrets.

    `status` is deployed, superseded, failed or restored-by (`restoredBy` then the number of
    the release that undid it, else null); `digests` what each service's image resolved to,
    where the release recorded it (see `release_digests`).

    `schema` is each service's schema version, from the release's own config (a down step's
    from its message), and for the newest release, when it succeeded, from the stack outputs
    it left (`services.<name>.schemaVersion`).
    """
    newest = releases[-1] if releases else None
    recorded = output_schemas(outputs or {})
    statuses = release_statuses(releases)
    digests = release_digests(releases, outputs)
    rows = []
    for rel in reversed(releases):
        schema = rel.schema_left()
        if rel is newest and rel.deployable:
            schema |= recorded
        status = statuses[rel.number]
        rows.append(
            {
                "release": rel.number,
                "time": rfc3339(rel.update.start_time),
                "kind": rel.kind,
                "result": rel.result,
                "status": status.name,
                "restoredBy": status.by,
                "images": rel.images(),
                "digests": _in_order(digests.get(rel.number, {}), rel.images()),
                "replicas": {s: replicas_data(r) for s, r in rel.replicas().items()},
                "schema": schema,
                "message": rel.update.message,
                "version": rel.update.version,
            }
        )
    return rows


def _in_order(by_service: Mapping[str, str], order: Mapping[str, Any]) -> dict[str, str]:
    """`by_service` in the order of the release's own services, then any others."""
    return {s: by_service[s] for s in [*order, *by_service] if s in by_service}


# --- database schemas ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    """What a release says of one service's schema: the version its image needs, the image,
    and its down command (`{version}` unfilled), or None when it has none."""

    version: int
    image: str
    down: tuple[str, ...] | None


def whole_number(value: Any) -> int | None:
    """A count from JSON or YAML (where 2 may come back as 2.0), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def recorded_schemas(config: Mapping[str, Any]) -> dict[str, Schema]:
    """The schema of each service with a migrations block in a recorded config (data, which an
    old release may hold in a shape today's model no longer takes: what does not read as a
    version is left out)."""
    services = config.get(SERVICES_KEY)
    if not isinstance(services, Mapping):
        return {}
    found = {}
    for name, raw in services.items():
        block = raw.get("migrations") if isinstance(raw, Mapping) else None
        version = whole_number(block.get("schemaVersion")) if isinstance(block, Mapping) else None
        if not isinstance(block, Mapping) or version is None:
            continue
        down = block.get("down")
        valid = isinstance(down, list) and bool(down) and all(isinstance(p, str) for p in down)
        found[str(name)] = Schema(
            version=version,
            image=str(raw.get("image", "?")),
            down=tuple(str(p) for p in down) if isinstance(down, list) and valid else None,
        )
    return found


def output_schemas(outputs: Mapping[str, Any]) -> dict[str, int]:
    """`services.<name>.schemaVersion` of a stack's outputs: what its last update left."""
    services = outputs.get("services")
    if not isinstance(services, Mapping):
        return {}
    found = {}
    for name, values in services.items():
        version = whole_number(values.get("schemaVersion")) if isinstance(values, Mapping) else None
        if version is not None:
            found[str(name)] = version
    return found


_DOWN_MESSAGE = re.compile(r"^msops rollback: migrate down before release \d+: (?P<moves>.+)$")
_DOWN_MOVE = re.compile(r"(?P<service>[a-z0-9-]+) to (?P<version>\d+)")


def migrate_down_message(moves: Mapping[str, int], release: int) -> str:
    """The message of a rollback's down step; `migrated_down` reads it back, so that history
    knows where the step left each database although its config still needs the newer one."""
    pairs = ", ".join(f"{service} to {version}" for service, version in moves.items())
    return f"msops rollback: migrate down before release {release}: {pairs}"


def migrated_down(message: str) -> dict[str, int]:
    """{service: version} of a down step's message; {} for any other message."""
    match = _DOWN_MESSAGE.match(message)
    if match is None:
        return {}
    return {m["service"]: int(m["version"]) for m in _DOWN_MOVE.finditer(match["moves"])}


@dataclass(frozen=True)
class DatabaseMark:
    """The schema a service's database may be at, and the release that took it there."""

    version: int
    release: Release


def database_schemas(releases: Sequence[Release]) -> dict[str, DatabaseMark]:
    """The schema each service's database may be at, as far as history knows.

    What the newest successful update left it at, or higher where an update after it failed:
    a failed update may have run its migration before it failed (`up --atomic` restoring
    after a failed release is the common case).
    """
    updates = [r for r in releases if r.kind == "update"]
    newest = newest_deployed(updates)
    start = updates.index(newest) if newest is not None else 0
    marks: dict[str, DatabaseMark] = {}
    for rel in updates[start:]:
        for service, version in rel.schema_left().items():
            mark = marks.get(service)
            if rel is newest or mark is None or version > mark.version:
                marks[service] = DatabaseMark(version, rel)
    return marks


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
        release = release_numbered(releases, to, stack)
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


# --- what really ran: image digests ---------------------------------------------------------------

# `pulumi stack history --json` carries no outputs (pulumi/pulumi pkg/cmd/pulumi/stack/
# stack_history.go, updateInfoJSON), and the state keeps only the newest. So each update msops
# runs carries, on the last line of its message, the digests the stack outputs held when it
# started: what the release before it ran. History then knows every release's digests.
DIGEST_TRAILER = "msops-ran:"
_DIGEST = re.compile(rf"^{DIGEST}$")
_TRAILER_ITEM = re.compile(rf"(?P<service>[a-z0-9-]+)@(?P<digest>{DIGEST})")


def is_digest(value: Any) -> bool:
    return isinstance(value, str) and _DIGEST.match(value) is not None


def short_digest(digest: str) -> str:
    """The 12 hex digits a person reads, as `docker images` shows them."""
    return digest.removeprefix("sha256:")[:12]


def with_digests(message: str | None, digests: Mapping[str, str]) -> str | None:
    """An update's message with the digests of the release before it as its last line."""
    if not digests:
        return message
    line = " ".join([DIGEST_TRAILER, *(f"{s}@{d}" for s, d in sorted(digests.items()))])
    return f"{message}\n{line}" if message else line


def split_digests(message: str) -> tuple[str, dict[str, str]]:
    """A message without its digest line, and the digests that line records ({} without)."""
    head, _, last = message.rpartition("\n")
    if not last.startswith(DIGEST_TRAILER):
        return message, {}
    found = {m["service"]: m["digest"] for m in _TRAILER_ITEM.finditer(last)}
    return head, found


def output_digests(outputs: Mapping[str, Any]) -> dict[str, str]:
    """`services.<name>.digest` of a stack's outputs: what its last update ran."""
    services = outputs.get("services")
    if not isinstance(services, Mapping):
        return {}
    return {
        str(name): values["digest"]
        for name, values in services.items()
        if isinstance(values, Mapping) and is_digest(values.get("digest"))
    }


def release_digests(
    releases: Sequence[Release], outputs: Mapping[str, Any] | None = None
) -> dict[int, dict[str, str]]:
    """{release number: {service: digest}}: each digest line belongs to the newest successful
    update before it; the stack outputs (`services.<name>.digest`) to the newest one."""
    found: dict[int, dict[str, str]] = {}
    deployed: Release | None = None
    for rel in releases:
        if rel.ran_before and deployed is not None:
            recorded = found.setdefault(deployed.number, {})
            for service, digest in rel.ran_before.items():
                recorded.setdefault(service, digest)
        if rel.deployable:
            deployed = rel
    if deployed is not None:
        recorded = found.setdefault(deployed.number, {})
        for service, digest in output_digests(outputs or {}).items():
            recorded.setdefault(service, digest)
    return {number: digests for number, digests in found.items() if digests}


def pinned_image(image: str, digest: str) -> str:
    """`image` pinned to `digest`, its tag kept: `ghcr.io/msops/demo:1.2.0@sha256:...`."""
    ref = parse_image(image)
    return ref.repository + (f":{ref.tag}" if ref.tag else "") + f"@{digest}"


@dataclass(frozen=True)
class DigestPin:
    """What a rollback does with one service's image: pins `digest`, or says why it cannot."""

    service: str
    image: str
    digest: str | None
    # Why the image is not pinned to a digest (none recorded, a local build), or None.
    reason: str | None = None


def digest_pins(
    release: Release, services: Collection[str], digests: Mapping[str, str]
) -> list[DigestPin]:
    """How each of `services` of `release` is pinned when it is rolled back to.

    A locally built image (`build`) is built again from its context on every update, and
    Docker cannot build to a digest, so its recorded image ID is shown but not pinned.
    """
    pins = []
    for name in services:
        block = release.services.get(name, {})
        image, digest = str(block.get("image", "?")), digests.get(name)
        if digest is None:
            reason = f"release {release.number} recorded no digest for {name}"
            pins.append(DigestPin(name, image, None, f"{reason}; its tag is pinned as it was"))
        elif block.get("build"):
            reason = f"{name} is built locally ({block['build']}), and a build cannot be pinned"
            pins.append(DigestPin(name, image, digest, f"{reason}; its tag is pinned"))
        else:
            pins.append(DigestPin(name, pinned_image(image, digest), digest))
    return pins


def pin_config(config: Mapping[str, Any], pins: Sequence[DigestPin]) -> dict[str, Any]:
    """A copy of a release's config with the pinned images written into its service blocks."""
    out = dict(config)
    services = {n: dict(s) for n, s in (config.get(SERVICES_KEY) or {}).items()}
    for pin in pins:
        if pin.reason is None and pin.service in services:
            services[pin.service]["image"] = pin.image
    if SERVICES_KEY in config:
        out[SERVICES_KEY] = services
    return out


# --- release status, as Helm keeps it -------------------------------------------------------------

StatusName = Literal["deployed", "superseded", "failed", "restored-by"]
_RESTORE_MESSAGE = re.compile(
    r"^msops up --atomic: restore release (?P<to>\d+) after "
    r"(?:release (?P<undone>\d+) failed|a failed release)"
)
_ROLLBACK_MESSAGE = re.compile(r"^msops rollback(?!: migrate down)\b")


@dataclass(frozen=True)
class ReleaseStatus:
    """deployed (running now), superseded, failed, or restored-by `by` (the release that put
    an earlier one back over it: a rollback, or the restore of a failed `up --atomic`)."""

    name: StatusName
    by: int | None = None

    def __str__(self) -> str:
        return f"restored-by {self.by}" if self.by is not None else self.name


def restore_message(restored: int, failed: int | None) -> str:
    """The message of `up --atomic`'s restore; `release_statuses` reads the failed number back
    (None: the failed release is not in history, so the message cannot name it)."""
    if failed is None:
        return f"msops up --atomic: restore release {restored} after a failed release"
    return f"msops up --atomic: restore release {restored} after release {failed} failed"


def failed_release(releases: Sequence[Release], current: Mapping[str, Any]) -> int | None:
    """The release `up --atomic` just tried: the newest update, when it recorded the stack
    file's config (`current`, decoded) and did not become the deployed one."""
    updates = [r for r in releases if r.kind == "update"]
    if not updates or updates[-1].config != dict(current):
        return None
    return updates[-1].number


def _undoes(rel: Release, deployed: Release | None, previous: Release | None) -> int | None:
    """The number of the release `rel` (a successful restore or rollback) undid, or None."""
    restore = _RESTORE_MESSAGE.match(rel.update.message)
    if restore is not None:
        if restore["undone"]:
            return int(restore["undone"])
        return previous.number if previous is not None else None
    if _ROLLBACK_MESSAGE.match(rel.update.message) and deployed is not None:
        return deployed.number
    return None


def release_statuses(releases: Sequence[Release]) -> dict[int, ReleaseStatus]:
    """The status of every release (oldest first in, by number out)."""
    undone: dict[int, int] = {}
    deployed: Release | None = None
    previous: Release | None = None
    for rel in releases:
        if rel.kind == "destroy" and rel.succeeded:
            deployed = None
        if rel.kind != "update" or migrated_down(rel.update.message):
            continue  # a down step deploys nothing new: the rollback after it undoes
        if rel.deployable:
            victim = _undoes(rel, deployed, previous)
            if victim is not None and victim != rel.number:
                undone[victim] = rel.number
            deployed = rel
        previous = rel
    current = newest_deployed(releases)
    statuses = {}
    for rel in releases:
        if rel.number in undone:
            statuses[rel.number] = ReleaseStatus("restored-by", undone[rel.number])
        elif not rel.succeeded:
            statuses[rel.number] = ReleaseStatus("failed")
        elif rel is current and deployed is not None:
            statuses[rel.number] = ReleaseStatus("deployed")
        else:
            statuses[rel.number] = ReleaseStatus("superseded")
    return statuses


# --- one service across releases ------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One setting of a service block that differs: its dotted path, before and after."""

    path: str
    before: Any
    after: Any

    def text(self) -> str:
        if self.path.startswith(("env.", "secretEnv.")):
            return f"{self.path} changed"  # values can be credentials in all but name
        if self.before is None:
            return f"{self.path}: {_show(self.after)} (added)"
        if self.after is None:
            return f"{self.path}: {_show(self.before)} (removed)"
        return f"{self.path}: {_show(self.before)} -> {_show(self.after)}"


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and not value and not path:
        return {}  # no block at all: nothing to compare leaf by leaf
    if isinstance(value, Mapping) and value:
        found: dict[str, Any] = {}
        for key, item in value.items():
            found |= _leaves(item, f"{path}.{key}" if path else str(key))
        return found
    return {path: value}


def block_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[FieldChange]:
    """The settings that differ between two service blocks, leaf by leaf (lists whole)."""
    old, new = _leaves(before or {}), _leaves(after or {})
    return [
        FieldChange(path, old.get(path), new.get(path))
        for path in [*new, *(p for p in old if p not in new)]
        if old.get(path) != new.get(path)
    ]


@dataclass(frozen=True)
class ServiceRelease:
    """A release that changed one service: what it changed against the release before it."""

    release: Release
    changes: tuple[FieldChange, ...]


def service_history(
    releases: Sequence[Release], service: str, outputs: Mapping[str, Any] | None = None
) -> list[ServiceRelease]:
    """The updates that changed `service`'s block (against the newest successful update before
    each), oldest first; a changed digest under an unchanged image pin (a moved tag) counts
    too."""
    digests = release_digests(releases, outputs)
    found = []
    deployed: Release | None = None
    for rel in releases:
        if rel.kind != "update" or rel.canary_step:
            continue
        before = deployed.services.get(service) if deployed is not None else None
        changes = block_changes(before, rel.services.get(service))
        old = digests.get(deployed.number, {}).get(service) if deployed is not None else None
        new = digests.get(rel.number, {}).get(service)
        if old and new and old != new and not any(c.path == "image" for c in changes):
            changes.append(FieldChange("digest", short_digest(old), short_digest(new)))
        if changes:
            found.append(ServiceRelease(rel, tuple(changes)))
        if rel.deployable:
            deployed = rel
    return found


def _runs(releases: Sequence[Release], service: str) -> str:
    numbers = [str(r.number) for r in reversed(releases) if r.deployable and service in r.services]
    return ", ".join(numbers[:10]) or "none"


def service_target(
    releases: Sequence[Release],
    current: Mapping[str, Any],
    service: str,
    to: int | None,
    stack: str,
) -> Release:
    """The release one service is rolled back to: `to`, which must run it, or by default the
    newest successful update whose block of `service` differs from the stack file's."""
    if to is not None:
        release = rollback_target(releases, current, to, stack)
        if service not in release.services:
            known = ", ".join(release.services) or "none"
            raise BadInput(
                f"release {to} of stack {stack!r} has no service {service!r} (its services: "
                f"{known}); releases that ran {service}: {_runs(releases, service)}"
            )
        return release
    raw = current.get(SERVICES_KEY)
    now = raw.get(service) if isinstance(raw, Mapping) else None
    for release in reversed(releases):
        block = release.services.get(service)
        if release.deployable and block is not None and block != now:
            return release
    if now is None and _runs(releases, service) == "none":
        raise BadInput(f"service {service!r} is neither in stack {stack!r} nor in its history")
    raise BadInput(
        f"no successful release of {stack!r} has settings of service {service!r} different "
        "from the stack file's; there is nothing to roll back to"
    )


# --- promotion ------------------------------------------------------------------------------------


def promoted_image(source: str, destination: str, *, built: bool = False) -> str:
    """The image the destination pins after promoting `source` onto `destination`.

    The same repository in another registry (dev's locally built `msops/demo:1.2.0` onto
    staging's `ghcr.io/msops/demo:1.1.0`) keeps the destination's registry and takes the
    source's tag and digest: `ghcr.io/msops/demo:1.2.0`. A different repository is a
    deliberate change of image, so the full source reference is copied.

    `built`: the source stack builds this image itself (`build:`). A digest pinned there is
    the local image's ID, which names nothing in any registry, so only the tag moves.
    """
    src, dst = parse_image(source), parse_image(destination)
    if built and src.digest and src.tag:
        source = f"{src.repository}:{src.tag}"
        src = parse_image(source)
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
    built: Collection[str] = (),
) -> list[PinChange]:
    """The image pins a promotion moves (images by service), for services in both stacks.

    With no `chosen` services, every service in both stacks; otherwise exactly those, each
    of which must exist in both. Pins that already match are left out. `built`: the services
    the source stack builds itself (see `promoted_image`).
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
        after = promoted_image(source_images[name], before, built=name in built)
        if after != before:
            changes.append(PinChange(service=name, before=before, after=after))
    return changes


# --- a rollback and the database schema -----------------------------------------------------------


@dataclass(frozen=True)
class SchemaStep:
    """A service whose database is at a newer schema than the release rolled back to needs."""

    service: str
    # Where its database may be, the release that took it there, and what the target needs.
    current: int
    source: Release
    target: int
    # The source release's down command, with `target` filled in; None when it has none.
    down: tuple[str, ...] | None
    # Why the stack file cannot run that down (it must pin the source's image), or None.
    mismatch: str | None = None

    @property
    def image(self) -> str:
        """The image that migrated the database up: the one that knows the way down."""
        schema = self.source.schemas().get(self.service)
        return schema.image if schema else "?"

    @property
    def command(self) -> str:
        return shlex.join(self.down) if self.down else ""


@dataclass(frozen=True)
class SchemaPlan:
    """What a rollback (or a restore) to `target` does about each service's database."""

    target: Release
    # Services whose database is newer than `target` needs, in history's order.
    older: tuple[SchemaStep, ...]
    # Services `target` runs with no migrations block although their database has a schema.
    undeclared: tuple[str, ...]
    migrate_down: bool = False
    ignore_schema: bool = False

    @property
    def downs(self) -> tuple[SchemaStep, ...]:
        """The down steps to run before the rollback (`--migrate-down`)."""
        if not self.migrate_down:
            return ()
        return tuple(s for s in self.older if s.down is not None and s.mismatch is None)

    @property
    def accepted(self) -> tuple[SchemaStep, ...]:
        """Older schemas `--ignore-schema` accepts: the target's image runs on the newer one."""
        if not self.ignore_schema:
            return ()
        return tuple(s for s in self.older if s not in self.downs)

    @property
    def blocked(self) -> tuple[SchemaStep, ...]:
        """What stops the rollback before anything is written."""
        return tuple(s for s in self.older if s not in self.downs and s not in self.accepted)

    def down_versions(self) -> dict[str, int]:
        return {s.service: s.target for s in self.downs}


def plan_schema(
    releases: Sequence[Release],
    target: Release,
    current: Mapping[str, Any],
    *,
    services: Collection[str] | None = None,
    migrate_down: bool = False,
    ignore_schema: bool = False,
) -> SchemaPlan:
    """The schema rules of a rollback to `target` (pure: nothing is run or written).

    For each service (of `services`, default all) whose database history knows a schema of:
    the target needs the same or a newer one (its own migration runs up): as today; an older
    one: a down step first, where the release that migrated it has a `down` and
    `migrate_down` says so, accepted with `ignore_schema`, else blocked. A down step runs as
    an update of the stack file (`current`, the decoded config), so that file must pin what
    migrated the database up.
    """
    wanted, present = target.schemas(), recorded_schemas(current)
    updates = [r for r in releases if r.kind == "update"]
    last = updates[-1] if updates else None
    pending = last is not None and last.config != dict(current)
    older: list[SchemaStep] = []
    undeclared: list[str] = []
    for service, mark in database_schemas(releases).items():
        if services is not None and service not in services:
            continue
        need = wanted.get(service)
        if need is None:
            undeclared.append(service)
            continue
        if need.version >= mark.version:
            continue
        made = mark.release.schemas()[service]
        older.append(
            SchemaStep(
                service=service,
                current=mark.version,
                source=mark.release,
                target=need.version,
                down=down_command(made.down, need.version) if made.down else None,
                mismatch=_mismatch(service, made, present.get(service), mark)
                or (_pending(last) if pending and last is not None else None),
            )
        )
    return SchemaPlan(target, tuple(older), tuple(undeclared), migrate_down, ignore_schema)


def _mismatch(service: str, made: Schema, file: Schema | None, mark: DatabaseMark) -> str | None:
    """Why the stack file cannot run the down step of `service`, or None."""
    if file is not None and (file.image, file.down) == (made.image, made.down):
        return None
    pinned = f"pins {file.image}" if file is not None else "has no migrations for it"
    return (
        f"the down migration runs with the stack file's image, which must be the one that "
        f"migrated the database to {mark.version} (release {mark.release.number}, {made.image}), "
        f"but the stack file {pinned}; put release {mark.release.number}'s config back first "
        f"(`msops rollback <stack> --to {mark.release.number}`), or pass --ignore-schema"
    )


def _pending(last: Release) -> str:
    return (
        f"the stack file holds changes that release {last.number} did not deploy, and the down "
        "migration is an update of the stack file, which would deploy them too; deploy or "
        "revert them first"
    )


def _step_problem(step: SchemaStep, stack: str, target: Release) -> str:
    head = (
        f"services.{step.service}: release {target.number} needs schema {step.target}, but its "
        f"database is at {step.current} (release {step.source.number}, {step.image})"
    )
    if step.mismatch is not None:
        return f"{head}; {step.mismatch}"
    if step.down is not None:
        return (
            f"{head}. Release {step.source.number} has a down migration: `msops rollback "
            f"{stack} --to {target.number} --migrate-down` first runs `{step.command}` with "
            f"{step.image}, then rolls back"
        )
    image = target.images().get(step.service, "?")
    return (
        f"{head}, and release {step.source.number} has no down migration. Roll forward instead "
        f"(fix the release and `msops up {stack}`), add a `migrations.down` to "
        f"services.{step.service} and deploy it, or pass --ignore-schema to roll back anyway "
        f"and run {image} on schema {step.current}"
    )


def schema_refusal(plan: SchemaPlan, stack: str) -> str | None:
    """Why a rollback must stop before it writes anything, or None: it may go ahead."""
    if not plan.blocked:
        return None
    lines = "\n".join(f"  - {_step_problem(s, stack, plan.target)}" for s in plan.blocked)
    return f"not rolled back to release {plan.target.number}; nothing was written:\n{lines}"


def restore_refusal(plan: SchemaPlan, stack: str) -> str | None:
    """Why `up --atomic` must not restore `plan.target` after a release that migrated, or
    None: restoring its images could not make the stack healthy again on the newer schema."""
    if not plan.blocked:
        return None
    lines = []
    for step in plan.blocked:
        how = (
            f"`msops up {stack} --atomic --migrate-down` would have run `{step.command}` first"
            if step.down is not None and step.mismatch is None
            else "it has no down migration"
        )
        lines.append(
            f"  - services.{step.service}: this release may have migrated its database to "
            f"schema {step.current}, and release {plan.target.number} needs {step.target}; {how}"
        )
    return (
        f"release {plan.target.number} was not restored: its images could not become healthy "
        "again on the newer schema, so this release was left as it is, serving or failed:\n"
        + "\n".join(lines)
        + f"\nfix it forward and `msops up {stack}` again, or roll back deliberately with "
        f"`msops rollback {stack} --to {plan.target.number}` (--migrate-down, or "
        "--ignore-schema to accept the risk)"
    )


# --- looking a release up -------------------------------------------------------------------------


def release_numbered(releases: Sequence[Release], number: int, stack: str) -> Release:
    """Release `number` of a history (oldest = 1); an unknown one is bad input naming the range."""
    if not releases:
        raise BadInput(
            f"release {number} does not exist: stack {stack!r} has no releases yet; deploy it "
            f"first with `msops up {stack}`"
        )
    if not 1 <= number <= len(releases):
        raise BadInput(
            f"release {number} does not exist; stack {stack!r} has releases 1-{len(releases)} "
            f"(see `msops history {stack}`)"
        )
    return releases[number - 1]
