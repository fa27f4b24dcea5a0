"""Apply a synthesized msops graph to a real Docker engine, as the pulumi-docker provider would.

What it is: a test tool. `live_synth()` runs the real Pulumi program under msops' offline
mocks (msops.synth, whose `normalize` and `_Mocks` it swaps for the duration of the synth),
keeping secret values instead of masking them and recording each resource's mock outputs
(auto-names such as `dev-web-1-698d085`, ids such as `dev-net-id`, `mock-password-...`).
`Applier.up(graph)` then creates, updates, replaces and deletes real objects through the
Docker Engine API (the `docker` Python SDK), substituting each mock output with the real one
once the resource that owns it exists: a container's real auto-name, a network's ID, a
generated password.

It follows the provider and the Pulumi engine where the tier depends on them:
  - the inputs msops uses, mapped as kreuzwerker/terraform-provider-docker (inside
    pulumi-docker) maps them: Container (created on its first networksAdvanced network with that
    network's aliases, where the provider creates it on the default bridge and moves it, to
    the same end; uploads as a tar extracted at "/" before start; `wait` for healthy up to
    `waitTimeout`; stop with `destroyGraceSeconds`, then remove), Network, Volume, Service
    (the full spec on every update; `convergeConfig` waits until every replica runs and the
    update is done, and fails with "service rollback completed: ..." when Swarm rolled it
    back), ServiceConfig and Secret (base64 data), RemoteImage and Image (resolved to a
    local image: it never pulls or builds), and random:RandomPassword (generated here);
  - Pulumi's update order: resources in dependency order, independent ones in parallel; a
    changed input is an in-place update only where the provider updates in place (a
    Container's restart, memory, memoryReservation, cpuShares; anything on a Service but its
    name and networks), else a replacement, and always one for `replace_on_changes`;
    replacements create the new resource first and delete the old one at the end, unless the
    options say `delete_before_replace`; removed and replaced resources are deleted last, in
    reverse dependency order; `protect` refuses a delete; `retain_on_delete` forgets instead
    of deleting; auto-named resources get `<name>-<7 random hex>`, anew on each replacement.

What it is not: the Pulumi engine or the provider. There is no state file, no preview, no
refresh, no diff of unknowns, no provider plugin, no parallelism limit but its own pool;
inputs it does not know are refused (ApplyError), not ignored. When Pulumi replaces a
delete-before-replace resource it first deletes the dependents that would be replaced with
it; here each dependent is replaced when its own turn comes. A failed Service update leaves
the recorded state at the old inputs. Where the provider would take a service's status from
an earlier update (a scale starts no rolling update), convergence here ignores it. The
product (components/, msops/) must never import it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import re
import secrets
import string
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions

from msops import synth
from tests.graphs import secret_keys

# Pulumi's wire signatures (sdk/go/common/resource/sig), as msops.synth decodes them.
_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
SERVICE = "docker:index/service:Service"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
SUPPORTED = frozenset(
    {
        CONTAINER,
        NETWORK,
        VOLUME,
        SERVICE,
        SERVICE_CONFIG,
        SECRET,
        REMOTE_IMAGE,
        IMAGE,
        RANDOM_PASSWORD,
    }
)
# Types whose provider auto-names a resource that has no `name` input.
AUTO_NAMED = {CONTAINER, NETWORK, VOLUME, SECRET, SERVICE_CONFIG, SERVICE}

# Container inputs the provider updates in place (resourceDockerContainerUpdate), and those it
# only records in state. Every other Container input is ForceNew.
CONTAINER_IN_PLACE = frozenset(
    ["restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "memorySwap", "cpuSet"]
)
CONTAINER_STATE_ONLY = frozenset(
    [
        "wait",
        "waitTimeout",
        "destroyGraceSeconds",
        "mustRun",
        "start",
        "attach",
        "logs",
        "rm",
        "removeVolumes",
        "healthcheck",
        "tmpfs",
        "containerReadRefreshTimeoutMilliseconds",
    ]
)
MIB = 1024 * 1024
# How long an attached (run-to-completion) container may take; the synth does not record
# the custom timeout the backend sets, and the live tier's migrations take seconds.
ATTACH_TIMEOUT_S = 300


class ApplyError(Exception):
    """An apply step failed; the message names the resource URN and what the engine said."""


class ServiceRolledBack(ApplyError):
    """Swarm rolled a service update back on its own (the provider's converge error)."""


# --- synthesis with real values ----------------------------------------------------------


def reveal(value: Any) -> Any:
    """msops.synth.normalize, except that secrets keep their value."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [reveal(v) for v in value]
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return reveal(value.get("value"))
        if sig == _RESOURCE_SIG:
            return value.get("urn")
        if sig == _OUTPUT_SIG:
            return reveal(value.get("value"))
        return {k: reveal(v) for k, v in value.items()}
    if value == _UNKNOWN:
        return None
    return value


@dataclass(frozen=True)
class LiveGraph:
    """A synthesized graph with secrets in the clear, and each resource's mock outputs."""

    graph: synth.Graph
    mocks: dict[tuple[str, str], dict[str, Any]]

    def __iter__(self) -> Iterator[synth.Resource]:
        return iter(self.graph.resources)

    def named(self, type_: str, name: str) -> synth.Resource:
        for res in self.graph.resources:
            if res.type == type_ and res.name == name:
                return res
        raise KeyError(f"{type_}::{name}")


@contextlib.contextmanager
def _revealing(recorded: dict[tuple[str, str], dict[str, Any]]) -> Iterator[None]:
    base = synth._Mocks

    class RecordingMocks(base):  # type: ignore[misc, valid-type]
        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            mock_id, state = super().new_resource(args)
            # Outputs the mocks leave unknown, which the docker backend reads: a local image's
            # ID (repoDigest of a built Image, imageId of a RemoteImage).
            if args.typ == IMAGE:
                state.setdefault("repoDigest", f"mock-repo-digest-{args.name}")
            if args.typ == REMOTE_IMAGE:
                state.setdefault("imageId", f"mock-image-id-{args.name}")
                state.setdefault("repoDigest", f"mock-repo-digest-{args.name}")
            outputs = {
                k: state[k] for k in ("name", "result", "repoDigest", "imageId") if k in state
            }
            recorded[(args.typ, args.name)] = {"id": mock_id, **outputs}
            return mock_id, state

    saved = synth.normalize
    synth.normalize = reveal
    synth._Mocks = RecordingMocks  # type: ignore[misc]
    try:
        yield
    finally:
        synth.normalize = saved
        synth._Mocks = base  # type: ignore[misc]


_SYNTH_LOCK = threading.Lock()


def live_synth(
    stack: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    stack_name: str | None = None,
) -> LiveGraph:
    """Synthesize a committed stack (`live_synth("dev")`) or a config map, secrets revealed."""
    recorded: dict[tuple[str, str], dict[str, Any]] = {}
    with _SYNTH_LOCK, _revealing(recorded):
        if config is not None:
            graph = synth.synth_config(
                config, stack=stack_name or stack or "dev", secret_keys=secret_keys(dict(config))
            )
        else:
            assert stack is not None
            graph = synth.synth(stack)
    return LiveGraph(graph=graph, mocks=recorded)


def stack_config(stack: str) -> dict[str, Any]:
    """A committed stack's config values, to change and pass to live_synth(config=...)."""
    values, _ = synth.config_from_file(stack)
    return copy.deepcopy(values)


# --- conversions -------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def duration_ns(text: str | None) -> int:
    """A Go duration ("1m20s", "500ms") in nanoseconds, as the Engine API takes it."""
    if not text:
        return 0
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"not a Go duration: {text!r}")
    return int(total)


def label_map(labels: list[dict[str, Any]] | None) -> dict[str, str]:
    return {
        item["label"]: "" if item.get("value") is None else str(item["value"])
        for item in labels or []
    }


def _upload_tar(uploads: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for upload in uploads:
            if "content" in upload:
                data = upload["content"].encode()
            elif "contentBase64" in upload:
                data = base64.b64decode(upload["contentBase64"])
            else:
                raise ApplyError(f"upload {upload.get('file')!r}: only content/contentBase64")
            info = tarfile.TarInfo(upload["file"].lstrip("/"))
            info.size = len(data)
            if upload.get("permissions"):
                info.mode = int(upload["permissions"], 8)
            else:
                info.mode = 0o744 if upload.get("executable") else 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _password(length: int, special: bool, inputs: Mapping[str, Any]) -> str:
    alphabet = ""
    if inputs.get("lower", True):
        alphabet += string.ascii_lowercase
    if inputs.get("upper", True):
        alphabet += string.ascii_uppercase
    if inputs.get("numeric", True):
        alphabet += string.digits
    if special:
        alphabet += inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
    return "".join(secrets.choice(alphabet) for _ in range(length))


# --- state -------------------------------------------------------------------------------


@dataclass
class Applied:
    """One resource as the applier created it: what it was given and what came out."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]  # resolved: real names and IDs, secrets in the clear
    options: dict[str, Any]
    mocks: dict[str, Any]  # the mock outputs the graph was synthesized with
    outputs: dict[str, Any]  # the real ones: id, name, result, ...
    deps: list[str]
    seq: int = 0


@dataclass
class Step:
    op: str  # create | update | replace | delete | same | forget
    urn: str
    at: float
    seconds: float
    detail: str = ""


@dataclass
class UpResult:
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0

    def ops(self, op: str) -> list[str]:
        return [s.urn for s in self.steps if s.op == op]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.steps:
            counts[s.op] = counts.get(s.op, 0) + 1
        return counts


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class Applier:
    """Applies graphs to one engine, remembering what it applied between calls."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        log: Callable[[str], None] | None = None,
        workers: int = 8,
    ) -> None:
        self.client = client
        self.state: dict[str, Applied] = {}
        self.log = log or (lambda _msg: None)
        self.workers = workers
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: list[Applied] = []  # replaced, awaiting delete

    # -- public ---------------------------------------------------------------------------

    def output(self, type_: str, name: str, key: str = "id") -> Any:
        for applied in self.state.values():
            if applied.type == type_ and applied.name == name:
                return applied.outputs[key]
        raise KeyError(f"{type_}::{name} is not applied")

    def up(self, live: LiveGraph) -> UpResult:
        """Bring the engine from the last applied graph to `live`, in Pulumi's order."""
        started = time.monotonic()
        result = UpResult()
        nodes = {r.urn: r for r in live if r.custom and not r.type.startswith("pulumi:providers:")}
        for res in nodes.values():
            if res.type not in SUPPORTED:
                raise ApplyError(f"{res.urn}: the applier does not support {res.type}")
        deps = {
            urn: [d for d in res.options.get("depends_on", []) if d in nodes and d != urn]
            for urn, res in nodes.items()
        }
        self._run_dag(nodes, deps, live, result, started)
        # Deletes last: what was replaced, then what the new graph no longer has.
        doomed = list(self._pending)
        self._pending.clear()
        for urn in [u for u in self.state if u not in nodes]:
            applied = self.state[urn]
            if applied.options.get("protect"):
                raise ApplyError(f"{urn}: protected; refusing to delete it")
            doomed.append(applied)
        self._delete_all(doomed, result, started)
        with self._lock:
            for applied in doomed:
                if self.state.get(applied.urn) is applied:
                    del self.state[applied.urn]
        result.seconds = time.monotonic() - started
        self.log(f"up: {result.summary()} in {result.seconds:.1f}s")
        return result

    def destroy(self, *, purge: bool = True) -> UpResult:
        """Delete everything applied; with purge, protected and retained resources too."""
        started = time.monotonic()
        result = UpResult()
        doomed = list(self._pending) + list(self.state.values())
        self._pending.clear()
        self._delete_all(doomed, result, started, purge=purge)
        self.state.clear()
        result.seconds = time.monotonic() - started
        return result

    # -- scheduling -----------------------------------------------------------------------

    def _run_dag(
        self,
        nodes: dict[str, synth.Resource],
        deps: dict[str, list[str]],
        live: LiveGraph,
        result: UpResult,
        started: float,
    ) -> None:
        done: set[str] = set()
        running: dict[Future[Step], str] = {}
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="apply") as pool:
            while True:
                if not errors:
                    for urn in sorted(nodes):
                        if urn in done or urn in running.values():
                            continue
                        if all(d in done for d in deps[urn]):
                            fut = pool.submit(
                                self._step, nodes[urn], deps[urn], live.mocks, started
                            )
                            running[fut] = urn
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    urn = running.pop(fut)
                    try:
                        result.steps.append(fut.result())
                        done.add(urn)
                    except BaseException as exc:
                        errors.append(exc)
        if errors:
            raise errors[0]
        missing = set(nodes) - done
        if missing:
            raise ApplyError(f"dependency cycle among {sorted(missing)}")

    def _delete_all(
        self, doomed: list[Applied], result: UpResult, started: float, *, purge: bool = False
    ) -> None:
        # Reverse dependency order, independent deletes in parallel: a resource goes once
        # nothing doomed that depends on it (or was created after it, for a replaced one
        # whose dependents moved on to its successor) is left.
        def delete(applied: Applied) -> Step:
            t0 = time.monotonic()
            if applied.options.get("retain_on_delete") and not purge:
                op = "forget"
            else:
                self._delete(applied)
                op = "delete"
            self.log(f"{op} {_short(applied.urn)} ({time.monotonic() - t0:.1f}s)")
            return Step(op, applied.urn, t0 - started, time.monotonic() - t0)

        remaining = {id(a): a for a in doomed}
        blockers = {
            id(a): {
                id(b)
                for b in doomed
                if b is not a and (a.urn in b.deps or (b.urn == a.urn and b.seq > a.seq))
            }
            for a in doomed
        }
        running: dict[Future[Step], int] = {}
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="delete") as pool:
            while remaining or running:
                if not errors:
                    for key, applied in list(remaining.items()):
                        if not (blockers[key] & (set(remaining) | set(running.values()))):
                            running[pool.submit(delete, applied)] = key
                            del remaining[key]
                if not running:
                    if remaining:
                        raise ApplyError("delete order has a cycle")
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    running.pop(fut)
                    try:
                        result.steps.append(fut.result())
                    except BaseException as exc:
                        errors.append(exc)
                if errors and not running:
                    break
        if errors:
            raise errors[0]

    # -- one resource ---------------------------------------------------------------------

    def _substitutions(self) -> tuple[dict[str, str], list[tuple[str, str]]]:
        whole: dict[str, str] = {}
        inner: dict[str, str] = {}
        with self._lock:
            applied = list(self.state.values())
        for a in applied:
            real_id = str(a.outputs.get("id", ""))
            whole[a.urn] = real_id
            if a.mocks.get("id"):
                whole[str(a.mocks["id"])] = real_id
            for key in ("repoDigest", "imageId"):
                if a.mocks.get(key) and key in a.outputs:
                    whole[str(a.mocks[key])] = str(a.outputs[key])
            for key in ("name", "result"):
                mock, real = a.mocks.get(key), a.outputs.get(key)
                if isinstance(mock, str) and isinstance(real, str) and mock and mock != real:
                    inner[mock] = real
        # Longest first, so that no mock value is replaced inside a longer one.
        return whole, sorted(inner.items(), key=lambda kv: -len(kv[0]))

    def _resolve(self, res: synth.Resource) -> dict[str, Any]:
        whole, inner = self._substitutions()

        def sub(value: Any) -> Any:
            if isinstance(value, str):
                if value in whole:
                    return whole[value]
                for mock, real in inner:
                    if mock in value:
                        value = value.replace(mock, real)
                return value
            if isinstance(value, list):
                return [sub(v) for v in value]
            if isinstance(value, dict):
                return {k: sub(v) for k, v in value.items()}
            return value

        inputs = copy.deepcopy(res.inputs)
        if res.type in (SECRET, SERVICE_CONFIG) and isinstance(inputs.get("data"), str):
            # Base64 on the wire; the mock values to replace are inside the decoded text.
            inputs["data"] = base64.b64decode(inputs["data"]).decode()
        resolved = sub(inputs)
        if res.type == CONTAINER and resolved.get("envs") == synth.SECRET:
            raise ApplyError(f"{res.urn}: envs still masked; synthesize with live_synth()")
        return resolved

    def _step(
        self,
        res: synth.Resource,
        deps: list[str],
        mocks: dict[tuple[str, str], dict[str, Any]],
        started: float,
    ) -> Step:
        t0 = time.monotonic()
        inputs = self._resolve(res)
        old = self.state.get(res.urn)
        mock = mocks.get((res.type, res.name), {})
        if old is None:
            op = "create"
        else:
            changed = sorted(
                k for k in set(inputs) | set(old.inputs) if inputs.get(k) != old.inputs.get(k)
            )
            op = self._classify(res, changed, old.inputs, inputs)
            if op == "same":
                old.options, old.deps, old.mocks = res.options, deps, mock
                return Step("same", res.urn, t0 - started, 0.0)
        detail = ""
        try:
            if op == "create":
                outputs = self._create(res, inputs)
            elif op == "update":
                assert old is not None
                outputs = self._update(res, old, inputs)
            else:
                assert old is not None
                if old.options.get("protect"):
                    raise ApplyError(f"{res.urn}: protected; refusing to replace it")
                if res.options.get("delete_before_replace"):
                    self._delete(old)
                    detail = "delete-before-replace"
                else:
                    with self._lock:
                        self._pending.append(old)
                    detail = "create-before-delete"
                outputs = self._create(res, inputs)
        except ApplyError:
            raise
        except docker.errors.APIError as exc:
            raise ApplyError(f"{res.urn}: {op} failed: {exc.explanation or exc}") from exc
        with self._lock:
            self._seq += 1
            self.state[res.urn] = Applied(
                urn=res.urn,
                type=res.type,
                name=res.name,
                inputs=inputs,
                options=res.options,
                mocks=mock,
                outputs=outputs,
                deps=deps,
                seq=self._seq if op != "update" or old is None else old.seq,
            )
        seconds = time.monotonic() - t0
        self.log(f"{op} {_short(res.urn)} ({seconds:.1f}s{', ' + detail if detail else ''})")
        return Step(op, res.urn, t0 - started, seconds, detail)

    def _classify(
        self,
        res: synth.Resource,
        changed: list[str],
        old: Mapping[str, Any],
        new: Mapping[str, Any],
    ) -> str:
        if not changed:
            return "same"
        if set(changed) & set(res.options.get("replace_on_changes") or []):
            return "replace"
        if res.type == CONTAINER:
            if set(changed) <= CONTAINER_IN_PLACE | CONTAINER_STATE_ONLY:
                return "update"
            return "replace"
        if res.type == SERVICE:
            # ForceNew in the provider's schema: the name, the registry auth, and the task's
            # network attachments; everything else is a service update.
            networks = [
                (spec.get("taskSpec") or {}).get("networksAdvanceds") for spec in (old, new)
            ]
            forced = {"name", "auth"} & set(changed) or networks[0] != networks[1]
            return "replace" if forced else "update"
        return "replace"

    # -- create / update / delete per type -------------------------------------------------

    def _auto_name(self, res: synth.Resource, inputs: Mapping[str, Any]) -> str:
        if inputs.get("name"):
            return str(inputs["name"])
        return f"{res.name}-{secrets.token_hex(4)[:7]}"

    def _create(self, res: synth.Resource, inputs: dict[str, Any]) -> dict[str, Any]:
        kind = res.type
        if kind == RANDOM_PASSWORD:
            value = _password(
                int(inputs.get("length", 16)), bool(inputs.get("special", True)), inputs
            )
            return {"id": "none", "result": value}
        if kind in (REMOTE_IMAGE, IMAGE):
            ref = inputs["name"] if kind == REMOTE_IMAGE else inputs["imageName"]
            try:
                image = self.client.images.get(ref)
            except docker.errors.ImageNotFound as exc:
                raise ApplyError(
                    f"{res.urn}: image {ref!r} is not on the engine; the applier never pulls "
                    "or builds (build the stand-ins first: tests/live/images.py)"
                ) from exc
            digests = image.attrs.get("RepoDigests") or []
            return {
                "id": image.id,
                "name": ref,
                "imageId": image.id,
                # For a local image the provider reports the image ID as the repo digest.
                "repoDigest": image.id if kind == IMAGE else (digests[0] if digests else ""),
            }
        name = self._auto_name(res, inputs) if kind in AUTO_NAMED else res.name
        if kind == NETWORK:
            net = self.client.networks.create(
                name,
                driver=inputs.get("driver") or None,
                attachable=inputs.get("attachable"),
                internal=bool(inputs.get("internal", False)),
                labels=label_map(inputs.get("labels")),
                options=inputs.get("options") or None,
                check_duplicate=True,
            )
            return {"id": net.id, "name": name}
        if kind == VOLUME:
            vol = self.client.volumes.create(
                name=name,
                driver=inputs.get("driver") or "local",
                driver_opts=inputs.get("driverOpts") or None,
                labels=label_map(inputs.get("labels")),
            )
            return {"id": vol.name, "name": vol.name}
        if kind == SECRET:
            created = self.client.api.create_secret(
                name, inputs["data"].encode(), labels=label_map(inputs.get("labels"))
            )
            return {"id": created["ID"], "name": name}
        if kind == SERVICE_CONFIG:
            created = self.client.api.create_config(name, inputs["data"].encode())
            return {"id": created["ID"], "name": name}
        if kind == CONTAINER:
            return self._create_container(res, name, inputs)
        if kind == SERVICE:
            return self._create_service(res, name, inputs)
        raise ApplyError(f"{res.urn}: cannot create {kind}")

    def _update(self, res: synth.Resource, old: Applied, inputs: dict[str, Any]) -> dict[str, Any]:
        if res.type == CONTAINER:
            changed = {k for k in CONTAINER_IN_PLACE if inputs.get(k) != old.inputs.get(k)}
            if changed:
                ctr = self.client.containers.get(old.outputs["id"])
                ctr.update(
                    restart_policy={
                        "Name": inputs.get("restart") or "no",
                        "MaximumRetryCount": int(inputs.get("maxRetryCount", 0)),
                    },
                    mem_limit=int(inputs.get("memory", 0)) * MIB or None,
                    mem_reservation=int(inputs.get("memoryReservation", 0)) * MIB or None,
                    cpu_shares=inputs.get("cpuShares"),
                )
            return dict(old.outputs)
        if res.type == SERVICE:
            return self._update_service(res, old, inputs)
        raise ApplyError(f"{res.urn}: {res.type} has no in-place update")

    def _delete(self, applied: Applied) -> None:
        kind, ident = applied.type, applied.outputs.get("id")
        try:
            if kind == CONTAINER:
                ctr = self.client.containers.get(ident)
                grace = int(applied.inputs.get("destroyGraceSeconds") or 0)
                ctr.stop(timeout=grace)
                ctr.remove(force=True, v=bool(applied.inputs.get("removeVolumes", True)))
            elif kind == SERVICE:
                self.client.api.remove_service(ident)
                # As the provider does: wait for the tasks' containers, so that the networks,
                # volumes, configs and secrets they hold can go too.
                grace = (
                    duration_ns(
                        applied.inputs.get("taskSpec", {})
                        .get("containerSpec", {})
                        .get("stopGracePeriod")
                    )
                    / 1e9
                )
                deadline = time.monotonic() + grace + 30
                while time.monotonic() < deadline and self.client.api.containers(
                    all=True, filters={"label": f"com.docker.swarm.service.id={ident}"}
                ):
                    time.sleep(0.5)
            elif kind == NETWORK:
                self.client.api.remove_network(ident)
            elif kind == VOLUME:
                self.client.api.remove_volume(ident, force=True)
            elif kind == SECRET:
                self.client.api.remove_secret(ident)
            elif kind == SERVICE_CONFIG:
                self.client.api.remove_config(ident)
            # Images are kept (keepLocally, and the stand-ins are the tier's cache); a password
            # has nothing to delete.
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise ApplyError(f"{applied.urn}: delete failed: {exc.explanation or exc}") from exc

    # -- containers -----------------------------------------------------------------------

    def _create_container(
        self, res: synth.Resource, name: str, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        known = {
            "image",
            "name",
            "envs",
            "labels",
            "networksAdvanced",
            "ports",
            "healthcheck",
            "wait",
            "waitTimeout",
            "restart",
            "maxRetryCount",
            "memory",
            "memoryReservation",
            "memorySwap",
            "cpus",
            "cpuShares",
            "user",
            "readOnly",
            "tmpfs",
            "capabilities",
            "securityOpts",
            "uploads",
            "volumes",
            "destroyGraceSeconds",
            "command",
            "entrypoint",
            "hostname",
            "workingDir",
            "stopSignal",
            "stopTimeout",
            "init",
            "mustRun",
            "attach",
            "logs",
            "rm",
        }
        unknown = set(inputs) - known
        if unknown:
            raise ApplyError(
                f"{res.urn}: Container inputs the applier does not map: {sorted(unknown)}"
            )
        api = self.client.api
        ports = inputs.get("ports") or []
        port_bindings: dict[str, list[tuple[str, int | None]]] = {}
        exposed: list[tuple[int, str]] = []
        for port in ports:
            proto = port.get("protocol", "tcp")
            exposed.append((int(port["internal"]), proto))
            port_bindings.setdefault(f"{port['internal']}/{proto}", []).append(
                (port.get("ip", "0.0.0.0"), port.get("external"))
            )
        binds = {}
        for vol in inputs.get("volumes") or []:
            source = vol.get("volumeName") or vol.get("hostPath")
            binds[source] = {
                "bind": vol["containerPath"],
                "mode": "ro" if vol.get("readOnly") else "rw",
            }
        caps = inputs.get("capabilities") or {}
        networks = inputs.get("networksAdvanced") or []
        first = networks[0] if networks else None
        host_config = api.create_host_config(
            port_bindings=port_bindings or None,
            binds=binds or None,
            restart_policy={
                "Name": inputs.get("restart") or "no",
                "MaximumRetryCount": int(inputs.get("maxRetryCount", 0)),
            },
            mem_limit=int(inputs["memory"]) * MIB if inputs.get("memory") else None,
            mem_reservation=int(inputs["memoryReservation"]) * MIB
            if inputs.get("memoryReservation")
            else None,
            nano_cpus=round(float(inputs["cpus"]) * 1e9) if inputs.get("cpus") else None,
            cpu_shares=inputs.get("cpuShares"),
            read_only=bool(inputs.get("readOnly", False)),
            tmpfs=inputs.get("tmpfs") or None,
            cap_add=caps.get("adds") or None,
            cap_drop=caps.get("drops") or None,
            security_opt=inputs.get("securityOpts") or None,
            network_mode=first["name"] if first else None,
            init=bool(inputs.get("init", False)),
        )
        networking_config = None
        if first:
            networking_config = api.create_networking_config(
                {first["name"]: api.create_endpoint_config(aliases=first.get("aliases") or None)}
            )
        health = inputs.get("healthcheck")
        healthcheck = None
        if health:
            healthcheck = {
                "test": health["tests"],
                "interval": duration_ns(health.get("interval")),
                "timeout": duration_ns(health.get("timeout")),
                "retries": int(health.get("retries", 0)),
                "start_period": duration_ns(health.get("startPeriod")),
            }
        created = api.create_container(
            inputs["image"],
            command=inputs.get("command"),
            entrypoint=inputs.get("entrypoint"),
            environment=inputs.get("envs") or None,
            labels=label_map(inputs.get("labels")),
            user=inputs.get("user") or None,
            name=name,
            hostname=inputs.get("hostname"),
            working_dir=inputs.get("workingDir"),
            stop_signal=inputs.get("stopSignal"),
            stop_timeout=inputs.get("stopTimeout"),
            ports=exposed or None,
            healthcheck=healthcheck,
            host_config=host_config,
            networking_config=networking_config,
        )
        cid = created["Id"]
        outputs = {"id": cid, "name": name}
        try:
            for net in networks[1:]:
                api.connect_container_to_network(cid, net["name"], aliases=net.get("aliases"))
            if inputs.get("uploads"):
                api.put_archive(cid, "/", _upload_tar(inputs["uploads"]))
            api.start(cid)
            if inputs.get("wait"):
                self._wait_healthy(res, cid, float(inputs.get("waitTimeout", 60)))
            if inputs.get("attach"):
                outputs.update(self._wait_exited(res, cid, bool(inputs.get("logs"))))
        except BaseException:
            # In state as the provider leaves it (created, then failed), so a destroy finds it.
            with self._lock:
                self._seq += 1
                self.state[res.urn + "#failed"] = Applied(
                    res.urn + "#failed",
                    res.type,
                    res.name,
                    inputs,
                    res.options,
                    {},
                    outputs,
                    [],
                    self._seq,
                )
            raise
        return outputs

    def _wait_exited(self, res: synth.Resource, cid: str, logs: bool) -> dict[str, Any]:
        """`attach`: the provider waits for the container to exit and records its exit code
        (and, with `logs`, its output); a non-zero exit does not fail the resource.

        The graph was synthesized before the apply, with the synth's mocks reporting exit 0,
        so what msops' gate (`migration_gate`) would do with a real non-zero exit in the
        engine, stop before the replicas that take its result, the applier does here.
        """
        try:
            status = self.client.api.wait(cid, timeout=ATTACH_TIMEOUT_S)
        except requests.exceptions.ReadTimeout as exc:
            raise ApplyError(f"{res.urn}: did not exit within {ATTACH_TIMEOUT_S}s") from exc
        output = self.client.api.logs(cid).decode(errors="replace") if logs else ""
        code = int(status.get("StatusCode", -1))
        if code != 0:
            tail = " | ".join(output.strip().splitlines()[-5:]) or "(no output)"
            raise ApplyError(f"{res.urn}: the one-off container exited {code}: {tail}")
        return {"exitCode": code, "containerLogs": output}

    def _wait_healthy(self, res: synth.Resource, cid: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.client.api.inspect_container(cid)["State"]
            health = state.get("Health")
            if health is None:
                raise ApplyError(
                    f"{res.urn}: you have supplied a 'wait' argument, but the container does "
                    "not have a healthcheck defined"
                )
            if health.get("Status") == "healthy":
                return
            time.sleep(0.5)
        logs = self.client.api.logs(cid, tail=30).decode(errors="replace")
        probes = [h.get("Output", "").strip() for h in (state.get("Health") or {}).get("Log", [])][
            -3:
        ]
        raise ApplyError(
            f"{res.urn}: container failed to be in a healthy state within {timeout:.0f}s "
            f"(status {state.get('Status')}, health {(state.get('Health') or {}).get('Status')}); "
            f"last probes: {probes}; logs:\n{logs}"
        )

    # -- swarm services -------------------------------------------------------------------

    def _service_spec(
        self, res: synth.Resource, name: str, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        task = inputs.get("taskSpec") or {}
        cs = task.get("containerSpec") or {}
        known_cs = {
            "image",
            "env",
            "user",
            "readOnly",
            "capDrops",
            "capAdds",
            "mounts",
            "configs",
            "secrets",
            "healthcheck",
            "labels",
            "stopGracePeriod",
            "args",
            "commands",
            "hostname",
            "dir",
            "stopSignal",
            "groups",
        }
        unknown = set(cs) - known_cs
        if unknown:
            raise ApplyError(
                f"{res.urn}: containerSpec inputs the applier does not map: {sorted(unknown)}"
            )
        spec_cs: dict[str, Any] = {
            "Image": cs["image"],
            "Labels": label_map(cs.get("labels")),
            "Env": [f"{k}={v}" for k, v in sorted((cs.get("env") or {}).items())],
        }
        if cs.get("args"):
            spec_cs["Args"] = cs["args"]
        if cs.get("commands"):
            spec_cs["Command"] = cs["commands"]
        for key, api_key in (
            ("user", "User"),
            ("hostname", "Hostname"),
            ("dir", "Dir"),
            ("stopSignal", "StopSignal"),
            ("groups", "Groups"),
        ):
            if cs.get(key):
                spec_cs[api_key] = cs[key]
        if cs.get("readOnly"):
            spec_cs["ReadOnly"] = True
        if cs.get("capDrops"):
            spec_cs["CapabilityDrop"] = cs["capDrops"]
        if cs.get("capAdds"):
            spec_cs["CapabilityAdd"] = cs["capAdds"]
        if cs.get("stopGracePeriod"):
            spec_cs["StopGracePeriod"] = duration_ns(cs["stopGracePeriod"])
        if cs.get("healthcheck"):
            h = cs["healthcheck"]
            spec_cs["Healthcheck"] = {
                "Test": h["tests"],
                "Interval": duration_ns(h.get("interval")),
                "Timeout": duration_ns(h.get("timeout")),
                "StartPeriod": duration_ns(h.get("startPeriod")),
                "Retries": int(h.get("retries", 0)),
            }
        mounts = []
        for m in cs.get("mounts") or []:
            mount: dict[str, Any] = {"Target": m["target"], "Type": m.get("type", "volume")}
            if m.get("source"):
                mount["Source"] = m["source"]
            if m.get("readOnly"):
                mount["ReadOnly"] = True
            if m.get("tmpfsOptions"):
                opts = m["tmpfsOptions"]
                mount["TmpfsOptions"] = {
                    k: v
                    for k, v in (("SizeBytes", opts.get("sizeBytes")), ("Mode", opts.get("mode")))
                    if v is not None
                }
            if m.get("volumeOptions"):
                vo = m["volumeOptions"]
                mount["VolumeOptions"] = {
                    "NoCopy": bool(vo.get("noCopy", False)),
                    "Labels": label_map(vo.get("labels")),
                }
            mounts.append(mount)
        if mounts:
            spec_cs["Mounts"] = mounts

        def file_ref(item: Mapping[str, Any]) -> dict[str, Any]:
            return {
                "Name": item["fileName"],
                "UID": str(item.get("fileUid", "0")),
                "GID": str(item.get("fileGid", "0")),
                "Mode": int(item.get("fileMode", 0o444)),
            }

        if cs.get("configs"):
            spec_cs["Configs"] = [
                {"File": file_ref(c), "ConfigID": c["configId"], "ConfigName": c["configName"]}
                for c in cs["configs"]
            ]
        if cs.get("secrets"):
            spec_cs["Secrets"] = [
                {"File": file_ref(s), "SecretID": s["secretId"], "SecretName": s["secretName"]}
                for s in cs["secrets"]
            ]
        template: dict[str, Any] = {"ContainerSpec": spec_cs}
        resources = task.get("resources") or {}
        if resources:

            def res_spec(r: Mapping[str, Any] | None) -> dict[str, Any]:
                r = r or {}
                return {
                    k: int(v)
                    for k, v in (
                        ("NanoCPUs", r.get("nanoCpus")),
                        ("MemoryBytes", r.get("memoryBytes")),
                    )
                    if v
                }

            template["Resources"] = {
                "Limits": res_spec(resources.get("limits")),
                "Reservations": res_spec(resources.get("reservation")),
            }
        if task.get("restartPolicy"):
            rp = task["restartPolicy"]
            template["RestartPolicy"] = {
                k: v
                for k, v in (
                    ("Condition", rp.get("condition")),
                    ("Delay", duration_ns(rp.get("delay")) if rp.get("delay") else None),
                    ("MaxAttempts", rp.get("maxAttempts")),
                    ("Window", duration_ns(rp.get("window")) if rp.get("window") else None),
                )
                if v is not None
            }
        placement = task.get("placement") or {}
        if placement:
            template["Placement"] = {"Constraints": placement.get("constraints") or []}
            if placement.get("maxReplicas"):
                template["Placement"]["MaxReplicas"] = placement["maxReplicas"]
        if task.get("networksAdvanceds"):
            template["Networks"] = [
                {"Target": n["name"], "Aliases": n.get("aliases") or []}
                for n in task["networksAdvanceds"]
            ]
        if task.get("forceUpdate"):
            template["ForceUpdate"] = int(task["forceUpdate"])

        def update_spec(u: Mapping[str, Any] | None) -> dict[str, Any] | None:
            if not u:
                return None
            return {
                "Parallelism": int(u.get("parallelism", 1)),
                "Delay": duration_ns(u.get("delay")),
                "FailureAction": u.get("failureAction", "pause"),
                "Monitor": duration_ns(u.get("monitor")),
                "MaxFailureRatio": float(u.get("maxFailureRatio", "0") or 0),
                "Order": u.get("order", "stop-first"),
            }

        mode = inputs.get("mode") or {"replicated": {"replicas": 1}}
        if mode.get("global"):
            spec_mode: dict[str, Any] = {"Global": {}}
        else:
            spec_mode = {
                "Replicated": {"Replicas": int((mode.get("replicated") or {}).get("replicas", 1))}
            }
        endpoint = inputs.get("endpointSpec") or {}
        spec_endpoint: dict[str, Any] = {"Mode": endpoint.get("mode", "vip")}
        if endpoint.get("ports"):
            spec_endpoint["Ports"] = [
                {
                    k: v
                    for k, v in (
                        ("Name", p.get("name")),
                        ("Protocol", p.get("protocol", "tcp")),
                        ("TargetPort", p.get("targetPort")),
                        ("PublishedPort", p.get("publishedPort")),
                        ("PublishMode", p.get("publishMode", "ingress")),
                    )
                    if v is not None
                }
                for p in endpoint["ports"]
            ]
        return {
            "name": name,
            "labels": label_map(inputs.get("labels")),
            "task_template": template,
            "mode": spec_mode,
            "update_config": update_spec(inputs.get("updateConfig")),
            "rollback_config": update_spec(inputs.get("rollbackConfig")),
            "endpoint_spec": spec_endpoint,
        }

    def _create_service(
        self, res: synth.Resource, name: str, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        spec = self._service_spec(res, name, inputs)
        created = self.client.api.create_service(**spec)
        sid = created["ID"]
        if inputs.get("convergeConfig"):
            try:
                self._converge(res, sid, inputs["convergeConfig"], updating=False)
            except ApplyError:
                # The provider removes a service that did not converge.
                with contextlib.suppress(docker.errors.APIError):
                    self.client.api.remove_service(sid)
                raise
        return {"id": sid, "name": name}

    def _update_service(
        self, res: synth.Resource, old: Applied, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        sid = old.outputs["id"]
        spec = self._service_spec(res, old.outputs["name"], inputs)
        current = self.client.api.inspect_service(sid)
        # An update that changes only the replica count starts no rolling update, and the
        # service keeps the status of the previous one: that must not count as this one's.
        earlier = (current.get("UpdateStatus") or {}).get("StartedAt")
        self.client.api.update_service(sid, current["Version"]["Index"], **spec)
        if inputs.get("convergeConfig"):
            self._converge(res, sid, inputs["convergeConfig"], updating=True, earlier=earlier)
        return dict(old.outputs)

    def _converge(
        self,
        res: synth.Resource,
        sid: str,
        config: Mapping[str, Any],
        *,
        updating: bool,
        earlier: str | None = None,
    ) -> None:
        """Wait as the provider's converge config does: every replica running, update done."""
        timeout = duration_ns(config.get("timeout") or "3m") / 1e9
        time.sleep(duration_ns(config.get("delay") or "7s") / 1e9)
        deadline = time.monotonic() + timeout
        api = self.client.api
        while time.monotonic() < deadline:
            service = api.inspect_service(sid)
            update = service.get("UpdateStatus") or {}
            fresh = update.get("StartedAt") != earlier
            status = update.get("State") if fresh else None
            message = update.get("Message", "")
            if updating and status == "rollback_completed":
                raise ServiceRolledBack(f"{res.urn}: service rollback completed: {message}")
            if updating and status == "paused":
                raise ApplyError(f"{res.urn}: service update paused: {message}")
            if updating and status == "rollback_paused":
                raise ApplyError(f"{res.urn}: service rollback paused: {message}")
            replicated = service["Spec"]["Mode"].get("Replicated")
            want = int(replicated.get("Replicas", 1)) if replicated else None
            tasks = api.tasks(filters={"service": sid, "desired-state": "running"})
            running = sum(1 for t in tasks if t["Status"]["State"] == "running")
            in_progress = status in ("updating", "rollback_started")
            if (
                not in_progress
                and (want is None or running == want)
                and status != "rollback_completed"
            ):
                return
            time.sleep(1)
        tasks = api.tasks(filters={"service": sid})
        recent = sorted(tasks, key=lambda t: t.get("UpdatedAt", ""))[-5:]
        why = [
            f"{t['Status']['State']}: {t['Status'].get('Err') or t['Status'].get('Message')}"
            for t in recent
        ]
        raise ApplyError(
            f"{res.urn}: service did not converge within {timeout:.0f}s; recent tasks: {why}"
        )
