"""Offline synth: run the real Pulumi program under mocks and return its resource graph."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import os
import runpy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from msops import stackfiles

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_ROOT / "__main__.py"
SECRET = "[secret]"

# Signatures of Pulumi's wire format (sdk/go/common/resource/sig).
_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@dataclass(frozen=True)
class Resource:
    """One registered resource, as the engine would have seen it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    options: dict[str, Any]

    @property
    def is_component(self) -> bool:
        return not self.custom


@dataclass
class Graph:
    """The resources and stack outputs of one synthesized stack."""

    stack: str
    resources: list[Resource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self, urn: str) -> Resource:
        for res in self.resources:
            if res.urn == urn:
                return res
        raise KeyError(urn)

    def children(self, urn: str) -> list[Resource]:
        return [r for r in self.resources if r.parent == urn]


def normalize(value: Any) -> Any:
    """Decode Pulumi's wire values: secrets masked, references as URNs, 3.0 as 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return SECRET
        if sig == _RESOURCE_SIG:
            return value.get("urn")
        if sig == _OUTPUT_SIG:
            if value.get("secret"):
                return SECRET
            return normalize(value.get("value"))
        return {k: normalize(v) for k, v in value.items()}
    if value == _UNKNOWN:
        return None
    return value


class _Mocks(pulumi.runtime.Mocks):
    """Stand-in for the engine and providers: outputs echo inputs, names are auto-assigned."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        # Providers auto-name resources that have no explicit name (name-<7 hex>), and
        # components such as the LB config depend on those names.
        suffix = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()[:7]
        if args.typ.startswith("docker:"):
            state.setdefault("name", f"{args.name}-{suffix}")
        if args.typ.startswith("kubernetes:"):
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault("name", f"{args.name}-{suffix}")
            state["metadata"] = metadata
        if args.typ in ("docker:index/remoteImage:RemoteImage", "docker:index/image:Image"):
            # What the provider reports once it has pulled or built the image; the mock's
            # digest is derived from the reference, so a changed pin changes it.
            digest = (
                "sha256:"
                + hashlib.sha256(
                    str(state.get("name") or state.get("imageName")).encode()
                ).hexdigest()
            )
            pulled = args.typ.endswith("RemoteImage")
            state.setdefault("repoDigest", f"{state.get('name')}@{digest}" if pulled else digest)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"mock-password-{suffix}"
        if args.typ == "docker:index/container:Container" and state.get("attach"):
            # The provider waits for an attached container to exit and records how it
            # went; the synth's one-off containers (migrations) succeed.
            state.setdefault("exitCode", 0)
            state.setdefault("containerLogs", "")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also keeping each registration's parent, options and raw inputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[Resource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = json_format.MessageToDict(request.object) if request.object else {}
            self.recorded.append(
                Resource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=normalize(inputs),
                    options={
                        "protect": request.protect if request.HasField("protect") else False,
                        "retain_on_delete": request.retainOnDelete
                        if request.HasField("retainOnDelete")
                        else False,
                        "delete_before_replace": bool(request.deleteBeforeReplace),
                        # Sorted: the SDK sends them in the order their Outputs resolved.
                        "depends_on": sorted(request.dependencies),
                        "replace_on_changes": list(request.replaceOnChanges),
                        "ignore_changes": list(request.ignoreChanges),
                        "provider": request.provider,
                        "additional_secret_outputs": list(request.additionalSecretOutputs),
                    },
                )
            )
        return response


def config_from_file(
    stack: str, stacks_dir: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A stack file's config values (objects as dicts) and its secret keys, secrets masked."""
    raw = stackfiles.read_config(stack, stacks_dir)
    values: dict[str, Any] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        masked, had_secret = _mask_secure(value)
        if had_secret:
            secret_keys.append(key)
        values[key] = masked
    return values, secret_keys


def _mask_secure(value: Any) -> tuple[Any, bool]:
    """Replace every `{secure: ...}` with a placeholder; the synth never decrypts."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET, True
        found = False
        out = {}
        for k, v in value.items():
            out[k], had = _mask_secure(v)
            found = found or had
        return out, found
    if isinstance(value, list):
        items = [_mask_secure(v) for v in value]
        return [v for v, _ in items], any(h for _, h in items)
    return value, False


def synth(stack: str, stacks_dir: Path | None = None) -> Graph:
    """Synthesize a stack from its file in stacks/."""
    values, secret_keys = config_from_file(stack, stacks_dir)
    return synth_config(values, stack=stack, secret_keys=secret_keys)


def synth_config(
    config: Mapping[str, Any],
    stack: str = "dev",
    secret_keys: list[str] | None = None,
    rollout: str | None = None,
) -> Graph:
    """Synthesize from a config map (`{"msops:services": {...}}`; objects may be dicts).

    `rollout` is a canary step as `msops up` passes it to the program (the JSON of
    components.plan.rollout.encode). Raises components.platform.InvalidConfig (a
    pulumi.RunError) for a config that does not validate.
    """
    with _rollout_env(rollout):
        return run_program(_run_main, config, stack=stack, secret_keys=secret_keys)


@contextlib.contextmanager
def _rollout_env(rollout: str | None) -> Iterator[None]:
    """The program reads a canary step from its environment, as under the engine."""
    from components.plan.rollout import ENV_VAR

    before = os.environ.pop(ENV_VAR, None)
    if rollout:
        os.environ[ENV_VAR] = rollout
    try:
        yield
    finally:
        os.environ.pop(ENV_VAR, None)
        if before is not None:
            os.environ[ENV_VAR] = before


def _run_main() -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")


def run_program(
    program: Callable[[], None],
    config: Mapping[str, Any],
    stack: str = "dev",
    secret_keys: list[str] | None = None,
) -> Graph:
    """Run any Pulumi program function under the recording mocks and return its graph."""
    values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    # A fresh context per run: Pulumi keeps its settings and root stack in context vars.
    ctx = contextvars.copy_context()
    return ctx.run(_run_in_context, program, values, stack, list(secret_keys or []))


def _run_in_context(
    program: Callable[[], None], values: dict[str, str], stack: str, secret_keys: list[str]
) -> Graph:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.config.set_all_config(values, secret_keys)
        pulumi.runtime.settings.ROOT.set(None)
        mocks = _Mocks()
        monitor = _RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(
            mocks, project="msops", stack=stack, preview=False, monitor=monitor
        )
        # The mock settings leave the set of pending outputs to the one made at import,
        # shared by every context: a run that failed (a migration's gate) would leave its
        # tasks there for the next run to await on a closed loop. One set per run.
        pulumi.runtime.settings.SETTINGS.outputs = set()
        _sync_await(run_pulumi_func(program))
        root = pulumi.runtime.settings.get_root_resource()
        exported = getattr(root, "outputs", {}) or {}
        outputs = {k: _sync_await(_resolve(v)) for k, v in exported.items()}
        # By URN: the SDK registers resources in the order their inputs resolve, which
        # changes from run to run; a graph must not.
        resources = sorted(monitor.recorded, key=lambda r: r.urn)
        return Graph(stack=stack, resources=resources, outputs=outputs)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def _resolve(value: Any) -> Any:
    """A stack output's plain value, with secrets masked."""
    output = pulumi.Output.from_input(value)
    if await output.is_secret():
        return SECRET
    return normalize(await output.future())
