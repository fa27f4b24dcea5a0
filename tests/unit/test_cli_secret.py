"""`msops secret set` through typer: the value from stdin or a hidden prompt, never from argv."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

from msops import cli
from msops.gateway import PulumiGateway
from tests import fakes

pytestmark = pytest.mark.timeout(60)

VALUE = "pw-cli-planted-0d7c"
KEY = "msops:databases.main.password"


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.FakeGateway:
    stacks = fakes.stack_copies(tmp_path, monkeypatch)
    gateway = fakes.FakeGateway(stacks)
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    monkeypatch.setattr(cli, "stdin_is_terminal", lambda: False)
    return gateway


def invoke(*args: str, input: str | None = None) -> Result:
    outcome = CliRunner().invoke(cli.app, list(args), input=input)
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def stored(gw: fakes.FakeGateway) -> str:
    doc = YAML(typ="safe").load((gw.stacks_dir / "Pulumi.dev.yaml").read_text())
    return fakes.decrypt(doc["config"]["msops:databases"]["main"]["password"]["secure"])


def test_the_value_is_read_from_stdin(gw: fakes.FakeGateway) -> None:
    outcome = invoke("secret", "set", "dev", KEY, input=VALUE + "\n")
    assert outcome.exit_code == 0, outcome.output
    assert stored(gw) == VALUE and VALUE not in outcome.output


def test_the_value_is_read_from_a_hidden_prompt_asked_twice(
    gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "stdin_is_terminal", lambda: True)
    outcome = invoke("secret", "set", "dev", KEY, input=f"{VALUE}\n{VALUE}\n")
    assert outcome.exit_code == 0, outcome.output
    assert stored(gw) == VALUE and VALUE not in outcome.output
    assert outcome.output.count(f"Value of {KEY}") == 1, outcome.output


def test_a_prompt_whose_two_answers_differ_asks_again(
    gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "stdin_is_terminal", lambda: True)
    outcome = invoke("secret", "set", "dev", KEY, input=f"{VALUE}\nother\n{VALUE}\n{VALUE}\n")
    assert outcome.exit_code == 0 and stored(gw) == VALUE, outcome.output


def test_a_value_on_the_command_line_is_refused_and_never_echoed(gw: fakes.FakeGateway) -> None:
    before = hashlib.sha256((gw.stacks_dir / "Pulumi.dev.yaml").read_bytes()).hexdigest()
    outcome = invoke("secret", "set", "dev", KEY, VALUE, input="")
    after = hashlib.sha256((gw.stacks_dir / "Pulumi.dev.yaml").read_bytes()).hexdigest()
    assert outcome.exit_code == 2, outcome.output
    assert "takes no value on the command line" in outcome.output
    assert VALUE not in outcome.output and before == after and gw.called("set_secret") == []


def test_the_value_may_come_from_a_file(gw: fakes.FakeGateway, tmp_path: Path) -> None:
    source = tmp_path / "password.txt"
    source.write_text(VALUE + "\n")
    outcome = invoke("secret", "set", "dev", KEY, "--from-file", str(source), input="")
    assert outcome.exit_code == 0 and stored(gw) == VALUE, outcome.output


def test_an_unknown_stack_exits_2_naming_it(gw: fakes.FakeGateway) -> None:
    outcome = invoke("secret", "set", "nope", KEY, input=VALUE)
    assert outcome.exit_code == 2 and "'nope'" in outcome.output, outcome.output


def test_the_report_names_the_key_and_the_file(gw: fakes.FakeGateway) -> None:
    outcome = invoke("secret", "set", "dev", KEY, input=VALUE)
    assert f"Set {KEY} in stacks/Pulumi.dev.yaml, encrypted" in outcome.output, outcome.output


def test_check_refuses_a_plaintext_password_and_names_the_command(
    gw: fakes.FakeGateway,
) -> None:
    fakes.add_lines(gw.stacks_dir, "dev", 'version: "16.4"\n', "      password: hunter2\n")
    outcome = invoke("check", "dev")
    assert outcome.exit_code == 2, outcome.output
    assert "msops:databases.main.password: a secret in plain text" in outcome.output
    assert f"msops secret set dev {KEY}" in outcome.output and "hunter2" not in outcome.output


def test_render_refuses_a_plaintext_password_and_writes_nothing(
    gw: fakes.FakeGateway, tmp_path: Path
) -> None:
    fakes.add_lines(gw.stacks_dir, "dev", 'version: "16.4"\n', "      password: hunter2\n")
    out = tmp_path / "out"
    outcome = invoke("render", "dev", "--out", str(out))
    assert outcome.exit_code == 2 and not out.exists(), outcome.output
    assert "msops:databases.main.password" in outcome.output


def test_check_passes_once_the_secret_is_set(gw: fakes.FakeGateway, monkeypatch: Any) -> None:
    fakes.add_lines(gw.stacks_dir, "dev", 'version: "16.4"\n', "      password: hunter2\n")
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])
    assert invoke("secret", "set", "dev", KEY, input=VALUE).exit_code == 0
    outcome = invoke("check", "dev")
    assert outcome.exit_code == 0, outcome.output


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_check_fails_a_plain_password_beside_a_database_on_every_backend(
    gw: fakes.FakeGateway, stack: str
) -> None:
    # The case of issue 14: docker once passed it, its env marked secret for DATABASE_URL.
    if stack == "dev":
        fakes.add_lines(gw.stacks_dir, stack, "LOG_LEVEL: info\n", "        DB_PASSWORD: hunter2\n")
    else:
        env = "      env:\n        DB_PASSWORD: hunter2\n"
        fakes.add_lines(gw.stacks_dir, stack, "      database: main\n", env)
    outcome = invoke("check", stack)
    # The report may be wrapped to the terminal's width.
    text = " ".join(outcome.output.split())
    assert outcome.exit_code == 1, outcome.output
    assert "no-plaintext-secret-env" in text and "sets DB_PASSWORD to a plain value" in text, text


# --- the gateway's call, without the Pulumi CLI ------------------------------------------------


class ConfigStack:
    """A Stack that records its set_config calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool, bool]] = []

    def set_config(self, key: str, value: Any, path: bool = False) -> None:
        self.calls.append((key, value.value, value.secret, path))


def test_the_gateway_sets_the_secret_encrypted_with_a_path_creating_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_gateway import ROOT, fake_pulumi

    gw = PulumiGateway(ROOT, {**fake_pulumi(tmp_path), "PULUMI_CONFIG_PASSPHRASE": ""})
    stack = ConfigStack()
    selected: list[tuple[str, bool]] = []

    def select(name: str, create: bool = False) -> ConfigStack:
        selected.append((name, create))
        return stack

    monkeypatch.setattr(gw, "_stack", select)
    gw.set_secret("dev", KEY, VALUE, path=True)
    assert stack.calls == [(KEY, VALUE, True, True)]
    # A stack's secrets are set before its first `up`: the stack may not exist yet.
    assert selected == [("dev", True)]
