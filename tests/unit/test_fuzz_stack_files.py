"""Random bytes and random stack documents through every command that reads a stack file:
never a traceback, never an unexpected error, always a documented exit code.

The normal suite runs 2,000 cases with a fixed seed (MSOPS_FUZZ_EXAMPLES=20000 runs more).
Every command runs in-process through typer's CliRunner with the in-memory gateway; a
document that validates is synthesized by at most MSOPS_FUZZ_SYNTHS cases (the offline synth
takes about a second), the others run the commands that need no synth.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer.testing
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from typer.testing import CliRunner

from components import spec
from msops import cli, runtime, stackfiles
from msops.errors import MsopsError, OperationFailed
from tests import fakes

pytestmark = pytest.mark.timeout(900)

EXAMPLES = int(os.environ.get("MSOPS_FUZZ_EXAMPLES", "2000"))
SYNTHS = int(os.environ.get("MSOPS_FUZZ_SYNTHS", "6"))
COMMITTED = Path(__file__).resolve().parents[2] / "stacks"
STACK = "fuzz"
# The documented exit codes a broken or odd stack file may give (docs/cli.md): 0 ok, 1 the
# operation failed, 2 bad input. 3 (locked) and 4 (verification) need an engine.
EXIT_CODES = {0, 1, 2}
# What the user must never read.
NEVER = ("Traceback", 'File "', "This is a bug in msops", "<unicode string>", "To suppress")

# Each command that reads a stack file, as argv with {stack} and {out} to fill in.
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("check", "{stack}"),
    ("check", "{stack}", "--json"),
    ("render", "{stack}", "--out", "{out}"),
    ("render", "{stack}", "--out", "-"),
    ("config", "show", "{stack}"),
    ("config", "show", "{stack}", "--json"),
    ("preview", "{stack}"),
    ("up", "{stack}", "--yes"),
    ("scale", "{stack}", "web", "3", "--yes"),
    ("rollback", "{stack}", "--yes"),
    ("rollback", "{stack}", "--service", "web", "--dry-run"),
    ("diff", "{stack}"),
    ("diff", "{stack}", "--json"),
    ("promote", "dev", "{stack}", "--yes"),
    ("promote", "{stack}", "dev"),
    ("history", "{stack}"),
    ("history", "{stack}", "--service", "web"),
    ("status", "{stack}"),
    ("status", "{stack}", "--json"),
    ("logs", "{stack}", "web"),
    ("drift", "{stack}"),
    ("secret", "set", "{stack}", "msops:databases.main.password"),
    ("refresh", "{stack}", "--yes"),
    ("destroy", "{stack}", "--yes"),
    ("add-service", "{stack}", "api", "--image", "ghcr.io/acme/api:1.0.0", "--dry-run"),
)
# The commands that need no synth, for a valid document once the synth budget is spent.
NO_SYNTH = tuple(c for c in COMMANDS if c[0] in ("config", "history", "status", "logs", "diff"))


# --- documents -----------------------------------------------------------------------------------


def _model_keys(model: type[BaseModel], seen: set[str]) -> set[str]:
    for name, field in model.model_fields.items():
        seen.add(to_camel(name))
        inner = spec.model_of(field.annotation)
        if inner is not None and inner is not model:
            _model_keys(inner, seen)
    return seen


KEYS = sorted(_model_keys(spec.StackConfig, set()) | {"web", "main", "api"})
TOP_KEYS = [f"msops:{to_camel(n)}" for n in spec.StackConfig.model_fields]
# Values a stack file plausibly holds, so that mutations land near the valid ones.
PLAUSIBLE = [
    "16.4",
    "10s",
    "1m30s",
    "1Gi",
    "500m",
    "msops/demo:1.0.0",
    "ghcr.io/acme/api:latest",
    "web",
    "main",
    "docker",
    "swarm",
    "kubernetes",
    "canary",
    "rolling",
    "/healthz",
    "25%",
    "[secret]",
    "web.example.com",
    "{version}",
    "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, 100, 101, 1000, 5001, 65535, 65536, 2**31, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.sampled_from(PLAUSIBLE),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=16,
)


def _base(stack: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMMITTED / f"Pulumi.{stack}.yaml").read_text())
    return loaded


BASES = [_base(s) for s in ("dev", "staging", "prod")]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a mutation can hit: mapping keys and list items."""
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found.extend(_paths(child, (*path, key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.extend(_paths(child, (*path, index)))
    return found


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A committed stack file with one to three random changes: most invalid, some not."""
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        action = draw(st.sampled_from(["set", "set", "delete", "add", "rename"]))
        if not path:
            doc = draw(values) if action == "set" else doc
            continue
        parent, last = _at(doc, path[:-1]), path[-1]
        if action == "set":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent[last], dict):
            parent[last][draw(keys)] = draw(values)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from([*KEYS, "msop:services", "services"]))] = parent.pop(last)
        if not isinstance(doc, dict):
            break
    return _dump(doc)


@st.composite
def random_config(draw: st.DrawFn) -> bytes:
    """A `config:` of random nested values under random msops:* keys (and a few others)."""
    names = st.one_of(st.sampled_from(TOP_KEYS), keys.map(lambda k: f"msops:{k}"), keys)
    return _dump({"config": draw(st.dictionaries(names, values, max_size=6))})


def _dump(doc: Any) -> bytes:
    try:
        return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError, RecursionError):
        return b"config: {}\n"


documents = st.one_of(
    mutated(),
    mutated(),
    mutated(),
    random_config(),
    st.binary(max_size=600),
    st.text(
        alphabet=st.sampled_from(list("abcdemsop:{}[]-,'\"&*!|>#\n\t %@`\\é\x00")), max_size=300
    ).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


# --- the property --------------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    stacks = fakes.stack_copies(tmp_path, monkeypatch)
    gateway = fakes.FakeGateway(stacks, {STACK: [], "dev": fakes.realistic_history()})
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    monkeypatch.setattr(cli, "interactive", lambda: False)
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])

    def no_engine(plan: Any) -> Any:
        raise OperationFailed("no container engine in this test")

    monkeypatch.setattr(runtime, "open_runtime", no_engine)
    # typer builds the click command on every invoke, a third of a case's time: build it once.
    command_line = typer.testing._get_command(cli.app)
    monkeypatch.setattr(typer.testing, "_get_command", lambda app: command_line)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return stacks


def _valid(path: Path) -> bool:
    try:
        stackfiles.validated(stackfiles.config_values(STACK, path.parent), STACK)
    except MsopsError:
        return False
    return True


def _runner(stacks: Path) -> Callable[[bytes, int], None]:
    synths = [0]

    def run(document: bytes, pick: int) -> None:
        path = stacks / f"Pulumi.{STACK}.yaml"
        path.write_bytes(document)
        # The committed dev stack is the other side of a promotion: keep it as committed.
        shutil.copy(COMMITTED / "Pulumi.dev.yaml", stacks / "Pulumi.dev.yaml")
        command = COMMANDS[pick % len(COMMANDS)]
        if _valid(path):
            if synths[0] >= SYNTHS:
                command = NO_SYNTH[pick % len(NO_SYNTH)]
            elif command not in NO_SYNTH:
                synths[0] += 1
        args = [a.format(stack=STACK, out=str(stacks.parent / "out")) for a in command]
        outcome = CliRunner().invoke(cli.app, args)
        text = outcome.stdout + outcome.stderr
        shown = f"msops {' '.join(args)} on {document[:300]!r}:\n{text[-2000:]}"
        assert outcome.exit_code in EXIT_CODES, shown
        assert outcome.exception is None or isinstance(outcome.exception, SystemExit), shown
        leaked = [w for w in NEVER if w in text and w.encode() not in document]
        assert not leaked, shown

    return run


def test_no_stack_file_makes_any_command_print_a_traceback(setup: Path) -> None:
    run = _runner(setup)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(documents, st.integers(min_value=0, max_value=len(COMMANDS) - 1))
    def case(document: bytes, pick: int) -> None:
        run(document, pick)

    case()
