"""images-pinned: on single resources, and on the committed stacks."""

from __future__ import annotations

from typing import Any

import pytest

from components.vocabulary import SECRET_MASK, WAIVER_PREFIX
from msops import synth
from policies.rules import images
from policies.rules.view import DOCKER_IMAGE
from tests.unit.policies import args
from tests.unit.policies.stacks import (
    CONTAINER,
    DEPLOYMENT,
    REMOTE_IMAGE,
    STACKS,
    SWARM_SERVICE,
    check,
    edit,
    k8s_container,
    on,
    one,
    show,
)

pytestmark = pytest.mark.timeout(120)

POLICY = images.IMAGES_PINNED
LATEST = "ghcr.io/msops/demo:latest"

# --- single resources ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (CONTAINER, args.docker_container()),
        (SWARM_SERVICE, args.swarm_service()),
        (DEPLOYMENT, args.deployment()),
        (REMOTE_IMAGE, {"name": "nginx:1.27.3"}),
    ],
    ids=["docker", "swarm", "kubernetes", "remote-image"],
)
def test_pinned_image_passes(resource_type: str, props: dict[str, Any]) -> None:
    args.passes(POLICY, args.resource_args(resource_type, props))


@pytest.mark.parametrize(
    ("resource_type", "props", "where"),
    [
        (CONTAINER, args.docker_container(image=LATEST), "the container"),
        (SWARM_SERVICE, args.swarm_service(image=LATEST), "taskSpec.containerSpec"),
        (DEPLOYMENT, args.deployment(args.k8s_container(image=LATEST)), "container 'web'"),
        (REMOTE_IMAGE, {"name": LATEST}, "name"),
    ],
    ids=["docker", "swarm", "kubernetes", "remote-image"],
)
def test_latest_tag_fails(resource_type: str, props: dict[str, Any], where: str) -> None:
    found = args.fails(POLICY, args.resource_args(resource_type, props), f"{where}: image")
    assert "uses the moving tag ':latest'" in found.message, found.message
    assert "Fix: pin an exact version (':1.2.3')" in found.message, found.message


def test_untagged_image_fails() -> None:
    resource = args.resource_args(CONTAINER, args.docker_container(image="ghcr.io/msops/demo"))
    args.fails(POLICY, resource, "has no tag, so it means ':latest'")


def test_untagged_image_on_a_registry_port_fails() -> None:
    """The colon of `host:5000/` is not a tag."""
    resource = args.resource_args(REMOTE_IMAGE, {"name": "localhost:5000/demo"})
    args.fails(POLICY, resource, "'localhost:5000/demo' has no tag")


def test_digest_passes_without_a_tag() -> None:
    resource = args.resource_args(REMOTE_IMAGE, {"name": "nginx@sha256:" + "a" * 64})
    args.passes(POLICY, resource)


def test_built_image_name_is_checked() -> None:
    resource = args.resource_args(DOCKER_IMAGE, {"imageName": LATEST})
    args.fails(POLICY, resource, "imageName: image")


def test_forbidden_tags_config_adds_a_moving_tag() -> None:
    config = {"forbiddenTags": ["latest", "edge"]}
    props = args.docker_container(image="ghcr.io/msops/demo:edge")
    args.fails(POLICY, args.resource_args(CONTAINER, props, config=config), "moving tag ':edge'")


def test_masked_secret_image_is_not_read() -> None:
    """The offline synth shows a secret image reference as the mask; nothing to check."""
    args.passes(POLICY, args.resource_args(CONTAINER, args.docker_container(image=SECRET_MASK)))


def test_waiver_with_a_reason_exempts_the_resource() -> None:
    labels = args.docker_labels(**{f"{WAIVER_PREFIX}images-pinned": "a mirror retags nightly"})
    props = args.docker_container(image=LATEST, labels=labels)
    args.passes(POLICY, args.resource_args(CONTAINER, props))


# --- committed stacks ----------------------------------------------------------------------------

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
