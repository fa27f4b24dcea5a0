"""Canary steps on every backend, on synthesized graphs: the canary beside an untouched stable."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.plan.rollout import CanaryState, canary_replicas, encode
from components.vocabulary import LABEL_TRACK
from msops import synth
from tests.graphs import stack_values

pytestmark = pytest.mark.timeout(120)

NEW_IMAGE = "ghcr.io/msops/demo:1.1.0"
STEPS = [{"weight": 25, "pause": "30s"}, {"weight": 50, "pause": "30s"}]
STACK_OF = {"docker": "dev", "swarm": "staging", "kubernetes": "prod"}
CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def stable_values(backend: str) -> dict[str, Any]:
    """The committed stack, its web service on a pulled image, rolled out by canary."""
    values = stack_values(STACK_OF[backend])
    web = values["msops:services"]["web"]
    web.pop("build", None)
    web["image"] = "ghcr.io/msops/demo:1.0.0"
    web["rollout"] = {**web.get("rollout", {}), "strategy": "canary", "steps": STEPS}
    return values


def target_values(backend: str) -> dict[str, Any]:
    values = copy.deepcopy(stable_values(backend))
    values["msops:services"]["web"]["image"] = NEW_IMAGE
    return values


def graph(backend: str, weight: int | None = None, step: int = 1) -> synth.Graph:
    """The stable release (weight None), or canary step `step` at `weight` on its way to 1.1.0."""
    stack = STACK_OF[backend]
    if weight is None:
        return synth.synth_config(stable_values(backend), stack=stack)
    block = stable_values(backend)["msops:services"]["web"]
    state = encode({"web": CanaryState(block, weight, step)})
    return synth.synth_config(target_values(backend), stack=stack, rollout=state)


def labels(res: synth.Resource) -> dict[str, Any]:
    return {item["label"]: item.get("value") for item in res.inputs.get("labels", [])}


def canaries(backend: str, g: synth.Graph) -> list[synth.Resource]:
    if backend == "docker":
        return [r for r in g.of_type(CONTAINER) if labels(r).get(LABEL_TRACK) == "canary"]
    if backend == "swarm":
        return [r for r in g.of_type(SERVICE) if labels(r).get(LABEL_TRACK) == "canary"]
    return [r for r in g.of_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == "web-canary"]


def canary_count(backend: str, found: list[synth.Resource]) -> int:
    if backend == "docker":
        return len(found)
    if backend == "swarm":
        return sum(r.inputs["mode"]["replicated"]["replicas"] for r in found)
    return sum(r.inputs["spec"]["replicas"] for r in found)


def image_of(backend: str, res: synth.Resource) -> str:
    if backend == "docker":
        return str(res.inputs["image"])
    if backend == "swarm":
        return str(res.inputs["taskSpec"]["containerSpec"]["image"])
    return str(res.inputs["spec"]["template"]["spec"]["containers"][0]["image"])


BACKENDS = list(STACK_OF)
STEP_WEIGHTS = [(1, 25), (2, 50)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_release_without_a_canary_step_runs_no_canary(backend: str) -> None:
    assert canaries(backend, graph(backend)) == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("step", "weight"), STEP_WEIGHTS)
def test_each_step_runs_the_new_image_on_its_share_of_replicas(
    backend: str, step: int, weight: int
) -> None:
    found = canaries(backend, graph(backend, weight, step))
    # The prod stack autoscales from 3; dev and staging run 2.
    stable = 3 if backend == "kubernetes" else 2
    assert canary_count(backend, found) == canary_replicas(stable, weight), [r.urn for r in found]
    assert {image_of(backend, r) for r in found} == {NEW_IMAGE}, [r.urn for r in found]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("step", "weight"), STEP_WEIGHTS)
def test_stable_is_untouched_at_every_step(backend: str, step: int, weight: int) -> None:
    before = {r.urn: r for r in graph(backend)}
    after = graph(backend, weight, step)
    touched = [
        r.urn
        for r in after
        if r.urn in before
        and (r.inputs, r.options) != (before[r.urn].inputs, before[r.urn].options)
    ]
    assert touched == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_canary_is_the_only_thing_a_step_adds(backend: str) -> None:
    before = {r.urn for r in graph(backend)}
    # Docker also pulls the new image, which is not something that runs.
    added = [
        r
        for r in graph(backend, 25)
        if r.urn not in before and r.type != "docker:index/remoteImage:RemoteImage"
    ]
    names = {r.urn.rsplit("::", 1)[1] for r in added if r.custom}
    assert names and all("canary" in n for n in names), sorted(names)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_zero_takes_the_canary_away_and_leaves_stable(backend: str) -> None:
    stable = {r.urn: r.inputs for r in graph(backend)}
    aborted = {r.urn: r.inputs for r in graph(backend, 0, 0)}
    assert aborted == stable


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_target_without_a_step_runs_the_new_image_everywhere(backend: str) -> None:
    stack = STACK_OF[backend]
    promoted = synth.synth_config(target_values(backend), stack=stack)
    assert canaries(backend, promoted) == []
    assert promoted.outputs["services"]["web"]["image"] == NEW_IMAGE


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_records_its_canary_in_the_stack_outputs(backend: str) -> None:
    out = graph(backend, 50, 2).outputs["services"]["web"]
    assert out["image"] == "ghcr.io/msops/demo:1.0.0", out
    assert (out["canary"]["image"], out["canary"]["step"]) == (NEW_IMAGE, 2), out


def test_docker_canary_replicas_answer_to_the_service_alias() -> None:
    for res in canaries("docker", graph("docker", 25)):
        assert res.inputs["networksAdvanced"][0]["aliases"] == ["web"], res.urn


def test_swarm_canary_shares_the_alias_and_publishes_no_port() -> None:
    (canary,) = canaries("swarm", graph("swarm", 25))
    (attachment,) = canary.inputs["taskSpec"]["networksAdvanceds"]
    assert attachment["aliases"] == ["web"], canary.urn
    assert "ports" not in canary.inputs["endpointSpec"], canary.urn


def test_kubernetes_canary_is_selected_by_the_same_service() -> None:
    g = graph("kubernetes", 25)
    (canary,) = canaries("kubernetes", g)
    service = next(
        r for r in g.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "web"
    )
    pod_labels = canary.inputs["spec"]["template"]["metadata"]["labels"]
    selector = service.inputs["spec"]["selector"]
    assert selector.items() <= pod_labels.items(), (selector, pod_labels)
    assert pod_labels[LABEL_TRACK] == "canary", canary.urn


def test_kubernetes_carries_the_pods_version_to_prometheus() -> None:
    monitor = next(
        r
        for r in graph("kubernetes").of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
        if r.inputs["metadata"]["name"] == "web"
    )
    assert "app.kubernetes.io/version" in monitor.inputs["spec"]["podTargetLabels"], monitor.urn


def test_a_stable_release_that_no_longer_validates_is_a_config_error() -> None:
    from components.platform import InvalidConfig

    state = encode({"web": CanaryState({"image": "x:1", "replicas": "two"}, 25, 1)})
    with pytest.raises(InvalidConfig, match="stable release of web"):
        synth.synth_config(target_values("docker"), stack="dev", rollout=state)
