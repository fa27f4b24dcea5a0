"""The policy pack on synthesized graphs: each policy passes and fails, config and docs hold."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterable
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

from components.vocabulary import (
    EXPOSED_MARK,
    LABEL_IMAGE_ID,
    LABEL_ROLE,
    LABEL_SERVICE,
    ROLE_REPLICA,
    WAIVER_PREFIX,
)
from msops import synth
from policies import rules
from policies.rules import availability, security, view
from tests.graphs import stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "policies.md"
STACKS = ("dev", "staging", "prod")

CONTAINER = view.DOCKER_CONTAINER
SWARM_SERVICE = view.DOCKER_SERVICE
VOLUME = view.DOCKER_VOLUME
REMOTE_IMAGE = view.DOCKER_REMOTE_IMAGE
DEPLOYMENT = view.K8S_DEPLOYMENT
STATEFULSET = view.K8S_STATEFULSET
K8S_SERVICE = view.K8S_SERVICE
PDB = view.K8S_PDB
HPA = view.K8S_HPA


# --- helpers -----------------------------------------------------------------------------------


@functools.cache
def _synth_cached(key: str, stack: str) -> synth.Graph:
    return synth_values(json.loads(key), stack)


def synth_config(values: dict[str, Any], stack: str) -> synth.Graph:
    """Synthesize modified stack values once per distinct config (graphs are not mutated)."""
    return _synth_cached(json.dumps(values, sort_keys=True), stack)


def without_database(stack: str) -> dict[str, Any]:
    """A committed stack's values with no database, so only the service's own containers run."""
    values = stack_values(stack)
    values.pop("msops:databases", None)
    for svc in values["msops:services"].values():
        svc.pop("database", None)
    return values


def labels(res: synth.Resource) -> dict[str, Any]:
    return {item["label"]: item.get("value") for item in res.inputs.get("labels", [])}


def docker_replicas(graph: synth.Graph, service: str = "web") -> list[synth.Resource]:
    return [
        r
        for r in graph.of_type(CONTAINER)
        if labels(r).get(LABEL_ROLE) == ROLE_REPLICA and labels(r).get(LABEL_SERVICE) == service
    ]


def one(graph: synth.Graph, type_: str, name: str) -> synth.Resource:
    found = [r for r in graph.of_type(type_) if r.name == name]
    assert len(found) == 1, f"expected one {type_} named {name!r} in {graph.stack}; got {found}"
    return found[0]


def edit(
    graph: synth.Graph,
    urn: str,
    change: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> synth.Graph:
    """A copy of `graph` in which one resource's inputs (and options) are changed."""
    resources = []
    for res in graph.resources:
        if res.urn == urn:
            inputs = copy.deepcopy(res.inputs)
            if change is not None:
                change(inputs)
            res = dataclasses.replace(res, inputs=inputs, options={**res.options, **options})
        resources.append(res)
    return dataclasses.replace(graph, resources=resources)


def drop(graph: synth.Graph, urn: str) -> synth.Graph:
    return dataclasses.replace(graph, resources=[r for r in graph.resources if r.urn != urn])


def k8s_container(inputs: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = inputs["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name in (None, c["name"]))


def add_docker_label(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        inputs.setdefault("labels", []).append({"label": key, "value": value})

    return change


def annotate(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        inputs["metadata"].setdefault("annotations", {})[key] = value

    return change


def of_policy(violations: Iterable[rules.Violation], policy: str) -> list[rules.Violation]:
    return [v for v in violations if v.policy == policy]


def check(graph: synth.Graph, policy: str, **kwargs: Any) -> list[rules.Violation]:
    return of_policy(rules.evaluate(graph, **kwargs), policy)


def on(violations: Iterable[rules.Violation], urn: str) -> list[rules.Violation]:
    return [v for v in violations if v.urn == urn]


def show(violations: Iterable[rules.Violation]) -> str:
    return "\n".join(f"  [{v.level}] {v.policy} {v.urn}: {v.message}" for v in violations) or "  -"


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


# --- images-pinned -----------------------------------------------------------------------------

IMAGE_SITES = {
    # stack: (resource type, resource name, where the image is, how to set it)
    "dev": (CONTAINER, "dev-web-1", lambda i, v: i.__setitem__("image", v)),
    "staging": (
        SWARM_SERVICE,
        "web",
        lambda i, v: i["taskSpec"]["containerSpec"].__setitem__("image", v),
    ),
    "prod": (DEPLOYMENT, "web", lambda i, v: k8s_container(i).__setitem__("image", v)),
}


@pytest.mark.parametrize("stack", STACKS)
def test_pinned_images_pass(stack: str, stack_graph: Any) -> None:
    found = check(stack_graph(stack), "images-pinned")
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_latest_image_is_a_violation(stack: str, stack_graph: Any) -> None:
    """The config model rejects ':latest', so the graph's image is edited to it instead."""
    type_, name, set_image = IMAGE_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    graph = edit(stack_graph(stack), res.urn, lambda i: set_image(i, "ghcr.io/msops/demo:latest"))
    found = on(check(graph, "images-pinned"), res.urn)
    assert len(found) == 1, f"{res.urn}:\n{show(found)}"
    assert "moving tag ':latest'" in found[0].message
    assert "rollback re-applies the same tag" in found[0].message
    assert "pin an exact version" in found[0].message


def nginx_image(graph: synth.Graph) -> synth.Resource:
    """The RemoteImage the docker LBs run."""
    found = [r for r in graph.of_type(REMOTE_IMAGE) if r.inputs["name"].startswith("nginx:")]
    assert len(found) == 1, f"expected one nginx RemoteImage in {graph.stack}; got {found}"
    return found[0]


def test_untagged_remote_image_is_a_violation(stack_graph: Any) -> None:
    """The config model rejects an untagged image, so the graph is edited instead."""
    graph = stack_graph("dev")
    res = nginx_image(graph)
    found = on(
        check(edit(graph, res.urn, lambda i: i.update(name="nginx")), "images-pinned"), res.urn
    )
    assert len(found) == 1 and "has no tag, so it means ':latest'" in found[0].message, show(found)


def test_digest_pinned_image_passes(stack_graph: Any) -> None:
    graph = stack_graph("dev")
    res = nginx_image(graph)
    digest = "nginx@sha256:" + "a" * 64
    found = on(
        check(edit(graph, res.urn, lambda i: i.update(name=digest)), "images-pinned"), res.urn
    )
    assert found == [], show(found)


# --- no-privileged-containers ------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_unprivileged_containers_pass(stack: str, stack_graph: Any) -> None:
    found = check(stack_graph(stack), "no-privileged-containers")
    assert found == [], show(found)


def test_privileged_docker_container_is_a_violation(stack_graph: Any) -> None:
    """The backend never sets privileged, so the graph is edited to."""
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    graph = edit(stack_graph("dev"), res.urn, lambda i: i.update(privileged=True))
    found = on(check(graph, "no-privileged-containers"), res.urn)
    assert len(found) == 1 and "runs privileged" in found[0].message, show(found)
    assert "take over the host" in found[0].message
    assert "remove `privileged`" in found[0].message


def test_swarm_sys_admin_capability_is_a_violation(stack_graph: Any) -> None:
    """Swarm has no privileged mode; SYS_ADMIN is how one gets the same power, edited in."""
    res = one(stack_graph("staging"), SWARM_SERVICE, "web")

    def change(inputs: dict[str, Any]) -> None:
        inputs["taskSpec"]["containerSpec"]["capAdds"] = ["SYS_ADMIN"]

    found = on(
        check(edit(stack_graph("staging"), res.urn, change), "no-privileged-containers"), res.urn
    )
    assert len(found) == 1 and "adds the capabilities SYS_ADMIN" in found[0].message, show(found)
    assert "drop ALL capabilities" in found[0].message


def test_privileged_kubernetes_container_is_a_violation(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), DEPLOYMENT, "web")

    def change(inputs: dict[str, Any]) -> None:
        k8s_container(inputs)["securityContext"]["privileged"] = True

    found = on(
        check(edit(stack_graph("prod"), res.urn, change), "no-privileged-containers"), res.urn
    )
    assert len(found) == 1 and "container 'web' runs privileged" in found[0].message, show(found)


# --- containers-non-root -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_service_containers_run_as_non_root(stack: str) -> None:
    graph = synth_config(without_database(stack), stack)
    found = check(graph, "containers-non-root")
    assert found == [], show(found)


def test_docker_container_as_root_is_a_violation(stack_graph: Any) -> None:
    """runAsUser must be >= 1 in the config model, so the graph's user is edited to 0."""
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    graph = edit(stack_graph("dev"), res.urn, lambda i: i.update(user="0:0"))
    found = on(check(graph, "containers-non-root"), res.urn)
    assert len(found) == 1 and "runs as '0:0'" in found[0].message, show(found)
    assert "root on the host" in found[0].message
    assert "set `user` to a uid above 0" in found[0].message


def test_swarm_service_without_user_is_a_violation(stack_graph: Any) -> None:
    """The backend always sets the user of a service, so the graph is edited to drop it."""
    res = one(stack_graph("staging"), SWARM_SERVICE, "web")
    graph = edit(
        stack_graph("staging"), res.urn, lambda i: i["taskSpec"]["containerSpec"].pop("user")
    )
    found = on(check(graph, "containers-non-root"), res.urn)
    assert len(found) == 1 and "sets no user" in found[0].message, show(found)
    assert "taskSpec.containerSpec.user" in found[0].message


def test_kubernetes_run_as_user_zero_is_a_violation(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), DEPLOYMENT, "web")

    def change(inputs: dict[str, Any]) -> None:
        k8s_container(inputs)["securityContext"]["runAsUser"] = 0

    found = on(check(edit(stack_graph("prod"), res.urn, change), "containers-non-root"), res.urn)
    assert len(found) == 1 and "runAsUser: 0" in found[0].message, show(found)
    assert "runAsNonRoot: true" in found[0].message


def test_kubernetes_pod_level_non_root_covers_its_containers(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), DEPLOYMENT, "web")

    def change(inputs: dict[str, Any]) -> None:
        k8s_container(inputs)["securityContext"].pop("runAsUser")
        k8s_container(inputs)["securityContext"].pop("runAsNonRoot")

    found = on(check(edit(stack_graph("prod"), res.urn, change), "containers-non-root"), res.urn)
    assert found == [], show(found)


def test_waiver_with_a_reason_exempts_a_root_container(stack_graph: Any) -> None:
    graph = synth_config(stack_values("dev"), "dev")
    res = one(graph, CONTAINER, "dev-main")
    reason = "the postgres entrypoint chowns PGDATA as root, then drops to uid 70"
    waived = edit(graph, res.urn, add_docker_label(WAIVER_PREFIX + "containers-non-root", reason))
    found = on(check(waived, "containers-non-root"), res.urn)
    assert found == [], show(found)


def root_with_waiver(reason: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        inputs["user"] = "root"
        add_docker_label(WAIVER_PREFIX + "containers-non-root", reason)(inputs)

    return change


def test_waiver_without_a_reason_does_not_exempt(stack_graph: Any) -> None:
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    graph = edit(stack_graph("dev"), res.urn, root_with_waiver(" "))
    found = on(check(graph, "containers-non-root"), res.urn)
    assert len(found) == 1, show(found)


def test_waivers_can_be_turned_off_by_config(stack_graph: Any) -> None:
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    graph = edit(stack_graph("dev"), res.urn, root_with_waiver("a deliberate exception"))
    config = {"containers-non-root": {"allowWaivers": False}}
    found = on(check(graph, "containers-non-root", config=config), res.urn)
    assert len(found) == 1, show(found)


# --- resource-limits ---------------------------------------------------------------------------

LIMIT_SITES = {
    "dev": (CONTAINER, "dev-web-1", lambda i: i.pop("cpus"), "cpus"),
    "staging": (
        SWARM_SERVICE,
        "web",
        lambda i: i["taskSpec"]["resources"]["limits"].pop("nanoCpus"),
        "taskSpec.resources.limits.nanoCpus",
    ),
    "prod": (
        DEPLOYMENT,
        "web",
        lambda i: k8s_container(i)["resources"]["limits"].pop("cpu"),
        "resources.limits.cpu",
    ),
}


@pytest.mark.parametrize("stack", STACKS)
def test_service_containers_with_limits_pass(stack: str, stack_graph: Any) -> None:
    type_, name, _, _ = LIMIT_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(stack_graph(stack), "resource-limits"), res.urn)
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_container_without_cpu_limit_is_a_violation(stack: str, stack_graph: Any) -> None:
    """Every service gets limits from the model's defaults, so the graph is edited to drop one."""
    type_, name, change, field = LIMIT_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(edit(stack_graph(stack), res.urn, change), "resource-limits"), res.urn)
    assert len(found) == 1, f"{res.urn}:\n{show(found)}"
    assert f"has no CPU limit ({field})" in found[0].message
    assert "starve every other container" in found[0].message
    assert "resources.cpuLimit and memoryLimit" in found[0].message


def test_cpu_limit_requirement_can_be_turned_off(stack_graph: Any) -> None:
    type_, name, change, _ = LIMIT_SITES["dev"]
    res = one(stack_graph("dev"), type_, name)
    config = {"resource-limits": {"requireCpuLimit": False}}
    found = on(
        check(edit(stack_graph("dev"), res.urn, change), "resource-limits", config=config), res.urn
    )
    assert found == [], show(found)


# --- health-checks -----------------------------------------------------------------------------

HEALTH_SITES = {
    "dev": (CONTAINER, "dev-web-1", lambda i: i.pop("healthcheck"), "has no health check"),
    "staging": (
        SWARM_SERVICE,
        "web",
        lambda i: i["taskSpec"]["containerSpec"].pop("healthcheck"),
        "has no health check",
    ),
    "prod": (
        DEPLOYMENT,
        "web",
        lambda i: k8s_container(i).pop("readinessProbe"),
        "has no readinessProbe",
    ),
}


@pytest.mark.parametrize("stack", STACKS)
def test_service_with_health_checks_passes(stack: str, stack_graph: Any) -> None:
    type_, name, _, _ = HEALTH_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(stack_graph(stack), "health-checks"), res.urn)
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_service_without_health_check_is_a_violation(stack: str, stack_graph: Any) -> None:
    """The backends always probe a service, so the graph is edited to drop the check."""
    type_, name, change, detail = HEALTH_SITES[stack]
    res = one(stack_graph(stack), type_, name)
    found = on(check(edit(stack_graph(stack), res.urn, change), "health-checks"), res.urn)
    assert len(found) == 1 and detail in found[0].message, f"{res.urn}:\n{show(found)}"
    assert "cannot tell a broken replica from a working one" in found[0].message
    assert "msops:services.<name>.health" in found[0].message


def test_disabled_docker_health_check_is_a_violation(stack_graph: Any) -> None:
    res = one(stack_graph("dev"), CONTAINER, "dev-web-1")
    graph = edit(stack_graph("dev"), res.urn, lambda i: i["healthcheck"].update(tests=["NONE"]))
    found = on(check(graph, "health-checks"), res.urn)
    assert len(found) == 1, show(found)


def test_liveness_requirement_can_be_turned_off(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), DEPLOYMENT, "web")
    graph = edit(stack_graph("prod"), res.urn, lambda i: k8s_container(i).pop("livenessProbe"))
    config = {"health-checks": {"requireLiveness": False}}
    assert len(on(check(graph, "health-checks"), res.urn)) == 1
    found = on(check(graph, "health-checks", config=config), res.urn)
    assert found == [], show(found)


# --- prod-min-replicas -------------------------------------------------------------------------


def single_replica(stack: str) -> dict[str, Any]:
    values = stack_values(stack)
    web = values["msops:services"]["web"]
    web.pop("autoscaling", None)
    web["replicas"] = 1
    return values


def test_prod_with_enough_replicas_passes(stack_graph: Any) -> None:
    found = check(stack_graph("prod"), "prod-min-replicas")
    assert found == [], show(found)


@pytest.mark.parametrize(
    ("base", "stack", "type_"),
    [
        ("dev", "prod-local", CONTAINER),
        ("staging", "prod-swarm", SWARM_SERVICE),
        ("prod", "prod", DEPLOYMENT),
    ],
)
def test_prod_with_one_replica_is_a_violation(base: str, stack: str, type_: str) -> None:
    graph = synth_config(single_replica(base), stack)
    found = check(graph, "prod-min-replicas")
    assert len(found) == 1, show(found)
    assert graph.by_urn(found[0].urn).type == type_
    assert "service 'web' runs 1 replica(s)" in found[0].message
    assert "every deploy, node drain or crash is an outage" in found[0].message
    assert "set msops:services.web.replicas (or autoscaling.min) to 2" in found[0].message


def test_prod_hpa_minimum_is_what_counts() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["autoscaling"] = {"min": 1, "max": 4, "targetCpu": 70}
    found = check(synth_config(values, "prod"), "prod-min-replicas")
    assert len(found) == 1 and "HorizontalPodAutoscaler's minReplicas" in found[0].message, show(
        found
    )


def test_non_prod_stack_may_run_one_replica() -> None:
    found = check(synth_config(single_replica("prod"), "preview"), "prod-min-replicas")
    assert found == [], show(found)


def test_min_replicas_config_changes_the_outcome(stack_graph: Any) -> None:
    config = {"prod-min-replicas": {"minReplicas": 4}}
    found = check(stack_graph("prod"), "prod-min-replicas", config=config)
    assert len(found) == 1 and "prod needs at least 4" in found[0].message, show(found)


def test_engine_style_float_min_replicas_is_accepted(stack_graph: Any) -> None:
    # The engine hands policies config numbers as floats (protobuf Struct).
    config = {"prod-min-replicas": {"minReplicas": 4.0}}
    assert len(check(stack_graph("prod"), "prod-min-replicas", config=config)) == 1


def test_prod_stack_pattern_config_changes_the_outcome() -> None:
    graph = synth_config(single_replica("prod"), "prod")
    config = {"prod-min-replicas": {"prodStackPattern": "^production$"}}
    found = check(graph, "prod-min-replicas", config=config)
    assert found == [], show(found)


def test_environment_tag_marks_a_stack_prod() -> None:
    graph = synth_config(single_replica("prod"), "blue")
    tags = {rules.ENVIRONMENT_TAG: "prod"}
    assert len(check(graph, "prod-min-replicas", stack_tags=tags)) == 1


def test_environment_tag_overrides_the_stack_name() -> None:
    graph = synth_config(single_replica("prod"), "prod")
    tags = {rules.ENVIRONMENT_TAG: "test"}
    assert check(graph, "prod-min-replicas", stack_tags=tags) == []


def test_engine_stack_name_comes_from_pulumi_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pulumi preview` the engine names the stack in PULUMI_STACK, not through evaluate."""
    graph = synth_config(single_replica("prod"), "anything")
    options = pulumi_policy.PolicyResourceOptions(
        False, [], None, [], pulumi_policy.PolicyCustomTimeouts(0, 0, 0), []
    )
    resources = [
        pulumi_policy.PolicyResource(r.type, r.inputs, r.urn, r.name, options, None, None, [], {})
        for r in graph.resources
    ]
    reported: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message)

    monkeypatch.setenv("PULUMI_STACK", "prod")
    availability.PROD_MIN_REPLICAS.validate(
        pulumi_policy.StackValidationArgs(resources, {}), report
    )
    assert len(reported) == 1, reported


# --- pdb-required ------------------------------------------------------------------------------


def test_deployment_with_a_pdb_passes(stack_graph: Any) -> None:
    found = check(stack_graph("prod"), "pdb-required")
    assert found == [], show(found)


def test_deployment_without_a_pdb_is_a_violation(stack_graph: Any) -> None:
    """The backend always adds a PDB to a scalable service, so the graph's PDB is dropped."""
    graph = stack_graph("prod")
    deployment = one(graph, DEPLOYMENT, "web")
    found = check(drop(graph, one(graph, PDB, "web").urn), "pdb-required")
    assert len(found) == 1 and found[0].urn == deployment.urn, show(found)
    assert "can run 10 replicas but no PodDisruptionBudget selects its pods" in found[0].message
    assert "evict every replica" in found[0].message
    assert "add a PodDisruptionBudget with maxUnavailable: 1" in found[0].message


def test_pdb_that_selects_other_pods_is_a_violation(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    pdb = one(graph, PDB, "web")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"

    assert len(check(edit(graph, pdb.urn, change), "pdb-required")) == 1


def test_single_replica_deployment_needs_no_pdb() -> None:
    found = check(synth_config(single_replica("prod"), "preview"), "pdb-required")
    assert found == [], show(found)


# --- services-monitored ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_monitored_services_pass(stack: str, stack_graph: Any) -> None:
    found = check(stack_graph(stack), "services-monitored")
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_service_without_monitoring_is_a_violation(stack: str) -> None:
    values = stack_values(stack)
    values["msops:monitoring"]["enabled"] = False
    found = check(synth_config(values, stack), "services-monitored")
    assert len(found) >= 1, show(found)
    assert all(v.level == "advisory" for v in found), show(found)
    assert "an outage is found by its users" in found[0].message
    assert "turn on msops:monitoring.enabled" in found[0].message


def test_docker_service_missing_from_the_scrape_config_is_a_violation(stack_graph: Any) -> None:
    graph = stack_graph("dev")
    prometheus = one(graph, CONTAINER, "dev-monitoring-prometheus")

    def change(inputs: dict[str, Any]) -> None:
        for upload in inputs["uploads"]:
            upload["content"] = upload["content"].replace("job_name: web", "job_name: api")

    found = check(edit(graph, prometheus.urn, change), "services-monitored")
    assert len(found) == 1 and "no scrape job named 'web'" in found[0].message, show(found)
    assert found[0].urn == docker_replicas(graph)[0].urn


def test_servicemonitor_that_selects_nothing_is_a_violation(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    monitor = one(graph, view.K8S_SERVICE_MONITOR, "web-servicemonitor")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"

    found = check(edit(graph, monitor.urn, change), "services-monitored")
    assert len(found) == 1 and "selected by no ServiceMonitor" in found[0].message, show(found)


# --- database-storage-retained -----------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_database_storage_that_is_kept_passes(stack: str, stack_graph: Any) -> None:
    found = check(stack_graph(stack), "database-storage-retained")
    assert found == [], show(found)


@pytest.mark.parametrize(("stack", "name"), [("dev", "dev-main-data"), ("staging", "main-data")])
def test_unprotected_database_volume_is_a_violation(
    stack: str, name: str, stack_graph: Any
) -> None:
    """The backends always protect the volume, so the graph's options are edited."""
    res = one(stack_graph(stack), VOLUME, name)
    graph = edit(stack_graph(stack), res.urn, protect=False)
    found = on(check(graph, "database-storage-retained"), res.urn)
    assert len(found) == 1 and "database volume is not protected" in found[0].message, show(found)
    assert "delete the database's data" in found[0].message
    assert "protect=True" in found[0].message


def test_statefulset_deleting_its_claims_is_a_violation(stack_graph: Any) -> None:
    res = one(stack_graph("prod"), STATEFULSET, "main")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] = "Delete"

    found = on(
        check(edit(stack_graph("prod"), res.urn, change), "database-storage-retained"), res.urn
    )
    assert len(found) == 1 and "whenDeleted: Retain" in found[0].message, show(found)


def test_metrics_volume_is_not_database_storage(stack_graph: Any) -> None:
    graph = stack_graph("dev")
    res = one(graph, VOLUME, "dev-monitoring-prometheus-data")
    assert (
        on(check(edit(graph, res.urn, protect=False), "database-storage-retained"), res.urn) == []
    )


# --- no-plaintext-secret-env -------------------------------------------------------------------


def plain_token(stack: str) -> dict[str, Any]:
    # A docker or swarm service with a database declares its env secret (so state never holds
    # DATABASE_URL in plain text), which hides every variable in it from the rule.
    values = without_database(stack) if stack in ("dev", "staging") else stack_values(stack)
    values["msops:services"]["web"].setdefault("env", {})["API_TOKEN"] = "tok-plain-1234"
    return values


def secret_token(stack: str) -> dict[str, Any]:
    values = without_database(stack) if stack == "dev" else stack_values(stack)
    values["msops:secrets"] = {"api": "tok-secret-1234"}
    values["msops:services"]["web"]["secretEnv"] = {"API_TOKEN": "api"}
    return values


@pytest.mark.parametrize("stack", STACKS)
def test_secret_env_from_secrets_passes(stack: str) -> None:
    found = check(synth_config(secret_token(stack), stack), "no-plaintext-secret-env")
    assert found == [], show(found)


@pytest.mark.parametrize("stack", STACKS)
def test_plain_secret_looking_env_is_a_violation(stack: str) -> None:
    graph = synth_config(plain_token(stack), stack)
    found = check(graph, "no-plaintext-secret-env")
    assert found, f"{stack}: expected a violation for API_TOKEN"
    assert all("sets API_TOKEN to a plain value" in v.message for v in found), show(found)
    assert "stored unencrypted in the stack config" in found[0].message
    fix = "valueFrom.secretKeyRef" if stack == "prod" else "msops:services.<name>.secretEnv"
    assert fix in found[0].message


def test_file_env_pointing_at_a_secret_file_passes(stack_graph: Any) -> None:
    graph = stack_graph("staging")
    res = one(graph, SWARM_SERVICE, "main")
    env = res.inputs["taskSpec"]["containerSpec"]["env"]
    assert env["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/"), env
    assert on(check(graph, "no-plaintext-secret-env"), res.urn) == []


def test_env_declared_secret_by_the_resource_passes() -> None:
    """Under the engine a policy sees secrets in plaintext; additionalSecretOutputs marks them."""
    graph = synth_config(plain_token("staging"), "staging")
    res = one(graph, SWARM_SERVICE, "web")
    declared = edit(graph, res.urn, additional_secret_outputs=["taskSpec"])
    assert on(check(declared, "no-plaintext-secret-env"), res.urn) == []


def test_word_parts_decide_what_looks_secret() -> None:
    words = {"PASSWORD", "TOKEN", "SECRET", "KEY"}
    looks = [
        n
        for n in ("API_KEY", "apiToken", "DB-PASSWORD", "MONKEY", "KEYBOARD", "LOG_LEVEL")
        if security.is_secret_name(n, words)
    ]
    assert looks == ["API_KEY", "apiToken", "DB-PASSWORD"]


# --- docker-ports-loopback ---------------------------------------------------------------------


def test_ports_on_loopback_pass(stack_graph: Any) -> None:
    found = check(stack_graph("dev"), "docker-ports-loopback")
    assert found == [], show(found)


def test_ports_on_every_interface_are_a_violation() -> None:
    values = stack_values("dev")
    values["msops:target"] = {"bindAddress": "0.0.0.0"}
    graph = synth_config(values, "dev")
    found = check(graph, "docker-ports-loopback")
    names = sorted(graph.by_urn(v.urn).name for v in found)
    assert names == ["dev-monitoring-grafana", "dev-monitoring-prometheus", "dev-web-lb"], show(
        found
    )
    lb = next(v for v in found if graph.by_urn(v.urn).name == "dev-web-lb")
    assert "publishes host port 8000 on 0.0.0.0" in lb.message
    assert "reachable from the whole network" in lb.message
    assert "leave msops:target.bindAddress at 127.0.0.1" in lb.message


def test_lb_labelled_exposed_may_bind_every_interface(stack_graph: Any) -> None:
    """The exposed LB is edited to carry the label; see the next test for the backend's part."""
    graph = stack_graph("dev")
    lb = one(graph, CONTAINER, "dev-web-lb")

    def change(inputs: dict[str, Any]) -> None:
        inputs["ports"][0]["ip"] = "0.0.0.0"
        add_docker_label(EXPOSED_MARK, "true")(inputs)

    assert on(check(edit(graph, lb.urn, change), "docker-ports-loopback"), lb.urn) == []


def test_exposed_docker_service_passes() -> None:
    values = stack_values("dev")
    values["msops:services"]["web"]["exposed"] = True
    graph = synth_config(values, "dev")
    found = check(graph, "docker-ports-loopback")
    assert found == [], show(found)


# --- k8s-loadbalancer-exposed ------------------------------------------------------------------


def test_cluster_ip_service_passes() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    found = check(synth_config(values, "prod"), "k8s-loadbalancer-exposed")
    assert found == [], show(found)


def test_exposed_kubernetes_service_passes(stack_graph: Any) -> None:
    found = check(stack_graph("prod"), "k8s-loadbalancer-exposed")
    assert found == [], show(found)


@pytest.mark.parametrize("kind", ["LoadBalancer", "NodePort"])
def test_unmarked_outside_service_is_a_violation(kind: str) -> None:
    """The backend only makes an exposed service a LoadBalancer, so the graph is edited."""
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    graph = synth_config(values, "prod")
    res = one(graph, K8S_SERVICE, "web")
    graph = edit(graph, res.urn, lambda i: i["spec"].update(type=kind))
    found = on(check(graph, "k8s-loadbalancer-exposed"), res.urn)
    assert len(found) == 1 and f"Service of type {kind} is not marked" in found[0].message, show(
        found
    )
    assert "must be a decision, not a default" in found[0].message
    assert "keep it ClusterIP" in found[0].message


def test_annotated_load_balancer_passes() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    graph = synth_config(values, "prod")
    res = one(graph, K8S_SERVICE, "web")

    def change(inputs: dict[str, Any]) -> None:
        inputs["spec"]["type"] = "LoadBalancer"
        annotate(EXPOSED_MARK, "true")(inputs)

    assert on(check(edit(graph, res.urn, change), "k8s-loadbalancer-exposed"), res.urn) == []


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


def bad_stack_values() -> dict[str, Any]:
    """A docker stack named prod that breaks three mandatory policies through its config alone."""
    return {
        "msops:backend": "docker",
        "msops:target": {"bindAddress": "0.0.0.0"},
        "msops:services": {
            "web": {
                "image": "ghcr.io/msops/demo:1.0.0",
                "replicas": 1,
                "env": {"API_TOKEN": "tok-plain-1234"},
                "lb": {"port": 8000},
            }
        },
        "msops:monitoring": {"enabled": False},
    }


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
