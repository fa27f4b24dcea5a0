"""The docker backend as a Compose file: plan → `compose.yaml` and the config files beside it.

Every container is described by the very function `msops up` registers it from (translate.py),
and only re-spelt here in Compose's words, so the two cannot drift apart: an argument this
module does not know stops the render (`service`) until someone maps it. What Compose has no
word for is listed in `NOT_IN_COMPOSE` with the reason. Secrets are `${VAR}` references that
Compose fills in from the environment or a `.env` file; a value is never written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.backends.bundle import Bundle, Interpolated, label_map, literal, mounted_file
from components.backends.common import Args, migration_name, monitoring_of
from components.backends.docker import translate
from components.plan import model
from components.vocabulary import LABEL_REPLICA

COMPOSE_FILE = "compose.yaml"
# The key of the stack network in the file; its name on the engine is the plan's.
NETWORK = "msops"
# Arguments of a container `msops up` sets that Compose has no field for, and why that is fine.
NOT_IN_COMPOSE = {
    # `msops up` waits for each container to become healthy; here the replicas wait for their
    # database through `depends_on: condition: service_healthy`, and the rest start at once.
    "wait": "depends_on",
    "wait_timeout": "depends_on",
    # A one-off migration: Compose runs it once per `up` and the replicas wait for it through
    # `depends_on: condition: service_completed_successfully`; it is never restarted.
    "must_run": "restart: no",
    "attach": "depends_on",
    "logs": "docker-compose logs",
    "rm": "kept, as msops keeps it",
}


def variable(*parts: str) -> str:
    """The environment variable Compose reads a secret from: `MSOPS_<PARTS>`, upper case."""
    return "MSOPS_" + "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).upper() for p in parts)


def required(var: str) -> Interpolated:
    """A reference Compose refuses to start without (`${VAR:?...}`), naming what to set."""
    return Interpolated(f"${{{var}:?set {var}, see the header of {COMPOSE_FILE}}}")


def database_password(db: model.Database) -> str:
    return variable("DB", db.name, "PASSWORD")


def grafana_password() -> str:
    return variable("GRAFANA", "ADMIN", "PASSWORD")


def secret_env(plan: model.StackPlan, workload: model.Workload) -> dict[str, Interpolated]:
    """The workload's secret variables as references; a database msops runs gets the URL
    `StackSecrets.database_url` builds, around a reference to its password."""
    env: dict[str, Interpolated] = {}
    for secret in workload.secret_env:
        db = plan.database(secret.ref) if secret.kind == "database-url" else None
        if secret.kind == "secret":
            env[secret.var] = required(variable("SECRET", secret.ref))
        elif db is None:
            env[secret.var] = required(variable("DB", secret.ref, "URL"))
        else:
            password = required(database_password(db))
            env[secret.var] = Interpolated(
                f"postgresql://{literal(db.user)}:{password}@{db.host}:{db.port}/{db.name}"
            )
    return env


def variables(plan: model.StackPlan) -> dict[str, str]:
    """Every variable the file needs, with what it holds."""
    found: dict[str, str] = {}
    for db in plan.databases:
        how = "msops up generates one" if db.generated_password else "msops:databases password"
        found[database_password(db)] = f"password of database {db.name} ({how})"
    for workload in plan.workloads:
        for secret in workload.secret_env:
            if secret.kind == "secret":
                found[variable("SECRET", secret.ref)] = f"msops:secrets.{secret.ref}"
            elif plan.database(secret.ref) is None:
                found[variable("DB", secret.ref, "URL")] = (
                    f"msops:databases.{secret.ref}.externalUrl"
                )
    if plan.monitoring is not None and plan.monitoring.grafana is not None:
        found[grafana_password()] = "Grafana's admin password (msops up generates one)"
    return dict(sorted(found.items()))


# --- provider arguments in Compose's words ------------------------------------------------------


def _healthcheck(check: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "test": list(check["tests"]),
        "interval": check["interval"],
        "timeout": check["timeout"],
        "retries": check["retries"],
        "start_period": check["start_period"],
    }


def _field(key: str, value: Any) -> dict[str, Any]:
    """One container argument as Compose fields; uploads and volumes are `_mounts`."""
    match key:
        case "image" | "user" | "read_only" | "restart" | "cpu_shares" | "command":
            return {key: value}
        case "envs":
            return {"environment": dict(value)}
        case "labels":
            return {"labels": label_map(value)}
        case "networks_advanced":
            return {"networks": {n["name"]: {"aliases": list(n.get("aliases", []))} for n in value}}
        case "healthcheck":
            return {"healthcheck": _healthcheck(value)}
        case "memory":
            return {"mem_limit": f"{value}m"}
        case "memory_reservation":
            return {"mem_reservation": f"{value}m"}
        case "cpus":
            return {"cpus": float(value)}
        case "tmpfs":
            return {"tmpfs": [f"{path}:{opts}" for path, opts in value.items()]}
        case "capabilities":
            adds = {"cap_add": list(value["adds"])} if value.get("adds") else {}
            return {"cap_drop": list(value.get("drops", [])), **adds}
        case "security_opts":
            return {"security_opt": list(value)}
        case "destroy_grace_seconds":
            return {"stop_grace_period": f"{value}s"}
        case "ports":
            return {"ports": [f"{p['ip']}:{p['external']}:{p['internal']}" for p in value]}
    if key in NOT_IN_COMPOSE:
        return {}
    raise ValueError(
        f"the docker translator sets {key!r}, which components/backends/docker/compose.py does "
        "not map to Compose; map it there (or list it in NOT_IN_COMPOSE with the reason)"
    )


def _mounts(args: Mapping[str, Any], folder: str, files: dict[str, str]) -> list[str]:
    """Named volumes, and each uploaded file as a read-only bind mount of a file beside the
    compose file, which is written into `files`."""
    mounts = [f"{v['volume_name']}:{v['container_path']}" for v in args.get("volumes") or []]
    for upload in args.get("uploads") or []:
        local = f"{folder}/{mounted_file(upload['file'])}"
        files[local] = upload["content"]
        mounts.append(f"./{local}:{upload['file']}:ro")
    return mounts


def service(spec: Args, folder: str, files: dict[str, str]) -> dict[str, Any]:
    """A container `msops up` would create, as a Compose service; its files go into `files`
    under `folder`."""
    out: dict[str, Any] = {}
    for key, value in spec.args.items():
        if value is not None and key not in ("uploads", "volumes"):
            out.update(_field(key, value))
    mounts = _mounts(spec.args, folder, files)
    if mounts:
        out["volumes"] = mounts
    return out


def volume(spec: Args) -> dict[str, Any]:
    return {"name": spec.args["name"], "labels": label_map(spec.args.get("labels"))}


# --- the stack ----------------------------------------------------------------------------------


def replicas(
    plan: model.StackPlan, workload: model.Workload, *, project_root: Path, base: Path
) -> dict[str, Any]:
    """The replicas as one service of `deploy.replicas` containers. Compose numbers none of
    them, so there is no REPLICA_ID and no replica label; each answers with its hostname."""
    spec = translate.replica(
        plan,
        workload,
        1,
        component=workload.name,
        image=workload.image,
        image_id=None,
        network_name=NETWORK,
        envs={**dict(workload.env), **secret_env(plan, workload)},
    )
    out = service(spec, workload.name, {})
    out["labels"].pop(LABEL_REPLICA, None)
    out["deploy"] = {"replicas": workload.replicas}
    after: dict[str, Any] = {}
    if workload.build is not None:
        context = translate.built_image(workload.name, workload, project_root).args["build"]
        out["build"] = {"context": Path(os.path.relpath(context["context"], base)).as_posix()}
    after.update(_after_database(plan, workload))
    if workload.migration is not None:
        after[migration_name(workload)] = {"condition": "service_completed_successfully"}
    if after:
        out["depends_on"] = after
    return out


def migration(plan: model.StackPlan, workload: model.Workload) -> dict[str, Any]:
    """The service's migration, run once to completion before its replicas start, with its
    secrets as `${VAR}` references like theirs."""
    spec = translate.migration(
        plan,
        workload,
        name=migration_name(workload),
        image=workload.image,
        image_id=None,
        network=NETWORK,
        envs={**dict(workload.env), **secret_env(plan, workload)},
        uploads=None,
    )
    out = service(spec, migration_name(workload), {})
    if after := _after_database(plan, workload):
        out["depends_on"] = after
    return out


def _after_database(plan: model.StackPlan, workload: model.Workload) -> dict[str, Any]:
    """`depends_on` on the workload's database, if msops runs one: started once healthy."""
    db = plan.database(workload.database) if workload.database else None
    return {db.name: {"condition": "service_healthy"}} if db is not None else {}


def _databases(plan: model.StackPlan, doc: dict[str, Any], files: dict[str, str]) -> None:
    for db in plan.databases:
        data = translate.database_volume(plan, db, component=db.name)
        doc["volumes"][data.name] = volume(data)
        spec = translate.database(
            plan,
            db,
            component=db.name,
            image=db.image,
            network_name=NETWORK,
            volume_name=data.name,
            envs=translate.database_env(db, required(database_password(db))),
        )
        doc["services"][db.name] = service(spec, db.name, files)


def _monitoring(plan: model.StackPlan, doc: dict[str, Any], files: dict[str, str]) -> None:
    mon = monitoring_of(plan)
    data = translate.prometheus_volume(plan, component="monitoring")
    doc["volumes"][data.name] = volume(data)
    spec = translate.prometheus_server(
        plan,
        component="monitoring",
        image=mon.prometheus.image,
        network_name=NETWORK,
        volume_name=data.name,
    )
    doc["services"][mon.prometheus.alias] = service(spec, "prometheus", files)
    if mon.grafana is not None:
        spec = translate.grafana(
            plan,
            component="monitoring",
            image=mon.grafana.image,
            network_name=NETWORK,
            envs=translate.grafana_settings(plan, required(grafana_password())),
            uploads=translate.grafana_uploads(plan),
        )
        doc["services"][mon.grafana.alias] = service(spec, "grafana", files)


def compose(plan: model.StackPlan, *, project_root: Path, base: Path) -> Bundle:
    """The stack as `compose.yaml` and its config files. `base` is the directory the file is
    written to, which a build context is given relative to."""
    net = translate.network(plan).args
    doc: dict[str, Any] = {
        "services": {},
        "networks": {
            NETWORK: {
                "name": net["name"],
                "driver": net["driver"],
                "labels": label_map(net["labels"]),
            }
        },
        "volumes": {},
    }
    files: dict[str, str] = {}
    _databases(plan, doc, files)
    for workload in plan.workloads:
        if workload.migration is not None:
            doc["services"][migration_name(workload)] = migration(plan, workload)
        doc["services"][workload.name] = replicas(
            plan, workload, project_root=project_root, base=base
        )
        if workload.lb is not None:
            spec = translate.load_balancer(
                plan,
                workload,
                component=workload.name,
                image=workload.lb.image,
                network_name=NETWORK,
            )
            doc["services"][workload.lb.alias] = service(spec, workload.lb.alias, files)
    if plan.monitoring is not None:
        _monitoring(plan, doc, files)
    if not doc["volumes"]:
        del doc["volumes"]
    return Bundle(document=literal(doc), header=header(plan), files=files)


def header(plan: model.StackPlan) -> tuple[str, ...]:
    project = f"{plan.project}-{plan.prefix}"
    lines = [
        f"The docker stack {plan.stack!r} as a Compose file, rendered by `msops render "
        f"{plan.stack}`: render again rather than edit it.",
        f"Run it from this folder: docker-compose -p {project} up -d"
        f"  (Compose v2: docker compose -p {project} up -d)",
        "It leaves out what only msops up has: release history, rollback, --atomic checks,",
        "numbered replicas (REPLICA_ID). See docs/compose.md.",
    ]
    needed = variables(plan)
    if needed:
        lines.append(
            "Set these first, in the environment or a .env file here (never rendered, never "
            "committed):"
        )
        lines += [f"  {var}: {what}" for var, what in needed.items()]
    return tuple(lines)
