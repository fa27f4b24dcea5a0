"""Security policies: no-privileged-containers, containers-non-root, no-plaintext-secret-env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from components.vocabulary import LABEL_SECRET_ENV, SECRET_MASK, WAIVER_PREFIX
from policies.rules import security
from tests.graphs import stack_values
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    CONTAINER,
    DEPLOYMENT,
    STACKS,
    SWARM_SERVICE,
    add_docker_label,
    check,
    edit,
    k8s_container,
    on,
    one,
    plain_token,
    secret_token,
    show,
    synth_config,
    without_database,
)

pytestmark = pytest.mark.timeout(120)

PRIVILEGED = security.NO_PRIVILEGED
NON_ROOT = security.NON_ROOT
SECRET_ENV = security.NO_PLAINTEXT_SECRET_ENV


# --- no-privileged-containers: single resources -------------------------------------------------


@args.every_backend
def test_unprivileged_container_passes(resource_type: str, props: dict[str, Any]) -> None:
    args.passes(PRIVILEGED, args.resource_args(resource_type, props))


def test_privileged_docker_container_fails() -> None:
    props = args.docker_container(privileged=True)
    found = args.fails(
        PRIVILEGED, args.resource_args(CONTAINER, props), "the container runs privileged"
    )
    assert "Fix: remove `privileged`" in found.message, found.message


def test_privileged_kubernetes_container_fails() -> None:
    container = args.k8s_container(securityContext={"privileged": True, "runAsUser": 10001})
    resource = args.resource_args(DEPLOYMENT, args.deployment(container))
    args.fails(PRIVILEGED, resource, "container 'web' runs privileged")


@pytest.mark.parametrize("capability", ["SYS_ADMIN", "CAP_SYS_ADMIN", "all"])
def test_forbidden_capability_fails(capability: str) -> None:
    """Docker takes capabilities with or without `CAP_`, in any case."""
    props = args.swarm_service(capAdds=[capability])
    found = args.fails(
        PRIVILEGED, args.resource_args(SWARM_SERVICE, props), "adds the capabilities"
    )
    assert "Fix: drop ALL capabilities" in found.message, found.message


def test_narrow_capability_passes() -> None:
    props = args.docker_container(capabilities={"adds": ["NET_BIND_SERVICE"]})
    args.passes(PRIVILEGED, args.resource_args(CONTAINER, props))


def test_forbidden_capabilities_config_changes_the_outcome() -> None:
    config = {"forbiddenCapabilities": ["NET_ADMIN"]}
    props = args.docker_container(capabilities={"adds": ["NET_ADMIN"]})
    resource = args.resource_args(CONTAINER, props, config=config)
    args.fails(PRIVILEGED, resource, "adds the capabilities NET_ADMIN")


# --- no-privileged-containers: committed stacks ---------------------------------------------------


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


# --- containers-non-root: single resources ------------------------------------------------------


@args.every_backend
def test_non_root_container_passes(resource_type: str, props: dict[str, Any]) -> None:
    args.passes(NON_ROOT, args.resource_args(resource_type, props))


@pytest.mark.parametrize("user", ["root", "0", "0:0", "root:staff"])
def test_docker_root_user_fails(user: str) -> None:
    resource = args.resource_args(CONTAINER, args.docker_container(user=user))
    found = args.fails(NON_ROOT, resource, f"the container runs as {user!r}")
    assert "Fix: set `user` to a uid above 0" in found.message, found.message
    assert f"{WAIVER_PREFIX}containers-non-root: <reason>" in found.message, found.message


def test_swarm_service_without_user_fails() -> None:
    props = args.swarm_service()
    del props["taskSpec"]["containerSpec"]["user"]
    found = args.fails(NON_ROOT, args.resource_args(SWARM_SERVICE, props), "sets no user")
    assert "set `taskSpec.containerSpec.user`" in found.message, found.message


def test_kubernetes_container_without_non_root_fails() -> None:
    container = args.k8s_container(securityContext={})
    resource = args.resource_args(DEPLOYMENT, args.deployment(container))
    found = args.fails(
        NON_ROOT, resource, "sets neither runAsNonRoot: true nor a runAsUser above 0"
    )
    assert "Fix: set securityContext.runAsNonRoot: true" in found.message, found.message


def test_kubernetes_pod_security_context_covers_its_containers() -> None:
    props = args.deployment(args.k8s_container(securityContext={}))
    props["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    args.passes(NON_ROOT, args.resource_args(DEPLOYMENT, props))


def test_kubernetes_container_overrides_a_non_root_pod() -> None:
    props = args.deployment(args.k8s_container(securityContext={"runAsUser": 0}))
    props["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1}
    args.fails(NON_ROOT, args.resource_args(DEPLOYMENT, props), "runAsUser: 0 (root)")


def test_kubernetes_init_container_is_checked() -> None:
    props = args.deployment()
    init = args.k8s_container(name="migrate", securityContext={"runAsUser": 0})
    props["spec"]["template"]["spec"]["initContainers"] = [init]
    args.fails(NON_ROOT, args.resource_args(DEPLOYMENT, props), "init container 'migrate'")


def test_root_waiver_on_the_pod_template_exempts_a_deployment() -> None:
    props = args.deployment(args.k8s_container(securityContext={"runAsUser": 0}))
    reason = {f"{WAIVER_PREFIX}containers-non-root": "chowns its data directory, then drops"}
    props["spec"]["template"]["metadata"]["annotations"] = reason
    args.passes(NON_ROOT, args.resource_args(DEPLOYMENT, props))


def test_root_waiver_without_a_reason_does_not_exempt() -> None:
    labels = args.docker_labels(**{f"{WAIVER_PREFIX}containers-non-root": "  "})
    resource = args.resource_args(CONTAINER, args.docker_container(user="root", labels=labels))
    args.fails(NON_ROOT, resource, "runs as 'root'")


def test_allow_waivers_false_ignores_a_waiver() -> None:
    labels = args.docker_labels(**{f"{WAIVER_PREFIX}containers-non-root": "deliberate"})
    props = args.docker_container(user="root", labels=labels)
    resource = args.resource_args(CONTAINER, props, config={"allowWaivers": False})
    args.fails(NON_ROOT, resource, "runs as 'root'")


# --- containers-non-root: committed stacks --------------------------------------------------------


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


# --- no-plaintext-secret-env: single resources --------------------------------------------------


@args.every_backend
def test_environment_without_secrets_passes(resource_type: str, props: dict[str, Any]) -> None:
    args.passes(SECRET_ENV, args.resource_args(resource_type, props))


@pytest.mark.parametrize(
    ("resource_type", "props", "fix"),
    [
        (
            CONTAINER,
            args.docker_container(envs=["API_TOKEN=tok-1234"]),
            "Fix: move it to msops:services.<name>.secretEnv",
        ),
        (
            SWARM_SERVICE,
            args.swarm_service(env={"API_TOKEN": "tok-1234"}),
            "pass API_TOKEN_FILE=/run/secrets/<name>",
        ),
        (
            DEPLOYMENT,
            args.deployment(args.k8s_container(env=[{"name": "API_TOKEN", "value": "tok-1234"}])),
            "Fix: take the value from a Secret with valueFrom.secretKeyRef",
        ),
    ],
    ids=["docker", "swarm", "kubernetes"],
)
def test_plain_secret_value_fails(resource_type: str, props: dict[str, Any], fix: str) -> None:
    found = args.fails(SECRET_ENV, args.resource_args(resource_type, props), "sets API_TOKEN")
    assert fix in found.message, found.message


def test_masked_secret_value_passes() -> None:
    props = args.docker_container(envs=[f"API_TOKEN={SECRET_MASK}"])
    args.passes(SECRET_ENV, args.resource_args(CONTAINER, props))


def test_value_from_a_kubernetes_secret_passes() -> None:
    ref = {"secretKeyRef": {"name": "web", "key": "token"}}
    container = args.k8s_container(env=[{"name": "API_TOKEN", "valueFrom": ref}])
    args.passes(SECRET_ENV, args.resource_args(DEPLOYMENT, args.deployment(container)))


def test_file_variable_holding_a_path_passes() -> None:
    props = args.swarm_service(env={"POSTGRES_PASSWORD_FILE": "/run/secrets/main-password"})
    args.passes(SECRET_ENV, args.resource_args(SWARM_SERVICE, props))


def test_a_property_declared_secret_does_not_hide_a_plain_variable() -> None:
    """additionalSecretOutputs is about state: the bypass this rule once had on docker."""
    props = args.docker_container(envs=["DB_PASSWORD=hunter2", "LOG_LEVEL=info"])
    resource = args.resource_args(CONTAINER, props, secret_outputs=["envs"])
    args.fails(SECRET_ENV, resource, "sets DB_PASSWORD to a plain value")


def test_a_variable_the_container_names_secret_passes() -> None:
    # Under the engine the policy sees a Pulumi secret decrypted; the label names it.
    props = args.docker_container(
        envs=["API_TOKEN=tok-1234"], labels=args.docker_labels(**{LABEL_SECRET_ENV: "API_TOKEN"})
    )
    args.passes(SECRET_ENV, args.resource_args(CONTAINER, props, secret_outputs=["envs"]))


def test_the_label_covers_only_the_variables_it_names() -> None:
    props = args.docker_container(
        envs=["API_TOKEN=tok-1234", "DB_PASSWORD=hunter2"],
        labels=args.docker_labels(**{LABEL_SECRET_ENV: "API_TOKEN"}),
    )
    found = args.fails(
        SECRET_ENV, args.resource_args(CONTAINER, props), "sets DB_PASSWORD to a plain value"
    )
    assert "API_TOKEN" not in found.message, found.message


def test_a_masked_item_is_skipped_and_the_rest_is_read() -> None:
    # Under `msops check` a secret item is masked whole: "[secret]", no name.
    props = args.docker_container(envs=[SECRET_MASK, "DB_PASSWORD=hunter2"])
    args.fails(SECRET_ENV, args.resource_args(CONTAINER, props), "sets DB_PASSWORD")


def test_a_whole_environment_as_one_secret_fails() -> None:
    props = args.docker_container(envs=SECRET_MASK)
    args.fails(SECRET_ENV, args.resource_args(CONTAINER, props), "whole environment")


def test_secret_words_config_changes_what_looks_secret() -> None:
    props = args.docker_container(envs=["SESSION_COOKIE=abc"])
    resource = args.resource_args(CONTAINER, props, config={"secretWords": ["COOKIE"]})
    args.fails(SECRET_ENV, resource, "sets SESSION_COOKIE to a plain value")


# --- no-plaintext-secret-env: committed stacks ----------------------------------------------------


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


def test_a_service_declared_secret_still_has_its_plain_variable_found() -> None:
    graph = synth_config(plain_token("staging"), "staging")
    res = one(graph, SWARM_SERVICE, "web")
    declared = edit(graph, res.urn, additional_secret_outputs=["taskSpec"])
    assert on(check(declared, "no-plaintext-secret-env"), res.urn), "the plain API_TOKEN passed"


def test_word_parts_decide_what_looks_secret() -> None:
    words = {"PASSWORD", "TOKEN", "SECRET", "KEY"}
    looks = [
        n
        for n in ("API_KEY", "apiToken", "DB-PASSWORD", "MONKEY", "KEYBOARD", "LOG_LEVEL")
        if security.is_secret_name(n, words)
    ]
    assert looks == ["API_KEY", "apiToken", "DB-PASSWORD"]
