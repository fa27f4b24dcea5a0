"""Write a synthesized stack as reviewable files: Kubernetes manifests, config files, monitoring."""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from msops.synth import SECRET, Graph, Resource, normalize

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SWARM_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SWARM_SERVICE = "docker:index/service:Service"
DASHBOARD_LABEL = "grafana_dashboard"

# Helm's install order (pkg/releaseutil/kind_sorter.go), so that `kubectl apply -f` on the
# numbered files in order creates what others refer to first; unknown kinds (custom
# resources) go last, after the CRDs a chart may have brought.
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


def render(graph: Graph, out_dir: Path) -> list[Path]:
    """Write the graph's Kubernetes manifests, helm values, config artifacts and monitoring.

    Files written, in order:
    - `<NN>-<kind>-<name>.yaml`: one Kubernetes object each, numbered in install order;
    - `helm-release-<name>.yaml`: the values of each Helm release, the chart in a header;
    - `artifacts/<resource>-<basename>`: files the stack uploads into containers or Swarm configs;
    - `monitoring/alert-rules.yml` and `monitoring/dashboard-<service>.json`.

    Secrets stay as the synth masked them ("[secret]"); nothing here can decrypt them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    manifests = [r for r in graph if r.custom and r.type.startswith("kubernetes:")]
    objects = [r for r in manifests if r.type != HELM_RELEASE]
    objects.sort(key=_install_key)
    width = max(2, len(str(len(objects))))
    for number, res in enumerate(objects, start=1):
        manifest = ordered(normalize(res.inputs))
        kind = str(manifest.get("kind") or res.type.rsplit(":", 1)[-1]).lower()
        path = out_dir / f"{number:0{width}d}-{kind}-{_safe(_object_name(res))}.yaml"
        written.append(_write(path, dump_yaml(manifest)))

    for res in (r for r in manifests if r.type == HELM_RELEASE):
        written.append(
            _write(out_dir / f"helm-release-{_safe(_release_name(res))}.yaml", _release_values(res))
        )

    artifacts = _artifacts(graph)
    for file_name, content in sorted(artifacts.items()):
        written.append(_write(out_dir / "artifacts" / file_name, content))

    groups = _rule_groups(graph, artifacts.values())
    if groups:
        text = dump_yaml(ordered({"groups": groups}))
        written.append(_write(out_dir / "monitoring" / "alert-rules.yml", text))
    for service, dashboard in _dashboards(graph, artifacts.values()).items():
        text = json.dumps(dashboard, indent=2, sort_keys=True) + "\n"
        written.append(_write(out_dir / "monitoring" / f"dashboard-{_safe(service)}.json", text))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


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


def _decode_base64(data: str) -> str | None:
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(data.encode()).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
    return None


def _artifacts(graph: Graph) -> dict[str, str]:
    """`<resource name>-<basename>` → text of every file a docker or swarm resource ships."""
    found: dict[str, str] = {}
    for res in graph:
        if not res.type.startswith("docker:"):
            continue
        uploads = [
            u for u in res.inputs.get("uploads") or [] if isinstance(u, Mapping) and u.get("file")
        ]
        names = _short_names([str(u["file"]) for u in uploads])
        for upload in uploads:
            content = upload.get("content")
            if content is None and isinstance(upload.get("contentBase64"), str):
                content = _decode_base64(upload["contentBase64"])
            # A masked secret is not the file; writing "[secret]" under its name would mislead.
            if isinstance(content, str) and content != SECRET:
                found[f"{res.name}-{names[upload['file']]}"] = content
    file_names = _swarm_config_files(graph)
    for res in graph.of_type(SWARM_CONFIG):
        data = res.inputs.get("data")
        if not isinstance(data, str) or data == SECRET:
            continue
        content = _decode_base64(data)
        if content is None:
            continue
        basename = file_names.get(res.name) or file_names.get(str(res.inputs.get("name")))
        found[f"{res.name}-{basename or res.inputs.get('name') or 'config'}"] = content
    return found


def _short_names(paths: list[str]) -> dict[str, str]:
    """Each path's shortest tail of components unique among `paths`, joined with '-'.

    Grafana, for one, reads two `msops.yaml` (datasources/ and dashboards/) in one container.
    """
    parts = {p: [c for c in p.split("/") if c] or [p] for p in paths}
    names: dict[str, str] = {}
    for path, components in parts.items():
        for depth in range(1, len(components) + 1):
            tail = components[-depth:]
            clashes = [o for o, c in parts.items() if o != path and c[-depth:] == tail]
            if not clashes or depth == len(components):
                names[path] = "-".join(tail)
                break
    return names


def _swarm_config_files(graph: Graph) -> dict[str, str]:
    """Swarm config (by resource name, config name or id) → basename it is mounted under."""
    names: dict[str, str] = {}
    for service in graph.of_type(SWARM_SERVICE):
        container = (service.inputs.get("taskSpec") or {}).get("containerSpec") or {}
        for config in container.get("configs") or []:
            if not isinstance(config, Mapping) or not config.get("fileName"):
                continue
            basename = posixpath.basename(config["fileName"])
            for key in (config.get("configName"), config.get("configId")):
                if isinstance(key, str) and key:
                    names[key] = basename
                    # The mocks give a resource the id "<name>-id".
                    names[key.removesuffix("-id")] = basename
    return names


def _parse(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _rule_groups(graph: Graph, artifacts: Iterable[str]) -> list[dict[str, Any]]:
    """Every alert rule group: PrometheusRule specs, and rules files shipped to Prometheus."""
    candidates: list[Any] = [res.inputs.get("spec") for res in graph.of_type(PROMETHEUS_RULE)]
    candidates.extend(_parse(text) for text in artifacts)
    groups: dict[str, dict[str, Any]] = {}
    for candidate in candidates:
        if not isinstance(candidate, Mapping) or not isinstance(candidate.get("groups"), list):
            continue
        for group in candidate["groups"]:
            if isinstance(group, Mapping) and isinstance(group.get("name"), str):
                groups.setdefault(group["name"], normalize(dict(group)))
    return [groups[name] for name in sorted(groups)]


def _dashboards(graph: Graph, artifacts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Service name → Grafana dashboard, from labelled ConfigMaps and shipped dashboard files."""
    texts: list[str] = []
    for res in graph.of_type(CONFIG_MAP):
        labels = (res.inputs.get("metadata") or {}).get("labels") or {}
        if DASHBOARD_LABEL in labels:
            texts.extend(v for v in (res.inputs.get("data") or {}).values() if isinstance(v, str))
    texts.extend(artifacts)
    found: dict[str, dict[str, Any]] = {}
    for text in texts:
        try:
            board = json.loads(text)
        except ValueError:
            continue
        if not isinstance(board, dict) or not isinstance(board.get("panels"), list):
            continue
        service = _dashboard_service(board)
        if service:
            found.setdefault(service, normalize(board))
    return dict(sorted(found.items()))


def _dashboard_service(board: Mapping[str, Any]) -> str | None:
    """The service a dashboard is for: its tag other than `msops`, else its uid or title."""
    tags = [t for t in board.get("tags") or [] if isinstance(t, str) and t != "msops"]
    if tags:
        return tags[0]
    uid = board.get("uid")
    if isinstance(uid, str) and uid.startswith("msops-"):
        return uid.removeprefix("msops-")
    title = board.get("title")
    return title if isinstance(title, str) and title else None
