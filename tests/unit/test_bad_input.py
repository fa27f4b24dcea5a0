"""Broken stack files and hostile paths: exit 2, one line per problem with key, value and fix,
nothing changed on disk, and no traceback or Python internals in what the user reads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from components import spec
from msops import cli, stackfiles
from tests import fakes

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "stacks"
# What a user must never read: a traceback, or the names of the libraries underneath.
INTERNALS = ("Traceback", 'File "', "pydantic", "ruamel", "<unicode string>", "To suppress")
# Commands that read the stack file, with what they need after the stack name.
READERS = {
    "check": (),
    "render": ("--out", "out"),
    "config show": (),
    "preview": (),
    "up": ("--yes",),
    "scale": ("web", "3", "--yes"),
}
# The stack of each backend among the committed ones.
STACK_OF = {"docker": "dev", "swarm": "staging", "kubernetes": "prod"}


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    monkeypatch.setattr(cli, "interactive", lambda: False)
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])
    monkeypatch.chdir(tmp_path)
    return directory


@pytest.fixture
def gw(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.FakeGateway:
    gateway = fakes.FakeGateway(stacks, {})
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    return gateway


def checksums(*roots: Path) -> dict[str, str]:
    """Every file and directory under the roots, with its content's digest."""
    found: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted([root, *root.rglob("*")]):
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            found[str(path)] = digest
    return found


def invoke(*args: str) -> Result:
    outcome = CliRunner().invoke(cli.app, [part for arg in args for part in arg.split(" ")])
    text = outcome.stdout + outcome.stderr
    leaked = [word for word in INTERNALS if word in text]
    assert not leaked, f"msops {' '.join(args)} shows {leaked}:\n{text}"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), text
    return outcome


def replace(stacks: Path, stack: str, old: str, new: str) -> None:
    path = stacks / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def problem_line(outcome: Result, *words: str) -> str:
    """The one stderr line that holds every word (each problem is one line)."""
    lines = [line for line in outcome.stderr.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, f"no single line with {words} in:\n{outcome.stderr}"
    return lines[0]


# --- each broken file, through every command that reads it ---------------------------------------

WEB = "    web:\n      image: "


def _line_of(text: str) -> int:
    lines = (COMMITTED / "Pulumi.dev.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def _latin1(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    text = path.read_text().replace("LOG_LEVEL: info", "N: caf\xe9")
    path.write_bytes(text.encode("latin-1"))


def _directory(stacks: Path) -> None:
    (stacks / "Pulumi.dev.yaml").unlink()
    (stacks / "Pulumi.dev.yaml").mkdir()


def _empty(stacks: Path) -> None:
    (stacks / "Pulumi.dev.yaml").write_text("")


def _syntax(stacks: Path) -> None:
    replace(stacks, "dev", "        LOG_LEVEL: info\n", "        LOG_LEVEL: [info\n")


def _duplicate(stacks: Path) -> None:
    replace(stacks, "dev", "      replicas: 2\n", "      replicas: 2\n      replicas: 3\n")


def _laughs(stacks: Path) -> None:
    # Nine lines of aliases that stand for 10**9 values ("billion laughs").
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = (stacks / "Pulumi.dev.yaml").read_text()
    (stacks / "Pulumi.dev.yaml").write_text("\n".join(lines) + "\n" + text)


def _edit(stack: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda stacks: replace(stacks, stack, old, new)


BROKEN: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    # case: (how to break the dev stack file, words its one problem line must hold)
    "not UTF-8": (
        _latin1,
        ("Pulumi.dev.yaml", "not UTF-8", f"(line {_line_of('LOG_LEVEL')}, column", "0xe9", "UTF-8"),
    ),
    "a directory": (_directory, ("Pulumi.dev.yaml", "is a directory")),
    "empty": (_empty, ("Pulumi.dev.yaml", "is empty", "msops:services")),
    "a YAML syntax error": (_syntax, ("Pulumi.dev.yaml", "not valid YAML: line", ", column")),
    "a duplicate key": (_duplicate, ("Pulumi.dev.yaml", "duplicate key", "keep one")),
    "a billion laughs": (_laughs, ("Pulumi.dev.yaml", "more than 100,000 values", "aliases")),
    "replicas: two": (
        _edit("dev", "replicas: 2", "replicas: two"),
        ("msops:services.web.replicas", "'two'", "replicas: 2"),
    ),
    'port: "8000"': (
        _edit("dev", "port: 8080", 'port: "8000"'),
        ("msops:services.web.port", "'8000'", "without quotes: port: 8000"),
    ),
    "version: 16.4": (
        _edit("dev", 'version: "16.4"', "version: 16.4"),
        ("msops:databases.main.version", "16.4", "in quotes", 'version: "16.4"'),
    ),
    "interval: 10": (
        _edit(
            "dev", "      port: 8080\n", "      port: 8080\n      health:\n        interval: 10\n"
        ),
        ("msops:services.web.health.interval", "got 10", "interval: 10s"),
    ),
    "exposed: yes": (
        _edit("dev", "      port: 8080\n", "      port: 8080\n      exposed: 'yes'\n"),
        ("msops:services.web.exposed", "'yes'", "exposed: true"),
    ),
    "msop:services": (
        _edit("dev", "  msops:services:", "  msop:services:"),
        ("msop:services", "did you mean 'msops:services'"),
    ),
    "un-namespaced services": (
        _edit("dev", "  msops:monitoring:", "  monitoring:"),
        ("monitoring", "needs a namespace", "did you mean 'msops:monitoring'"),
    ),
    "an ingress on docker": (
        _edit("dev", "      lb:\n", "      ingress:\n        host: web.example.com\n      lb:\n"),
        ("msops:services.web.ingress", "kubernetes only", "msops:backend is docker", "remove"),
    ),
    "100000 replicas on docker": (
        _edit("dev", "replicas: 2", "replicas: 100000"),
        ("msops:services.web.replicas", "100000", "docker limit of 100", "100 or fewer"),
    ),
    "a number beyond int32": (
        _edit("dev", "replicas: 2", "replicas: 99999999999999999999"),
        ("msops:services.", ".replicas: ", "too large"),
    ),
}


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_stack_file_is_one_line_with_the_fix_and_changes_nothing(
    stacks: Path, gw: fakes.FakeGateway, tmp_path: Path, case: str, command: str
) -> None:
    breaks, words = BROKEN[case]
    breaks(stacks)
    before = checksums(stacks, tmp_path / "out")
    outcome = invoke(command, "dev", *READERS[command])
    assert outcome.exit_code == 2, f"{case}: {outcome.stdout}{outcome.stderr}"
    problem_line(outcome, *words)
    assert checksums(stacks, tmp_path / "out") == before, f"{case}: {command} changed files"
    assert [c for c in gw.calls if c[0] in ("up", "preview")] == [], gw.calls


# --- keys a backend would ignore, and sizes, on the other backends --------------------------------

PER_BACKEND: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    # case: (stack, old text, new text, words of its problem line)
    "build on kubernetes": (
        "prod",
        "      port: 8080\n",
        "      port: 8080\n      build: app\n",
        ("msops:services.web.build", "docker only", "msops:backend is kubernetes"),
    ),
    "lb.port on kubernetes": (
        "prod",
        "      exposed: true\n",
        "      exposed: true\n      lb:\n        port: 8000\n",
        ("msops:services.web.lb.port", "docker and swarm only", "kubernetes"),
    ),
    "build on swarm": (
        "staging",
        "      port: 8080\n",
        "      port: 8080\n      build: app\n",
        ("msops:services.web.build", "docker only", "msops:backend is swarm"),
    ),
    "namespace on docker": (
        "dev",
        "  msops:services:\n",
        "  msops:target:\n    namespace: orders\n  msops:services:\n",
        ("msops:target.namespace", "kubernetes only", "docker"),
    ),
    "maxSurge on swarm": (
        "staging",
        "      health:\n",
        "      rollout:\n        maxSurge: 2\n      health:\n",
        ("msops:services.web.rollout.maxSurge", "kubernetes only", "swarm"),
    ),
    "installStack on docker": (
        "dev",
        "    grafana: true\n",
        "    grafana: true\n    installStack: true\n",
        ("msops:monitoring.installStack", "kubernetes only"),
    ),
    "prometheusPort on kubernetes": (
        "prod",
        "    grafana: true\n",
        "    grafana: true\n    prometheusPort: 9091\n",
        ("msops:monitoring.prometheusPort", "docker and swarm only"),
    ),
    "an Ingress host that is not a DNS name": (
        "prod",
        "      exposed: true\n",
        "      exposed: true\n      ingress:\n        host: 'http://web.example.com/'\n",
        ("msops:services.web.ingress.host", "'http://web.example.com/'", "not a DNS name"),
    ),
    "2000 replicas on swarm": (
        "staging",
        "replicas: 2",
        "replicas: 2000",
        ("msops:services.web.replicas", "2000", "swarm limit of 1000"),
    ),
    "autoscaling.max 100000 on kubernetes": (
        "prod",
        "max: 10",
        "max: 100000",
        ("msops:services.web.autoscaling.max", "100000", "kubernetes limit of 5000"),
    ),
}


@pytest.mark.parametrize("case", PER_BACKEND)
def test_a_key_or_size_the_backend_cannot_honour_is_refused_before_the_synth(
    stacks: Path, gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    stack, old, new, words = PER_BACKEND[case]
    replace(stacks, stack, old, new)
    before = checksums(stacks)
    from msops.actions import steps

    def no_synth(*args: object, **kwargs: object) -> None:
        raise AssertionError("the synth ran for a config that is refused")

    monkeypatch.setattr(steps, "synth", no_synth)
    outcome = invoke("check", stack)
    assert outcome.exit_code == 2, f"{case}: {outcome.stdout}{outcome.stderr}"
    problem_line(outcome, *words)
    assert checksums(stacks) == before


def _parts(key: str) -> list[str]:
    """A BACKEND_KEYS pattern as a key path, with the service `web` for `*`."""
    return [p if p != "*" else "web" for p in key.split(".")]


def test_every_backend_specific_key_names_a_field_of_the_model() -> None:
    unknown = [key for key in spec.BACKEND_KEYS if spec.field_at(_parts(key)) is None]
    assert unknown == [], f"BACKEND_KEYS names keys the model does not have: {unknown}"


def test_every_backend_specific_key_is_accepted_on_its_own_backends() -> None:
    refused = []
    for key, (backends, _) in spec.BACKEND_KEYS.items():
        for backend in backends:
            raw: dict[str, object] = {"backend": backend}
            node = raw
            parts = _parts(key)
            for part in parts[:-1]:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            node[parts[-1]] = "x"
            if spec.backend_problems(raw):
                refused.append((key, backend))
    assert refused == []


def test_the_committed_stacks_set_no_key_their_backend_ignores() -> None:
    for stack in STACK_OF.values():
        raw = spec.raw_config(stackfiles.config_values(stack))
        assert spec.backend_problems(raw) == [], stack
        assert spec.size_problems(raw) == [], stack


@pytest.mark.parametrize("backend", spec.BACKENDS)
def test_the_replica_limit_itself_is_accepted(backend: str) -> None:
    limit, _ = spec.MAX_REPLICAS[backend]
    raw = {"backend": backend, "services": {"web": {"image": "a/b:1.0.0", "replicas": limit}}}
    assert spec.size_problems(raw) == []


def test_wildcard_ingress_hosts_are_dns_names() -> None:
    raw = {
        "backend": "kubernetes",
        "services": {"web": {"image": "a/b:1.0.0", "ingress": {"host": "*.example.com"}}},
    }
    assert spec.load(raw).services["web"].ingress is not None


def test_a_misspelt_namespace_is_the_only_problem_named_for_its_key(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    replace(stacks, "dev", "  msops:services:", "  msop:services:")
    outcome = invoke("check", "dev")
    problems = [line for line in outcome.stderr.splitlines() if line.startswith("  - ")]
    assert outcome.exit_code == 2 and len(problems) == 1, outcome.stderr
    assert "msop:services" in problems[0] and "'msops:services'" in problems[0]


@pytest.mark.parametrize("backend", spec.BACKENDS)
def test_scale_above_the_backend_limit_is_refused_before_the_file_changes(
    stacks: Path, gw: fakes.FakeGateway, backend: str
) -> None:
    stack = STACK_OF[backend]
    if backend == "kubernetes":
        # prod autoscales; a fixed count is what scale sets.
        replace(
            stacks,
            stack,
            "      autoscaling:\n        min: 3\n        max: 10\n        targetCpu: 70\n",
            "",
        )
    limit, _ = spec.MAX_REPLICAS[backend]
    before = checksums(stacks)
    outcome = invoke("scale", stack, "web", str(limit + 1), "--yes")
    assert outcome.exit_code == 2, outcome.stdout + outcome.stderr
    problem_line(outcome, "msops:services.web.replicas", str(limit + 1), f"limit of {limit}")
    assert checksums(stacks) == before and gw.calls == []


def test_a_mistyped_secret_is_never_echoed(stacks: Path, gw: fakes.FakeGateway) -> None:
    replace(stacks, "dev", "      storage: 1Gi\n", "      storage: 1Gi\n      password: 73615\n")
    outcome = invoke("check", "dev")
    assert outcome.exit_code == 2 and "73615" not in outcome.stderr, outcome.stderr
    lines = [
        line for line in outcome.stderr.splitlines() if "msops:databases.main.password" in line
    ]
    assert lines and all("pulumi config set --secret" in line for line in lines), outcome.stderr


# --- render --out --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("notes.txt", ("--out notes.txt", "is a file")),
        ("notes.txt/x", ("--out notes.txt/x", "notes.txt")),
        ("notes.txt/x/y", ("--out notes.txt/x/y", "notes.txt")),
        # Unwritable even for root: no directory can be made in /proc.
        ("/proc/msops-render", ("--out /proc/msops-render", "cannot be written")),
    ],
)
def test_render_into_an_out_that_cannot_be_written_exits_2_and_writes_nothing(
    stacks: Path, gw: fakes.FakeGateway, tmp_path: Path, out: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "notes.txt").write_text("my notes\n")
    before = checksums(tmp_path)
    outcome = invoke("render", "dev", "--out", out)
    assert outcome.exit_code == 2, outcome.stdout + outcome.stderr
    problem_line(outcome, *words)
    assert checksums(tmp_path) == before
    assert not Path("/proc/msops-render").exists()


def test_an_out_under_a_read_only_directory_of_sysfs_is_refused(
    stacks: Path, gw: fakes.FakeGateway
) -> None:
    # sysfs refuses new files to root too; the probe finds that before the synth.
    outcome = invoke("render", "dev", "--out", "/sys/msops-render")
    assert outcome.exit_code == 2 and not Path("/sys/msops-render").exists()
    problem_line(outcome, "--out /sys/msops-render", "cannot be written")


# --- Ctrl-C, for real -----------------------------------------------------------------------------


def _inside_the_synth(pid: int) -> bool:
    """gRPC's extension is loaded by `import pulumi`, which only the command body does."""
    try:
        return "cygrpc" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_ctrl_c_during_check_exits_130_with_one_line() -> None:
    before = checksums(COMMITTED)
    child = subprocess.Popen(
        [sys.executable, "-c", "from msops.cli import app; app()", "check", "dev"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A test run started in the background inherits Ctrl-C ignored; the child must not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not _inside_the_synth(child.pid) and child.poll() is None:
            assert time.monotonic() < deadline, "msops check never started its synth"
            time.sleep(0.005)
        # Again until it ends, in case one lands before the handler: each must still give
        # one line, not several.
        for _ in range(20):
            if child.poll() is not None:
                break
            child.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.5)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    text = err.decode()
    assert child.returncode == 130, f"exit {child.returncode}: {text}"
    assert text.splitlines() == ["error: interrupted (Ctrl-C); msops stopped"], text
    assert "Traceback" not in text and "Task was destroyed" not in text
    assert checksums(COMMITTED) == before
