"""Test doubles: an in-memory gateway replaying a realistic history, a fake service on loopback."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from msops import releases
from msops.actions.base import Configuration
from msops.errors import OperationFailed, StackLocked
from msops.lifecycle import EngineRun
from msops.releases import ConfigEntry, EngineNote, OnEvent, OnOutput, Update, UpResult
from msops.verify import Plan, Verdict

COMMITTED_STACKS = Path(__file__).resolve().parent.parent / "stacks"

FAKE_PREFIX = "v1:fake:"
EPOCH = datetime(2025, 3, 1, 9, 0, 0)

# A dev stack like the committed one, plus a named secret, so rollbacks meet a real ciphertext.
DEV_STACK = """\
# dev: one machine with Docker (a test copy that also holds a secret).
config:
  msops:backend: docker
  msops:services:
    web:
      image: msops/demo:1.4.0
      # Built from app/ on this machine, since no registry is needed for dev.
      build: app
      replicas: 2
      port: 8080
      env:
        LOG_LEVEL: info
      secretEnv:
        API_KEY: apiKey
      database: main
      lb:
        port: 8000
  msops:databases:
    main:
      # No password set: msops generates one with pulumi-random.
      version: "16.4"
      storage: 1Gi
  msops:secrets:
    apiKey:
      secure: {ciphertext}
  msops:monitoring:
    enabled: true
    grafana: true
"""

# The plaintext secrets of the realistic history, oldest first; the test file holds the last.
API_KEYS = ("api-key-one", "api-key-two")


def encrypt(value: str) -> str:
    """The fake ciphertext: reversible, and never equal to the plaintext."""
    return FAKE_PREFIX + base64.b64encode(value.encode()).decode()


def decrypt(ciphertext: str) -> str:
    assert ciphertext.startswith(FAKE_PREFIX), f"not a fake ciphertext: {ciphertext!r}"
    return base64.b64decode(ciphertext[len(FAKE_PREFIX) :]).decode()


def dev_stack_text(api_key: str = API_KEYS[-1]) -> str:
    return DEV_STACK.format(ciphertext=encrypt(api_key))


def _plain(node: Any) -> tuple[Any, bool]:
    """Decrypt every fake `{secure: ...}`; report whether there was one."""
    if isinstance(node, dict):
        if set(node) == {"secure"}:
            return decrypt(node["secure"]), True
        out, found = {}, False
        for key, value in node.items():
            out[key], had = _plain(value)
            found = found or had
        return out, found
    if isinstance(node, list):
        items = [_plain(v) for v in node]
        return [v for v, _ in items], any(h for _, h in items)
    return node, False


def entries(
    values: Mapping[str, Any], secret_keys: set[str] | frozenset[str]
) -> dict[str, ConfigEntry]:
    """Config values as Pulumi reports them: objects as JSON text, secrets flagged per key."""
    return {
        key: ConfigEntry(
            value=json.dumps(value) if isinstance(value, dict | list) else str(value),
            secret=key in secret_keys,
        )
        for key, value in values.items()
    }


def dev_values(image: str, replicas: int, api_key: str) -> dict[str, Any]:
    """The decoded config of the test dev stack with another image, replica count and secret."""
    doc = YAML(typ="safe").load(dev_stack_text(api_key))
    values, _ = _plain(doc["config"])
    values["msops:services"]["web"]["image"] = image
    values["msops:services"]["web"]["replicas"] = replicas
    return values


def realistic_history() -> list[Update]:
    """14 updates of the test dev stack, oldest first, as the file backend records them.

    Every version is 0. Releases 3 and 13 failed, release 4 is a refresh, and the API key
    changed at release 6. Release 14 is what the test stack file holds.
    """
    plan: list[tuple[str, str, str, int, int]] = [
        # kind, result, image, replicas, api key index
        ("update", "succeeded", "msops/demo:1.0.0", 2, 0),
        ("update", "succeeded", "msops/demo:1.1.0", 2, 0),
        ("update", "failed", "msops/demo:1.2.0", 2, 0),
        ("refresh", "succeeded", "msops/demo:1.1.0", 2, 0),
        ("update", "succeeded", "msops/demo:1.1.1", 2, 0),
        ("update", "succeeded", "msops/demo:1.1.1", 2, 1),
        ("update", "succeeded", "msops/demo:1.1.1", 3, 1),
        ("update", "succeeded", "msops/demo:1.2.1", 3, 1),
        ("update", "succeeded", "msops/demo:1.2.1", 2, 1),
        ("update", "succeeded", "msops/demo:1.3.0", 2, 1),
        ("update", "succeeded", "msops/demo:1.3.1", 2, 1),
        ("update", "succeeded", "msops/demo:1.3.2", 2, 1),
        ("update", "failed", "msops/demo:2.0.0", 2, 1),
        ("update", "succeeded", "msops/demo:1.4.0", 2, 1),
    ]
    history = []
    for i, (kind, result, image, replicas, key) in enumerate(plan):
        values = dev_values(image, replicas, API_KEYS[key])
        start = EPOCH + timedelta(hours=i)
        history.append(
            Update(
                kind=kind,
                result=result,
                start_time=start,
                end_time=start + timedelta(minutes=2),
                message=f"{kind} {i + 1}: {image}",
                version=0,
                config=entries(values, {"msops:secrets"}),
                changes={"update": 1} if kind == "update" else {},
            )
        )
    return history


# --- stacks with migrations ----------------------------------------------------------------------

MIGRATIONS_BLOCK = """\
      migrations:
        command: ["python", "-m", "demo.migrate", "up"]
{down}        schemaVersion: {schema}
"""
DOWN_LINE = '        down: ["python", "-m", "demo.migrate", "down", "--to", "{version}"]\n'


def schema_stack_text(image: str, schema: int | None, *, down: bool = True) -> str:
    """The test dev stack with `web` at `image` needing `schema` (None: no migrations)."""
    text = dev_stack_text().replace("image: msops/demo:1.4.0", f"image: {image}", 1)
    if schema is None:
        return text
    block = MIGRATIONS_BLOCK.format(down=DOWN_LINE if down else "", schema=schema)
    return text.replace("      database: main\n", "      database: main\n" + block, 1)


def schema_update(
    image: str,
    schema: int | None,
    *,
    hour: int,
    down: bool = True,
    result: str = "succeeded",
    message: str = "",
) -> Update:
    """A recorded update of `schema_stack_text`, `hour` hours after EPOCH."""
    doc = YAML(typ="safe").load(schema_stack_text(image, schema, down=down))
    values, _ = _plain(doc["config"])
    start = EPOCH + timedelta(hours=hour)
    return Update(
        kind="update",
        result=result,
        start_time=start,
        end_time=start + timedelta(minutes=2),
        message=message or f"update {hour + 1}: {image}",
        version=0,
        config=entries(values, {"msops:secrets"}),
    )


_SEGMENT = re.compile(r'\.([^.\[\]"]+)|\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]')


def split_path(key: str) -> tuple[str, list[str | int]]:
    """`msops:databases.main.password` → ("msops:databases", ["main", "password"])."""
    namespace, _, rest = key.partition(":")
    match = re.match(r"[^.\[]+", rest)
    assert match, key
    top = f"{namespace}:{match.group(0)}"
    parts: list[str | int] = []
    for m in _SEGMENT.finditer(rest[match.end() :]):
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(m.group(2).replace('\\"', '"').replace("\\\\", "\\"))
        else:
            parts.append(int(m.group(3)))
    return top, parts


class FakeGateway:
    """A stand-in for msops.gateway.PulumiGateway over a directory of stack files.

    History pages are served the way `pulumi stack history --page-size N --page P` serves
    them (newest first), so `history` exercises the real paging loop with Pulumi's page of 10.
    `set_secret` rewrites the stack file without its comments, as a careless CLI could.
    """

    backend = "memory://fake"

    def __init__(
        self,
        stacks_dir: Path,
        histories: Mapping[str, list[Update]] | None = None,
        outputs: Mapping[str, dict[str, Any]] | None = None,
        page_size: int = 10,
    ) -> None:
        self.stacks_dir = stacks_dir
        # Oldest first, like a log; pages are cut from the reversed list.
        self.updates: dict[str, list[Update]] = {k: list(v) for k, v in (histories or {}).items()}
        self.stack_outputs: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in (outputs or {}).items()
        }
        self.page_size = page_size
        self.calls: list[tuple[Any, ...]] = []
        # The environment each `up` handed the program (a canary step, or nothing).
        self.envs: list[dict[str, str]] = []
        self.fail_next_up: str | None = None
        self.locked = False
        self.secrets_set: dict[tuple[str, str], str] = {}
        # The stack file as each preview saw it: the engine previews what is on disk.
        self.previewed: dict[str, str] = {}
        # What refreshes and destroys (and their previews) report, by gateway method.
        self.engine_runs: dict[str, EngineRun] = {}

    def _path(self, stack: str) -> Path:
        return self.stacks_dir / f"Pulumi.{stack}.yaml"

    def history_page(self, stack: str, page: int, page_size: int) -> list[Update]:
        self.calls.append(("history_page", stack, page, page_size))
        newest_first = list(reversed(self.updates.get(stack, [])))
        return newest_first[(page - 1) * page_size : page * page_size]

    def history(self, stack: str) -> list[Update]:
        self.calls.append(("history", stack))
        return releases.all_pages(partial(self.history_page, stack), self.page_size)

    def current_config(self, stack: str) -> dict[str, ConfigEntry]:
        self.calls.append(("current_config", stack))
        config = (YAML(typ="safe").load(self._path(stack).read_text()) or {}).get("config") or {}
        result = {}
        for key, value in config.items():
            plain, secret = _plain(value)
            result.update(entries({key: plain}, {key} if secret else set()))
        return result

    def set_secret(self, stack: str, key: str, value: str, *, path: bool) -> None:
        # The value is recorded apart from `calls`, so that printing calls never shows it.
        self.calls.append(("set_secret", stack, key, path))
        self.secrets_set[(stack, key)] = value
        yaml = YAML(typ="safe")
        file = self._path(stack)
        doc = yaml.load(file.read_text()) or {}
        config = doc.setdefault("config", {})
        top, parts = split_path(key) if path else (key, [])
        if not parts:
            config[top] = {"secure": encrypt(value)}
        else:
            node = config.setdefault(top, {})
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = {"secure": encrypt(value)}
        doc.setdefault("encryptionsalt", "v1:fakesalt")
        out = io.StringIO()
        yaml.default_flow_style = False
        yaml.dump(doc, out)
        file.write_text(out.getvalue())

    def preview(
        self, stack: str, *, on_output: OnOutput | None = None, on_event: OnEvent | None = None
    ) -> dict[str, int]:
        self.calls.append(("preview", stack))
        self.previewed[stack] = self._path(stack).read_text()
        if on_output:
            on_output(f"Previewing update ({stack})")
            on_output("    ~ docker:index/container:Container web-1 update")
        if on_event:
            on_event(EngineNote(kind="start", op="update", urn="urn:pulumi:dev::msops::web-1"))
            on_event(EngineNote(kind="done", op="update", urn="urn:pulumi:dev::msops::web-1"))
        return {"same": 10, "update": 1}

    def up(
        self,
        stack: str,
        *,
        message: str | None = None,
        env: Mapping[str, str] | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> UpResult:
        self.calls.append(("up", stack, message))
        self.envs.append(dict(env or {}))
        if self.locked:
            raise StackLocked(f"stack {stack!r} is locked: another update is running")
        config = self.current_config(stack)
        start = EPOCH + timedelta(days=30, hours=len(self.updates.get(stack, [])))
        failure, self.fail_next_up = self.fail_next_up, None
        self.updates.setdefault(stack, []).append(
            Update(
                kind="update",
                result="failed" if failure else "succeeded",
                start_time=start,
                end_time=start + timedelta(minutes=1),
                message=message or "",
                version=0,
                config=copy.deepcopy(config),
            )
        )
        if on_output:
            on_output(f"Updating ({stack})")
        if on_event:
            on_event(EngineNote(kind="start", op="update", urn="urn:pulumi:dev::msops::web-1"))
        if failure:
            if on_event:
                on_event(EngineNote(kind="failed", op="update", urn="urn:pulumi:dev::msops::web-1"))
            raise OperationFailed(f"the update of stack {stack!r} failed:\n  error: {failure}")
        if on_event:
            on_event(EngineNote(kind="done", op="update", urn="urn:pulumi:dev::msops::web-1"))
        return UpResult(
            result="succeeded", outputs=self.stack_outputs.get(stack, {}), changes={"update": 1}
        )

    def outputs(self, stack: str) -> dict[str, Any]:
        self.calls.append(("outputs", stack))
        return dict(self.stack_outputs.get(stack, {}))

    def _engine_run(
        self,
        method: str,
        stack: str,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> EngineRun:
        if self.locked:
            raise StackLocked(f"stack {stack!r} is locked: another update is running")
        if on_output:
            on_output(f"{method} ({stack})")
        run = self.engine_runs.get(method, EngineRun(changes={"same": 12}))
        if on_event:
            for step in run.steps:
                on_event(EngineNote(kind="done", op=step.op, urn=step.urn))
        return run

    def preview_refresh(self, stack: str, **progress: Any) -> EngineRun:
        self.calls.append(("preview_refresh", stack))
        return self._engine_run("preview_refresh", stack, **progress)

    def refresh(self, stack: str, *, message: str | None = None, **progress: Any) -> EngineRun:
        self.calls.append(("refresh", stack, message))
        return self._engine_run("refresh", stack, **progress)

    def preview_destroy(self, stack: str, **progress: Any) -> EngineRun:
        self.calls.append(("preview_destroy", stack))
        return self._engine_run("preview_destroy", stack, **progress)

    def destroy(self, stack: str, *, message: str | None = None, **progress: Any) -> EngineRun:
        self.calls.append(("destroy", stack, message))
        return self._engine_run("destroy", stack, **progress)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


def retired_release(start: datetime) -> Update:
    """A successful update whose config today's schema rejects (`web` has a retired key)."""
    values = dev_values("msops/demo:0.9.0", 2, API_KEYS[0])
    values["msops:services"]["web"]["retiredKey"] = True
    return Update(
        kind="update",
        result="succeeded",
        start_time=start,
        message="update 0: msops/demo:0.9.0",
        version=0,
        config=entries(values, {"msops:secrets"}),
    )


def stack_copies(tmp_path: Path, monkeypatch: Any | None = None) -> Path:
    """Copies of the committed stack files in tmp; with `monkeypatch`, where msops reads them."""
    from msops import stackfiles

    directory = tmp_path / "stacks"
    directory.mkdir()
    for path in COMMITTED_STACKS.glob("Pulumi.*.yaml"):
        (directory / path.name).write_text(path.read_text())
    if monkeypatch is not None:
        monkeypatch.setattr(stackfiles, "STACKS_DIR", directory)
    return directory


def help_run(command: str) -> subprocess.CompletedProcess[str]:
    """`msops COMMAND --help` in a fresh interpreter; its last line of stdout lists the heavy
    modules (pulumi, pydantic, ruamel, rich, components) that the help loaded."""
    code = (
        "import sys\n"
        f"sys.argv = ['msops', {command!r}, '--help']\n"
        "from msops.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "heavy = ('pulumi', 'pydantic', 'ruamel', 'rich', 'components')\n"
        "print([m for m in sys.modules if m.startswith(heavy)])\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def add_lines(stacks: Path, stack: str, after: str, lines: str) -> None:
    """Insert `lines` into a stack file copy after the line `after` (whole lines, indented)."""
    path = stacks / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert after in text, f"{after!r} is not in {path.name}"
    path.write_text(text.replace(after, after + lines, 1))


# --- running actions without typer --------------------------------------------------------------


class Violation:
    """The shape of a policy pack violation, for a stubbed policy pack."""

    def __init__(self, level: str, policy: str = "resource-limits") -> None:
        self.policy = policy
        self.level = level
        self.urn = "urn:pulumi:dev::msops::docker:index/container:Container::dev-web-1"
        self.message = "the container has no CPU limit"


class Answers:
    """A Confirm: a person who gives these answers in turn; with none, nobody is there."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.present = bool(answers)
        self.questions: list[str] = []

    def can_ask(self) -> bool:
        return self.present

    def ask(self, question: str) -> bool:
        self.questions.append(question)
        return self.answers.pop(0)


class Bench:
    """What an action runs against in a test: stack files in tmp, the fake gateway, a stubbed
    policy pack and verifier, and every event the action reported."""

    def __init__(self, root: Path, outputs: Mapping[str, Any] | None = None) -> None:
        self.stacks = root / "stacks"
        self.stacks.mkdir()
        for path in COMMITTED_STACKS.glob("Pulumi.*.yaml"):
            (self.stacks / path.name).write_text(path.read_text())
        (self.stacks / "Pulumi.dev.yaml").write_text(dev_stack_text())
        self.gateway = FakeGateway(
            self.stacks, {"dev": realistic_history()}, {"dev": dict(outputs or {})}
        )
        self.gateways_made = 0
        self.confirm = Answers()
        self.events: list[Any] = []
        self.violations: list[Violation] = []
        # The verifier's verdicts, in turn; when none are left, every check passes.
        self.verdicts: list[Verdict] = []
        self.plans: list[Plan] = []

    def cfg(self, **overrides: Any) -> Configuration:
        settings: dict[str, Any] = {
            "gateway_factory": self._gateway,
            "stacks_dir": self.stacks,
            "confirm": self.confirm,
            "events": self.events.append,
            "policies": lambda graph, stack, config: list(self.violations),
            "verifier": self._verify,
        }
        return Configuration(**{**settings, **overrides})

    def _gateway(self) -> FakeGateway:
        self.gateways_made += 1
        return self.gateway

    def _verify(self, plan: Plan, timeout: float) -> Verdict:
        self.plans.append(plan)
        return self.verdicts.pop(0) if self.verdicts else Verdict(ok=True, rounds=1)

    def path(self, stack: str) -> Path:
        return self.stacks / f"Pulumi.{stack}.yaml"

    def deployed(self, stack: str, updates: list[Update], text: str) -> None:
        """Replace a stack's history (oldest first) and stack file."""
        self.gateway.updates[stack] = list(updates)
        self.path(stack).write_text(text)

    def text(self, stack: str) -> str:
        return self.path(stack).read_text()

    def edit(self, stack: str, old: str, new: str) -> None:
        text = self.text(stack)
        assert old in text, f"{old!r} is not in Pulumi.{stack}.yaml"
        self.path(stack).write_text(text.replace(old, new, 1))

    def of(self, kind: type) -> list[Any]:
        """The events of one kind, in the order they came."""
        return [e for e in self.events if isinstance(e, kind)]


# --- a service and its Prometheus on loopback ---------------------------------------------------


class ServiceState:
    """What the fake service (/healthz) and the fake Prometheus (/api/v1/query) answer."""

    def __init__(self) -> None:
        self.health_codes: list[int] = []  # answered first, one per request, then `health`
        self.health = 200
        self.down: list[dict[str, str]] = []
        self.up_count: int | None = 2
        # Users' requests, and how many answered 5xx, in the window asked about.
        self.requests = 0.0
        self.errors = 0.0
        # (upper bound, cumulative count) of the latency histogram; +Inf last.
        self.buckets: list[tuple[str, float]] = []
        self.prometheus_status = 200
        self.queries: list[str] = []
        self.lock = threading.Lock()

    def result(self, query: str) -> list[dict[str, Any]]:
        if query.endswith("== 0"):
            return [{"metric": m, "value": [0, "0"]} for m in self.down]
        if query.startswith("count(up"):
            if self.up_count is None:
                return []
            return [{"metric": {}, "value": [0, str(self.up_count)]}]
        if query.startswith("sum by (le)"):
            return [{"metric": {"le": le}, "value": [0, str(n)]} for le, n in self.buckets]
        count = self.errors if 'code=~"5.."' in query else self.requests
        return [{"metric": {}, "value": [0, str(count)]}]


def _handler(state: ServiceState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/healthz":
                with state.lock:
                    code = state.health_codes.pop(0) if state.health_codes else state.health
                self._send(code, {"status": "ok" if code == 200 else "failing"})
            elif url.path == "/api/v1/query":
                query = urllib.parse.parse_qs(url.query)["query"][0]
                with state.lock:
                    state.queries.append(query)
                if state.prometheus_status != 200:
                    error = {"status": "error", "error": "bad_data: parse error"}
                    self._send(state.prometheus_status, error)
                else:
                    data = {"resultType": "vector", "result": state.result(query)}
                    self._send(200, {"status": "success", "data": data})
            else:
                self._send(404, {})

    return Handler


@contextmanager
def serve(state: ServiceState) -> Iterator[str]:
    """Serve `state` on 127.0.0.1 until the block ends; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    # A short poll interval, so shutdown() returns at once instead of after half a second.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
