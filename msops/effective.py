"""The effective stack config: every key of the model, its value, and whether the file set it.

Walked from the validated `StackConfig` and its field definitions, never from a list of
keys, so a field added to components/spec.py shows up here without a change.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from components.spec import NAMESPACE, StackConfig
from components.vocabulary import SECRET_MASK

Path = tuple[str, ...]


@dataclass(frozen=True)
class Leaf:
    """One value: where it sits (camelCase keys, `msops:<key>` first), whether the stack file
    sets it, and for an unset default, what the model says it means."""

    path: Path
    value: Any
    set: bool
    note: str = ""

    @property
    def key(self) -> str:
        """`msops:services.web.port`, the form `pulumi config set --path` takes."""
        from msops.stackfiles import config_path

        return config_path(self.path[0], self.path[1:])


def leaves(config: StackConfig) -> list[Leaf]:
    """Every leaf of the config, in the model's field order."""
    return list(_model(config, (), parent_set=True, top=True))


def _key(name: str, info: FieldInfo, top: bool) -> str:
    alias = info.alias or name
    return f"{NAMESPACE}:{alias}" if top else alias


def _model(model: BaseModel, path: Path, *, parent_set: bool, top: bool = False) -> Iterator[Leaf]:
    for name, info in type(model).model_fields.items():
        here = (*path, _key(name, info, top))
        is_set = parent_set and name in model.model_fields_set
        yield from _value(getattr(model, name), here, is_set, info)


def _value(value: Any, path: Path, is_set: bool, info: FieldInfo) -> Iterator[Leaf]:
    if isinstance(value, BaseModel):
        yield from _model(value, path, parent_set=is_set)
    elif isinstance(value, Mapping) and value:
        for name, item in value.items():
            # A named entry (a service, a database, an env var) exists because the file says so.
            if isinstance(item, BaseModel):
                yield from _model(item, (*path, str(name)), parent_set=True)
            else:
                yield Leaf((*path, str(name)), _plain(item), is_set)
    else:
        note = "" if is_set or value is not None else _default_text(info)
        yield Leaf(path, _plain(value), is_set, note)


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SECRET_MASK
    if isinstance(value, BaseModel):
        # Inside a list (canary steps): one value, every field of each item spelled out.
        return {
            info.alias or name: _plain(getattr(value, name))
            for name, info in type(value).model_fields.items()
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _default_text(info: FieldInfo) -> str:
    """What an unset default means, from the field's description (`Default: unset, so ...`)."""
    description = info.description or ""
    _, found, text = description.partition("Default:")
    return text.strip().rstrip(".") if found else ""


# --- output ---------------------------------------------------------------------------------------


def nested(items: list[Leaf]) -> dict[str, Any]:
    """The leaves as one nested mapping, as a stack file's `config:` would hold them."""
    root: dict[str, Any] = {}
    for leaf in items:
        node = root
        for part in leaf.path[:-1]:
            node = node.setdefault(part, {})
        node[leaf.path[-1]] = leaf.value
    return root


def data(stack: str, items: list[Leaf]) -> dict[str, Any]:
    """What `msops config show --json` prints: the config, and each leaf's source."""
    return {
        "stack": stack,
        "config": nested(items),
        "sources": {leaf.key: "set" if leaf.set else "default" for leaf in items},
    }


COMMENT_COLUMN = 48


def yaml_text(stack: str, items: list[Leaf]) -> str:
    """The effective config as YAML, each leaf marked `# set` or `# default`."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    root = CommentedMap()
    for leaf in items:
        node = root
        for part in leaf.path[:-1]:
            if part not in node:
                node[part] = CommentedMap()
            node = node[part]
        node[leaf.path[-1]] = leaf.value
        mark = "set" if leaf.set else "default"
        if leaf.note:
            mark += f": {leaf.note}"
        node.yaml_add_eol_comment(mark, leaf.path[-1], column=COMMENT_COLUMN)
    yaml = YAML()
    yaml.width = 4096
    # `null`, not an empty value: an unset key should read as unset.
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    out.write(
        f"# The effective config of stack {stack}: every msops key, `set` in "
        f"stacks/Pulumi.{stack}.yaml or the model's `default`; secrets show as {SECRET_MASK}.\n"
    )
    yaml.dump(root, out)
    return out.getvalue()
