"""The swarm backend as a stack file: plan → `stack.yaml` for `docker stack deploy`, and the
config files beside it.

Every service is described by the very function `msops up` registers it from (translate.py),
and only re-spelt here in the words of the version-3 Compose format that `docker stack
deploy` reads, so the two cannot drift apart: an argument this module does not know stops the
render until someone maps it. Configs are files beside the stack file, under a name carrying
their content's hash as msops names them (a Swarm config cannot change); secrets are external,
created by hand before the deploy, so a value is never written.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from components.backends.bundle import Bundle, label_map, literal, mounted_file
from components.backends.common import Args, monitoring_of
from components.backends.swarm import translate
from components.plan import model

STACK_FILE = "stack.yaml"
# 3.8: update_config.order and rollback_config (3.7), long tmpfs volumes with a size (3.6),
# names of configs, secrets and volumes (3.5); Docker 19.03 and later deploy it.
VERSION = "3.8"
NETWORK = "msops"
# Arguments of a service `msops up` sets that a stack file has no field for, and why.
NOT_IN_STACK = {
    # Pulumi's own wait for convergence; `docker stack deploy --detach=false` waits instead.
    "converge_config": "docker stack deploy --detach=false",
    # The stack name gives it: `docker stack deploy -c stack.yaml <prefix>` names the service
    # `<prefix>_<key>`, which is what msops names it.
    "name": "the stack name",
}


def secret_name(plan: model.StackPlan, spec: Args) -> str:
    """The external secret's name on the swarm: `<stack prefix>_<what msops calls it>`."""
    return f"{plan.prefix}_{spec.name}"


# --- provider arguments in the stack file's words ------------------------------------------------


def _resources(value: Mapping[str, Any]) -> dict[str, Any]:
    def one(block: Mapping[str, Any]) -> dict[str, Any]:
        return {"cpus": f"{block['nano_cpus'] / 1e9:g}", "memory": str(block["memory_bytes"])}

    out = {"limits": one(value["limits"])}
    if "reservation" in value:
        out["reservations"] = one(value["reservation"])
    return out


def _policy(block: Mapping[str, Any]) -> dict[str, Any]:
    """An update or rollback config; the ratio is a number in a stack file, a string in
    pulumi-docker."""
    return {**block, "max_failure_ratio": float(block["max_failure_ratio"])}


def _mount(mount: Mapping[str, Any]) -> dict[str, Any]:
    if mount["type"] == "tmpfs":
        size = mount.get("tmpfs_options", {}).get("size_bytes")
        return {"type": "tmpfs", "target": mount["target"], "tmpfs": {"size": size}}
    return {"type": "volume", "source": mount["source"], "target": mount["target"]}


def _secret(mount: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "source": mount["secret_id"],
        "target": mount["file_name"],
        "uid": mount["file_uid"],
        "gid": mount["file_gid"],
        "mode": mount["file_mode"],
    }


def _container(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A task's container spec as service fields."""
    out: dict[str, Any] = {}
    renamed = {"cap_drops": "cap_drop", "cap_adds": "cap_add", "env": "environment"}
    for key, value in spec.items():
        if value is None:
            continue
        if key in ("image", "user", "read_only", "stop_grace_period", "cap_drops", "cap_adds"):
            out[renamed.get(key, key)] = value
        elif key == "env":
            out["environment"] = dict(value)
        elif key == "args":
            out["command"] = list(value)
        elif key == "labels":
            out["labels"] = label_map(value)
        elif key == "healthcheck":
            out["healthcheck"] = {**value, "test": value["tests"]}
            del out["healthcheck"]["tests"]
        elif key == "mounts":
            out["volumes"] = [_mount(m) for m in value]
        elif key == "secrets":
            out["secrets"] = [_secret(m) for m in value]
        elif key == "configs":
            out["configs"] = [{"source": c["config_id"], "target": c["file_name"]} for c in value]
        else:
            raise _unmapped(f"task_spec.container_spec.{key}")
    return out


def _unmapped(key: str) -> ValueError:
    return ValueError(
        f"the swarm translator sets {key!r}, which components/backends/swarm/stackfile.py does "
        "not map to a stack file; map it there (or list it in NOT_IN_STACK with the reason)"
    )


def _task(task: Mapping[str, Any], deploy: dict[str, Any]) -> dict[str, Any]:
    """The task spec's container as service fields; its placement and limits go to `deploy`."""
    out = _container(task["container_spec"])
    out["networks"] = {
        n["name"]: {"aliases": list(n["aliases"])} for n in task["networks_advanceds"]
    }
    deploy["resources"] = _resources(task["resources"])
    deploy["restart_policy"] = dict(task["restart_policy"])
    constraints = task.get("placement", {}).get("constraints")
    if constraints:
        deploy["placement"] = {"constraints": list(constraints)}
    return out


def _endpoint(endpoint: Mapping[str, Any], deploy: dict[str, Any]) -> list[dict[str, Any]]:
    deploy["endpoint_mode"] = endpoint["mode"]
    return [
        {
            "target": p["target_port"],
            "published": p["published_port"],
            "protocol": p["protocol"],
            "mode": p["publish_mode"],
        }
        for p in endpoint.get("ports") or []
    ]


def service(spec: Args) -> dict[str, Any]:
    """A Swarm service `msops up` would create, as a stack file service."""
    args = spec.args
    deploy: dict[str, Any] = {"mode": "replicated"}
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key == "task_spec":
            out.update(_task(value, deploy))
        elif key == "mode":
            deploy["replicas"] = value["replicated"]["replicas"]
        elif key == "labels":
            deploy["labels"] = label_map(value)
        elif key in ("update_config", "rollback_config"):
            deploy[key] = _policy(value)
        elif key == "endpoint_spec":
            ports = _endpoint(value, deploy)
            if ports:
                out["ports"] = ports
        elif key not in NOT_IN_STACK:
            raise _unmapped(key)
    out["deploy"] = deploy
    return out


# --- the stack ----------------------------------------------------------------------------------


class _Stack:
    """The document as it is filled in, with the files beside it."""

    def __init__(self, plan: model.StackPlan) -> None:
        self.plan = plan
        net = translate.network(plan, component="stack").args
        self.doc: dict[str, Any] = {
            "version": VERSION,
            "services": {},
            "networks": {
                NETWORK: {
                    "driver": net["driver"],
                    "attachable": net["attachable"],
                    "labels": label_map(net["labels"]),
                }
            },
            "volumes": {},
            "configs": {},
            "secrets": {},
        }
        self.files: dict[str, str] = {}

    def secret(self, spec: Args) -> str:
        """An external secret, by its key in the file."""
        self.doc["secrets"][spec.name] = {"external": True, "name": secret_name(self.plan, spec)}
        return spec.name

    def volume(self, spec: Args) -> str:
        args = spec.args
        self.doc["volumes"][spec.name] = {
            "name": args["name"],
            "driver": args["driver"],
            "labels": label_map(args["labels"]),
        }
        return spec.name

    def configs(self, folder: str, files: list[tuple[Args, str]]) -> list[dict[str, Any]]:
        """Each config a file beside the stack file, mounted where msops mounts it."""
        mounts = []
        for spec, path in files:
            local = f"{folder}/{mounted_file(path)}"
            self.files[local] = config_text(spec)
            self.doc["configs"][spec.name] = {"name": spec.args["name"], "file": f"./{local}"}
            mounts.append(translate.config_mount(spec.name, spec.args["name"], path))
        return mounts

    def add(self, key: str, spec: Args) -> None:
        self.doc["services"][key] = service(spec)

    def bundle(self) -> Bundle:
        doc = {k: v for k, v in self.doc.items() if v != {} or k == "services"}
        return Bundle(document=literal(doc), header=header(self.plan), files=self.files)


def config_text(spec: Args) -> str:
    """A ServiceConfig's text (msops hands the provider base64)."""
    return base64.b64decode(spec.args["data"]).decode()


def _workloads(stack: _Stack) -> None:
    plan = stack.plan
    for workload in plan.workloads:
        mounts = []
        for var in workload.secret_vars:
            spec = translate.service_secret(plan, workload, var, data=None)
            key = stack.secret(spec)
            mounts.append(translate.service_secret_mount(workload, var, key, key))
        # The same environment as `msops up` gives the service: secrets only as files.
        env = translate.service_env(workload)
        spec = translate.service(plan, workload, network_id=NETWORK, env=env, secrets=mounts)
        stack.add(workload.name, spec)


def _databases(stack: _Stack) -> None:
    plan = stack.plan
    for db in plan.databases:
        key = stack.secret(translate.database_secret(plan, db, data=None))
        volume = stack.volume(translate.database_volume(plan, db))
        spec = translate.database(
            plan,
            db,
            network_id=NETWORK,
            volume_name=volume,
            secrets=[translate.database_secret_mount(key, key)],
        )
        stack.add(db.name, spec)


def _monitoring(stack: _Stack) -> None:
    plan = stack.plan
    mon = monitoring_of(plan)
    volume = stack.volume(translate.prometheus_volume(plan, component="monitoring"))
    configs = stack.configs(
        "prometheus", translate.prometheus_configs(plan, component="monitoring")
    )
    spec = translate.prometheus(
        plan, component="monitoring", network_id=NETWORK, configs=configs, volume_name=volume
    )
    stack.add(mon.prometheus.alias, spec)
    if mon.grafana is not None:
        key = stack.secret(translate.grafana_admin_secret(plan, component="monitoring", data=None))
        configs = stack.configs("grafana", translate.grafana_configs(plan, component="monitoring"))
        spec = translate.grafana(
            plan,
            component="monitoring",
            network_id=NETWORK,
            configs=configs,
            admin_secret_id=key,
            admin_secret_name=key,
        )
        stack.add(mon.grafana.alias, spec)


def stack_file(plan: model.StackPlan) -> Bundle:
    """The stack as `stack.yaml` and its config files."""
    stack = _Stack(plan)
    _databases(stack)
    _workloads(stack)
    if plan.monitoring is not None:
        _monitoring(stack)
    return stack.bundle()


def external_secrets(plan: model.StackPlan) -> dict[str, str]:
    """Every secret to create before the deploy, by name, with what it holds."""
    found: dict[str, str] = {}
    for db in plan.databases:
        spec = translate.database_secret(plan, db, data=None)
        found[secret_name(plan, spec)] = f"password of database {db.name}"
    for workload in plan.workloads:
        for secret in workload.secret_env:
            spec = translate.service_secret(plan, workload, secret.var, data=None)
            what = (
                f"msops:secrets.{secret.ref}"
                if secret.kind == "secret"
                else f"the DATABASE_URL of {secret.ref}"
            )
            found[secret_name(plan, spec)] = f"{workload.name}'s {secret.var}: {what}"
    if plan.monitoring is not None and plan.monitoring.grafana is not None:
        spec = translate.grafana_admin_secret(plan, component="monitoring", data=None)
        found[secret_name(plan, spec)] = "Grafana's admin password"
    return dict(sorted(found.items()))


def header(plan: model.StackPlan) -> tuple[str, ...]:
    lines = [
        f"The swarm stack {plan.stack!r} as a stack file, rendered by `msops render "
        f"{plan.stack}`: render again rather than edit it.",
        f"Deploy it from this folder, under this stack name (Prometheus finds the tasks at "
        f"tasks.{plan.prefix}_<service>):",
        f"  docker stack deploy --detach=false -c {STACK_FILE} {plan.prefix}",
        "It leaves out what only msops up has: release history, rollback, --atomic checks.",
        "See docs/compose.md.",
    ]
    for db in plan.databases:
        lines.append(
            f"Postgres {db.name} runs on the node labelled {db.placement_label}=true: "
            f"docker node update --label-add {db.placement_label}=true <node>"
        )
    needed = external_secrets(plan)
    if needed:
        lines.append("Create these secrets first (values never rendered):")
        lines += [
            f'  printf %s "$VALUE" | docker secret create {n} -  # {w}' for n, w in needed.items()
        ]
    return tuple(lines)
