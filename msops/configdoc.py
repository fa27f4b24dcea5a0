"""Writes docs/config.md, the stack config reference, from the model in components/spec.py."""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from components import spec

INTRO = """\
# Stack config reference

Everything msops reads from a stack file lives under the `msops:` namespace of
`stacks/Pulumi.<stack>.yaml`. Objects are written as YAML maps; keys are camelCase.
Unknown keys are errors (a typo such as `replica:` is reported with a suggestion), and
every problem is reported at once, before any resource is registered.

Set a value with the Pulumi CLI, which honours `stackConfigDir: stacks`:

```sh
pulumi config set --path 'msops:services.web.replicas' 3 --stack dev
pulumi config set --secret --path 'msops:databases.main.password' --stack prod
```

or edit the file, or use `msops scale` / `msops promote` / `msops rollback`, which keep
its comments and key order.

## Secrets

A stack file never holds a secret in plain text. `databases.<db>.password`,
`databases.<db>.externalUrl` and every value under `msops:secrets` must be encrypted
(`{secure: v1:...}` in the file), and any other value that is a URL with a password in it
(`postgres://u:pw@h/db`) is refused: `msops check`, every command that reads the file and
the Pulumi program stop with the key and the fix. Set a secret with

```sh
msops secret set prod msops:databases.main.password      # from stdin, or a hidden prompt
```

or `pulumi config set --secret --path 'msops:secrets.<name>' --stack prod`; never on a
command line with the value in it.

A secret reaches a container as a Pulumi secret everywhere, and in the way each backend
keeps it out of sight: on swarm, and in every migration, as a file `/run/secrets/<VAR>`
named by the variable `<VAR>_FILE` (`DATABASE_URL_FILE`), never as the value; on docker as
the variable itself; on Kubernetes through `secretKeyRef`. An image run on swarm must read
`<NAME>_FILE` for each secret variable `NAME`, as the demo app does; docs/swarm.md, "The
`<NAME>_FILE` convention", shows how for other images.

This page is generated from `components/spec.py` by `uv run python -m msops.configdoc >
docs/config.md`; a test fails when the two disagree.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        base = args[0]
        names = {
            spec.Image: "image",
            spec.Quantity: "quantity",
            spec.Duration: "duration",
            spec.HttpPath: "path",
            spec.DnsLabel: "name",
            spec.DnsName: "host name",
            spec.Port: "port",
        }
        return next((n for t, n in names.items() if t == annotation), _type_name(base))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation)).replace("SecretStr", "secret")


def _sections(model: type[BaseModel], seen: list[type[BaseModel]]) -> list[type[BaseModel]]:
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        inner = spec.model_of(field.annotation)
        if inner is not None:
            _sections(inner, seen)
    return seen


def render() -> str:
    parts = [INTRO]
    for model in _sections(spec.StackConfig, []):
        top = model is spec.StackConfig
        parts.append(f"\n## {model.__name__}{' (the `msops:` keys)' if top else ''}\n")
        parts.append(f"{(model.__doc__ or '').strip()}\n")
        parts.append("| key | type | meaning and default |")
        parts.append("|---|---|---|")
        for name, field in model.model_fields.items():
            key = f"msops:{to_camel(name)}" if top else to_camel(name)
            description = (field.description or "").replace("|", "\\|")
            parts.append(f"| `{key}` | {_type_name(field.annotation)} | {description} |")
    parts.extend(_backend_keys())
    parts.extend(_limits())
    return "\n".join(parts) + "\n"


def _backend_keys() -> list[str]:
    """The keys that mean something on some backends only (spec.BACKEND_KEYS)."""
    parts = [
        "\n## Keys per backend\n",
        "These keys mean something on some backends only. Set on another backend, a key is "
        "an error naming the backends it belongs to, since it would otherwise be ignored "
        "without a word. Every other key means the same on every backend.\n",
        "| key | backends | what it is there |",
        "|---|---|---|",
    ]
    for key, (backends, meaning) in spec.BACKEND_KEYS.items():
        shown = key.replace("*", "<name>")
        parts.append(f"| `msops:{shown}` | {', '.join(backends)} | {meaning} |")
    return parts


def _limits() -> list[str]:
    """The replica limits per backend (spec.MAX_REPLICAS) and the largest number."""
    parts = [
        "\n## Limits\n",
        "`replicas`, `autoscaling.min` and `autoscaling.max` of one service may be at most:\n",
        "| backend | most replicas per service | why |",
        "|---|---|---|",
    ]
    for backend, (limit, why) in spec.MAX_REPLICAS.items():
        parts.append(f"| {backend} | {limit:,} | {why} |")
    parts.append(
        f"\nAbove it, msops refuses the stack file at once, before any synth. No number in a "
        f"stack file may be above {spec.MAX_NUMBER:,} (a Kubernetes int32), and no number may "
        "be infinite."
    )
    return parts


if __name__ == "__main__":
    sys.stdout.write(render())
