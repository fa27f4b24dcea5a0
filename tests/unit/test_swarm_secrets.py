"""No secret value in any swarm service's environment: `docker service inspect` shows it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from components.vocabulary import SECRET_MASK
from msops import stackfiles, synth
from tests.graphs import stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

SERVICE = "docker:index/service:Service"
DB_PASSWORD = "pg-planted-4c1d8e"
API_TOKEN = "tok-planted-91ab3f"
UPSTREAM_KEY = "key-planted-77e0c2"
PLANTED = (DB_PASSWORD, API_TOKEN, UPSTREAM_KEY)
SWARM_STACKS = [
    s for s in stackfiles.list_stacks() if stack_values(s).get("msops:backend") == "swarm"
]


def planted(stack: str) -> dict[str, Any]:
    """A swarm stack with a database password and two named secrets on every service."""
    values = stack_values(stack)
    for db in values.get("msops:databases", {}).values():
        if "externalUrl" not in db:
            db["password"] = DB_PASSWORD
    values["msops:secrets"] = {"api-token": API_TOKEN, "upstream-key": UPSTREAM_KEY}
    for svc in values["msops:services"].values():
        svc["secretEnv"] = {"API_TOKEN": "api-token", "UPSTREAM_KEY": "upstream-key"}
    return values


def leaks(env: dict[str, Any]) -> list[str]:
    """Variables holding a secret: masked (a secret Output) or a planted value, plain or base64."""
    found = []
    for name, value in env.items():
        text = json.dumps(value)
        encoded = [base64.b64encode(p.encode()).decode() for p in PLANTED]
        if SECRET_MASK in text or any(p in text for p in [*PLANTED, *encoded]):
            found.append(name)
    return found


def test_there_is_a_swarm_stack_to_check() -> None:
    assert SWARM_STACKS, "no stack in stacks/ has msops:backend swarm"


@pytest.mark.parametrize("stack", SWARM_STACKS)
def test_no_swarm_service_env_holds_a_secret(stack: str) -> None:
    graph = synth_values(planted(stack), stack)
    services = graph.of_type(SERVICE)
    assert services, f"{stack}: no swarm service synthesized"
    for res in services:
        env = res.inputs["taskSpec"]["containerSpec"].get("env") or {}
        assert leaks(env) == [], f"{res.urn}: secret values in env {leaks(env)}"


@pytest.mark.parametrize("stack", SWARM_STACKS)
def test_each_planted_secret_reaches_the_services_as_a_file(stack: str) -> None:
    graph = synth_values(planted(stack), stack)
    apps = [r for r in graph.of_type(SERVICE) if "API_TOKEN_FILE" in _env(r)]
    assert apps, f"{stack}: no service got API_TOKEN_FILE"
    for res in apps:
        files = {m["fileName"] for m in res.inputs["taskSpec"]["containerSpec"]["secrets"]}
        assert {_env(res)["API_TOKEN_FILE"], _env(res)["UPSTREAM_KEY_FILE"]} <= files, res.urn


def test_the_leak_check_sees_a_secret_in_env() -> None:
    # The check above must be able to fail: a masked value and a planted one both count.
    assert leaks({"A": SECRET_MASK, "B": f"x{API_TOKEN}", "C": "plain"}) == ["A", "B"]


def _env(res: synth.Resource) -> dict[str, Any]:
    return dict(res.inputs["taskSpec"]["containerSpec"].get("env") or {})
