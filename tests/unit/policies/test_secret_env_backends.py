"""no-plaintext-secret-env on every backend, as `msops check` sees a stack (secrets masked) and
as `pulumi preview --policy-pack` does (the engine hands a policy its secrets decrypted).

The case of issue 14: a service with `database: main` and `env: {DB_PASSWORD: hunter2}`. The
database makes the service's env hold a secret (DATABASE_URL), which once hid every variable
of a docker container from the rule.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from msops import synth
from tests.graphs import stack_values, synth_values
from tests.live.applier import live_synth
from tests.unit.policies.stacks import STACKS, check, show

pytestmark = pytest.mark.timeout(180)

POLICY = "no-plaintext-secret-env"
PLAIN = "hunter2-plain-0b1e"
TOKEN = "tok-secret-7a2c"


def checked(values: dict[str, Any], stack: str) -> synth.Graph:
    """The graph `msops check` judges: secrets masked."""
    return synth_values(values, stack)


def engine(values: dict[str, Any], stack: str) -> synth.Graph:
    """The graph as the engine shows it to a policy pack: every secret decrypted."""
    return live_synth(config=values, stack_name=stack).graph


VIEWS: dict[str, Callable[[dict[str, Any], str], synth.Graph]] = {
    "msops-check": checked,
    "policy-pack": engine,
}


def plain_password(stack: str) -> dict[str, Any]:
    values = stack_values(stack)
    api = values["msops:services"]["api"]
    assert api.get("database") == "main", f"{stack}: api must have a database for this case"
    api.setdefault("env", {})["DB_PASSWORD"] = PLAIN
    return values


def secret_password(stack: str) -> dict[str, Any]:
    values = stack_values(stack)
    values["msops:secrets"] = {"db-password": TOKEN}
    values["msops:services"]["api"]["secretEnv"] = {"DB_PASSWORD": "db-password"}
    return values


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("stack", STACKS)
def test_a_plain_password_beside_a_database_fails(stack: str, view: str) -> None:
    found = check(VIEWS[view](plain_password(stack), stack), POLICY)
    assert found, f"{stack} ({view}): DB_PASSWORD={PLAIN} passed"
    assert all("sets DB_PASSWORD to a plain value" in v.message for v in found), show(found)


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("stack", STACKS)
def test_the_password_as_a_secret_passes(stack: str, view: str) -> None:
    found = check(VIEWS[view](secret_password(stack), stack), POLICY)
    assert found == [], f"{stack} ({view}):\n{show(found)}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_engine_view_really_holds_the_decrypted_secret(stack: str) -> None:
    # Else the pass above would prove nothing about what the engine shows a policy.
    graph = engine(secret_password(stack), stack)
    dumped = repr([r.inputs for r in graph])
    # Swarm hands it to the docker Secret only, base64-encoded.
    encoded = base64.b64encode(TOKEN.encode()).decode()
    assert TOKEN in dumped or encoded in dumped, f"{stack}: the engine view masked the secret"


def test_every_violation_names_the_resource() -> None:
    found = check(checked(plain_password("dev"), "dev"), POLICY)
    assert {v.urn.split("::")[-1] for v in found} >= {"dev-api-1"}, show(found)
