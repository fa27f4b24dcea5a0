"""The pack as a whole: its metadata, its config, its docs, and the engine's own code path."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pulumi_policy
import pytest
import yaml
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from components.vocabulary import LABEL_IMAGE_ID
from msops import synth
from policies import rules
from tests.unit.policies.stacks import (
    CONTAINER,
    STACKS,
    bad_stack_values,
    check,
    edit,
    on,
    one,
    plain_token,
    show,
    single_replica,
    synth_config,
)

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "policies.md"


# --- the pack itself ---------------------------------------------------------------------------


def test_policy_names_are_unique_kebab_case() -> None:
    names = [p.name for p in rules.ALL]
    bad = [n for n in names if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", n)]
    assert bad == [] and len(set(names)) == len(names), f"policy names: {names}"


@pytest.mark.parametrize("policy", rules.ALL, ids=lambda p: p.name)
def test_policy_has_one_sentence_description(policy: pulumi_policy.Policy) -> None:
    text = policy.description
    assert text.endswith(".") and text.count(". ") == 0, f"{policy.name}: {text!r}"


@pytest.mark.parametrize("policy", rules.ALL, ids=lambda p: p.name)
def test_policy_sets_its_enforcement_level_explicitly(policy: pulumi_policy.Policy) -> None:
    assert policy.enforcement_level in (
        pulumi_policy.EnforcementLevel.MANDATORY,
        pulumi_policy.EnforcementLevel.ADVISORY,
    ), f"{policy.name}: {policy.enforcement_level}"


@pytest.mark.parametrize("policy", rules.ALL, ids=lambda p: p.name)
def test_policy_says_why_it_exists(policy: pulumi_policy.Policy) -> None:
    assert len(rules.WHY.get(policy.name, "")) > 40, f"{policy.name} has no reason in rules.WHY"


@pytest.mark.parametrize("policy", rules.ALL, ids=lambda p: p.name)
def test_config_schema_is_valid_json_schema_with_defaults(policy: pulumi_policy.Policy) -> None:
    assert policy.config_schema is not None, f"{policy.name} has no config schema"
    properties = policy.config_schema.properties
    # The schema the engine validates `--policy-pack-config` against (see pulumi's convertSchema).
    schema = {"type": "object", "properties": properties}
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = {k: v["default"] for k, v in properties.items() if "default" in v}
    assert set(defaults) == set(properties), f"{policy.name}: properties without a default"
    jsonschema.Draft7Validator(schema).validate(defaults)


def test_importing_rules_starts_no_server() -> None:
    # PolicyPack() blocks forever serving gRPC, so a server would show as a timeout here.
    code = "import sys, policies.rules; print('policies.__main__' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"policies.__main__ was imported: {done.stdout!r}"


def python(code: str, cwd: Path = ROOT) -> str:
    """Run `code` in a fresh interpreter (nothing imported yet) and return what it prints."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"in {cwd}: {done.stderr}"
    return done.stdout.strip()


def test_importing_the_pack_imports_no_provider_sdk() -> None:
    """`msops check` and the engine load the pack; the provider SDKs cost a second to import."""
    code = (
        "import sys, policies.rules; "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('pulumi_')}))"
    )
    assert python(code) == "['pulumi_policy']"


def test_pack_loads_with_its_own_directory_as_the_import_root() -> None:
    """Published on its own, `policies/` is the import root: __main__ falls back to `rules`."""
    code = (
        "import sys, runpy, pulumi_policy; sys.modules['policies'] = None; "
        "sys.path.insert(0, '.'); built = {}; "
        "pulumi_policy.PolicyPack = lambda **kw: built.update(kw); "
        "runpy.run_path('__main__.py', run_name='__main__'); "
        "print(sys.modules['rules'].__name__, len(built['policies']))"
    )
    assert python(code, ROOT / "policies") == f"rules {len(rules.ALL)}"


def test_main_builds_the_pack_from_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    def fake_pack(**kwargs: Any) -> None:
        built.update(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", fake_pack)
    runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="__main__")
    assert built["name"] == "msops"
    assert [p.name for p in built["policies"]] == [p.name for p in rules.ALL]


def test_policy_pack_project_file_uses_python_with_uv() -> None:
    project = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), project["version"]
    assert project["description"]


# --- committed stacks --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stack_passes_every_mandatory_policy(stack: str, stack_graph: Any) -> None:
    blocking = rules.mandatory(rules.evaluate(stack_graph(stack)))
    assert blocking == [], f"stack {stack} violates mandatory policies:\n{show(blocking)}"


# --- config ------------------------------------------------------------------------------------


def test_disabled_policy_reports_nothing() -> None:
    graph = synth_config(single_replica("prod"), "prod")
    config = {"prod-min-replicas": {"enforcementLevel": "disabled"}}
    assert len(check(graph, "prod-min-replicas")) == 1
    assert check(graph, "prod-min-replicas", config=config) == []


def test_level_shorthand_changes_the_reported_level() -> None:
    graph = synth_config(single_replica("prod"), "prod")
    found = check(graph, "prod-min-replicas", config={"prod-min-replicas": "advisory"})
    assert [v.level for v in found] == ["advisory"]


def test_all_sets_every_policy_level(stack_graph: Any) -> None:
    assert rules.evaluate(stack_graph("prod"), config={"all": "disabled"}) == []


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"no-such-policy": "advisory"}, "no-such-policy: no such policy"),
        ({"prod-min-replicas": {"minReplica": 3}}, "prod-min-replicas.minReplica: unknown setting"),
        ({"prod-min-replicas": {"minReplicas": "3"}}, "expected an integer"),
        ({"prod-min-replicas": {"minReplicas": 0}}, "it must be at least 1"),
        ({"prod-min-replicas": {"prodStackPattern": "("}}, "is not a regular expression"),
        ({"images-pinned": {"enforcementLevel": "strict"}}, "expected one of advisory"),
        ({"all": "loud"}, "'all' takes only an enforcement level"),
    ],
)
def test_bad_policy_config_is_rejected(
    config: dict[str, Any], problem: str, stack_graph: Any
) -> None:
    with pytest.raises(rules.PolicyConfigError) as raised:
        rules.evaluate(stack_graph("dev"), config=config)
    assert problem in str(raised.value)


def test_policy_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "policy-config.json"
    path.write_text(json.dumps({"prod-min-replicas": {"minReplicas": 3}}))
    assert rules.read_policy_config(path) == {"prod-min-replicas": {"minReplicas": 3}}


def test_unreadable_policy_config_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "policy-config.json"
    path.write_text("{not json")
    with pytest.raises(rules.PolicyConfigError, match="cannot read the policy config"):
        rules.read_policy_config(path)


# --- a deliberately bad stack ------------------------------------------------------------------


def test_bad_config_fails_with_the_expected_mandatory_violations() -> None:
    found = rules.mandatory(rules.evaluate(synth_config(bad_stack_values(), "prod")))
    policies = {v.policy for v in found}
    expected = {"prod-min-replicas", "no-plaintext-secret-env", "docker-ports-loopback"}
    assert expected <= policies, show(found)


# --- docs/policies.md --------------------------------------------------------------------------


def doc_sections() -> dict[str, str]:
    """Each `### `name`` section of docs/policies.md by policy name."""
    parts = re.split(r"^### `([a-z0-9-]+)`\s*$", DOC.read_text(), flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_docs_have_a_section_for_exactly_the_policies() -> None:
    assert list(doc_sections()) == [p.name for p in rules.ALL], f"sections in {DOC}"


@pytest.mark.parametrize("policy", rules.ALL, ids=lambda p: p.name)
def test_docs_state_each_policy_level(policy: pulumi_policy.Policy) -> None:
    section = doc_sections().get(policy.name, "")
    level = policy.enforcement_level.value if policy.enforcement_level else "?"
    assert f"**Enforcement:** {level}" in section, f"{DOC}: {policy.name} is {level}"


@pytest.mark.parametrize("policy", rules.ALL, ids=lambda p: p.name)
def test_docs_name_each_policy_setting(policy: pulumi_policy.Policy) -> None:
    section = doc_sections().get(policy.name, "")
    properties = policy.config_schema.properties if policy.config_schema else {}
    missing = [k for k in properties if f"`{k}`" not in section]
    assert missing == [], f"{DOC}: the {policy.name} section does not name {missing}"


def write_stack(directory: Path, stack: str, values: dict[str, Any]) -> None:
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": values}))


def test_msops_check_fails_a_bad_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from msops import cli

    write_stack(tmp_path, "prod", bad_stack_values())
    monkeypatch.setattr(cli, "stacks_dir", lambda: tmp_path)
    result = CliRunner().invoke(cli.app, ["check", "prod", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    blocking = {v["policy"] for v in report["violations"] if v["level"] == "mandatory"}
    assert blocking == {"prod-min-replicas", "no-plaintext-secret-env", "docker-ports-loopback"}
    assert report["ok"] is False


def test_msops_check_honours_the_policy_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from msops import cli

    write_stack(tmp_path, "prod", bad_stack_values())
    config = tmp_path / "policy-config.json"
    config.write_text(
        json.dumps(
            {
                "prod-min-replicas": {"minReplicas": 1},
                "no-plaintext-secret-env": "advisory",
                "docker-ports-loopback": {"allowedAddresses": ["0.0.0.0"]},
            }
        )
    )
    monkeypatch.setattr(cli, "stacks_dir", lambda: tmp_path)
    result = CliRunner().invoke(cli.app, ["check", "prod", "--policy-config", str(config)])
    assert result.exit_code == 0, result.output


# --- values unknown during preview -------------------------------------------------------------

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown string


def test_unknown_label_value_does_not_stop_container_policies(stack_graph: Any) -> None:
    """The replica's image-id label is unknown in a first preview; nothing reads it."""
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")

    def change(inputs: dict[str, Any]) -> None:
        for item in inputs["labels"]:
            if item["label"] == LABEL_IMAGE_ID:
                item["value"] = UNKNOWN

    found = on(rules.evaluate(edit(stack_graph("dev"), res.urn, change)), res.urn)
    assert found == [], show(found)


def test_unknown_value_a_policy_needs_is_reported_as_advisory(stack_graph: Any) -> None:
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    found = on(
        rules.evaluate(edit(stack_graph("dev"), res.urn, lambda i: i.update(user=UNKNOWN))), res.urn
    )
    assert [(v.policy, v.level) for v in found] == [("containers-non-root", "advisory")], show(
        found
    )
    assert "during preview" in found[0].message


# --- through the engine's own code path --------------------------------------------------------


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def engine_violations(
    graph: synth.Graph, config: dict[str, Any] | None = None
) -> set[tuple[str, str, str]]:
    """(policy, level, urn) of what pulumi-policy's analyzer reports for the graph.

    Drives the servicer `pulumi preview --policy-pack` talks to over gRPC (its private class,
    so no server starts): wire properties as protobuf Structs, numbers as floats, and the pack
    config as the engine sends it, every policy with its defaults filled in.
    """
    servicer = _PolicyAnalyzerServicer("msops", "0.1.0", rules.ALL, EnforcementLevel.ADVISORY)
    levels = {"advisory": proto.ADVISORY, "mandatory": proto.MANDATORY, "disabled": proto.DISABLED}
    servicer.Configure(
        proto.ConfigureAnalyzerRequest(
            policyConfig={
                name: proto.PolicyConfig(enforcementLevel=levels[level], properties=struct(props))
                for name, (level, props) in rules.resolve_config(config).items()
            }
        ),
        None,
    )
    found: set[tuple[str, str, str]] = set()
    resources = []
    for r in graph.resources:
        options = proto.AnalyzerResourceOptions(
            protect=bool(r.options["protect"]),
            additionalSecretOutputs=r.options["additional_secret_outputs"],
        )
        common = {"type": r.type, "properties": struct(r.inputs), "urn": r.urn, "name": r.name}
        answer = servicer.Analyze(proto.AnalyzeRequest(**common, options=options), None)
        for d in answer.diagnostics:
            found.add(
                (d.policyName, proto.EnforcementLevel.Name(d.enforcementLevel).lower(), r.urn)
            )
        resources.append(
            proto.AnalyzerResource(
                **common, options=options, parent=r.parent, dependencies=r.options["depends_on"]
            )
        )
    answer = servicer.AnalyzeStack(proto.AnalyzeStackRequest(resources=resources), None)
    for d in answer.diagnostics:
        found.add((d.policyName, proto.EnforcementLevel.Name(d.enforcementLevel).lower(), d.urn))
    return found


@pytest.mark.parametrize(
    ("values", "stack"),
    [
        (bad_stack_values(), "prod"),
        (single_replica("prod"), "prod"),
        (plain_token("staging"), "staging"),
    ],
    ids=["docker", "kubernetes", "swarm"],
)
def test_engine_reports_what_evaluate_reports(
    values: dict[str, Any], stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = synth_config(values, stack)
    monkeypatch.setenv("PULUMI_STACK", stack)
    ours = {(v.policy, v.level, v.urn) for v in rules.evaluate(graph)}
    assert ours, "the graph was meant to violate some policies"
    assert engine_violations(graph) == ours


def test_engine_honours_the_pack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = synth_config(single_replica("prod"), "prod")
    monkeypatch.setenv("PULUMI_STACK", "prod")
    config = {"prod-min-replicas": {"minReplicas": 1}}
    assert not any(p == "prod-min-replicas" for p, _, _ in engine_violations(graph, config))
