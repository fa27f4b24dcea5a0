"""Write what a stack deploys as files for people and tools without Pulumi: Kubernetes
manifests for kubectl, kustomize and GitOps, a Compose file, a Swarm stack file.

One render is a set of files by relative path (`Rendered`), written into a directory that
msops owns (`write`: its manifest, `.msops-render.json`, lists what it wrote, so a new render
removes what it no longer renders) or streamed to stdout (`stream`). `check_out` is the one
place an `--out` directory is judged.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from msops.errors import BadInput, OperationFailed
from msops.synth import SECRET, Graph, Resource, normalize

if TYPE_CHECKING:
    from components.backends.bundle import Bundle
    from components.backends.kubernetes.gitops import SecretsAs
    from components.plan.model import StackPlan

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET_KIND = "Secret"
MANIFEST = ".msops-render.json"
# `--out -`: one multi-document YAML stream on stdout.
STDOUT = "-"
KUSTOMIZATION = "kubernetes/kustomization.yaml"
MANIFESTS = "kubernetes/manifests"
# Cluster-scoped objects (Namespaces): before every namespace's folder in the order kubectl
# walks a tree (`_` sorts before any letter or digit a namespace can start with, and no
# namespace can be named with it), so `kubectl apply -R` creates a Namespace first.
CLUSTER_SCOPED = "_cluster"
HELM_VALUES = "helm"
MANIFEST_FORMAT = 1

# Helm's install order (pkg/releaseutil/kind_sorter.go), the order of the `--out -` stream and
# of the kustomization, so that `kubectl apply -f -` creates what others refer to first;
# unknown kinds (custom resources) go last, after the CRDs a chart may have brought.
INSTALL_ORDER = (
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)

# Keys a reader looks for first, at any depth; every other key follows in sorted order.
_LEADING_KEYS = (
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "record",
    "alert",
    "expr",
    "for",
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (config files, dashboards) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def ordered(value: Any) -> Any:
    """`value` with every mapping's keys in a stable order: the leading keys, then sorted."""
    if isinstance(value, Mapping):
        leading = [k for k in _LEADING_KEYS if k in value]
        rest = sorted(k for k in value if k not in _LEADING_KEYS)
        return {k: ordered(value[k]) for k in (*leading, *rest)}
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


def dump_yaml(data: Any) -> str:
    """YAML text of `data`, keys in the order given; wide lines keep PromQL on one line."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


# --- what one render is --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The files of one render by relative path (`/`-separated), and what it left out."""

    stack: str
    backend: str
    files: dict[str, str]
    # Kubernetes: the manifests in install order, the stream `--out -` writes.
    objects: tuple[dict[str, Any], ...] = ()
    # Secrets not written (`--secrets-as omit`), as `namespace/name: key, key`.
    omitted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Written:
    """What `write` did under `out`: every file of the render, and what changed."""

    out: Path
    paths: tuple[Path, ...]
    changed: tuple[Path, ...]
    removed: tuple[Path, ...]


def is_stdout(out: Path | str) -> bool:
    return str(out) == STDOUT


# --- the output directory ------------------------------------------------------------------------


def check_out(out: Path) -> frozenset[str]:
    """The one place `--out` is judged: the files an earlier render wrote there (none for a
    new or empty directory). A BadInput names the directory, what is wrong and the fix."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file, not a directory; name a directory to render into")
    if not out.exists():
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
            raise BadInput(f"--out {out}: {parent} is not a writable directory; choose another")
        return frozenset()
    manifest = out / MANIFEST
    if not manifest.is_file():
        if any(out.iterdir()):
            raise BadInput(
                f"--out {out}: the directory is not empty and msops did not render into it (no "
                f"{MANIFEST}); choose a new or empty directory, or empty this one"
            )
        return frozenset()
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError(files)
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInput(
            f"--out {out}: {MANIFEST} cannot be read as msops' list of the files it rendered; "
            "delete the directory and render again"
        ) from None
    if not os.access(out, os.W_OK):
        raise BadInput(f"--out {out}: the directory is not writable; choose another")
    return frozenset(f for f in files if _inside(f))


def _inside(relative: str) -> bool:
    """Only paths under the directory are ever removed, whatever a manifest says."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts


def write(rendered: Rendered, out: Path) -> Written:
    """Write a render into `out` (see `check_out`): files whose text is unchanged are left as
    they are, files an earlier render wrote and this one does not are removed."""
    earlier = check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for relative, text in sorted(rendered.files.items()):
        path = out / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    removed = [out / f for f in sorted(earlier - set(rendered.files)) if (out / f).is_file()]
    for path in removed:
        path.unlink()
        _prune(path.parent, out)
    manifest = {
        "format": MANIFEST_FORMAT,
        "renderedBy": "msops render",
        "stack": rendered.stack,
        "backend": rendered.backend,
        "files": sorted(rendered.files),
        "omittedSecrets": list(rendered.omitted),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    paths = tuple(sorted([out / f for f in rendered.files] + [out / MANIFEST]))
    return Written(out=out, paths=paths, changed=tuple(changed), removed=tuple(removed))


def _prune(directory: Path, root: Path) -> None:
    """Remove directories a removed file left empty, up to `root`."""
    while directory != root and directory.is_relative_to(root) and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def stream(rendered: Rendered) -> str:
    """The Kubernetes objects as one multi-document YAML stream, in install order."""
    if not rendered.objects:
        raise BadInput(
            f"--out {STDOUT}: stack {rendered.stack!r} runs on {rendered.backend}, whose render is "
            "a file with config files beside it, not a stream of Kubernetes objects; render into "
            "a directory with --out DIR"
        )
    return "".join(f"---\n{dump_yaml(obj)}" for obj in rendered.objects)


# --- kubernetes ----------------------------------------------------------------------------------


def _object_path(manifest: Mapping[str, Any]) -> str:
    """`kubernetes/manifests/<namespace>/<kind>-<name>.yaml`, cluster-scoped objects under
    `_cluster/`: a name no other object's presence or order can change."""
    metadata = manifest.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "") or CLUSTER_SCOPED
    kind = str(manifest.get("kind", "object")).lower()
    return f"{MANIFESTS}/{_safe(namespace)}/{kind}-{_safe(str(metadata.get('name', '')))}.yaml"


def kubernetes(graph: Graph, plan: StackPlan, *, secrets_as: SecretsAs) -> Rendered:
    """The graph's Kubernetes objects, one file each, with a kustomization listing them and
    the values of each Helm release beside them. Secrets keep their keys: as placeholders, or
    left out (`secrets_as`)."""
    from components.backends.kubernetes import gitops

    keys = gitops.secret_keys(plan)
    objects: list[dict[str, Any]] = []
    omitted: list[str] = []
    for res in sorted(_manifests(graph), key=_install_key):
        manifest = normalize(res.inputs)
        if manifest.get("kind") == SECRET_KIND:
            name = str(manifest["metadata"].get("name"))
            wanted = keys.get(name, ())
            if secrets_as == "omit":
                namespace = manifest["metadata"].get("namespace", "")
                omitted.append(f"{namespace}/{name}: {', '.join(wanted)}")
                continue
            manifest = gitops.placeholder_secret(manifest, wanted)
        objects.append(ordered(manifest))
    files = {_object_path(obj): dump_yaml(obj) for obj in objects}
    if len(files) != len(objects):
        raise OperationFailed(
            "two Kubernetes objects of one kind share a namespace and a name; nothing was "
            "written. msops names every object after its service, so this is a bug in msops: "
            "please report it with the stack file"
        )
    if files:
        files[KUSTOMIZATION] = _kustomization(files)
    for res in graph.of_type(HELM_RELEASE):
        files[f"{HELM_VALUES}/{_safe(_release_name(res))}-values.yaml"] = _release_values(res)
    leaks = [path for path, text in files.items() if SECRET in text]
    if leaks:
        raise OperationFailed(
            f"{', '.join(sorted(leaks))} would hold a masked secret value; nothing was written. "
            "Secrets are never rendered, so this is a bug in msops: please report it"
        )
    return Rendered(
        stack=graph.stack,
        backend="kubernetes",
        files=files,
        objects=tuple(objects),
        omitted=tuple(omitted),
    )


def _manifests(graph: Graph) -> list[Resource]:
    return [
        r for r in graph if r.custom and r.type.startswith("kubernetes:") and r.type != HELM_RELEASE
    ]


def _kustomization(files: Mapping[str, str]) -> str:
    base = KUSTOMIZATION.rsplit("/", 1)[0] + "/"
    resources = [path.removeprefix(base) for path in files]
    header = (
        "# Every manifest of this render, for kustomize, Argo CD and Flux (kubectl apply -k).\n"
    )
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
    return header + yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


# --- docker and swarm ----------------------------------------------------------------------------


def from_bundle(plan: StackPlan, main: str, bundle: Bundle) -> Rendered:
    """A backend's document (compose.yaml, stack.yaml) and the config files beside it."""
    header = "".join(f"# {line}\n".replace("# \n", "#\n") for line in bundle.header)
    files = {main: header + dump_yaml(bundle.document), **bundle.files}
    return Rendered(stack=plan.stack, backend=plan.backend, files=files)


def docker(plan: StackPlan, *, project_root: Path, base: Path) -> Rendered:
    """`compose.yaml`; a build context is written relative to `base`, the render directory."""
    from components.backends.docker import compose

    bundle = compose.compose(plan, project_root=project_root, base=base)
    return from_bundle(plan, compose.COMPOSE_FILE, bundle)


def swarm(plan: StackPlan) -> Rendered:
    from components.backends.swarm import stackfile

    return from_bundle(plan, stackfile.STACK_FILE, stackfile.stack_file(plan))


def render(
    graph: Graph,
    plan: StackPlan,
    *,
    base: Path,
    project_root: Path,
    secrets_as: SecretsAs = "placeholder",
) -> Rendered:
    """What the stack's backend renders: manifests from the synthesized graph (kubernetes), or
    a Compose or stack file from the plan (docker, swarm)."""
    if plan.backend == "kubernetes":
        return kubernetes(graph, plan, secrets_as=secrets_as)
    if plan.backend == "docker":
        return docker(plan, project_root=project_root, base=base)
    return swarm(plan)


# --- helpers -------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return _UNSAFE_NAME.sub("-", name).strip("-") or "unnamed"


def _object_name(res: Resource) -> str:
    metadata = res.inputs.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) and name else res.name


def _install_key(res: Resource) -> tuple[int, str, str, str]:
    kind = str(res.inputs.get("kind") or res.type.rsplit(":", 1)[-1])
    rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
    metadata = res.inputs.get("metadata")
    namespace = metadata.get("namespace", "") if isinstance(metadata, Mapping) else ""
    return rank, kind, str(namespace or ""), _object_name(res)


def _release_name(res: Resource) -> str:
    name = res.inputs.get("name")
    return name if isinstance(name, str) and name else res.name


def _release_values(res: Resource) -> str:
    """A Helm release's values, the chart, version and repository in a header: not a manifest,
    so outside the manifests' tree."""
    inputs = normalize(res.inputs)
    repo = (inputs.get("repositoryOpts") or {}).get("repo", "")
    header = [
        f"# Helm release {_release_name(res)}: chart {inputs.get('chart', '')} "
        f"version {inputs.get('version', '')}",
    ]
    if repo:
        header.append(f"# repository: {repo}")
    if inputs.get("namespace"):
        header.append(f"# namespace: {inputs['namespace']}")
    values = inputs.get("values") or {}
    body = dump_yaml(ordered(values)) if values else "{}\n"
    return "\n".join(header) + "\n" + body
