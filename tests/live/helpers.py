"""What the live scenarios share: HTTP from the host, polling, migrations, swarm clients, and a
gateway that lets msops' own actions deploy to the engine."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest

from msops import releases
from tests import fakes
from tests.live.applier import CONTAINER, Applier, ApplyError, LiveGraph, UpResult, live_synth
from tests.live.engine import LIVE_LABEL
from tests.live.loadgen import LoadResult

HERE = Path(__file__).resolve().parent
T = TypeVar("T")


class LiveResults:
    """Figures by scenario, in the order they were recorded."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        self.path: Path | None = None

    def record(self, scenario: str, key: str, value: Any) -> None:
        self.figures.setdefault(scenario, {})[key] = value
        # Also on stdout, for -s runs and for the captured output of a failing test.
        print(f"[live] {scenario}: {key} = {value}")
        self.flush()

    def flush(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.figures, indent=1, default=str) + "\n")


RESULTS_KEY = pytest.StashKey[LiveResults]()


def apply_or_explain(applier: Applier, graph: LiveGraph) -> UpResult:
    """`applier.up(graph)`, failing the test with the applier's message (it names the URN)."""
    try:
        return applier.up(graph)
    except ApplyError as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, *, auth: tuple[str, str] | None = None, timeout: float = 5.0) -> Answer:
    """GET from the host; an HTTP error status is an Answer, not an exception."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


def wait_for(
    probe: Callable[[], T], *, timeout: float, interval: float = 0.5, what: str = "condition"
) -> tuple[T, float]:
    """Call `probe` until it returns something truthy; returns it and the seconds it took."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last, time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s; last: {last!r}")


def replica_env(graph: LiveGraph, var: str, service: str | None = None) -> list[str]:
    """The value of `var` in every replica container of a docker graph (of `service`'s, given
    one)."""
    values = []
    for res in graph:
        if res.type != CONTAINER:
            continue
        labels = {item["label"]: item.get("value") for item in res.inputs.get("labels", [])}
        if labels.get("msops.role") != "replica":
            continue
        if service is not None and labels.get("msops.service") != service:
            continue
        for item in res.inputs.get("envs") or []:
            key, _, value = item.partition("=")
            if key == var:
                values.append(value)
    return values


def applied_env(applier: Applier, name: str, var: str) -> str:
    """The real value of `var` in the environment the applier gave container `name`."""
    for applied in applier.state.values():
        if applied.type == CONTAINER and applied.name == name:
            for item in applied.inputs.get("envs") or []:
                key, _, value = item.partition("=")
                if key == var:
                    return value
    raise KeyError(f"{name} has no {var} in its applied environment")


def has_migration_step(graph: LiveGraph) -> bool:
    """Whether the graph itself runs the demo's migrations (some container's command does)."""
    return "demo.migrate" in json.dumps([r.inputs for r in graph], default=str)


def migrate(client: docker.DockerClient, *, image: str, network: str, database_url: str) -> str:
    """Run `python -m demo.migrate up` once on the stack network, as an operator would."""
    try:
        out = client.containers.run(
            image,
            ["python", "-m", "demo.migrate", "up"],
            environment={"DATABASE_URL": database_url},
            network=network,
            labels={LIVE_LABEL: "migrate"},
            remove=True,
            stdout=True,
            stderr=True,
        )
    except docker.errors.ContainerError as exc:
        raise AssertionError(f"demo.migrate up failed ({exc.exit_status}): {exc.stderr!r}") from exc
    return out.decode(errors="replace") if isinstance(out, bytes) else str(out)


def prometheus_targets(get: Callable[[str], Any], job: str) -> list[dict[str, Any]]:
    body = get("/api/v1/targets?state=active")
    return [t for t in body["data"]["activeTargets"] if t["labels"].get("job") == job]


def prometheus_rule_count(get: Callable[[str], Any]) -> int:
    body = get("/api/v1/rules")
    return sum(len(group["rules"]) for group in body["data"]["groups"])


# Run by python3 in the client container: prints the status, a newline, then the body.
_GET = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except Exception as e:
    status, body = "error", repr(e).encode()
sys.stdout.write(f"{status}\\n"); sys.stdout.flush(); sys.stdout.buffer.write(body)
"""


class OverlayClient:
    """A container on a swarm overlay network, to reach what only resolves from inside it.

    Here the routing mesh and service VIPs carry no traffic (no IP_VS in the kernel), so
    requests go to `tasks.<service>` from a container attached to the stack's network.
    """

    def __init__(self, client: docker.DockerClient, *, image: str, network: str) -> None:
        self.client = client
        self.image = image
        self.network = network
        self.container = client.containers.run(
            image,
            ["sleep", "infinity"],
            detach=True,
            network=network,
            labels={LIVE_LABEL: "client"},
            user="65534",
            volumes={str(HERE): {"bind": "/live", "mode": "ro"}},
        )

    def get(self, url: str) -> tuple[int, str]:
        """The HTTP status and body of a GET from inside the network (0: no answer)."""
        code, out = self.container.exec_run(["python3", "-c", _GET, url])
        status, _, body = out.decode(errors="replace").partition("\n")
        return (int(status) if code == 0 and status.isdigit() else 0), body

    def get_json(self, url: str) -> Any:
        status, body = self.get(url)
        if status != 200:
            raise AssertionError(f"GET {url} from the overlay network: {status} {body[:500]}")
        return json.loads(body)

    def addresses(self, name: str) -> list[str]:
        code, out = self.container.exec_run(
            [
                "python3",
                "-c",
                "import socket,sys; print(' '.join(sorted({a[4][0] for a in "
                "socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET, socket.SOCK_STREAM)})))",
                name,
            ]
        )
        return out.decode().split() if code == 0 else []

    def start_load(self, url: str, *, workers: int = 4, rate: float = 200.0) -> OverlayLoad:
        return OverlayLoad(self, url, workers=workers, rate=rate)

    def close(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)


class OverlayLoad:
    """tests/live/loadgen.py run inside a client container on the overlay network."""

    def __init__(self, owner: OverlayClient, url: str, *, workers: int, rate: float) -> None:
        self.container = owner.client.containers.run(
            owner.image,
            [
                "python3",
                "/live/loadgen.py",
                "--url",
                url,
                "--resolve-each",
                "--workers",
                str(workers),
                "--rate",
                str(rate),
            ],
            detach=True,
            network=owner.network,
            labels={LIVE_LABEL: "load"},
            user="65534",
            volumes={str(HERE): {"bind": "/live", "mode": "ro"}},
            environment={"PYTHONDONTWRITEBYTECODE": "1"},
        )
        wait_for(
            lambda: b"load started" in self.container.logs(stdout=False, stderr=True),
            timeout=30,
            interval=0.2,
            what="load generator start",
        )

    def stop(self) -> LoadResult:
        try:
            self.container.stop(timeout=20)
            out = self.container.logs(stdout=True, stderr=False).decode().strip()
            if not out:
                err = self.container.logs(stdout=False, stderr=True).decode()
                raise AssertionError(f"load generator printed no result; stderr: {err[-2000:]}")
            return LoadResult.from_json(out.splitlines()[-1])
        finally:
            self.container.remove(force=True)


@contextlib.contextmanager
def docker_stack(
    client: docker.DockerClient,
    graph: LiveGraph,
    live_results: LiveResults,
    scenario: str,
    *,
    network: str = "msops-dev-net",
) -> Iterator[Applier]:
    """A docker-backend graph applied (migrated, when the graph does not), destroyed after."""
    applier = new_applier(client, scenario.split()[-1])
    started = time.monotonic()
    try:
        apply_or_explain(applier, graph)
        live_results.record(scenario, "apply seconds", round(time.monotonic() - started, 1))
        if not has_migration_step(graph):
            # No migration step in the graph yet: migrate as an operator would, so that
            # /readyz passes its schema check.
            replica = next(
                a
                for a in applier.state.values()
                if a.type == CONTAINER and "DATABASE_URL=" in json.dumps(a.inputs.get("envs"))
            )
            migrate(
                client,
                image=replica.inputs["image"],
                network=network,
                database_url=applied_env(applier, replica.name, "DATABASE_URL"),
            )
            live_results.record(scenario, "migrations", "run by the test (the graph has none)")
        yield applier
    finally:
        applier.destroy()


def applier_log(prefix: str) -> Callable[[str], None]:
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{prefix} +{time.monotonic() - started:6.1f}s] {message}")

    return log


def new_applier(client: docker.DockerClient, prefix: str) -> Applier:
    return Applier(client, log=applier_log(prefix))


def container_ids(applier: Applier) -> dict[str, str]:
    """Container resource name -> the ID of the container the applier runs for it now."""
    return {
        a.name: a.outputs["id"]
        for a in applier.state.values()
        if a.type == CONTAINER and not a.urn.endswith("#failed")
    }


class LiveGateway(fakes.FakeGateway):
    """tests/fakes.py's gateway over stack files in tmp, except that `up` deploys for real: the
    stack file's config is synthesized (live_synth) and applied to the engine, then recorded
    in the history as Pulumi records an update. msops' actions (Up, Rollback, ...) run
    against it unchanged, so what reaches the engine is what they wrote into the file."""

    def __init__(self, stacks_dir: Path, applier: Applier) -> None:
        super().__init__(stacks_dir)
        self.applier = applier
        # What each `up` did on the engine, in turn.
        self.applied: list[UpResult] = []

    def up(self, stack: str, **kwargs: Any) -> releases.UpResult:
        values = releases.decode_config(self.current_config(stack))
        graph = live_synth(config=values, stack_name=stack)
        self.applied.append(apply_or_explain(self.applier, graph))
        return super().up(stack, **kwargs)


@contextlib.contextmanager
def live_bench(client: docker.DockerClient, root: Path, prefix: str) -> Iterator[fakes.Bench]:
    """A tests/fakes.py Bench (stack files in `root`, stubbed policies and verifier) whose dev
    stack is the committed file with no history yet, and whose gateway is a LiveGateway;
    everything it applied is destroyed after."""
    bench = fakes.Bench(root)
    bench.deployed("dev", [], (fakes.COMMITTED_STACKS / "Pulumi.dev.yaml").read_text())
    applier = new_applier(client, prefix)
    bench.gateway = LiveGateway(bench.stacks, applier)
    try:
        yield bench
    finally:
        applier.destroy()
