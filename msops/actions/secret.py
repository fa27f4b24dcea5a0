"""`msops secret set`: one secret of a stack, encrypted by Pulumi into its file, comments kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msops import stackfiles
from msops.actions import steps
from msops.actions.base import Configuration
from msops.errors import BadInput

NAMESPACE = stackfiles.NAMESPACE


@dataclass(frozen=True)
class SecretSetResult:
    stack: str
    # The key as `pulumi config set --path` takes it: `msops:databases.main.password`.
    key: str
    # What the file held there before: "plaintext" (now encrypted), "secure" (replaced), "unset".
    before: str


@dataclass
class SecretSet:
    """Set one secret field of the config (`msops:databases.<db>.password`, `.externalUrl`,
    `msops:secrets.<name>`) through the engine, which encrypts it into the stack file.

    The value comes from the caller (stdin or a hidden prompt at the CLI), never from argv:
    a command line is visible in `ps` and kept in shell history. Pulumi rewrites the whole
    file when it sets a secret, so only its ciphertext (and the provider keys it may add) is
    taken over into the file as it was, which keeps its comments and key order.
    """

    cfg: Configuration
    stack: str
    key: str
    value: str = field(repr=False)

    def run(self) -> SecretSetResult:
        write = secret_write(self.key, self.value)
        doc = steps.document(self.cfg, self.stack)
        _check_target(doc, write)
        before = _before(doc, write)
        # The file as it will be, the new secret counted as set: nothing goes to the engine
        # for a file that would still be refused afterwards.
        doc.validate(pending=[write])
        self.cfg.gateway.set_secret(self.stack, write.pulumi_key, write.value, path=True)
        doc.place_secrets([write], doc.path.read_text())
        doc.save(force=True)
        return SecretSetResult(stack=self.stack, key=write.pulumi_key, before=before)


def secret_write(key: str, value: str) -> stackfiles.SecretWrite:
    """The write of `value` at `key` (`msops:` may be left out); only secret fields qualify."""
    text = key if ":" in key else f"{NAMESPACE}:{key}"
    namespace, _, rest = text.partition(":")
    parts = rest.split(".")
    if namespace != NAMESPACE or not all(parts) or len(parts) < 2:
        raise BadInput(_not_a_secret(key))
    top, path = f"{NAMESPACE}:{parts[0]}", tuple(parts[1:])
    if not stackfiles.is_secret_field(top, path):
        raise BadInput(_not_a_secret(key))
    # `echo value | msops secret set ...` ends the value with a newline that is not part of it.
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise BadInput(f"{text}: the value is empty; give the secret on stdin or at the prompt")
    return stackfiles.SecretWrite(key=top, path=path, value=value)


def _not_a_secret(key: str) -> str:
    return (
        f"{key!r} is not a secret of the msops config; secrets are "
        f"{NAMESPACE}:databases.<db>.password, {NAMESPACE}:databases.<db>.externalUrl and "
        f"{NAMESPACE}:secrets.<name> (for any other key: pulumi config set --secret)"
    )


def _check_target(doc: stackfiles.StackDocument, write: stackfiles.SecretWrite) -> None:
    """A database's secret needs the database: setting it must not create one."""
    if write.key != f"{NAMESPACE}:databases":
        return
    databases = doc.config.get(write.key)
    name = write.path[0]
    if not isinstance(databases, dict) or name not in databases:
        known = ", ".join(map(str, databases or {})) if isinstance(databases, dict) else ""
        raise BadInput(
            f"{write.pulumi_key}: there is no database {name!r} in {write.key} of stack "
            f"{doc.stack!r} (its databases: {known or 'none'}); add it first, or fix the name"
        )


def _before(doc: stackfiles.StackDocument, write: stackfiles.SecretWrite) -> str:
    node: Any = doc.config.get(write.key)
    for part in write.path:
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return "unset"
    return "secure" if stackfiles.is_secure(node) else "plaintext"
