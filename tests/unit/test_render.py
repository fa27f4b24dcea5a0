"""`msops render`: manifests kubectl and GitOps take as they are, a Compose file, a stack file,
and a render directory msops owns."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components import plan as plans
from components import spec as specs
from components.backends.docker import compose
from components.backends.kubernetes import gitops
from components.vocabulary import SECRET_MASK
from msops import render, synth
from msops.errors import BadInput
from tests.golden.cases import CASES
from tests.graphs import stack_values, synth_values
from tests.unit.test_kubernetes_backend import VERSIONS

pytestmark = pytest.mark.timeout(120)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "render-db-pw-7Rt2Lx9Q"
API_TOKEN = "render-tok-Hx73PqN0"
# Custom resources: kubernetes-validate bundles only the built-in API's schemas (their shape is
# checked in test_kubernetes_backend.py).
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
COMPOSE_VARIABLES = {
    "MSOPS_DB_MAIN_PASSWORD": "pw",
    "MSOPS_GRAFANA_ADMIN_PASSWORD": "admin-pw",
    "MSOPS_SECRET_API": "tok",
}


def rendered(values: dict[str, Any], stack: str, *, base: Path = ROOT, **options: Any) -> Any:
    """What `msops render` renders for these config values."""
    graph = synth_values(values, stack)
    plan = plans.build(specs.load(specs.raw_config(values), stack), stack=stack)
    return render.render(graph, plan, base=base, project_root=ROOT, **options)


@functools.cache
def prod(secrets_as: str = "placeholder") -> render.Rendered:
    values = stack_values("prod")
    values["msops:databases"]["main"]["password"] = DB_PASSWORD
    return rendered(values, "prod", secrets_as=secrets_as)


def with_ingress() -> dict[str, Any]:
    values = stack_values("prod")
    values["msops:services"]["web"]["ingress"] = {"host": "web.example.com", "path": "/"}
    return values


def with_secret(stack: str) -> dict[str, Any]:
    values = stack_values(stack)
    values["msops:secrets"] = {"api": API_TOKEN}
    values["msops:services"]["web"]["secretEnv"] = {"API_TOKEN": "api"}
    values["msops:services"]["web"]["env"] = {"PRICE": "5$"}
    return values


def manifest_files(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        path: yaml.safe_load(text)
        for path, text in files.items()
        if path.startswith(render.MANIFESTS + "/")
    }


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def tool(name: str) -> str:
    """A tool a test drives: missing in CI is a failure, elsewhere a skip that says so."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; scripts/test.sh installs it", pytrace=False)
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


# --- kubernetes: files kubectl and GitOps take as they are ----------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly_secrets_included(version: str) -> None:
    errors, kinds = [], set()
    for path, manifest in manifest_files(prod().files).items():
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        kinds.add(manifest["kind"])
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{path}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert errors == [], f"against Kubernetes {version}:\n" + "\n".join(errors)
    assert "Secret" in kinds, sorted(kinds)


def test_install_stack_manifests_validate_strictly() -> None:
    values = stack_values("prod")
    values["msops:monitoring"]["installStack"] = True
    errors = []
    for path, manifest in manifest_files(rendered(values, "prod").files).items():
        if manifest["kind"] not in CUSTOM_KINDS:
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(manifest, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    errors.append(f"{path} ({version}): {exc.message}")
    assert errors == []


def test_a_file_is_named_after_its_namespace_kind_and_name() -> None:
    for path, manifest in manifest_files(prod().files).items():
        meta = manifest["metadata"]
        folder = meta.get("namespace") or render.CLUSTER_SCOPED
        expected = f"{render.MANIFESTS}/{folder}/{manifest['kind'].lower()}-{meta['name']}.yaml"
        assert path == expected, path


def test_namespaces_come_first_in_the_order_kubectl_walks_the_tree() -> None:
    paths = sorted(manifest_files(prod().files))
    assert paths[0] == f"{render.MANIFESTS}/_cluster/namespace-msops-prod.yaml", paths[:3]


def test_manifests_equal_the_synthesized_inputs_but_secrets(stack_graph: Any) -> None:
    written = {(m["kind"], m["metadata"]["name"]): m for m in manifest_files(prod().files).values()}
    for res in stack_graph("prod"):
        if res.custom and res.type.startswith("kubernetes:") and res.inputs["kind"] != "Secret":
            key = (res.inputs["kind"], res.inputs["metadata"]["name"])
            assert written[key] == res.inputs, res.urn


def test_secrets_keep_their_keys_with_placeholder_values() -> None:
    secrets = {
        m["metadata"]["name"]: m
        for m in manifest_files(prod().files).values()
        if m["kind"] == "Secret"
    }
    assert set(secrets["api-env"]["stringData"]) == {"DATABASE_URL"}, secrets["api-env"]
    assert set(secrets["main-credentials"]["stringData"]) == {"password"}
    for name, secret in secrets.items():
        assert secret["metadata"]["annotations"][gitops.PLACEHOLDER_ANNOTATION] == "true", name
        for key, value in secret["stringData"].items():
            assert value.startswith("msops-placeholder:") and key in value, f"{name}.{key}"


def test_no_secret_value_reaches_a_file() -> None:
    for secrets_as in ("placeholder", "omit"):
        leaks = [p for p, t in prod(secrets_as).files.items() if DB_PASSWORD in t]
        assert leaks == [], f"msops:databases.main.password in clear ({secrets_as})"


def test_omitted_secrets_are_not_written_and_are_listed() -> None:
    result = prod("omit")
    kinds = [m["kind"] for m in manifest_files(result.files).values()]
    assert "Secret" not in kinds, kinds
    assert "Secret" not in [o["kind"] for o in result.objects]
    assert sorted(result.omitted) == [
        "msops-prod/api-env: DATABASE_URL",
        "msops-prod/main-credentials: password",
    ], result.omitted


def test_the_kustomization_lists_exactly_the_manifests() -> None:
    files = prod().files
    kustomization = yaml.safe_load(files[render.KUSTOMIZATION])
    assert kustomization["kind"] == "Kustomization", kustomization
    listed = {f"kubernetes/{r}" for r in kustomization["resources"]}
    assert listed == set(manifest_files(files)), sorted(listed ^ set(manifest_files(files)))


def test_the_manifest_tree_holds_only_manifests() -> None:
    """`kubectl apply -R` and Flux read every file there: no dashboards, no kustomization."""
    for path, text in prod().files.items():
        if path.startswith(render.MANIFESTS + "/"):
            doc = yaml.safe_load(text)
            assert path.endswith(".yaml") and doc["apiVersion"] and doc["kind"], path
    assert not [p for p in prod().files if p.endswith(".json")], "a dashboard outside its ConfigMap"


def test_dashboards_are_in_their_config_maps() -> None:
    maps = [m for m in manifest_files(prod().files).values() if m["kind"] == "ConfigMap"]
    assert any("web.json" in m["data"] for m in maps), [m["metadata"]["name"] for m in maps]


def test_helm_release_values_are_outside_the_manifests() -> None:
    values = stack_values("prod")
    values["msops:monitoring"]["installStack"] = True
    files = rendered(values, "prod").files
    text = files["helm/kube-prometheus-stack-values.yaml"]
    assert "chart kube-prometheus-stack version 65.8.1" in text.splitlines()[0], text[:200]
    assert yaml.safe_load(text)["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"


def test_the_stream_is_the_same_objects_as_the_files() -> None:
    result = prod()
    streamed = list(yaml.safe_load_all(render.stream(result)))
    assert streamed == list(result.objects), "the --out - stream differs from the objects"
    assert sorted(map(json.dumps, streamed)) == sorted(
        json.dumps(m) for m in manifest_files(result.files).values()
    ), "the stream differs from the files"
    assert streamed[0]["kind"] == "Namespace", streamed[0]["kind"]


def test_numbers_are_written_as_integers() -> None:
    text = prod().files[f"{render.MANIFESTS}/msops-prod/deployment-web.yaml"]
    assert "containerPort: 8080\n" in text
    assert not re.search(r":\s+\d+\.0\s*$", text, re.MULTILINE), "a float in the Deployment"


def test_render_is_deterministic(tmp_path: Path) -> None:
    render.write(prod(), tmp_path / "a")
    render.write(rendered(stack_values("prod"), "prod"), tmp_path / "b")
    first, second = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert sorted(first) == sorted(second)
    changed = [p for p in first if first[p] != second[p]]
    assert changed == [], changed


# --- a render directory msops owns -------------------------------------------------------------


def test_adding_an_object_changes_no_other_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.write(rendered(stack_values("prod"), "prod"), out)
    before = tree(out)
    written = render.write(rendered(with_ingress(), "prod"), out)
    after = tree(out)
    added = sorted(set(after) - set(before))
    assert added == ["kubernetes/manifests/msops-prod/ingress-web.yaml"], added
    assert set(before) <= set(after), "a file was renamed or removed"
    changed = sorted(p for p in before if before[p] != after[p])
    # The two lists of the files rendered: the kustomization and msops' own manifest.
    assert changed == [render.MANIFEST, render.KUSTOMIZATION], changed
    assert sorted(p.name for p in written.changed) == ["ingress-web.yaml", "kustomization.yaml"]


def test_what_is_no_longer_rendered_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.write(rendered(with_ingress(), "prod"), out)
    written = render.write(rendered(stack_values("prod"), "prod"), out)
    assert [p.name for p in written.removed] == ["ingress-web.yaml"], written.removed
    assert not (out / "kubernetes/manifests/msops-prod/ingress-web.yaml").exists()
    listed = json.loads((out / render.MANIFEST).read_text())["files"]
    assert sorted(tree(out)) == sorted([*listed, render.MANIFEST]), "stale files left"


def test_a_backend_change_leaves_no_file_of_the_other(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.write(prod(), out)
    render.write(rendered(stack_values("dev"), "dev", base=out), out)
    assert not (out / "kubernetes").exists(), sorted(tree(out))
    assert (out / "compose.yaml").is_file()


def test_files_a_person_added_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.write(prod(), out)
    (out / "NOTES.md").write_text("mine\n")
    render.write(prod("omit"), out)
    assert (out / "NOTES.md").read_text() == "mine\n"


def test_a_directory_msops_did_not_render_into_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x\n")
    with pytest.raises(BadInput, match=r"not empty and msops did not render into it"):
        render.write(prod(), tmp_path)
    assert sorted(tree(tmp_path)) == ["keep.txt"], "something was written"


def test_a_file_as_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x\n")
    with pytest.raises(BadInput, match=r"--out .*f: is a file"):
        render.check_out(tmp_path / "f")


def test_an_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / render.MANIFEST).write_text("{not json")
    with pytest.raises(BadInput, match=render.MANIFEST):
        render.check_out(tmp_path)


def test_a_manifest_never_makes_msops_remove_outside_the_directory(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("x\n")
    out = tmp_path / "out"
    out.mkdir()
    files = ["../victim.txt", str(victim)]
    (out / render.MANIFEST).write_text(json.dumps({"files": files}))
    render.write(prod(), out)
    assert victim.exists(), "a file outside --out was removed"


def test_an_empty_or_new_directory_is_fine(tmp_path: Path) -> None:
    assert render.check_out(tmp_path) == frozenset()
    assert render.check_out(tmp_path / "new" / "dir") == frozenset()


# --- docker: compose.yaml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dev") / "out"
    render.write(rendered(with_secret("dev"), "dev", base=out), out)
    return out


def compose_config(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("docker-compose"), "-f", "compose.yaml", "config"],
        cwd=out,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_accepts_the_compose_file(dev_dir: Path) -> None:
    done = compose_config(dev_dir, COMPOSE_VARIABLES)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    web = config["services"]["web"]
    assert web["deploy"]["replicas"] == 2, web["deploy"]
    api = config["services"]["api"]
    assert api["environment"]["DATABASE_URL"] == "postgresql://app:pw@main:5432/main"
    assert web["environment"]["UPSTREAM_URL"] == "http://api-lb:8080", web["environment"]
    # `config` prints a literal dollar escaped again; unescaped, "5$" would not interpolate.
    assert web["environment"]["PRICE"] == "5$$", "a literal $ was interpolated"


def test_docker_compose_refuses_without_the_variables(dev_dir: Path) -> None:
    done = compose_config(dev_dir, {})
    assert done.returncode != 0 and "MSOPS_" in done.stderr, done.stderr


def test_the_compose_file_validates_against_the_compose_spec(dev_dir: Path) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    document = yaml.safe_load((dev_dir / "compose.yaml").read_text())
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(document)
    ]
    assert errors == []


def test_the_dev_render_holds_no_secret_value(dev_dir: Path) -> None:
    leaks = [p for p, data in tree(dev_dir).items() if API_TOKEN.encode() in data]
    assert leaks == [], "msops:secrets.api written in clear"


def test_docker_renders_no_stream() -> None:
    with pytest.raises(BadInput, match="--out DIR"):
        render.stream(rendered(stack_values("dev"), "dev"))


# --- swarm: stack.yaml -------------------------------------------------------------------------


@functools.cache
def staging() -> render.Rendered:
    return rendered(with_secret("staging"), "staging")


def v3_errors(document: Any) -> list[str]:
    schema = json.loads((SCHEMAS / "config_schema_v3.8.json").read_text())
    return [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft4Validator(schema).iter_errors(document)
    ]


def test_the_stack_file_validates_against_the_version_3_schema() -> None:
    assert v3_errors(yaml.safe_load(staging().files["stack.yaml"])) == []


def test_the_version_3_schema_refuses_what_docker_stack_deploy_refuses() -> None:
    document = yaml.safe_load(staging().files["stack.yaml"])
    document["services"]["web"]["deploy"]["update_config"]["order"] = "sideways"
    document["services"]["web"]["deploy"]["bogus"] = 1
    assert len(v3_errors(document)) == 2, v3_errors(document)


def test_the_stack_file_names_every_config_file_it_rendered() -> None:
    files = staging().files
    document = yaml.safe_load(files["stack.yaml"])
    named = {c["file"].removeprefix("./") for c in document["configs"].values()}
    assert named == set(files) - {"stack.yaml"}, sorted(named ^ set(files))


def test_the_staging_render_holds_no_secret_value() -> None:
    leaks = [p for p, text in staging().files.items() if API_TOKEN in text]
    assert leaks == [], "msops:secrets.api written in clear"


# --- every golden variant of every backend ---------------------------------------------------


def case_plan(case: str) -> tuple[dict[str, Any], str, plans.StackPlan]:
    stack, factory = CASES[case]
    values = factory()
    return values, stack, plans.build(specs.load(specs.raw_config(values), stack), stack=stack)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] == "dev"])
def test_every_docker_variant_is_a_valid_compose_file(case: str, tmp_path: Path) -> None:
    _, _, plan = case_plan(case)
    result = render.docker(plan, project_root=ROOT, base=tmp_path)
    render.write(result, tmp_path)
    variables = {v: "x" for v in compose.variables(plan)}
    done = compose_config(tmp_path, variables)
    assert done.returncode == 0, f"{case}: {done.stderr}"
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    document = yaml.safe_load(result.files["compose.yaml"])
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
    assert errors == [], case
    assert not [p for p, t in result.files.items() if SECRET_MASK in t], f"{case}: a masked value"


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] == "staging"])
def test_every_swarm_variant_is_a_valid_stack_file(case: str) -> None:
    _, _, plan = case_plan(case)
    result = render.swarm(plan)
    assert v3_errors(yaml.safe_load(result.files["stack.yaml"])) == [], case
    assert not [p for p, t in result.files.items() if SECRET_MASK in t], f"{case}: a masked value"


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] == "prod"])
def test_every_kubernetes_variant_validates_strictly(case: str) -> None:
    values, stack, plan = case_plan(case)
    masked = [k for k, v in values.items() if SECRET_MASK in json.dumps(v)]
    graph = synth.synth_config(values, stack=stack, secret_keys=masked)
    result = render.kubernetes(graph, plan, secrets_as="placeholder")
    errors = []
    for path, manifest in manifest_files(result.files).items():
        if manifest["kind"] not in CUSTOM_KINDS:
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(manifest, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    errors.append(f"{path} ({version}): {exc.message}")
    assert errors == [], case
