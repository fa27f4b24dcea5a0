"""The kubernetes backend under mocks: valid manifests, wired selectors, safe rollouts, no leaks."""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest
import yaml

from components import plan as plans
from components import spec as specs
from components.artifacts import grafana
from components.backends.kubernetes import translate as kube
from msops import synth
from tests.graphs import stack_values, synth_values

pytestmark = pytest.mark.timeout(120)

OLDEST_SUPPORTED = "1.31"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NAMESPACE = "kubernetes:core/v1:Namespace"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
JOB = "kubernetes:batch/v1:Job"
PROVIDER = "pulumi:providers:kubernetes"
# Custom resources: kubernetes-validate bundles only the built-in API's schemas.
CRDS = {SERVICE_MONITOR, PROMETHEUS_RULE}

DB_PASSWORD = "db-pw-Zq8wK2vLr4"
API_TOKEN = "tok-Hx73PqN0aVe5"
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")


def newest_bundled_version() -> str:
    """The newest Kubernetes version whose strict schemas kubernetes-validate ships."""
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = [
        tuple(int(part) for part in match.groups())
        for entry in schemas.iterdir()
        if (match := re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name))
    ]
    major, minor = max(versions)
    return f"{major}.{minor}"


VERSIONS = tuple(dict.fromkeys((OLDEST_SUPPORTED, newest_bundled_version())))


def validatable(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the cluster would get it, as far as the synth can know it.

    pulumi-kubernetes marks a Secret's whole `data`/`stringData` secret, so the synth masks the
    map as one "[secret]" string; an empty map stands in for it.
    """
    masked: dict[str, Any] = {
        k: {} for k in ("data", "stringData") if manifest.get(k) == synth.SECRET
    }
    return {**manifest, **masked}


# --- graphs ------------------------------------------------------------------------------------


def prod_values(
    *,
    autoscaling: bool = True,
    ingress: bool = False,
    database: bool = True,
) -> dict[str, Any]:
    """The committed prod stack's values, varied along the test matrix's axes."""
    values = stack_values("prod")
    web = values["msops:services"]["web"]
    if not autoscaling:
        for svc in values["msops:services"].values():
            del svc["autoscaling"]
            svc["replicas"] = 2
    if ingress:
        web["ingress"] = {
            "host": "web.example.com",
            "path": "/",
            "className": "nginx",
            "tlsSecret": "web-tls",
        }
    if not database:
        api = values["msops:services"]["api"]
        del api["database"]
        del api["migrations"]
        del values["msops:databases"]
    return values


MATRIX = {
    f"autoscaling={a}-ingress={i}-database={d}": {"autoscaling": a, "ingress": i, "database": d}
    for a, i, d in itertools.product((True, False), repeat=3)
}


@functools.cache
def matrix_graph(case: str) -> synth.Graph:
    return synth_values(prod_values(**MATRIX[case]), "prod")


def graph_with(stack: str = "prod", **changes: Any) -> synth.Graph:
    """Synthesize prod with top-level `msops:<key>` values merged in (`monitoring=...`)."""
    values = stack_values("prod")
    for key, value in changes.items():
        full = f"msops:{key}"
        if isinstance(value, dict) and isinstance(values.get(full), dict):
            values[full] = {**values[full], **value}
        else:
            values[full] = value
    return synth_values(values, stack)


def manifests(graph: synth.Graph) -> list[synth.Resource]:
    """Every Kubernetes object of a graph (the provider and the helm Release are not objects)."""
    return [
        r for r in graph if r.custom and r.type.startswith("kubernetes:") and r.type != HELM_RELEASE
    ]


def one(graph: synth.Graph, type_: str, service: str = "web") -> synth.Resource:
    """The one object of `type_`; where each service has one (prod runs web and api), the
    one of `service`."""
    found = graph.of_type(type_)
    if len(found) > 1:
        found = [r for r in found if r.name == service or r.name.startswith(f"{service}-")]
    assert len(found) == 1, f"expected one {type_}, found {[r.urn for r in found]}"
    return found[0]


def pod_template(res: synth.Resource) -> dict[str, Any]:
    return res.inputs["spec"]["template"]


def containers(graph: synth.Graph) -> Iterator[tuple[synth.Resource, dict[str, Any]]]:
    for res in graph.of_type(DEPLOYMENT) + graph.of_type(STATEFULSET):
        for container in pod_template(res)["spec"]["containers"]:
            yield res, container


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


ALL_GRAPHS = ["committed-prod", *MATRIX]


@pytest.fixture
def graph_of(stack_graph: Any) -> Any:
    def get(case: str) -> synth.Graph:
        return stack_graph("prod") if case == "committed-prod" else matrix_graph(case)

    return get


# --- schema validation -------------------------------------------------------------------------


def test_newest_bundled_version_is_at_least_the_oldest_supported() -> None:
    newest = tuple(int(p) for p in newest_bundled_version().split("."))
    assert newest >= (1, 31), f"kubernetes-validate bundles schemas only up to {newest}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_manifests_validate_strictly(case: str, version: str, graph_of: Any) -> None:
    objects = [r for r in manifests(graph_of(case)) if r.type not in CRDS]
    assert objects, f"{case}: no Kubernetes objects to validate"
    errors = []
    for res in objects:
        try:
            kubernetes_validate.validate(validatable(res.inputs), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{res.urn}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{res.urn}: {exc.message}")
    assert errors == [], f"{case} against Kubernetes {version}:\n" + "\n".join(errors)


def test_install_stack_manifests_validate_strictly() -> None:
    graph = graph_with(monitoring={"installStack": True})
    errors = []
    for res in manifests(graph):
        if res.type in CRDS:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(validatable(res.inputs), version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{res.urn} ({version}): {exc.message}")
    assert errors == []


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_service_monitors_are_structurally_valid(case: str, graph_of: Any) -> None:
    """CRDs are not in kubernetes-validate's bundled schemas, so their shape is checked here."""
    graph = graph_of(case)
    monitors = graph.of_type(SERVICE_MONITOR)
    assert monitors, f"{case}: no ServiceMonitor"
    for res in monitors:
        manifest = res.inputs
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1", res.urn
        assert manifest["kind"] == "ServiceMonitor", res.urn
        assert manifest["metadata"]["name"] and manifest["metadata"]["namespace"], res.urn
        assert manifest["spec"]["selector"]["matchLabels"], res.urn
        endpoints = manifest["spec"]["endpoints"]
        assert endpoints, res.urn
        for endpoint in endpoints:
            assert isinstance(endpoint["port"], str) and endpoint["port"], res.urn
            assert endpoint["path"].startswith("/"), res.urn
            assert _DURATION.match(endpoint["interval"]), res.urn


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_prometheus_rules_are_structurally_valid(case: str, graph_of: Any) -> None:
    """CRDs are not in kubernetes-validate's bundled schemas, so their shape is checked here."""
    rules = graph_of(case).of_type(PROMETHEUS_RULE)
    assert rules, f"{case}: no PrometheusRule"
    for res in rules:
        manifest = res.inputs
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1", res.urn
        assert manifest["kind"] == "PrometheusRule", res.urn
        assert manifest["metadata"]["name"] and manifest["metadata"]["namespace"], res.urn
        groups = manifest["spec"]["groups"]
        assert groups, res.urn
        for group in groups:
            assert group["name"] and group["rules"], res.urn
            for rule in group["rules"]:
                assert rule.get("alert") and rule.get("expr"), f"{res.urn}: {rule}"
                assert _DURATION.match(rule["for"]), f"{res.urn}: {rule}"


# --- cross-checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_service_selector_is_a_subset_of_pod_labels(case: str, graph_of: Any) -> None:
    graph = graph_of(case)
    workloads = graph.of_type(DEPLOYMENT) + graph.of_type(STATEFULSET)
    for service in graph.of_type(SERVICE):
        selector = service.inputs["spec"]["selector"]
        selected = [
            w for w in workloads if matches(selector, pod_template(w)["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"{service.urn}: selects {[w.urn for w in selected]}"


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_deployment_selector_excludes_the_version(case: str, graph_of: Any) -> None:
    for res in graph_of(case).of_type(DEPLOYMENT) + graph_of(case).of_type(STATEFULSET):
        selector = res.inputs["spec"]["selector"]["matchLabels"]
        assert "app.kubernetes.io/version" not in selector, res.urn
        assert matches(selector, pod_template(res)["metadata"]["labels"]), res.urn


@pytest.mark.parametrize("case", [c for c in MATRIX if MATRIX[c]["autoscaling"]])
def test_hpa_targets_the_deployment(case: str) -> None:
    graph = matrix_graph(case)
    hpa, deployment = one(graph, HPA), one(graph, DEPLOYMENT)
    target = hpa.inputs["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment.inputs["metadata"]["name"],
    }, hpa.urn


@pytest.mark.parametrize("case", [c for c in MATRIX if not MATRIX[c]["autoscaling"]])
def test_no_hpa_without_autoscaling(case: str) -> None:
    assert matrix_graph(case).of_type(HPA) == [], case


def test_hpa_holds_the_configured_bounds_and_cpu_target(stack_graph: Any) -> None:
    hpa = one(stack_graph("prod"), HPA)
    spec = hpa.inputs["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 10), hpa.urn
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ], hpa.urn


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_pdb_selector_matches_pod_labels(case: str, graph_of: Any) -> None:
    graph = graph_of(case)
    pdb, deployment = one(graph, PDB), one(graph, DEPLOYMENT)
    selector = pdb.inputs["spec"]["selector"]["matchLabels"]
    assert matches(selector, pod_template(deployment)["metadata"]["labels"]), pdb.urn
    assert pdb.inputs["spec"]["maxUnavailable"] == 1, pdb.urn


def test_no_pdb_for_a_single_replica() -> None:
    values = prod_values(autoscaling=False)
    for svc in values["msops:services"].values():
        svc["replicas"] = 1
    graph = synth_values(values, "prod")
    assert graph.of_type(PDB) == [], "msops:services.*.replicas is 1, a PDB would block drains"


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_service_monitor_selects_the_service_and_its_port(case: str, graph_of: Any) -> None:
    graph = graph_of(case)
    services = graph.of_type(SERVICE)
    for monitor in graph.of_type(SERVICE_MONITOR):
        selector = monitor.inputs["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if matches(selector, s.inputs["metadata"]["labels"])]
        assert len(selected) == 1, f"{monitor.urn}: selects {[s.urn for s in selected]}"
        port_names = {p["name"] for p in selected[0].inputs["spec"]["ports"]}
        for endpoint in monitor.inputs["spec"]["endpoints"]:
            assert endpoint["port"] in port_names, f"{monitor.urn}: {endpoint} vs {port_names}"


def test_service_monitor_scrapes_the_metrics_path_at_the_interval(stack_graph: Any) -> None:
    monitor = one(stack_graph("prod"), SERVICE_MONITOR)
    (endpoint,) = monitor.inputs["spec"]["endpoints"]
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s"), monitor.urn


def test_monitoring_objects_carry_the_default_release_label(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    objects = graph.of_type(SERVICE_MONITOR) + graph.of_type(PROMETHEUS_RULE)
    # A ServiceMonitor and a PrometheusRule for each of web and api.
    assert len(objects) == 4
    for res in objects:
        assert res.inputs["metadata"]["labels"]["release"] == "kube-prometheus-stack", res.urn


def test_monitoring_objects_carry_a_custom_release_label() -> None:
    graph = graph_with(monitoring={"releaseLabel": "prom"})
    objects = graph.of_type(SERVICE_MONITOR) + graph.of_type(PROMETHEUS_RULE)
    assert len(objects) == 4
    for res in objects:
        labels = res.inputs["metadata"]["labels"]
        assert labels["release"] == "prom", f"{res.urn} (msops:monitoring.releaseLabel): {labels}"


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar(stack_graph: Any) -> None:
    dashboards = [
        r
        for r in stack_graph("prod").of_type(CONFIG_MAP)
        if r.inputs["metadata"]["name"] == "web-dashboard"
    ]
    assert len(dashboards) == 1
    labels = dashboards[0].inputs["metadata"]["labels"]
    assert labels.get("grafana_dashboard") == "1", dashboards[0].urn


def test_dashboard_config_map_holds_the_rendered_dashboard(stack_graph: Any) -> None:
    dashboard = one(stack_graph("prod"), CONFIG_MAP)
    assert dashboard.inputs["data"] == {"web.json": grafana.render_dashboard(service="web")}, (
        dashboard.urn
    )


def test_no_dashboard_without_grafana() -> None:
    graph = graph_with(monitoring={"grafana": False})
    assert graph.of_type(CONFIG_MAP) == [], "msops:monitoring.grafana is false"
    assert graph.of_type(SERVICE_MONITOR), "ServiceMonitor should stay without Grafana"


def test_no_monitoring_objects_when_monitoring_is_off() -> None:
    graph = graph_with(monitoring={"enabled": False})
    found = [r.urn for r in graph if r.type in (*CRDS, CONFIG_MAP, HELM_RELEASE)]
    assert found == [], "msops:monitoring.enabled is false"


def test_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not on PATH; install it (Debian/Ubuntu: `apt-get install prometheus`, "
            "or the prometheus release tarball from https://prometheus.io/download/)"
        )
    graphs = [
        matrix_graph(next(iter(MATRIX))),
        graph_with(monitoring={"alerts": {"errorRate": 0.2}}),
    ]
    rules = [r for g in graphs for r in g.of_type(PROMETHEUS_RULE)]
    assert rules, "no PrometheusRule to check"
    for index, res in enumerate(rules):
        path = tmp_path / f"rules-{index}.yml"
        path.write_text(yaml.safe_dump(res.inputs["spec"], sort_keys=False))
        done = subprocess.run(
            [promtool, "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{res.urn}: promtool:\n{done.stdout}\n{done.stderr}"


# --- replicas, probes, security ----------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in MATRIX if MATRIX[c]["autoscaling"]])
def test_deployment_leaves_replicas_unset_with_autoscaling(case: str) -> None:
    deployment = one(matrix_graph(case), DEPLOYMENT)
    assert "replicas" not in deployment.inputs["spec"], deployment.urn


@pytest.mark.parametrize("case", [c for c in MATRIX if not MATRIX[c]["autoscaling"]])
def test_deployment_has_the_replica_count_without_autoscaling(case: str) -> None:
    deployment = one(matrix_graph(case), DEPLOYMENT)
    assert deployment.inputs["spec"].get("replicas") == 2, deployment.urn


def test_rolling_update_defaults_to_zero_downtime(stack_graph: Any) -> None:
    deployment = one(stack_graph("prod"), DEPLOYMENT)
    strategy = deployment.inputs["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }, deployment.urn


def test_rollout_limits_come_from_the_config() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["rollout"] = {
        "maxSurge": "25%",
        "maxUnavailable": 1,
        "progressDeadline": 120,
        "historyLimit": 3,
    }
    spec = one(synth_values(values, "prod"), DEPLOYMENT).inputs["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 1}
    assert (spec["progressDeadlineSeconds"], spec["revisionHistoryLimit"]) == (120, 3)


def test_probes_use_the_named_port_and_health_timing() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["health"] = {
        "path": "/live",
        "readinessPath": "/ready",
        "interval": "1m30s",
        "timeout": "500ms",
        "retries": 4,
    }
    deployment = one(synth_values(values, "prod"), DEPLOYMENT)
    (container,) = pod_template(deployment)["spec"]["containers"]
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"] == {"path": "/live", "port": "http"}, deployment.urn
    assert ready["httpGet"] == {"path": "/ready", "port": "http"}, deployment.urn
    for probe in (live, ready):
        assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"]) == (
            90,
            1,
            4,
        ), deployment.urn
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_resources_come_from_the_config(stack_graph: Any) -> None:
    deployment = one(stack_graph("prod"), DEPLOYMENT)
    (container,) = pod_template(deployment)["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }, deployment.urn


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_containers_are_hardened(case: str, graph_of: Any) -> None:
    found = list(containers(graph_of(case)))
    assert found, case
    for res, container in found:
        context = container["securityContext"]
        where = f"{res.urn} container {container['name']}"
        assert context["runAsNonRoot"] is True, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_pods_run_as_the_configured_user_with_a_writable_tmp(stack_graph: Any) -> None:
    deployment = one(stack_graph("prod"), DEPLOYMENT)
    pod = pod_template(deployment)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True, deployment.urn
    assert pod["securityContext"]["runAsUser"] == 10001, deployment.urn
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"], deployment.urn
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_postgres_runs_as_the_postgres_uid(stack_graph: Any) -> None:
    statefulset = one(stack_graph("prod"), STATEFULSET)
    context = pod_template(statefulset)["spec"]["securityContext"]
    assert (context["runAsUser"], context["fsGroup"], context["runAsNonRoot"]) == (70, 70, True), (
        statefulset.urn
    )


def test_pod_template_carries_the_version_label_and_annotation(stack_graph: Any) -> None:
    deployment = one(stack_graph("prod"), DEPLOYMENT)
    metadata = pod_template(deployment)["metadata"]
    assert metadata["labels"]["app.kubernetes.io/version"] == "1.0.0", deployment.urn
    assert metadata["annotations"]["msops.dev/version"] == "1.0.0", deployment.urn
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "msops", deployment.urn


def test_a_digest_pin_becomes_a_valid_version_label() -> None:
    digest = "sha256:" + "ab" * 32
    values = stack_values("prod")
    values["msops:services"]["web"]["image"] = f"ghcr.io/msops/demo@{digest}"
    deployment = one(synth_values(values, "prod"), DEPLOYMENT)
    metadata = pod_template(deployment)["metadata"]
    assert metadata["labels"]["app.kubernetes.io/version"] == "sha256-abababababab"
    assert metadata["annotations"]["msops.dev/version"] == digest


# --- services, ingress, urls -------------------------------------------------------------------


def test_exposed_service_is_a_load_balancer(stack_graph: Any) -> None:
    service = next(
        s for s in stack_graph("prod").of_type(SERVICE) if s.inputs["metadata"]["name"] == "web"
    )
    assert service.inputs["spec"]["type"] == "LoadBalancer", service.urn
    assert service.inputs["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ], service.urn


def test_unexposed_service_is_cluster_ip() -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["exposed"] = False
    graph = synth_values(values, "prod")
    service = next(s for s in graph.of_type(SERVICE) if s.inputs["metadata"]["name"] == "web")
    assert service.inputs["spec"]["type"] == "ClusterIP", service.urn
    url = graph.outputs["services"]["web"]["url"]
    assert url == "http://web.msops-prod.svc.cluster.local", url


def test_ingress_routes_the_host_to_the_service_port() -> None:
    graph = matrix_graph("autoscaling=True-ingress=True-database=True")
    ingress = one(graph, INGRESS)
    spec = ingress.inputs["spec"]
    assert spec["ingressClassName"] == "nginx", ingress.urn
    assert spec["tls"] == [{"hosts": ["web.example.com"], "secretName": "web-tls"}], ingress.urn
    (rule,) = spec["rules"]
    (path,) = rule["http"]["paths"]
    assert rule["host"] == "web.example.com", ingress.urn
    assert (path["path"], path["pathType"]) == ("/", "Prefix"), ingress.urn
    assert path["backend"] == {"service": {"name": "web", "port": {"name": "http"}}}, ingress.urn
    assert graph.outputs["services"]["web"]["url"] == "https://web.example.com/"


@pytest.mark.parametrize("case", [c for c in MATRIX if not MATRIX[c]["ingress"]])
def test_no_ingress_unless_configured(case: str) -> None:
    assert matrix_graph(case).of_type(INGRESS) == [], case


# --- secrets -----------------------------------------------------------------------------------


@functools.cache
def secret_graph() -> synth.Graph:
    values = stack_values("prod")
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    values["msops:secrets"] = {"api-token": API_TOKEN}
    values["msops:services"]["web"]["secretEnv"] = {"API_TOKEN": "api-token"}
    values["msops:services"]["web"]["env"] = {"LOG_LEVEL": "info"}
    return synth_values(values, "prod")


@pytest.mark.parametrize("secret", [DB_PASSWORD, API_TOKEN])
def test_secrets_never_appear_in_inputs_or_outputs(secret: str) -> None:
    graph = secret_graph()
    leaks = [r.urn for r in graph if secret in json.dumps(r.inputs)]
    assert leaks == [], "secret value in resource inputs"
    assert secret not in json.dumps(graph.outputs), "secret value in stack outputs"


def test_database_url_comes_from_a_secret_key_ref() -> None:
    deployment = one(secret_graph(), DEPLOYMENT, "api")
    env = {e["name"]: e for e in pod_template(deployment)["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "api-env", "key": "DATABASE_URL"}},
    }, deployment.urn


def test_secret_env_comes_from_a_secret_key_ref_and_plain_env_is_a_value() -> None:
    deployment = one(secret_graph(), DEPLOYMENT)
    env = {e["name"]: e for e in pod_template(deployment)["spec"]["containers"][0]["env"]}
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "web-env", "key": "API_TOKEN"}
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "info"}, deployment.urn


def test_env_secret_is_opaque_with_secret_string_data() -> None:
    secret = next(
        s for s in secret_graph().of_type(SECRET) if s.inputs["metadata"]["name"] == "web-env"
    )
    assert secret.inputs["type"] == "Opaque", secret.urn
    assert secret.inputs["stringData"] == synth.SECRET, f"{secret.urn}: stringData not secret"
    assert "stringData" in secret.options["additional_secret_outputs"], secret.urn


def test_database_url_points_at_the_cluster_dns_name() -> None:
    # The URL itself is secret; check the host the program hands to StackSecrets instead.
    assert kube.cluster_host("main", "msops-prod") == "main.msops-prod.svc.cluster.local"
    service = next(
        s for s in secret_graph().of_type(SERVICE) if s.inputs["metadata"]["name"] == "main"
    )
    assert service.inputs["metadata"]["namespace"] == "msops-prod", service.urn
    assert service.inputs["spec"]["clusterIP"] == "None", service.urn


def test_external_database_runs_no_postgres_and_uses_its_url_secret() -> None:
    values = stack_values("prod")
    values["msops:databases"]["main"] = {
        "externalUrl": "postgresql://u:ext-pw-91Xk@db.example:5432/m"
    }
    graph = synth_values(values, "prod")
    assert graph.of_type(STATEFULSET) == [], "msops:databases.main.externalUrl is set"
    assert "ext-pw-91Xk" not in json.dumps([r.inputs for r in graph]), "external URL leaked"
    deployment = one(graph, DEPLOYMENT, "api")
    env = {e["name"]: e for e in pod_template(deployment)["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "api-env", deployment.urn


# --- rollback readiness ------------------------------------------------------------------------


def diff_paths(old: Any, new: Any, path: str = "") -> Iterator[str]:
    """Paths (dotted, list indices in brackets) where two input trees differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from diff_paths(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from diff_paths(a, b, f"{path}[{index}]")
    elif old != new:
        yield path


@functools.cache
def image_change() -> tuple[synth.Graph, synth.Graph]:
    before = synth_values(stack_values("prod"), "prod")
    # api's: the service with a migration.
    values = stack_values("prod")
    values["msops:services"]["api"]["image"] = "ghcr.io/msops/demo:1.1.0"
    return before, synth_values(values, "prod")


ALLOWED_IMAGE_CHANGE = re.compile(
    r"^spec\.template\.(metadata\.labels\.app\.kubernetes\.io/version"
    r"|metadata\.annotations\.msops\.dev/version"
    r"|spec\.containers\[\d+\]\.image"
    # APP_VERSION, the demo app's convention, carries the new version to the container.
    r"|spec\.containers\[\d+\]\.env\[(?P<env>\d+)\]\.value)$"
)
# A new image runs its migration: a Job of another name, its version in the same places.
ALLOWED_JOB_CHANGE = re.compile(
    r"^metadata\.(name|annotations\.msops\.dev/version)$"
    r"|^spec\.template\.(metadata\.labels\.app\.kubernetes\.io/version"
    r"|spec\.containers\[\d+\]\.image"
    r"|spec\.containers\[\d+\]\.env\[(?P<env>\d+)\]\.value)$"
)


def allowed_image_change(res: synth.Resource, path: str) -> bool:
    pattern = ALLOWED_JOB_CHANGE if res.type == JOB else ALLOWED_IMAGE_CHANGE
    match = pattern.match(path)
    if match is None or match["env"] is None:
        return match is not None
    (container,) = res.inputs["spec"]["template"]["spec"]["containers"]
    return bool(container["env"][int(match["env"])]["name"] == "APP_VERSION")


def test_image_change_touches_only_the_deployment_pod_template_and_the_migration() -> None:
    before, after = image_change()
    old = {r.urn: r for r in before}
    changed = {}
    for res in after:
        paths = list(diff_paths(old[res.urn].inputs, res.inputs))
        if paths:
            changed[res.urn] = paths
    expected = {one(after, DEPLOYMENT, "api").urn, one(after, JOB, "api").urn}
    assert set(changed) == expected, f"changed beyond the Deployment and Job: {sorted(changed)}"
    for urn, paths in changed.items():
        stray = [p for p in paths if not allowed_image_change(after.by_urn(urn), p)]
        assert stray == [], f"{urn}: changed outside the pod template's version and image"


def test_image_change_keeps_every_resource_and_every_name_but_the_jobs() -> None:
    before, after = image_change()
    assert {r.urn for r in before} == {r.urn for r in after}, "resources added or removed"
    names = {r.urn: r.inputs.get("metadata", {}).get("name") for r in before}
    for res in after:
        if res.type != JOB:
            assert res.inputs.get("metadata", {}).get("name") == names[res.urn], res.urn


def test_image_change_names_a_new_migration_job() -> None:
    before, after = image_change()
    old, new = one(before, JOB), one(after, JOB)
    assert old.inputs["metadata"]["name"] != new.inputs["metadata"]["name"], new.urn


def test_image_change_keeps_every_resource_option() -> None:
    before, after = image_change()
    old = {r.urn: r.options for r in before}
    differ = [r.urn for r in after if r.options != old[r.urn]]
    assert differ == []


@pytest.mark.parametrize("case", ALL_GRAPHS)
def test_no_resource_is_forced_to_replace(case: str, graph_of: Any) -> None:
    for res in graph_of(case):
        # A Job's template is immutable: a failed one (replaceUnready) goes before the next.
        assert res.options["delete_before_replace"] is (res.type == JOB), res.urn
        assert res.options["replace_on_changes"] == [], res.urn


def test_workload_names_are_fixed(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    assert one(graph, DEPLOYMENT).inputs["metadata"]["name"] == "web"
    assert one(graph, STATEFULSET).inputs["metadata"]["name"] == "main"


# --- persistence -------------------------------------------------------------------------------


def test_statefulset_retains_its_volume_claims(stack_graph: Any) -> None:
    statefulset = one(stack_graph("prod"), STATEFULSET)
    policy = statefulset.inputs["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}, statefulset.urn


def test_statefulset_is_retained_on_delete(stack_graph: Any) -> None:
    statefulset = one(stack_graph("prod"), STATEFULSET)
    assert statefulset.options["retain_on_delete"] is True, statefulset.urn


def test_statefulset_claims_the_configured_storage(stack_graph: Any) -> None:
    statefulset = one(stack_graph("prod"), STATEFULSET)
    spec = statefulset.inputs["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi", statefulset.urn
    assert spec["replicas"] == 1, statefulset.urn
    (container,) = pod_template(statefulset)["spec"]["containers"]
    assert container["image"] == "postgres:16.4-alpine", statefulset.urn
    env = {e["name"]: e for e in container["env"]}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/"), statefulset.urn
    assert "secretKeyRef" in env["POSTGRES_PASSWORD"]["valueFrom"], statefulset.urn
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready", statefulset.urn


# --- namespace, provider, helm -----------------------------------------------------------------


def test_namespace_honours_target_namespace(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    namespace = one(graph, NAMESPACE)
    assert namespace.inputs["metadata"]["name"] == "msops-prod", "msops:target.namespace"
    others = [
        r.urn
        for r in manifests(graph)
        if r.type != NAMESPACE and r.inputs["metadata"].get("namespace") != "msops-prod"
    ]
    assert others == [], "objects outside msops:target.namespace"


def test_namespace_defaults_to_the_stack_name() -> None:
    values = stack_values("prod")
    del values["msops:target"]
    graph = synth_values(values, "prod")
    assert one(graph, NAMESPACE).inputs["metadata"]["name"] == "prod"
    assert {
        r.inputs["metadata"].get("namespace") for r in manifests(graph) if r.type != NAMESPACE
    } == {"prod"}


def test_namespace_enforces_the_restricted_pod_security_standard(stack_graph: Any) -> None:
    namespace = one(stack_graph("prod"), NAMESPACE)
    labels = namespace.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted", namespace.urn


def test_every_object_uses_the_explicit_provider(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    provider = one(graph, PROVIDER)
    assert "namespace" not in provider.inputs, provider.urn
    stray = [
        r.urn for r in manifests(graph) if not r.options["provider"].startswith(provider.urn + "::")
    ]
    assert stray == [], "objects not on the msops provider"


def test_provider_updates_secrets_and_config_maps_in_place(stack_graph: Any) -> None:
    provider = one(stack_graph("prod"), PROVIDER)
    # Provider config travels as strings on the wire.
    assert provider.inputs["enableSecretMutable"] == "true", provider.urn
    assert provider.inputs["enableConfigMapMutable"] == "true", provider.urn


def test_provider_uses_the_configured_kube_context() -> None:
    graph = graph_with(target={"kubeContext": "prod-cluster"})
    assert one(graph, PROVIDER).inputs["context"] == "prod-cluster", "msops:target.kubeContext"


def test_provider_uses_the_current_context_by_default(stack_graph: Any) -> None:
    provider = one(stack_graph("prod"), PROVIDER)
    assert "context" not in provider.inputs, provider.urn


def test_no_helm_release_by_default(stack_graph: Any) -> None:
    graph = stack_graph("prod")
    assert graph.of_type(HELM_RELEASE) == [], "msops:monitoring.installStack defaults to false"
    assert graph.outputs["prometheusUrl"] is None and graph.outputs["grafanaUrl"] is None


@functools.cache
def install_stack_graph() -> synth.Graph:
    return graph_with(monitoring={"installStack": True, "chartVersion": "65.1.0"})


def test_helm_release_installs_the_pinned_chart() -> None:
    release = one(install_stack_graph(), HELM_RELEASE)
    inputs = release.inputs
    assert inputs["chart"] == "kube-prometheus-stack", release.urn
    assert inputs["version"] == "65.1.0", f"{release.urn}: msops:monitoring.chartVersion"
    assert inputs["repositoryOpts"] == {
        "repo": "https://prometheus-community.github.io/helm-charts"
    }, release.urn
    # Its Prometheus selects by `release: <release name>`, the label msops puts on its objects.
    assert inputs["name"] == "kube-prometheus-stack", release.urn


def test_helm_release_never_holds_the_grafana_password() -> None:
    release = one(install_stack_graph(), HELM_RELEASE)
    admin = release.inputs["values"]["grafana"]["admin"]
    assert admin["existingSecret"] == "grafana-admin", release.urn
    assert synth.SECRET not in json.dumps(release.inputs["values"]), release.urn


def test_monitoring_objects_wait_for_the_helm_release() -> None:
    graph = install_stack_graph()
    release = one(graph, HELM_RELEASE)
    for res in graph.of_type(SERVICE_MONITOR) + graph.of_type(PROMETHEUS_RULE):
        assert release.urn in res.options["depends_on"], res.urn


def test_installed_stack_urls_are_its_in_cluster_services() -> None:
    outputs = install_stack_graph().outputs
    assert outputs["prometheusUrl"] == (
        "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
    )
    assert (
        outputs["grafanaUrl"] == "http://kube-prometheus-stack-grafana.monitoring.svc.cluster.local"
    )


# --- config errors and helpers -----------------------------------------------------------------


def test_a_service_and_database_of_one_name_are_refused() -> None:
    values = stack_values("prod")
    values["msops:databases"] = {"web": {"storage": "1Gi"}}
    values["msops:services"]["api"]["database"] = "web"
    with pytest.raises(pulumi.RunError, match=r"msops:databases\.web"):
        synth_values(values, "prod")


def test_a_stack_name_that_is_no_namespace_is_refused() -> None:
    values = stack_values("prod")
    del values["msops:target"]
    with pytest.raises(pulumi.RunError, match=r"msops:target\.namespace"):
        synth_values(values, "Prod_EU")


@pytest.mark.parametrize(
    ("image", "label", "annotation"),
    [
        ("ghcr.io/msops/demo:1.0.0", "1.0.0", "1.0.0"),
        ("localhost:5000/demo:2.1", "2.1", "2.1"),
        ("demo@sha256:" + "0" * 64, "sha256-000000000000", "sha256:" + "0" * 64),
        ("demo:1.0@sha256:" + "1" * 64, "1.0", "1.0"),
        ("demo:_x" + "y" * 80, "x" + "y" * 61, "_x" + "y" * 80),
    ],
)
def test_image_version(image: str, label: str, annotation: str) -> None:
    values = stack_values("prod")
    values["msops:services"]["web"]["image"] = image
    config = specs.load(specs.raw_config(values), "prod")
    workload = plans.build(config, stack="prod").workload("web")
    assert (workload.version_label, workload.version) == (label, annotation), image


def test_kps_fullname_is_cut_like_the_chart() -> None:
    assert kube.kps_fullname("a" * 25 + "-b") == "a" * 25
