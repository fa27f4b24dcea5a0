"""Reads and edits stacks/Pulumi.<stack>.yaml, keeping comments and key order (ruamel.yaml)."""

from __future__ import annotations

import difflib
import io
import os
import re
import tempfile
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from components.vocabulary import SECRET_MASK
from msops.errors import BadInput, ConfigInvalid, OperationFailed

if TYPE_CHECKING:
    from components.spec import StackConfig

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"
NAMESPACE = "msops"
SERVICES_KEY = f"{NAMESPACE}:services"
SECRETS_KEY = f"{NAMESPACE}:secrets"
# Top-level keys the Pulumi CLI keeps next to `config:` to find the stack's secrets provider.
_PROVIDER_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt")
_MISSING: Any = object()
_PLAIN_SEGMENT = re.compile(r"^[^.\[\]\"]+$")
# Where a leaf sits inside a top-level key: mapping keys and list indexes.
LeafPath = tuple[str | int, ...]


class StackFileError(BadInput):
    """A stack file that is missing or cannot be parsed."""


def stack_path(stack: str, stacks_dir: Path | None = None) -> Path:
    return (stacks_dir or STACKS_DIR) / f"Pulumi.{stack}.yaml"


def list_stacks(stacks_dir: Path | None = None) -> list[str]:
    root = stacks_dir or STACKS_DIR
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _missing_stack(stack: str, stacks_dir: Path | None) -> StackFileError:
    path = stack_path(stack, stacks_dir)
    known = ", ".join(list_stacks(stacks_dir)) or "none"
    return StackFileError(f"no stack file {path.name} for stack {stack!r} (stacks: {known})")


def read_config(stack: str, stacks_dir: Path | None = None) -> dict[str, Any]:
    """The `config:` map of a stack file as plain data (secure values stay `{secure: ...}`)."""
    path, text = read_stack_text(stack, stacks_dir)
    doc = parse_yaml(path, text, lambda: YAML(typ="safe").load(text))
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise StackFileError(_not_a_mapping(path))
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path.name}: 'config' must be a mapping")
    return config


# --- reading: every way a stack file can be unreadable, as one line with the fix -----------------


def read_stack_text(stack: str, stacks_dir: Path | None = None) -> tuple[Path, str]:
    """The path and text of a stack file; missing, a directory, unreadable or not UTF-8 is
    bad input naming the file and what to do."""
    path = stack_path(stack, stacks_dir)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise _missing_stack(stack, stacks_dir) from None
    except IsADirectoryError:
        raise StackFileError(
            f"{path.name} is a directory, not a stack file; remove it, or put the stack's "
            f"config in a file of that name (stack {stack!r})"
        ) from None
    except OSError as exc:
        raise StackFileError(
            f"{path.name} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    return path, decode_utf8(path, data)


def decode_utf8(path: Path, data: bytes) -> str:
    """The text of a stack file, which Pulumi reads as UTF-8; anything else names the byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise StackFileError(
            f"{path.name} is not UTF-8: byte {exc.start} (line {line}, column {column}) is "
            f"0x{data[exc.start]:02x}; save the file as UTF-8 (for a Latin-1 file: "
            f"iconv -f latin1 -t utf-8 {path.name} -o {path.name}.utf8, then move it back)"
        ) from None


def parse_yaml(path: Path, text: str, load: Callable[[], Any]) -> Any:
    """What `load` makes of a stack file's text; a syntax error names the file, the line and
    the column."""
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError

    try:
        return _bounded(path, load())
    except StackFileError:
        raise
    except MarkedYAMLError as exc:
        raise StackFileError(yaml_error_line(path, exc)) from None
    except ReaderError as exc:
        # A control character YAML does not allow (a NUL, an escape): where it is, by line.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise StackFileError(
            f"{path.name} is not valid YAML: line {line}, column {column}: the character "
            f"U+{exc.character:04X} is not allowed in YAML ({exc.reason}); remove it"
        ) from None
    except (ValueError, RecursionError) as exc:
        # Not syntax but limits: an integer of more than 4300 digits, nesting too deep.
        raise StackFileError(f"{path.name} cannot be read as YAML: {exc}; fix the value") from None
    except Exception as exc:  # ruamel raises a few errors outside its YAMLError family
        raise StackFileError(f"{path.name} is not valid YAML: {exc}") from None


# Far above any real stack file (the prod stack has about 60 values), far below what hangs.
MAX_VALUES = 100_000


def _bounded(path: Path, doc: Any) -> Any:
    """`doc`, unless it holds more than MAX_VALUES values: YAML aliases can make a few lines
    stand for billions of them ("billion laughs"), and every walk over the config would hang."""
    seen, todo = 0, [doc]
    while todo:
        node = todo.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise StackFileError(
                f"{path.name} holds more than {MAX_VALUES:,} values once its YAML aliases (*name) "
                "are expanded; write the values out instead of nesting aliases"
            )
        if isinstance(node, Mapping):
            todo.extend(node.values())
        elif isinstance(node, (list, tuple)):
            todo.extend(node)
    return doc


def yaml_error_line(path: Path, exc: Any) -> str:
    """`Pulumi.dev.yaml: line 3, column 7: <problem> (<context> at line 2, column 19)`.

    Without ruamel's `in "<unicode string>"` excerpts and its "To suppress this check" note:
    the line and the column are what a person looks up.
    """
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = exc.problem or exc.context or "not valid YAML"
    text = f"{path.name} is not valid YAML: {where}{problem}"
    if exc.context and exc.problem:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        text += f" ({context})"
    if "duplicate key" in problem:
        text += "; keep one of the two keys"
    return text


def validated(values: Mapping[str, Any], stack: str) -> StackConfig:
    """`validate`, and keys outside `msops:` that look meant for it (`msop:services`): the
    model never reads them, so they are named here, together with whatever else is wrong."""
    from components import spec

    misplaced = spec.namespace_problems(values)
    try:
        config = validate(values, stack)
    except ConfigInvalid as exc:
        # `msop:services` explains a missing `msops:services`: say it once.
        meant = spec.meant_keys(values)
        rest = [
            p
            for p in exc.problems
            if not (spec.problem_key(p) in meant and "required key is missing" in p)
        ]
        raise ConfigInvalid(stack, misplaced + rest) from None
    if misplaced:
        raise ConfigInvalid(stack, misplaced)
    return config


def _not_a_mapping(path: Path) -> str:
    return (
        f"{path.name}: the file must be a mapping with a 'config' key (config:, then "
        "indented msops: keys); see docs/config.md"
    )


def is_secure(node: Any) -> bool:
    """A `{secure: <ciphertext>}` value, as Pulumi writes secrets into a stack file."""
    return isinstance(node, Mapping) and set(node.keys()) == {"secure"}


def masked(value: Any) -> Any:
    """Plain builtin data with every secure value replaced by "[secret]"; nothing decrypts."""
    if is_secure(value):
        return SECRET_MASK
    if isinstance(value, Mapping):
        return {str(k): masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    # ruamel's round-trip scalars subclass the builtins; strict validation wants the builtins.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def config_values(stack: str, stacks_dir: Path | None = None) -> dict[str, Any]:
    """A stack file's config values with secrets masked, as the offline synth sees them."""
    return {k: masked(v) for k, v in read_config(stack, stacks_dir).items()}


def validate(values: Mapping[str, Any], stack: str) -> StackConfig:
    """The validated `StackConfig` of masked config values; ConfigInvalid lists every problem.

    The one place the CLI validates a config: once per stack file read (or edit), after which
    the typed model travels on. Masking marks exactly the values that were `{secure: ...}`, so a
    secret written in plain text is told apart here, leaf by leaf.
    """
    from components import spec

    try:
        return spec.load_secured(spec.raw_config(values), stack, spec.masked_secure)
    except spec.ConfigError as exc:
        raise ConfigInvalid(stack, exc.problems) from None


def config_path(key: str, path: Sequence[str | int]) -> str:
    """A `pulumi config set --path` key: `msops:databases.main.password`, quoting odd names."""
    text = key
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_SEGMENT.match(part):
            text += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            text += f'["{escaped}"]'
    return text


@dataclass(frozen=True)
class SecretWrite:
    """A secret value to set again through Pulumi, which encrypts it into the stack file."""

    key: str
    path: tuple[str | int, ...]
    value: str

    @property
    def pulumi_key(self) -> str:
        return config_path(self.key, self.path)

    @property
    def uses_path(self) -> bool:
        return bool(self.path)

    def __repr__(self) -> str:
        # The value is a plaintext secret: keep it out of logs, tracebacks and test output.
        return f"SecretWrite(key={self.pulumi_key!r}, value='[secret]')"


def _insert_after(node: CommentedMap, anchor: str | None, key: str, value: Any) -> None:
    """Insert `key` right after `anchor` (None: last), keeping each comment above its key.

    ruamel keeps the comment lines above a key as the trailing comment of the key before it,
    so a plain insert would slide them up: `anchor`'s own end-of-line comment stays, the lines
    below it move to the new key, which now stands above the key they describe.
    """
    keys = list(node)
    if anchor is None:
        anchor = keys[-1] if keys else None
    if anchor is None:
        node[key] = value
        return
    node.insert(keys.index(anchor) + 1, key, value)
    entry = node.ca.items.get(anchor)
    token = entry[2] if entry and len(entry) > 2 else None
    if token is None:
        return
    text = token.value
    head, newline, below = text.partition("\n")
    if not below:
        return
    token.value = head + newline
    if not head.strip():
        entry[2] = None
    node.ca.items[key] = [
        None,
        None,
        CommentToken("\n" + below, token.start_mark, token.end_mark),
        None,
    ]


class StackDocument:
    """A stack file loaded for round-trip editing; saving an unchanged one keeps every byte."""

    def __init__(self, stack: str, path: Path, text: str) -> None:
        self.stack = stack
        self.path = path
        self.original = text
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        # Never re-wrap a long value (an image digest, a ciphertext) onto two lines.
        self._yaml.width = 4096
        indent, offset = 2, 0
        self.doc = CommentedMap()
        if text.strip():
            # One parse that also guesses the file's own indentation, which the dump keeps so
            # that untouched lines stay as they are.
            self.doc, guessed, block_seq_indent = parse_yaml(
                path, text, lambda: load_yaml_guess_indent(text, yaml=self._yaml)
            )
            indent, offset = guessed or 2, block_seq_indent or 0
        if self.doc is None:
            self.doc = CommentedMap()
        if not isinstance(self.doc, CommentedMap):
            raise StackFileError(_not_a_mapping(path))
        self._yaml.indent(mapping=indent, sequence=indent + offset, offset=offset)
        self._yaml.explicit_start = text.lstrip().startswith("---")
        if not isinstance(self.doc.get("config", CommentedMap()), CommentedMap):
            raise StackFileError(f"{path.name}: 'config' must be a mapping")

    @classmethod
    def load(cls, stack: str, stacks_dir: Path | None = None) -> StackDocument:
        path, text = read_stack_text(stack, stacks_dir)
        return cls(stack, path, text)

    @property
    def config(self) -> CommentedMap:
        """The `config:` mapping, added on first use so that reading never changes the file."""
        if self.doc.get("config") is None:
            self.doc["config"] = CommentedMap()
        config: CommentedMap = self.doc["config"]
        return config

    def text(self) -> str:
        buffer = io.StringIO()
        self._yaml.dump(self.doc, buffer)
        return buffer.getvalue()

    @property
    def changed(self) -> bool:
        return self.text() != self.original

    def values(self, pending: Sequence[SecretWrite] = ()) -> dict[str, Any]:
        """The config with secrets masked, secrets about to be set included as "[secret]"."""
        try:
            values = {str(k): masked(v) for k, v in (self.doc.get("config") or {}).items()}
        except RecursionError:
            raise StackFileError(
                f"{self.path.name}: an alias refers to itself, or the values nest too deeply; "
                "write the values out in full"
            ) from None
        for write in pending:
            if not write.path:
                values[write.key] = SECRET_MASK
                continue
            node = values.setdefault(write.key, {})
            for part in write.path[:-1]:
                if not isinstance(node, dict):
                    break
                node = node.setdefault(part, {})
            if isinstance(node, dict):
                node[write.path[-1]] = SECRET_MASK
        return values

    def validate(self, pending: Sequence[SecretWrite] = ()) -> StackConfig:
        """The validated config of the document as it stands (see `values` for `pending`)."""
        if not self.doc and not pending:
            raise ConfigInvalid(
                self.stack,
                [
                    f"{self.path.name} is empty; give it a config: mapping with at least "
                    "msops:services (see docs/config.md), or delete the file"
                ],
            )
        return validated(self.values(pending), self.stack)

    def images(self) -> dict[str, str]:
        """The image each service pins, as written (plain data: nothing is validated)."""
        services_node = self.config.get(SERVICES_KEY)
        if not isinstance(services_node, Mapping):
            return {}
        return {
            str(name): str(node.get("image"))
            for name, node in services_node.items()
            if isinstance(node, Mapping)
        }

    def diff(self) -> str:
        """A unified diff from the file as loaded to the file as it would be saved."""
        name = f"stacks/{self.path.name}"
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.text().splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )

    def save(self, *, force: bool = False) -> bool:
        """Write the file if anything changed; an unchanged document is never rewritten.

        `force` writes even so: after the Pulumi CLI has rewritten the file behind our back.
        """
        text = self.text()
        if text == self.original and self.path.exists() and not force:
            return False
        write_text(self.path, text)
        self.original = text
        return True

    # --- edits ------------------------------------------------------------------------------------

    def service(self, name: str) -> CommentedMap:
        services_node = self.config.get(SERVICES_KEY)
        if not isinstance(services_node, CommentedMap) or name not in services_node:
            known = ", ".join(services_node or {}) if isinstance(services_node, Mapping) else ""
            raise BadInput(
                f"service {name!r} is not in stack {self.stack!r} (its services: {known or 'none'})"
            )
        node = services_node[name]
        if not isinstance(node, CommentedMap):
            raise StackFileError(f"{self.path.name}: {SERVICES_KEY}.{name} must be a mapping")
        return node

    def set_image(self, name: str, image: str) -> None:
        node = self.service(name)
        if node.get("image") != image:
            node["image"] = image

    def set_replicas(self, name: str, replicas: int, spec: StackConfig) -> StackConfig:
        """Set a fixed replica count; `spec` is this document's validated config.

        Returns the config of the edited document. It is `spec` with one count changed, which
        is valid by construction (a count of 0 or more on a service that does not autoscale),
        so the edit needs no second validation.
        """
        if replicas < 0:
            raise BadInput(f"replicas must be 0 or more, got {replicas}")
        _within_limit(self.stack, name, replicas, spec.backend)
        node = self.service(name)
        service = spec.services[name]
        autoscaling = service.autoscaling
        if autoscaling is not None:
            raise BadInput(
                f"service {name!r} in stack {self.stack!r} autoscales (min {autoscaling.min}, "
                f"max {autoscaling.max}), so its replica count is not fixed; edit "
                f"{SERVICES_KEY}.{name}.autoscaling.min/max in stacks/{self.path.name} instead"
            )
        if "replicas" not in node:
            # Right after the image, where a reader looks for it.
            _insert_after(node, "image" if "image" in node else None, "replicas", replicas)
        elif node["replicas"] != replicas or isinstance(node["replicas"], bool):
            node["replicas"] = replicas
        scaled = service.model_copy(update={"replicas": replicas})
        return spec.model_copy(update={"services": {**spec.services, name: scaled}})

    def apply_config(
        self,
        target: Mapping[str, Any],
        secret_keys: Collection[str],
        current: Mapping[str, Any],
    ) -> list[SecretWrite]:
        """Make the file's config equal `target` (a release's decoded config).

        `current` is the file's config decoded with secrets decrypted, so unchanged secrets
        keep their ciphertext. Secret values that change are not written here: they come back
        as SecretWrites to set again as secrets, and the file never holds them in plain text.
        """
        writes: list[SecretWrite] = []
        config = self.config
        for key in [k for k in config if k not in target]:
            del config[key]
        for index, (key, value) in enumerate(target.items()):
            merging = _Merging(key=key, flagged=key in secret_keys, writes=writes)
            merging.merge(config, key, index, value, current.get(key, _MISSING), ())
        return writes

    def apply_services(
        self,
        blocks: Mapping[str, Mapping[str, Any]],
        secret_keys: Collection[str],
        current: Mapping[str, Any],
        secrets: Mapping[str, Any] | None = None,
    ) -> list[SecretWrite]:
        """Make each service block in `blocks` (a release's, by name) equal the file's, and the
        named `secrets` (msops:secrets entries) equal theirs; nothing else in the file changes.

        As `apply_config`: `current` is the file's decoded config with secrets decrypted, and
        secret values that change come back as SecretWrites.
        """
        writes: list[SecretWrite] = []
        config = self.config
        services = config.get(SERVICES_KEY)
        if not isinstance(services, CommentedMap):
            raise StackFileError(f"{self.path.name}: {SERVICES_KEY} must be a mapping")
        now = current.get(SERVICES_KEY)
        merging = _Merging(key=SERVICES_KEY, flagged=SERVICES_KEY in secret_keys, writes=writes)
        for name, block in blocks.items():
            index = list(services).index(name) if name in services else len(services)
            before = now.get(name, _MISSING) if isinstance(now, Mapping) else _MISSING
            merging.merge(services, name, index, dict(block), before, (name,))
        if secrets:
            if not isinstance(config.get(SECRETS_KEY), CommentedMap):
                _set(config, SECRETS_KEY, len(config), CommentedMap())
            node, known = config[SECRETS_KEY], current.get(SECRETS_KEY)
            stored = _Merging(key=SECRETS_KEY, flagged=True, writes=writes)
            for name, value in secrets.items():
                index = list(node).index(name) if name in node else len(node)
                before = known.get(name, _MISSING) if isinstance(known, Mapping) else _MISSING
                stored.merge(node, name, index, value, before, (name,))
        return writes

    def place_secrets(self, writes: Sequence[SecretWrite], written_text: str) -> None:
        """Copy the ciphertexts Pulumi wrote for `writes` (in `written_text`) into this document.

        The CLI rewrites the whole file when it sets a secret; taking only its ciphertexts (and
        the secrets-provider keys it may have added) keeps this document's comments and order.
        """
        try:
            written = YAML(typ="safe").load(written_text) or {}
        except Exception as exc:  # ruamel raises many YAMLError subclasses
            raise OperationFailed(
                f"Pulumi left {self.path.name} unreadable: {exc}; nothing was deployed. Compare "
                f"it with its previous version (`git diff stacks/{self.path.name}`) and put it "
                "right"
            ) from None
        for position, key in enumerate(k for k in _PROVIDER_KEYS if k in written):
            if self.doc.get(key) != written[key]:
                if key in self.doc:
                    self.doc[key] = written[key]
                else:
                    self.doc.insert(position, key, written[key])
        config = written.get("config") or {}
        for write in writes:
            node: Any = config.get(write.key, _MISSING)
            for part in write.path:
                node = _child(node, part)
            if not is_secure(node):
                raise OperationFailed(
                    f"Pulumi did not store {write.pulumi_key} as a secret in {self.path.name}; "
                    "nothing was deployed. Set it yourself with `pulumi config set --secret "
                    f"--path '{write.pulumi_key}' --stack {self.stack}` (it asks for the value)"
                )
            _place(self.config, write.key, write.path, CommentedMap([("secure", node["secure"])]))


def _within_limit(stack: str, service: str, replicas: int, backend: str) -> None:
    """A count above the backend's limit is refused before the file is touched, as the same
    count written in the file would be (spec.MAX_REPLICAS)."""
    from components import spec

    if replicas > spec.MAX_REPLICAS[backend][0]:
        key = f"{SERVICES_KEY}.{service}.replicas"
        raise BadInput(spec.over_replica_limit(key, replicas, backend, f"stack {stack!r}"))


def write_text(path: Path, text: str) -> None:
    """Replace a file in one step, so a crash never leaves half a stack file."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """write_text for exact bytes (a file's previous content put back as it was)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def keep_layout(path: Path) -> Iterator[None]:
    """Put comments and key order back if the Pulumi CLI rewrites a stack file inside the block.

    `pulumi stack init` adds the stack's encryption salt and may re-emit the file without its
    comments; when the config itself is unchanged, only the provider keys are taken over.
    """
    before = path.read_text() if path.exists() else None
    try:
        yield
    finally:
        after = path.read_text() if path.exists() else None
        if before is not None and after is not None and after != before:
            safe = YAML(typ="safe")
            try:
                same = (safe.load(after) or {}).get("config") == (safe.load(before) or {}).get(
                    "config"
                )
            except Exception:  # ruamel raises many YAMLError subclasses
                same = False
            if same:
                stack = path.name[len("Pulumi.") : -len(".yaml")]
                doc = StackDocument(stack, path, before)
                doc.place_secrets([], after)
                write_text(path, doc.text())


# --- merging a release's config into the document -------------------------------------------------


def _child(node: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and 0 <= part < len(node) else _MISSING
    return node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING


def _set(parent: Any, slot: str | int, index: int, value: Any) -> None:
    if isinstance(parent, CommentedSeq):
        if isinstance(slot, int) and slot < len(parent):
            parent[slot] = value
        else:
            parent.append(value)
    elif slot in parent:
        parent[slot] = value
    else:
        parent.insert(min(index, len(parent)), slot, value)


def _place(config: CommentedMap, key: str, path: tuple[str | int, ...], value: Any) -> None:
    parent: Any = config
    slots: list[str | int] = [key, *path]
    for slot in slots[:-1]:
        child = _child(parent, slot)
        if not isinstance(child, CommentedMap | CommentedSeq):
            child = CommentedMap()
            _set(parent, slot, len(parent), child)
        parent = child
    _set(parent, slots[-1], len(parent), value)


def _same(a: Any, b: Any, top_level: bool) -> bool:
    if a is _MISSING or b is _MISSING:
        return False
    if isinstance(a, bool) != isinstance(b, bool):
        # Pulumi reports top-level scalars as text: `true`, `2`.
        return top_level and _text(a) == _text(b)
    if a == b:
        return True
    return top_level and _text(a) == _text(b)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class _Merging:
    """One top-level key of a release being merged into the document, leaf by leaf."""

    key: str
    # History marks this key secret (any leaf inside it may be one).
    flagged: bool
    writes: list[SecretWrite]

    def merge(
        self, parent: Any, slot: str | int, index: int, value: Any, current: Any, path: LeafPath
    ) -> None:
        """Make `parent[slot]` equal `value`; `current` is its decrypted value, if any."""
        existing = _child(parent, slot)
        scalar = not isinstance(value, dict | list)
        if scalar and (is_secure(existing) or secret_leaf(self.key, path, value, self.flagged)):
            self._secret(existing, value, current, path)
        elif isinstance(value, dict):
            if not isinstance(existing, CommentedMap) or is_secure(existing):
                existing = CommentedMap()
                _set(parent, slot, index, existing)
            for name in [k for k in existing if k not in value]:
                del existing[name]
            now = current if isinstance(current, dict) else {}
            for i, (name, item) in enumerate(value.items()):
                self.merge(existing, name, i, item, now.get(name, _MISSING), (*path, name))
        elif isinstance(value, list):
            if not isinstance(existing, CommentedSeq) or len(existing) != len(value):
                existing = CommentedSeq()
                _set(parent, slot, index, existing)
            items = current if isinstance(current, list) else []
            for i, item in enumerate(value):
                here = items[i] if i < len(items) else _MISSING
                self.merge(existing, i, i, item, here, (*path, i))
        elif not _same(existing, value, not path):
            _set(parent, slot, index, value)

    def _secret(self, existing: Any, value: Any, current: Any, path: LeafPath) -> None:
        if is_secure(existing) and _same(current, value, not path):
            return  # the same secret: its ciphertext stays
        if not is_secure(existing) and _same(existing, value, not path):
            return  # already in the file exactly like this
        if value == SECRET_MASK:
            raise OperationFailed(
                f"history has no decrypted value for the secret {config_path(self.key, path)}; "
                "check that the secrets provider (passphrase) of this stack is available"
            )
        self.writes.append(SecretWrite(key=self.key, path=path, value=_text(value)))


def secret_leaf(key: str, path: tuple[str | int, ...], value: Any, flagged: bool) -> bool:
    """Whether a value about to be written must be a secret.

    History marks secrecy per top-level key: exact for a scalar, but an object is marked when
    any leaf inside is secret. Inside such an object, fields the schema types as secrets are
    secrets, named schema fields are plain, and free-form strings (env values, keys the schema
    does not know) are treated as secrets, since that is the safe side to err on.
    """
    if not path:
        return flagged
    kind = _schema_kind(key, path)
    if kind == "secret":
        return True
    return flagged and isinstance(value, str) and kind != "field"


def is_secret_field(key: str, path: tuple[str | int, ...]) -> bool:
    """Whether the schema types the config value at `key` and `path` as a secret."""
    return _schema_kind(key, path) == "secret"


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def _schema_kind(key: str, path: tuple[str | int, ...]) -> str:
    """How the schema types a config path: "secret", "field", "free" (free-form) or "unknown"."""
    from pydantic import BaseModel, SecretStr
    from pydantic.alias_generators import to_camel

    from components import spec

    namespace, _, name = key.partition(":")
    if namespace != NAMESPACE:
        return "unknown"

    def field_of(model: type[BaseModel], part: str | int) -> Any:
        for field_name, info in model.model_fields.items():
            if part in (field_name, to_camel(field_name)):
                return info.annotation
        return _MISSING

    annotation = field_of(spec.StackConfig, name)
    free_form = False
    for part in path:
        if annotation is _MISSING:
            return "unknown"
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = field_of(annotation, part)
            free_form = False
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
            free_form = True
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
            free_form = True
        else:
            return "unknown"
    if annotation is _MISSING:
        return "unknown"
    annotation = _unwrap(annotation)
    if annotation is SecretStr:
        return "secret"
    if free_form and annotation is str:
        return "free"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "unknown"
    return "field"
