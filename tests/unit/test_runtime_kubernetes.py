"""The kubernetes runtime against recorded API server responses, through the real client.

A loopback HTTP server answers the requests the `kubernetes` client makes with responses
recorded in tests/unit/recorded/kubernetes/ (a Deployment in four states, the PodList, each
pod's log), and a kubeconfig names it as the context the prod stack selects. So the client's
own kubeconfig loading, request building and deserialization run as they would on a cluster.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components import plan as plans
from msops import cli, stackfiles
from msops.runtime import LogQuery, NoSuchReplica, Unreachable
from msops.runtime.kubernetes import KubernetesRuntime
from tests import fakes

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).resolve().parent / "recorded" / "kubernetes"
NAMESPACE = "msops-prod"
OLDEST, MIDDLE, NEWEST = "web-7d9c5b8f6d-9hz2m", "web-7d9c5b8f6d-4xkqp", "web-7d9c5b8f6d-tq7wn"


@dataclass
class Cluster:
    """What the recorded API server answers, and every request it was asked."""

    deployment: str = "ready"
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    url: str = ""


def _handler(cluster: Cluster) -> type[BaseHTTPRequestHandler]:
    deployments = json.loads((RECORDED / "deployments-web.json").read_text())
    pods = (RECORDED / "pods-web.json").read_text()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: str, kind: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            cluster.requests.append((url.path, query))
            base = f"/api/v1/namespaces/{NAMESPACE}/pods"
            # prod's api answers as web does: the recording is of one Deployment.
            deployment = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/"
            if url.path in (deployment + "web", deployment + "api"):
                if cluster.deployment == "missing":
                    self._send(404, json.dumps({"kind": "Status", "code": 404}))
                else:
                    self._send(200, json.dumps(deployments[cluster.deployment]))
            elif url.path == base:
                self._send(200, pods)
            elif url.path.startswith(base + "/") and url.path.endswith("/log"):
                name = url.path[len(base) + 1 : -len("/log")]
                lines = (RECORDED / f"log-{name}.txt").read_text().splitlines(keepends=True)
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"][0]) :]
                self._send(200, "".join(lines), "text/plain")
            else:
                self._send(404, json.dumps({"kind": "Status", "code": 404}))

    return Handler


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    state = Cluster()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: recorded\n  cluster:\n    server: {state.url}\n"
        "users:\n- name: ci\n  user:\n    token: recorded-token\n"
        "contexts:\n- name: prod-eu-1\n  context:\n    cluster: recorded\n    user: ci\n"
        "current-context: prod-eu-1\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def runtime() -> tuple[KubernetesRuntime, Any]:
    import os

    config = stackfiles.validate(stackfiles.config_values("prod"), "prod")
    plan = plans.build(config, stack="prod")
    return KubernetesRuntime.connect(plan, dict(os.environ)), plan.workload("web")


# --- readiness: the Deployment's status, as kubectl rollout status reads it ---------------------


def test_a_rolled_out_deployment_has_converged(cluster: Cluster) -> None:
    engine, web = runtime()
    ready = engine.readiness(web)
    assert (ready.desired, ready.ready, ready.total, ready.converged) == (3, 3, 3, True), ready


def test_a_rollout_in_progress_says_how_far_it_is(cluster: Cluster) -> None:
    cluster.deployment = "rolling"
    engine, web = runtime()
    ready = engine.readiness(web)
    assert not ready.converged and ready.state == "rolling out: 2 of 3 updated", ready


def test_a_rollout_past_its_deadline_has_failed(cluster: Cluster) -> None:
    cluster.deployment = "stuck"
    engine, web = runtime()
    ready = engine.readiness(web)
    assert ready.failed and not ready.converged, ready


def test_a_deployment_of_another_version_has_not_converged(cluster: Cluster) -> None:
    cluster.deployment = "older"
    engine, web = runtime()
    ready = engine.readiness(web)
    assert not ready.converged and "does not run 1.0.0" in ready.state, ready


def test_a_missing_deployment_is_not_deployed(cluster: Cluster) -> None:
    cluster.deployment = "missing"
    engine, web = runtime()
    assert "not deployed" in engine.readiness(web).state


def test_the_client_asks_the_stack_namespace(cluster: Cluster) -> None:
    engine, web = runtime()
    engine.readiness(web)
    assert cluster.requests[0][0] == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web"


# --- logs -----------------------------------------------------------------------------------------


def test_pods_are_found_by_the_services_labels_oldest_first(cluster: Cluster) -> None:
    engine, web = runtime()
    assert engine.replicas(web) == [OLDEST, MIDDLE, NEWEST]
    _, query = cluster.requests[-1]
    assert query["labelSelector"] == ["app.kubernetes.io/name=web,app.kubernetes.io/instance=prod"]


def test_logs_are_merged_in_time_order_with_each_pods_name(cluster: Cluster) -> None:
    engine, web = runtime()
    lines = [(ln.replica, ln.text) for ln in engine.logs(web, LogQuery())]
    assert lines[0] == (OLDEST, f"serving on :8080 (replica {OLDEST})")
    assert [r for r, _ in lines] == [OLDEST, MIDDLE, NEWEST, OLDEST, MIDDLE, OLDEST]


def test_tail_and_since_are_asked_of_the_kubelet(cluster: Cluster) -> None:
    engine, web = runtime()
    list(engine.logs(web, LogQuery(tail=1, since_seconds=600)))
    logs = [q for p, q in cluster.requests if p.endswith("/log")]
    assert all(q["tailLines"] == ["1"] and q["sinceSeconds"] == ["600"] for q in logs), logs
    assert all(q["container"] == ["web"] and q["timestamps"] == ["true"] for q in logs), logs


def test_one_replica_only(cluster: Cluster) -> None:
    engine, web = runtime()
    replicas = {ln.replica for ln in engine.logs(web, LogQuery(replica=2))}
    assert replicas == {MIDDLE}


def test_a_replica_that_does_not_exist_is_bad_input(cluster: Cluster) -> None:
    engine, web = runtime()
    with pytest.raises(NoSuchReplica, match="runs replicas 1-3") as caught:
        engine.logs(web, LogQuery(replica=4))
    assert caught.value.exit_code == 2


def test_follow_streams_every_pod_until_their_streams_end(cluster: Cluster) -> None:
    engine, web = runtime()
    lines = list(engine.logs(web, LogQuery(follow=True)))
    follows = [q.get("follow") for p, q in cluster.requests if p.endswith("/log")]
    assert len(lines) == 6 and follows == [["true"]] * 3, follows


# --- connection -----------------------------------------------------------------------------------


def test_an_unknown_context_names_it_and_the_kubeconfig(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = fakes.stack_copies(tmp_path, monkeypatch)
    fakes.add_lines(stacks, "prod", "    namespace: msops-prod\n", "    kubeContext: prod-us-2\n")
    outcome = CliRunner().invoke(cli.app, ["logs", "prod", "web"])
    assert outcome.exit_code == 1, outcome.output
    assert "kube context 'prod-us-2' (msops:target.kubeContext)" in outcome.stderr
    assert str(tmp_path / "kubeconfig") in outcome.stderr


def test_a_cluster_that_does_not_answer_is_named(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig.read_text().replace(cluster.url, "http://127.0.0.1:9"))
    engine, web = runtime()
    with pytest.raises(Unreachable, match=r"the cluster at http://127\.0\.0\.1:9"):
        engine.readiness(web)


# --- the commands -------------------------------------------------------------------------------


def test_logs_command_prefixes_each_line_with_its_pod(cluster: Cluster) -> None:
    outcome = CliRunner().invoke(cli.app, ["logs", "prod", "web", "--tail", "1"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.splitlines() == [
        f"{NEWEST} | serving on :8080 (replica {NEWEST})",
        f"{MIDDLE} | GET /orders 500 30.1ms",
        f"{OLDEST} | GET /orders 200 8.4ms",
    ]


def test_status_watch_json_of_a_converged_deployment_exits_0(cluster: Cluster) -> None:
    outcome = CliRunner().invoke(cli.app, ["status", "prod", "--watch", "--json"])
    data = json.loads(outcome.stdout)
    assert outcome.exit_code == 0 and data["converged"] is True, outcome.output
    assert data["services"][0] | {"state": "ready"} == {
        "service": "web",
        "desired": 3,
        "ready": 3,
        "total": 3,
        "current": 3,
        "state": "ready",
        "converged": True,
    }


def test_status_watch_of_a_stuck_rollout_exits_1_at_once(cluster: Cluster) -> None:
    cluster.deployment = "stuck"
    outcome = CliRunner().invoke(cli.app, ["status", "prod", "--watch", "--timeout", "30"])
    deployments = [p for p, _ in cluster.requests if "/deployments/" in p]
    assert outcome.exit_code == 1 and "progress deadline" in outcome.stderr, outcome.output
    # One round, a request for each of web and api; no second round.
    assert len(deployments) == 2, "a failed rollout ends the watch without waiting"
