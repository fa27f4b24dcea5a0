"""Offline synth: the real program runs under mocks for every stack and yields a clean graph."""

from __future__ import annotations

import contextvars
import json
from typing import Any

import pulumi
import pytest

from msops import synth
from tests.graphs import stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

STACKS = ("dev", "staging", "prod")


@pytest.mark.parametrize("stack", STACKS)
def test_stack_synthesizes_resources(stack: str, stack_graph: Any) -> None:
    graph = stack_graph(stack)
    assert graph.of_type("msops:index:Platform"), f"stack {stack}: no Platform registered"
    assert len(graph) > 1, f"stack {stack}: only the Platform was registered"


@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_has_a_component_parent(stack: str, stack_graph: Any) -> None:
    graph = stack_graph(stack)
    components = {r.urn for r in graph if r.is_component}
    orphans = [
        r.urn for r in graph if r.type != "msops:index:Platform" and r.parent not in components
    ]
    assert orphans == [], f"stack {stack}: resources without a component parent"


@pytest.mark.parametrize("stack", STACKS)
def test_platform_is_the_child_of_the_stack(stack: str, stack_graph: Any) -> None:
    (platform,) = stack_graph(stack).of_type("msops:index:Platform")
    assert platform.parent.endswith(f"::pulumi:pulumi:Stack::msops-{stack}"), platform.urn


@pytest.mark.parametrize("stack", STACKS)
def test_components_use_msops_type_tokens(stack: str, stack_graph: Any) -> None:
    foreign = [
        r.urn for r in stack_graph(stack) if r.is_component and not r.type.startswith("msops:")
    ]
    assert foreign == []


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_name_each_service_image_and_replicas(stack: str, stack_graph: Any) -> None:
    graph = stack_graph(stack)
    values = stack_values(stack)["msops:services"]
    assert set(graph.outputs["services"]) == set(values), graph.outputs
    for name, svc in values.items():
        assert graph.outputs["services"][name]["image"] == svc["image"], name


def test_numbers_are_normalized_to_ints() -> None:
    assert synth.normalize({"a": [3.0, 2.5, {"b": 1.0}]}) == {"a": [3, 2.5, {"b": 1}]}


def test_wire_secrets_are_masked() -> None:
    wire = {synth._SIG: synth._SECRET_SIG, "value": "hunter2"}
    assert synth.normalize({"password": wire}) == {"password": synth.SECRET}


def test_known_secrets_never_appear_in_the_graph() -> None:
    values = stack_values("dev")
    values["msops:databases"]["main"]["password"] = "s3cr3t-db-pass-123"
    values["msops:secrets"] = {"apiToken": "tok-abcdef-987"}
    values["msops:services"]["web"]["secretEnv"] = {"API_TOKEN": "apiToken"}
    graph = synth_values(values)
    dumped = json.dumps([r.inputs for r in graph]) + json.dumps(graph.outputs)
    assert "s3cr3t-db-pass-123" not in dumped
    assert "tok-abcdef-987" not in dumped


def test_stack_file_secure_values_are_masked(tmp_path: Any) -> None:
    (tmp_path / "Pulumi.sec.yaml").write_text(
        "config:\n"
        "  msops:services:\n"
        "    web: {image: 'a/web:1'}\n"
        "  msops:databases:\n"
        "    main:\n"
        "      password:\n"
        "        secure: v1:Zm9vYmFy\n"
    )
    values, secret_keys = synth.config_from_file("sec", tmp_path)
    assert secret_keys == ["msops:databases"]
    assert values["msops:databases"]["main"]["password"] == synth.SECRET


class _Counting(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.registered.append(args.typ)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, None]:
        return {}, None


def _run_program(config: dict[str, Any]) -> tuple[list[str], BaseException | None]:
    """Run components.platform.run() under counting mocks; return registrations and error."""

    def body() -> tuple[list[str], BaseException | None]:
        import asyncio

        from pulumi.runtime.stack import run_pulumi_func
        from pulumi.runtime.sync_await import _sync_await

        from components import platform

        asyncio.set_event_loop(asyncio.new_event_loop())
        pulumi.runtime.config.set_all_config(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
        )
        pulumi.runtime.settings.ROOT.set(None)
        mocks = _Counting()
        pulumi.runtime.set_mocks(mocks, project="msops", stack="dev", preview=True)
        error: BaseException | None = None
        try:
            _sync_await(run_pulumi_func(platform.run))
        except Exception as exc:
            error = exc
        return mocks.registered, error

    return contextvars.copy_context().run(body)


def test_bad_config_registers_zero_resources() -> None:
    values = stack_values("dev")
    values["msops:services"]["web"]["image"] = "msops/demo:latest"
    values["msops:services"]["web"]["replica"] = 3
    registered, error = _run_program(values)
    assert isinstance(error, pulumi.RunError), error
    assert registered == []


def test_bad_config_error_reads_as_one_line_per_problem() -> None:
    values = stack_values("dev")
    values["msops:services"]["web"]["image"] = "msops/demo:latest"
    values["msops:services"]["web"]["replica"] = 3
    _, error = _run_program(values)
    lines = str(error).splitlines()
    assert lines[0] == "stack 'dev': the msops config has 2 problems; nothing was deployed:"
    assert lines[1].startswith("  - msops:services.web.image: 'msops/demo:latest'")
    assert lines[2].startswith("  - msops:services.web.replica: unknown key")


def test_good_config_registers_resources_under_the_same_runner() -> None:
    registered, error = _run_program(stack_values("dev"))
    assert error is None
    assert "msops:index:Platform" in registered
