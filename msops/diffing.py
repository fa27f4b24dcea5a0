"""Two stack configs compared per service and stack-wide, as effective values, secrets masked.

Pure: a config is data (a release's recorded config, or the stack file's), no engine is asked.
Each side is first normalized through today's model, entry by entry (one service, one
database, monitoring...), so an omitted key and its explicit default compare equal. An entry
that no longer validates is compared without the keys today's model does not know (a key
renamed since the release), those put back as recorded; one with a bad value, as recorded.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from components.vocabulary import SECRET_MASK

SERVICES_KEY = "msops:services"
NAMESPACE = "msops"
Path = tuple[str | int, ...]
Kind = Literal["added", "removed", "changed"]
Status = Literal["added", "removed", "changed", "unchanged"]
# Secret values this long or longer are taken out of validation messages; shorter ones would
# take ordinary words with them.
MIN_SCRUBBED = 3


class _Missing:
    """A key one side does not have (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Secret:
    """A secret value: compared by its value, only ever shown as the mask.

    `value` is SECRET_MASK itself when the side never had the plaintext (a history read
    without its secrets), and then it cannot be compared: see `same`.
    """

    value: Any = field(repr=False)

    def __repr__(self) -> str:
        return f"Secret({SECRET_MASK!r})"

    def __str__(self) -> str:
        return SECRET_MASK

    @property
    def known(self) -> bool:
        return self.value != SECRET_MASK


@dataclass(frozen=True)
class Normalized:
    """One side: each service's settings and each stack-wide key (`msops:backend`,
    `msops:databases`, other namespaces), secrets wrapped in Secret; and, when the whole
    config does not validate against today's model, its problems."""

    services: dict[str, Any]
    settings: dict[str, Any]
    problems: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


# --- normalizing ----------------------------------------------------------------------------------


def normalize(
    values: Mapping[str, Any], secret_keys: Collection[str] = (), stack: str = "stack"
) -> Normalized:
    """A decoded config (`releases.decode_config`) as effective, masked trees.

    `secret_keys` are the top-level keys Pulumi flags secret: inside one, free-form strings
    (env values, unknown keys) count as secrets too, as a rollback treats them.
    """
    from components import spec

    raw = spec.raw_config(values)
    trees: dict[str, Any] = {}
    for name, info in spec.StackConfig.model_fields.items():
        alias = info.alias or name
        given = raw.get(alias, MISSING)
        if given is MISSING:
            default = info.get_default(call_default_factory=True)
            given = {} if name == "services" else default
        trees[f"{NAMESPACE}:{alias}"] = _effective(info.annotation, given)
    for key, value in values.items():
        # Keys today's model does not know, and other namespaces (`docker:host`), as recorded.
        trees.setdefault(key, _plain(value))
    masked = {key: _mask(key, (), tree, key in secret_keys) for key, tree in trees.items()}
    known = sorted(set(_secret_texts(masked)), key=len, reverse=True)
    services = masked.pop(SERVICES_KEY)
    if not isinstance(services, Mapping):
        # Not a mapping of services at all: compared as one stack-wide value, as recorded.
        masked[SERVICES_KEY], services = services, {}
    return Normalized(
        services=dict(services),
        settings=masked,
        problems=tuple(_scrubbed(p, known) for p in _problems(raw, stack)),
    )


def _secret_texts(node: Any) -> Iterator[str]:
    if isinstance(node, Secret):
        if node.known and isinstance(node.value, str) and len(node.value) >= MIN_SCRUBBED:
            yield node.value
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _secret_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _secret_texts(value)


def _scrubbed(problem: str, secrets: list[str]) -> str:
    # A validation message quotes the bad value, which may be a secret (an env value of the
    # wrong type under a key Pulumi flags secret).
    for text in secrets:
        problem = problem.replace(text, SECRET_MASK)
    return problem


def _problems(raw: Mapping[str, Any], stack: str) -> list[str]:
    """What keeps the whole config from validating; nothing about a key recorded only as the
    mask (history without its secrets), whose value no one can check."""
    from components import spec

    hidden = [f"{NAMESPACE}:{k}" for k, v in raw.items() if v == SECRET_MASK]
    try:
        spec.load({k: v for k, v in raw.items() if v != SECRET_MASK}, stack)
    except spec.ConfigError as exc:
        return [p for p in exc.problems if not any(key in p for key in hidden)]
    return []


def _effective(annotation: Any, value: Any) -> Any:
    """A section's value through the model: per entry for named entries (services,
    databases), so that one entry that fails leaves the others effective."""
    from components import spec

    entry = spec.model_of(annotation)
    named = entry is not None and getattr(annotation, "__origin__", None) is dict
    if named and isinstance(value, Mapping):
        return {str(name): _validated(entry, item) for name, item in value.items()}
    return _validated(annotation, value)


@functools.cache
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation)


def _validated(annotation: Any, value: Any) -> Any:
    from pydantic import ValidationError

    adapter = _adapter(annotation)
    try:
        model = adapter.validate_python(value)
    except ValidationError as exc:
        return _lenient(adapter, value, exc)
    return _dumped(adapter, model)


def _dumped(adapter: Any, model: Any) -> Any:
    from components.spec import Database, Service

    data = adapter.dump_python(model, by_alias=True)
    # Defaults the model derives rather than states: unset replicas run 1 (when nothing
    # autoscales), an unset database image is postgres:<version>-alpine.
    if isinstance(model, Service) and model.autoscaling is None:
        data["replicas"] = model.desired_replicas
    if isinstance(model, Database):
        data["image"] = model.resolved_image
    return data


def _lenient(adapter: Any, value: Any, exc: Any) -> Any:
    """An entry that fails only on keys today's model does not know (dropped or renamed since
    the release): effective without them, those keys put back as recorded. Anything else
    wrong: the entry as recorded."""
    from pydantic import ValidationError

    errors = exc.errors()
    if not isinstance(value, Mapping) or any(e["type"] != "extra_forbidden" for e in errors):
        return _plain(value)
    stripped = copy.deepcopy(_plain(value))
    unknown = []
    try:
        for error in errors:
            *parents, last = error["loc"]
            node = functools.reduce(lambda n, part: n[part], parents, stripped)
            unknown.append((parents, last, node.pop(last)))
        data = _dumped(adapter, adapter.validate_python(stripped))
        for parents, last, item in unknown:
            functools.reduce(lambda n, part: n[part], parents, data)[last] = item
    except (ValidationError, KeyError, TypeError, IndexError):
        return _plain(value)
    return data


def _plain(value: Any) -> Any:
    """Recorded data as plain values; JSON numbers that are whole count as integers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _mask(key: str, path: Path, node: Any, flagged: bool) -> Any:
    """Wrap every secret leaf in Secret: typed secrets, `secure:` values, the mask itself,
    and free-form strings under a key Pulumi flags secret (the rule of a rollback)."""
    from pydantic import SecretStr

    from msops.stackfiles import is_secure, secret_leaf

    if isinstance(node, SecretStr):
        return Secret(node.get_secret_value())
    if is_secure(node):
        return Secret(str(node["secure"]))
    if isinstance(node, Mapping):
        return {str(k): _mask(key, (*path, str(k)), v, flagged) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_mask(key, (*path, i), v, flagged) for i, v in enumerate(node)]
    if node == SECRET_MASK or (node is not None and secret_leaf(key, path, node, flagged)):
        return Secret(node)
    return _plain(node)


# --- comparing ------------------------------------------------------------------------------------


def leaves(tree: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every setting of a tree: mappings are walked (an empty one holds nothing), a list is
    one value."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, tree


def same(before: Any, after: Any) -> bool:
    """Whether two leaves are the same setting: an omitted key equals an explicit null, and a
    secret that one side only knows as the mask cannot differ, as far as anyone can tell."""
    if (before is MISSING or after is MISSING) and (before is None or after is None):
        return True
    if isinstance(before, Secret) and isinstance(after, Secret):
        return before == after or not (before.known and after.known)
    if type(before) is not type(after) and not _numbers(before, after):
        return False
    return bool(before == after)


def _numbers(a: Any, b: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))


def shown(value: Any) -> Any:
    """A value safe to print: secrets as the mask, everywhere inside it."""
    if isinstance(value, Secret):
        return SECRET_MASK
    if isinstance(value, Mapping):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return None if value is MISSING else value


def has_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, Mapping):
        return any(has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(has_secret(v) for v in value)
    return False


@dataclass(frozen=True)
class Change:
    """One setting that differs: its config key (`msops:services.web.image`), its path inside
    its section, and the raw values (Secret-wrapped; print them through `shown`)."""

    key: str
    path: Path
    kind: Kind
    before: Any
    after: Any

    @property
    def secret(self) -> bool:
        return has_secret(self.before) or has_secret(self.after)


@dataclass(frozen=True)
class Section:
    """One service, or the stack-wide settings: both sides' trees and what differs."""

    name: str
    before: Any
    after: Any
    changes: tuple[Change, ...]

    @property
    def status(self) -> Status:
        if self.before is MISSING:
            return "added"
        if self.after is MISSING:
            return "removed"
        return "changed" if self.changes else "unchanged"


@dataclass(frozen=True)
class ConfigDiff:
    services: tuple[Section, ...]
    settings: Section

    @property
    def different(self) -> bool:
        return bool(self.settings.changes) or any(s.status != "unchanged" for s in self.services)


def compare_trees(before: Any, after: Any, key_of: Any) -> tuple[Change, ...]:
    """The leaves that differ between two trees; `key_of(path)` names a leaf's config key."""
    old = dict(leaves(before)) if before is not MISSING else {}
    new = dict(leaves(after)) if after is not MISSING else {}
    # A secret a side only has as the mask hides everything under it (history without its
    # secrets records a whole secret key, `msops:secrets`, as "[secret]").
    unknown = [p for p, v in (*old.items(), *new.items()) if isinstance(v, Secret) and not v.known]
    changes = []
    for path in [*new, *(p for p in old if p not in new)]:
        a, b = old.get(path, MISSING), new.get(path, MISSING)
        if same(a, b) or any(path[: len(u)] == u for u in unknown):
            continue
        kind: Kind = "added" if a is MISSING else "removed" if b is MISSING else "changed"
        changes.append(Change(key_of(path), path, kind, a, b))
    return tuple(changes)


def compare(before: Normalized, after: Normalized) -> ConfigDiff:
    """Per service (in `after`'s order, then the removed ones) and stack-wide."""
    from msops.stackfiles import config_path

    sections = []
    for name in [*after.services, *(n for n in before.services if n not in after.services)]:
        old = before.services.get(name, MISSING)
        new = after.services.get(name, MISSING)
        changes = compare_trees(old, new, lambda p, n=name: config_path(SERVICES_KEY, (n, *p)))
        sections.append(Section(name, old, new, changes))
    settings = compare_trees(
        before.settings, after.settings, lambda p: config_path(str(p[0]), p[1:])
    )
    return ConfigDiff(tuple(sections), Section("", before.settings, after.settings, settings))
