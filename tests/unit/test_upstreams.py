"""web calls api: on every backend web gets api's in-stack address, and api alone owns the
database and its migrations (the committed stacks, synthesized)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from components import spec as specs
from components.plan import build
from components.plan.builder import KUBERNETES_SERVICE_PORT, LB_PORT
from msops import synth
from tests.graphs import (
    CONTAINER,
    DEPLOYMENT,
    K8S_SERVICE,
    STACK_OF,
    SWARM_SERVICE,
    labels,
    stack_values,
    synth_values,
)

pytestmark = pytest.mark.timeout(120)

BACKEND_OF = {stack: backend for backend, stack in STACK_OF.items()}


def workloads(graph: synth.Graph, service: str) -> list[synth.Resource]:
    """What runs `service`: docker replica containers, the swarm service, the Deployment."""
    backend = BACKEND_OF[graph.stack]
    if backend == "docker":
        return [
            r
            for r in graph.of_type(CONTAINER)
            if labels(r).get("msops.role") == "replica"
            and labels(r).get("msops.service") == service
        ]
    kind = SWARM_SERVICE if backend == "swarm" else DEPLOYMENT
    return [r for r in graph.of_type(kind) if r.name == service]


def env_of(res: synth.Resource) -> dict[str, Any]:
    """A workload's environment, the secret variables as whatever the graph holds for them."""
    if res.type == CONTAINER:
        return dict(item.partition("=")[::2] for item in res.inputs["envs"])
    if res.type == SWARM_SERVICE:
        env: dict[str, Any] = res.inputs["taskSpec"]["containerSpec"]["env"]
        return env
    (container,) = res.inputs["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def upstream_of(graph: synth.Graph, service: str = "web") -> str:
    found = {env_of(r).get("UPSTREAM_URL") for r in workloads(graph, service)}
    assert len(found) == 1 and None not in found, f"{service}'s UPSTREAM_URL: {found}"
    return str(found.pop())


@pytest.fixture(params=sorted(STACK_OF))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- web gets api's address ----------------------------------------------------------------------


def test_docker_web_calls_api_through_the_lb_alias_on_the_stack_network(stack_graph: Any) -> None:
    graph = stack_graph("dev")
    url = urlsplit(upstream_of(graph))
    (lb,) = [
        r
        for r in graph.of_type(CONTAINER)
        if labels(r).get("msops.role") == "lb" and labels(r).get("msops.service") == "api"
    ]
    (web, *_) = workloads(graph, "web")
    (network,) = lb.inputs["networksAdvanced"]
    assert url.hostname in network["aliases"], f"{lb.urn}: {network}"
    assert [n["name"] for n in web.inputs["networksAdvanced"]] == [network["name"]], web.urn
    assert url.port == LB_PORT and url.geturl() == "http://api-lb:8080", url.geturl()


def test_swarm_web_calls_api_by_its_name_on_the_overlay_network(stack_graph: Any) -> None:
    graph = stack_graph("staging")
    url = urlsplit(upstream_of(graph))
    (api,) = workloads(graph, "api")
    (attachment,) = api.inputs["taskSpec"]["networksAdvanceds"]
    # The service's virtual IP answers to its alias; a real cluster balances over it.
    assert api.inputs["endpointSpec"]["mode"] == "vip", api.urn
    assert url.hostname in attachment["aliases"], f"{api.urn}: {attachment}"
    assert url.port == int(env_of(api)["PORT"]), url.geturl()
    assert url.geturl() == "http://api:8080"


def test_kubernetes_web_calls_api_through_its_service_dns_name(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    url = urlsplit(upstream_of(graph))
    (service,) = [r for r in graph.of_type(K8S_SERVICE) if r.name == "api"]
    meta = service.inputs["metadata"]
    assert url.hostname == f"{meta['name']}.{meta['namespace']}.svc.cluster.local", url
    assert [p["port"] for p in service.inputs["spec"]["ports"]] == [url.port], service.urn
    assert url.port == KUBERNETES_SERVICE_PORT
    assert url.geturl() == "http://api.msops-prod.svc.cluster.local:80"


def test_api_gets_no_upstream(backend: str, stack_graph: Any) -> None:
    for res in workloads(stack_graph(STACK_OF[backend]), "api"):
        assert "UPSTREAM_URL" not in env_of(res), res.urn


def test_scaling_api_leaves_web_as_it_was(backend: str, stack_graph: Any) -> None:
    stack = STACK_OF[backend]
    values = stack_values(stack)
    api = values["msops:services"]["api"]
    api.pop("autoscaling", None)
    api["replicas"] = 5
    before = {r.urn: r.inputs for r in workloads(stack_graph(stack), "web")}
    after = {r.urn: r.inputs for r in workloads(synth_values(values, stack), "web")}
    assert after == before, "web's replicas changed with api's count"


def test_plan_records_the_upstream(backend: str) -> None:
    stack = STACK_OF[backend]
    values, _ = synth.config_from_file(stack)
    plan = build(specs.load(specs.raw_config(values), stack), stack=stack)
    (upstream,) = plan.workload("web").upstreams
    assert (upstream.var, upstream.service) == ("UPSTREAM_URL", "api")
    assert ("UPSTREAM_URL", upstream.url) in plan.workload("web").env


# --- api alone owns the database -----------------------------------------------------------------


def test_only_api_gets_the_database_url(backend: str) -> None:
    # From the plan: on docker the graph holds a replica's whole env as one secret.
    stack = STACK_OF[backend]
    values, _ = synth.config_from_file(stack)
    plan = build(specs.load(specs.raw_config(values), stack), stack=stack)
    owners = {
        (w.name, s.ref) for w in plan.workloads for s in w.secret_env if s.kind == "database-url"
    }
    assert owners == {("api", "main")}, owners


def test_web_has_no_database_url_in_the_graph(backend: str, stack_graph: Any) -> None:
    for res in workloads(stack_graph(STACK_OF[backend]), "web"):
        assert "DATABASE_URL" not in env_of(res), res.urn
        assert "DATABASE_URL_FILE" not in env_of(res), res.urn


def test_only_api_runs_migrations(backend: str, stack_graph: Any) -> None:
    graph = stack_graph(STACK_OF[backend])
    migrations = [r for r in graph if r.custom and "-migrate" in r.name]
    assert len(migrations) == 1 and migrations[0].name.endswith("api-migrate"), [
        m.urn for m in migrations
    ]
    (step,) = migrations
    for res in workloads(graph, "api"):
        assert step.urn in res.options["depends_on"], f"{res.urn} does not wait for {step.urn}"
    for res in workloads(graph, "web"):
        assert step.urn not in res.options["depends_on"], f"{res.urn} waits for {step.urn}"


def test_web_does_not_wait_for_postgres(backend: str, stack_graph: Any) -> None:
    graph = stack_graph(STACK_OF[backend])
    postgres = {r.urn for r in graph if r.custom and r.name in ("main", "dev-main")}
    assert postgres, "no Postgres in the graph"
    for res in workloads(graph, "web"):
        assert not postgres & set(res.options["depends_on"]), res.urn


def test_each_service_has_its_own_dashboard(backend: str) -> None:
    stack = STACK_OF[backend]
    values, _ = synth.config_from_file(stack)
    plan = build(specs.load(specs.raw_config(values), stack), stack=stack)
    assert plan.monitoring is not None and plan.monitoring.grafana is not None
    assert plan.monitoring.grafana.dashboards == ("web", "api")


# --- config errors -------------------------------------------------------------------------------


def problems_of(change: Any) -> list[str]:
    values, _ = synth.config_from_file("dev")
    raw = specs.raw_config(values)
    change(raw["services"])
    with pytest.raises(specs.ConfigError) as caught:
        specs.load(raw, "dev")
    return caught.value.problems


def test_an_unknown_upstream_names_the_key_the_value_and_the_fix() -> None:
    (problem,) = problems_of(lambda s: s["web"].update(upstreams={"UPSTREAM_URL": "apx"}))
    assert problem.startswith("msops:services.web.upstreams.UPSTREAM_URL: 'apx'"), problem
    assert "is not in msops:services (other services: api)" in problem, problem
    assert "add that service or fix the name" in problem, problem


def test_a_service_cannot_be_its_own_upstream() -> None:
    (problem,) = problems_of(lambda s: s["web"].update(upstreams={"UPSTREAM_URL": "web"}))
    assert problem.startswith("msops:services.web.upstreams.UPSTREAM_URL: 'web'"), problem
    assert "this service itself" in problem, problem


def test_an_upstream_variable_also_in_env_is_refused() -> None:
    (problem,) = problems_of(lambda s: s["web"]["env"].update(UPSTREAM_URL="http://x:1"))
    assert problem.startswith("msops:services.web.upstreams.UPSTREAM_URL:"), problem
    assert "also set by env" in problem, problem


def test_an_upstream_that_is_not_a_dns_label_is_refused() -> None:
    problems = problems_of(lambda s: s["web"].update(upstreams={"UPSTREAM_URL": "Api_1"}))
    assert any(p.startswith("msops:services.web.upstreams.UPSTREAM_URL") for p in problems), (
        problems
    )
