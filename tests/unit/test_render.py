"""`msops render`: a synthesized stack written out as manifests, config files and monitoring."""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.artifacts import grafana, prometheus
from msops import render, synth
from tests.graphs import stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

DB_PASSWORD = "render-db-pw-7Rt2Lx9Q"
NUMBERED = re.compile(r"^(\d{2,})-([a-z]+)-([A-Za-z0-9._-]+)\.yaml$")


def kubernetes_objects(graph: synth.Graph) -> list[synth.Resource]:
    return [
        r
        for r in graph
        if r.custom and r.type.startswith("kubernetes:") and r.type != render.HELM_RELEASE
    ]


def numbered_files(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_file() and NUMBERED.match(p.name))


@functools.cache
def prod_with_password() -> synth.Graph:
    values = stack_values("prod")
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    return synth_values(values, "prod")


# --- kubernetes --------------------------------------------------------------------------------


def test_prod_writes_one_file_per_kubernetes_object(stack_graph: Any, tmp_path: Path) -> None:
    graph = stack_graph("prod")
    render.render(graph, tmp_path)
    files = numbered_files(tmp_path)
    assert len(files) == len(kubernetes_objects(graph)), [p.name for p in files]


def test_prod_files_are_single_yaml_objects_in_key_order(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("prod"), tmp_path)
    for path in numbered_files(tmp_path):
        (document,) = list(yaml.safe_load_all(path.read_text()))
        assert list(document)[:3] == ["apiVersion", "kind", "metadata"], path.name
        rest = list(document)[3:]
        assert rest == sorted(rest), f"{path.name}: keys after metadata not sorted"


def test_file_names_carry_kind_and_object_name(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("prod"), tmp_path)
    for path in numbered_files(tmp_path):
        document = yaml.safe_load(path.read_text())
        match = NUMBERED.match(path.name)
        assert match is not None, path.name
        assert match[2] == document["kind"].lower(), path.name
        assert match[3] == document["metadata"]["name"], path.name


def test_files_are_numbered_in_install_order(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("prod"), tmp_path)
    kinds = [yaml.safe_load(p.read_text())["kind"] for p in numbered_files(tmp_path)]
    assert kinds[0] == "Namespace", kinds
    assert kinds.index("Secret") < kinds.index("Deployment"), kinds
    assert kinds.index("Service") < kinds.index("StatefulSet"), kinds
    assert kinds[-2:] == ["PrometheusRule", "ServiceMonitor"], kinds


def test_manifests_equal_the_synthesized_inputs(stack_graph: Any, tmp_path: Path) -> None:
    graph = stack_graph("prod")
    render.render(graph, tmp_path)
    written = {
        (d["kind"], d["metadata"]["name"]): d
        for d in (yaml.safe_load(p.read_text()) for p in numbered_files(tmp_path))
    }
    for res in kubernetes_objects(graph):
        key = (res.inputs["kind"], res.inputs["metadata"]["name"])
        assert written[key] == res.inputs, res.urn


def test_numbers_are_written_as_integers(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("prod"), tmp_path)
    (deployment,) = tmp_path.glob("*-deployment-web.yaml")
    text = deployment.read_text()
    assert "containerPort: 8080\n" in text, deployment.name
    assert not re.search(r":\s+\d+\.0\s*$", text, re.MULTILINE), deployment.name


def test_render_is_deterministic(stack_graph: Any, tmp_path: Path) -> None:
    first = render.render(stack_graph("prod"), tmp_path / "a")
    second = render.render(synth.synth("prod"), tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_known_password_never_reaches_a_file(tmp_path: Path) -> None:
    written = render.render(prod_with_password(), tmp_path)
    leaks = [p.name for p in written if DB_PASSWORD in p.read_text()]
    assert leaks == [], "msops:databases.main.password written in clear"


def test_secrets_stay_masked(tmp_path: Path) -> None:
    render.render(prod_with_password(), tmp_path)
    (secret,) = tmp_path.glob("*-secret-main-credentials.yaml")
    assert yaml.safe_load(secret.read_text())["stringData"] == synth.SECRET, secret.name


def test_prod_writes_the_alert_rules(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("prod"), tmp_path)
    rules = yaml.safe_load((tmp_path / "monitoring" / "alert-rules.yml").read_text())
    expected = prometheus.alert_rules(
        services=["web"], error_rate=0.01, p99_latency=0.3, target_down_for="2m", evaluate_for="5m"
    )
    assert rules == expected, "monitoring/alert-rules.yml differs from msops:monitoring.alerts"


def test_prod_writes_the_dashboards(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("prod"), tmp_path)
    text = (tmp_path / "monitoring" / "dashboard-web.json").read_text()
    assert text == grafana.render_dashboard(service="web"), "monitoring/dashboard-web.json"


def test_helm_release_values_are_written(tmp_path: Path) -> None:
    values = stack_values("prod")
    values["msops:monitoring"]["installStack"] = True
    written = render.render(synth_values(values, "prod"), tmp_path)
    path = tmp_path / "helm-release-kube-prometheus-stack.yaml"
    assert path in written, [p.name for p in written]
    text = path.read_text()
    assert "chart kube-prometheus-stack version 65.8.1" in text.splitlines()[0], text[:200]
    assert yaml.safe_load(text)["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"


# --- docker and swarm --------------------------------------------------------------------------


def test_dev_writes_the_nginx_and_prometheus_artifacts(stack_graph: Any, tmp_path: Path) -> None:
    written = render.render(stack_graph("dev"), tmp_path)
    names = [p.name for p in written if p.parent.name == "artifacts"]
    assert any(n.endswith("-nginx.conf") for n in names), names
    assert any(n.endswith("-prometheus.yml") for n in names), names
    conf = next(p for p in written if p.name.endswith("-nginx.conf"))
    assert "set $app web:8080;" in conf.read_text(), conf.name


def test_dev_writes_the_monitoring_artifacts(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("dev"), tmp_path)
    rules = yaml.safe_load((tmp_path / "monitoring" / "alert-rules.yml").read_text())
    assert [g["name"] for g in rules["groups"]] == ["msops-web"], "monitoring/alert-rules.yml"
    assert (tmp_path / "monitoring" / "dashboard-web.json").read_text() == (
        grafana.render_dashboard(service="web")
    )


def test_staging_writes_the_swarm_configs(stack_graph: Any, tmp_path: Path) -> None:
    written = render.render(stack_graph("staging"), tmp_path)
    names = [p.name for p in written if p.parent.name == "artifacts"]
    assert any(n.endswith("-prometheus.yml") for n in names), names
    config = yaml.safe_load(
        next(p for p in written if p.name.endswith("-prometheus.yml")).read_text()
    )
    assert config["scrape_configs"], "prometheus.yml without scrape_configs"


def test_docker_and_swarm_stacks_write_no_manifests(stack_graph: Any, tmp_path: Path) -> None:
    render.render(stack_graph("staging"), tmp_path)
    assert numbered_files(tmp_path) == [], "a swarm stack has no Kubernetes objects"


def _resource(type_: str, name: str, inputs: dict[str, Any]) -> synth.Resource:
    return synth.Resource(
        type=type_,
        name=name,
        urn=f"urn:pulumi:t::msops::{type_}::{name}",
        parent="",
        custom=True,
        inputs=inputs,
        options={},
    )


def test_container_uploads_become_artifacts(tmp_path: Path) -> None:
    graph = synth.Graph(
        stack="t",
        resources=[
            _resource(
                "docker:index/container:Container",
                "web-lb",
                {
                    "uploads": [
                        {"file": "/etc/nginx/nginx.conf", "content": "events {}\n"},
                        {"file": "/run/secret.env", "content": synth.SECRET},
                        {
                            "file": "/etc/extra.txt",
                            "contentBase64": base64.b64encode(b"extra\n").decode(),
                        },
                    ]
                },
            )
        ],
    )
    render.render(graph, tmp_path)
    assert (tmp_path / "artifacts" / "web-lb-nginx.conf").read_text() == "events {}\n"
    assert (tmp_path / "artifacts" / "web-lb-extra.txt").read_text() == "extra\n"
    assert not (tmp_path / "artifacts" / "web-lb-secret.env").exists(), "masked upload written"


def test_uploads_sharing_a_basename_keep_their_directory(tmp_path: Path) -> None:
    uploads = [
        {"file": "/etc/grafana/provisioning/datasources/msops.yaml", "content": "a: 1\n"},
        {"file": "/etc/grafana/provisioning/dashboards/msops.yaml", "content": "b: 2\n"},
    ]
    container = _resource("docker:index/container:Container", "grafana", {"uploads": uploads})
    render.render(synth.Graph(stack="t", resources=[container]), tmp_path)
    artifacts = tmp_path / "artifacts"
    assert (artifacts / "grafana-datasources-msops.yaml").read_text() == "a: 1\n"
    assert (artifacts / "grafana-dashboards-msops.yaml").read_text() == "b: 2\n"


def test_swarm_configs_are_named_after_their_mount(tmp_path: Path) -> None:
    data = base64.b64encode(b"global: {}\n").decode()
    graph = synth.Graph(
        stack="t",
        resources=[
            _resource(render.SWARM_CONFIG, "prom-config", {"name": "t-prom-1a2b", "data": data}),
            _resource(
                render.SWARM_SERVICE,
                "prom",
                {
                    "taskSpec": {
                        "containerSpec": {
                            "configs": [
                                {
                                    "configId": "prom-config-id",
                                    "configName": "t-prom-1a2b",
                                    "fileName": "/etc/prometheus/prometheus.yml",
                                }
                            ]
                        }
                    }
                },
            ),
        ],
    )
    render.render(graph, tmp_path)
    assert (tmp_path / "artifacts" / "prom-config-prometheus.yml").read_text() == "global: {}\n"


def test_an_empty_graph_writes_nothing(tmp_path: Path) -> None:
    assert render.render(synth.Graph(stack="t", resources=[]), tmp_path) == []


def test_ordered_puts_leading_keys_first() -> None:
    data = {"spec": {"b": 1, "a": 2}, "metadata": {"labels": {}, "name": "x"}, "kind": "K"}
    assert json.dumps(render.ordered(data)) == json.dumps(
        {"kind": "K", "metadata": {"name": "x", "labels": {}}, "spec": {"a": 2, "b": 1}}
    )
