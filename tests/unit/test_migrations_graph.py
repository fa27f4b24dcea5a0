"""Migrations in the synthesized graph of every backend: they run before the new replicas, with
the service's env and database secret, and a failed one leaves the old replicas in place."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pulumi
import pytest

from components.platform import InvalidConfig
from components.vocabulary import MIGRATE_DOWN_ENV
from msops import synth
from tests.graphs import (
    CONTAINER,
    DEPLOYMENT,
    JOB,
    K8S_SERVICE,
    STACK_OF,
    labels,
    stack_values,
    synth_values,
)
from tests.graphs import SWARM_SERVICE as SERVICE
from tests.live.applier import live_synth

pytestmark = pytest.mark.timeout(120)

REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
COMMAND = ["python", "-m", "demo.migrate", "up"]
DB_PASSWORD = "db-pw-7Hq2LmX9"


def migration(graph: synth.Graph) -> synth.Resource:
    found = [r for r in graph if r.name.endswith("-migrate") and r.custom]
    assert len(found) == 1, f"expected one migration, found {[r.urn for r in found]}"
    return found[0]


def replicas(graph: synth.Graph) -> list[synth.Resource]:
    """What runs api, the service with the migrations: docker replica containers, the swarm
    service, the Deployment."""
    found = [
        r
        for r in graph.of_type(CONTAINER)
        if labels(r).get("msops.role") == "replica" and labels(r).get("msops.service") == "api"
    ]
    found += [r for r in graph.of_type(SERVICE) if labels(r).get("msops.service") == "api"]
    found += [r for r in graph.of_type(DEPLOYMENT) if r.name == "api"]
    assert found, "no replicas in the graph"
    return found


def env_list(res: synth.Resource) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in res.inputs["envs"])


@pytest.fixture(params=sorted(STACK_OF))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- before the new replicas ---------------------------------------------------------------------


def test_every_replica_depends_on_the_migration(backend: str, stack_graph: Any) -> None:
    graph = stack_graph(STACK_OF[backend])
    step = migration(graph)
    for res in replicas(graph):
        assert step.urn in res.options["depends_on"], f"{res.urn} does not wait for {step.urn}"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_replicas_take_the_migrations_result_as_an_input(stack: str, stack_graph: Any) -> None:
    # Known only once the migration exited 0: a failed one leaves nothing to register them with.
    for res in replicas(stack_graph(stack)):
        assert labels(res).get("msops.schema") == "2", f"{res.urn}: {labels(res)}"


def test_the_migration_runs_the_services_image(backend: str, stack_graph: Any) -> None:
    graph = stack_graph(STACK_OF[backend])
    step = migration(graph)
    if backend == "kubernetes":
        (container,) = step.inputs["spec"]["template"]["spec"]["containers"]
        (replica,) = replicas(graph)[0].inputs["spec"]["template"]["spec"]["containers"]
        assert (container["image"], container["args"]) == (replica["image"], COMMAND), step.urn
        return
    assert step.inputs["command"] == COMMAND, step.urn
    if backend == "docker":
        assert step.inputs["image"] == replicas(graph)[0].inputs["image"], step.urn
    else:
        image = replicas(graph)[0].inputs["taskSpec"]["containerSpec"]["image"]
        assert step.inputs["image"] == image, step.urn


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_docker_migration_waits_for_its_exit_and_keeps_its_output(
    stack: str, stack_graph: Any
) -> None:
    step = migration(stack_graph(stack))
    wanted = {"attach": True, "mustRun": False, "logs": True, "rm": False, "restart": "no"}
    assert {k: step.inputs.get(k) for k in wanted} == wanted, step.urn
    assert {"uploads", "containerLogs"} <= set(step.options["additional_secret_outputs"])


def test_a_docker_migration_is_not_found_by_the_services_name(stack_graph: Any) -> None:
    (network,) = migration(stack_graph("dev")).inputs["networksAdvanced"]
    assert "aliases" not in network, f"the LB and Prometheus would find it: {network}"


def test_the_swarm_migration_runs_on_the_manager_on_the_overlay_network(
    stack_graph: Any,
) -> None:
    graph = stack_graph("staging")
    step = migration(graph)
    (network,) = step.inputs["networksAdvanced"]
    (attachment,) = replicas(graph)[0].inputs["taskSpec"]["networksAdvanceds"]
    assert network["name"] == attachment["name"], "the service's overlay network"
    (pull,) = graph.of_type(REMOTE_IMAGE)
    assert pull.urn in step.options["depends_on"], "the manager pulls the image itself"


# --- the service's env and database secret -------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_docker_migration_has_the_services_env_and_its_url_as_a_file(stack: str) -> None:
    values = stack_values(stack)
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    live = live_synth(stack, config=values, stack_name=stack)
    step = migration(live.graph)
    env = env_list(step)
    if stack == "dev":
        plain = {k: v for k, v in env_list(replicas(live.graph)[0]).items() if k != "REPLICA_ID"}
        url = plain.pop("DATABASE_URL")
    else:
        # A swarm service already takes its secrets as files only: the same env.
        plain = dict(replicas(live.graph)[0].inputs["taskSpec"]["containerSpec"]["env"])
        del plain["DATABASE_URL_FILE"]
        url = f"postgresql://app:{DB_PASSWORD}@main:5432/main"
    assert DB_PASSWORD in url, "the test must see the service's real URL"
    assert env == {**plain, "DATABASE_URL_FILE": "/run/secrets/DATABASE_URL"}, step.urn
    (upload,) = step.inputs["uploads"]
    assert (upload["file"], upload["content"]) == ("/run/secrets/DATABASE_URL", url), step.urn


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_docker_migrations_secret_never_shows_in_the_graph(stack: str) -> None:
    values = stack_values(stack)
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    step = migration(synth_values(values, stack))
    assert DB_PASSWORD not in json.dumps(step.inputs), step.urn
    assert step.inputs["uploads"][0]["content"] == synth.SECRET, step.urn


def test_the_kubernetes_job_has_the_services_env_and_secret_refs(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    (job_container,) = migration(graph).inputs["spec"]["template"]["spec"]["containers"]
    (container,) = replicas(graph)[0].inputs["spec"]["template"]["spec"]["containers"]
    assert job_container["env"] == container["env"]
    refs = {e["name"]: e.get("valueFrom") for e in job_container["env"]}
    assert refs["DATABASE_URL"] == {"secretKeyRef": {"name": "api-env", "key": "DATABASE_URL"}}


# --- kubernetes: the Job -------------------------------------------------------------------------


def test_the_job_has_its_backoff_limit_ttl_and_deadline(stack_graph: Any) -> None:
    spec = migration(stack_graph("prod")).inputs["spec"]
    got = {k: spec[k] for k in ("backoffLimit", "ttlSecondsAfterFinished", "activeDeadlineSeconds")}
    assert got == {
        "backoffLimit": 1,
        "ttlSecondsAfterFinished": 86400,
        "activeDeadlineSeconds": 600,
    }
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_a_failed_job_is_replaced_by_the_next_update(stack_graph: Any) -> None:
    job = migration(stack_graph("prod"))
    assert job.inputs["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
    assert job.options["delete_before_replace"] is True, "same name: the old one goes first"


def test_the_job_pod_is_no_pod_of_the_service(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    pod_labels = migration(graph).inputs["spec"]["template"]["metadata"]["labels"]
    selectors = [r.inputs["spec"]["selector"] for r in graph.of_type(K8S_SERVICE)]
    selectors += [r.inputs["spec"]["selector"]["matchLabels"] for r in graph.of_type(PDB)]
    selectors += [r.inputs["spec"]["selector"]["matchLabels"] for r in graph.of_type(DEPLOYMENT)]
    for selector in selectors:
        assert not all(pod_labels.get(k) == v for k, v in selector.items()), selector


def test_the_job_pod_meets_the_restricted_level(stack_graph: Any) -> None:
    pod = migration(stack_graph("prod")).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert (
        pod["securityContext"]["runAsNonRoot"] is True
        and pod["automountServiceAccountToken"] is False
    )
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {
        "drop": ["ALL"]
    }
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def prod_with(**api: Any) -> synth.Graph:
    values = stack_values("prod")
    values["msops:services"]["api"].update(api)
    return synth_values(values, "prod")


def test_a_scaled_release_keeps_its_job(stack_graph: Any) -> None:
    before = migration(stack_graph("prod"))
    after = migration(prod_with(autoscaling={"min": 4, "max": 12}))
    assert after.inputs == before.inputs, "a scale runs no migration"


def test_a_new_schema_names_a_new_job(stack_graph: Any) -> None:
    block = dict(stack_values("prod")["msops:services"]["api"]["migrations"], schemaVersion=3)
    before = migration(stack_graph("prod")).inputs["metadata"]["name"]
    after = migration(prod_with(migrations=block)).inputs["metadata"]["name"]
    assert before != after and after.startswith("api-migrate-"), (before, after)


# --- a failed migration leaves the old replicas --------------------------------------------------


@contextmanager
def failing(fail: Callable[[Any, dict[str, Any]], None]) -> Iterator[list[str]]:
    """Synthesize with mocks where `fail(args, state)` makes the migration fail; yields the
    URNs of every resource that got registered."""
    registered: list[str] = []
    base_mocks, base_monitor = synth._Mocks, synth._RecordingMonitor

    class Mocks(base_mocks):  # type: ignore[misc, valid-type]
        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            rid, state = super().new_resource(args)
            if args.name.endswith("-migrate"):
                fail(args, state)
            return rid, state

    class Monitor(base_monitor):  # type: ignore[misc, valid-type]
        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            registered.append(response.urn)
            return response

    synth._Mocks, synth._RecordingMonitor = Mocks, Monitor  # type: ignore[misc]
    try:
        yield registered
    finally:
        synth._Mocks, synth._RecordingMonitor = base_mocks, base_monitor  # type: ignore[misc]


def exits(code: int, logs: str) -> Callable[[Any, dict[str, Any]], None]:
    def fail(args: Any, state: dict[str, Any]) -> None:
        state.update(exitCode=code, containerLogs=logs)

    return fail


def job_fails(args: Any, state: dict[str, Any]) -> None:
    # What pulumi-kubernetes does with a Job whose status turns Failed: the create fails.
    raise RuntimeError("Job api-migrate failed: BackoffLimitExceeded")


def kinds(urns: list[str]) -> set[str]:
    return {
        urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1] + "::" + urn.rsplit("::", 1)[-1] for urn in urns
    }


LOG = "up 1: notes table\nmigrate: database error: password authentication failed for {url}\n"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_failed_docker_migration_registers_no_replica(stack: str) -> None:
    with failing(exits(1, LOG)) as registered, pytest.raises(pulumi.RunError) as caught:
        synth.synth(stack)
    names = kinds(registered)
    assert any(n.endswith("-migrate") for n in names), f"the migration ran: {sorted(names)}"
    if stack == "dev":
        # web's replicas wait for no migration, api's for its own.
        stray = [
            n
            for n in names
            if n.startswith(f"{CONTAINER}::dev-api-") and n.rsplit("-", 1)[-1].isdigit()
        ]
    else:
        stray = [n for n in names if n == f"{SERVICE}::api"]
    assert stray == [], f"replicas registered after a failed migration: {stray}"
    assert str(caught.value).startswith("msops:services.api.migrations: the migration"), (
        caught.value
    )


def test_a_failed_migrations_error_quotes_its_output_without_the_secret() -> None:
    values = stack_values("dev")
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    url = f"postgresql://app:{DB_PASSWORD}@main:5432/main"
    with failing(exits(1, LOG.format(url=url))), pytest.raises(pulumi.RunError) as caught:
        synth.synth_config(values, stack="dev", secret_keys=["msops:databases"])
    message = str(caught.value)
    assert "exited 1" in message and "password authentication failed" in message, message
    assert DB_PASSWORD not in message and "\n" not in message, message


def test_a_failed_job_registers_no_deployment() -> None:
    with failing(job_fails) as registered, pytest.raises(Exception, match="BackoffLimitExceeded"):
        synth.synth("prod")
    names = kinds(registered)
    # web's Deployment waits for no migration.
    assert f"{DEPLOYMENT}::api" not in names, sorted(names)
    assert f"{DEPLOYMENT}::web" in names, sorted(names)


# --- the down step of a rollback -----------------------------------------------------------------


@pytest.fixture
def down_to_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIGRATE_DOWN_ENV, json.dumps({"api": 1}))


def down_command(step: synth.Resource) -> list[str]:
    if step.type == JOB:
        return list(step.inputs["spec"]["template"]["spec"]["containers"][0]["args"])
    return list(step.inputs["command"])


def test_the_down_step_runs_the_down_command_to_the_version(backend: str, down_to_1: None) -> None:
    step = migration(synth.synth(STACK_OF[backend]))
    assert down_command(step) == ["python", "-m", "demo.migrate", "down", "--to", "1"], step.urn


def test_the_down_step_changes_no_replica(backend: str, stack_graph: Any, down_to_1: None) -> None:
    before = {r.urn: (r.inputs, r.options) for r in replicas(stack_graph(STACK_OF[backend]))}
    after = {r.urn: (r.inputs, r.options) for r in replicas(synth.synth(STACK_OF[backend]))}
    assert after == before


def test_the_down_step_records_the_schema_it_leaves(backend: str, down_to_1: None) -> None:
    outputs = synth.synth(STACK_OF[backend]).outputs
    assert outputs["services"]["api"]["schemaVersion"] == 1, outputs


def test_a_release_records_the_schema_it_deploys(backend: str, stack_graph: Any) -> None:
    outputs = stack_graph(STACK_OF[backend]).outputs
    assert outputs["services"]["api"]["schemaVersion"] == 2, outputs


def test_a_down_step_for_a_service_without_a_down_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = stack_values("dev")
    del values["msops:services"]["api"]["migrations"]["down"]
    monkeypatch.setenv(MIGRATE_DOWN_ENV, json.dumps({"api": 1}))
    with pytest.raises(InvalidConfig, match=r"services\.api has no migrations\.down"):
        synth_values(values, "dev")


def test_a_down_step_to_the_version_the_image_needs_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MIGRATE_DOWN_ENV, json.dumps({"api": 2}))
    with pytest.raises(InvalidConfig, match="cannot migrate down to 2"):
        synth.synth("dev")


def test_a_malformed_down_step_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIGRATE_DOWN_ENV, "api=1")
    with pytest.raises(InvalidConfig, match=MIGRATE_DOWN_ENV):
        synth.synth("dev")
