"""The docker backend as a Compose file: the plan in, compose.yaml and its files out, no Pulumi."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from components import plan as plans
from components import spec
from components.backends.bundle import Interpolated, literal, mounted_file
from components.backends.common import Args
from components.backends.docker import compose, translate

ROOT = Path(__file__).resolve().parents[3]
WEB = {"image": "msops/demo:1.0.0", "replicas": 3, "port": 8080, "lb": {"port": 8000}}
MONITORING = {"enabled": True, "grafana": True}


def plan_of(services: dict[str, Any] | None = None, **sections: Any) -> plans.StackPlan:
    raw: dict[str, Any] = {"services": services or {"web": WEB}}
    raw.update(sections)
    return plans.build(spec.load(raw, "dev"), stack="dev")


def full_plan() -> plans.StackPlan:
    return plan_of(
        {"web": {**WEB, "database": "main", "secretEnv": {"API_TOKEN": "api"}}},
        databases={"main": {"version": "16.4"}},
        secrets={"api": "tok-Hx73PqN0aVe5"},
        monitoring=MONITORING,
    )


def render(plan: plans.StackPlan, base: Path = ROOT / "render" / "dev") -> Any:
    return compose.compose(plan, project_root=ROOT, base=base)


def test_replicas_are_one_service_of_deploy_replicas() -> None:
    web = render(plan_of()).document["services"]["web"]
    assert web["deploy"] == {"replicas": 3}, web.get("deploy")
    assert web["image"] == "msops/demo:1.0.0", web["image"]


def test_replicas_get_no_replica_number() -> None:
    web = render(plan_of()).document["services"]["web"]
    assert "REPLICA_ID" not in web["environment"], web["environment"]
    assert "msops.replica" not in web["labels"], web["labels"]


def test_replicas_carry_what_msops_up_gives_them() -> None:
    plan = plan_of()
    workload = plan.workload("web")
    web = render(plan).document["services"]["web"]
    args = translate.replica(
        plan, workload, 1, component="c", image="i", image_id=None, network_name="n", envs={}
    ).args
    assert web["healthcheck"]["test"] == args["healthcheck"]["tests"], "readiness check"
    assert web["user"] == args["user"] and web["read_only"] is True, web
    assert web["tmpfs"] == ["/tmp:" + translate.TMPFS["/tmp"]], web["tmpfs"]
    assert web["cap_drop"] == ["ALL"] and web["security_opt"] == translate.NO_NEW_PRIVILEGES
    assert web["networks"] == {compose.NETWORK: {"aliases": ["web"]}}, web["networks"]
    assert web["mem_limit"] == f"{args['memory']}m" and web["cpus"] == float(args["cpus"])
    assert web["stop_grace_period"] == f"{workload.stop_grace}s", web["stop_grace_period"]


def test_the_lb_publishes_its_port_and_mounts_its_conf() -> None:
    plan = plan_of()
    bundle = render(plan)
    lb = bundle.document["services"]["web-lb"]
    assert lb["ports"] == ["127.0.0.1:8000:8080"], lb["ports"]
    assert lb["volumes"] == ["./web-lb/nginx.conf:/etc/nginx/nginx.conf:ro"], lb["volumes"]
    assert bundle.files["web-lb/nginx.conf"] == translate.lb_conf(plan.workload("web"))


def test_config_files_name_no_container() -> None:
    """The LB and Prometheus find replicas by the service's alias, so no mock or auto-name
    (`<name>-<7 hex>`) can be in any file."""
    files = render(full_plan()).files
    suspects = {p: re.findall(r"\b[a-z]+-[0-9]+-[0-9a-f]{7}\b", t) for p, t in files.items()}
    assert all(not found for found in suspects.values()), suspects


def test_monitoring_files_are_written_once_each() -> None:
    plan = full_plan()
    files = render(plan).files
    assert files["prometheus/prometheus.yml"] == translate.prometheus_config(plan)
    assert sorted(p for p in files if p.endswith(".json")) == ["grafana/dashboards/web.json"]
    assert "grafana/provisioning/datasources/msops.yaml" in files, sorted(files)
    assert "grafana/provisioning/dashboards/msops.yaml" in files, sorted(files)


def test_every_mounted_file_is_in_the_bundle() -> None:
    bundle = render(full_plan())
    for name, svc in bundle.document["services"].items():
        for mount in svc.get("volumes", []):
            if mount.startswith("./"):
                local = mount.split(":", 1)[0].removeprefix("./")
                assert local in bundle.files, f"services.{name}: {mount}"


def test_secrets_are_references_never_values() -> None:
    bundle = render(full_plan())
    env = bundle.document["services"]["web"]["environment"]
    assert env["API_TOKEN"].startswith("${MSOPS_SECRET_API:?"), env["API_TOKEN"]
    assert "${MSOPS_DB_MAIN_PASSWORD:?" in env["DATABASE_URL"], env["DATABASE_URL"]
    assert env["DATABASE_URL"].startswith("postgresql://app:"), env["DATABASE_URL"]
    assert "tok-Hx73PqN0aVe5" not in repr(bundle), "msops:secrets.api written in clear"


def test_postgres_and_grafana_read_their_passwords_from_variables() -> None:
    services = render(full_plan()).document["services"]
    assert services["main"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${MSOPS_DB_MAIN_PASSWORD:?"
    )
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${MSOPS_GRAFANA_ADMIN_PASSWORD:?"
    )


def test_the_header_lists_every_variable_to_set() -> None:
    header = "\n".join(render(full_plan()).header)
    for var in ("MSOPS_DB_MAIN_PASSWORD", "MSOPS_SECRET_API", "MSOPS_GRAFANA_ADMIN_PASSWORD"):
        assert var in header, f"{var} missing from the header"


def test_an_external_database_url_is_a_variable() -> None:
    plan = plan_of(
        {"web": {**WEB, "database": "ext"}},
        databases={"ext": {"externalUrl": "postgresql://u:p@db.example:5432/x"}},
    )
    bundle = render(plan)
    env = bundle.document["services"]["web"]["environment"]
    assert env["DATABASE_URL"].startswith("${MSOPS_DB_EXT_URL:?"), env["DATABASE_URL"]
    assert "db.example" not in repr(bundle), "msops:databases.ext.externalUrl written in clear"


def test_replicas_wait_for_their_database() -> None:
    web = render(full_plan()).document["services"]["web"]
    assert web["depends_on"] == {"main": {"condition": "service_healthy"}}, web["depends_on"]


def test_volumes_and_network_keep_msops_names() -> None:
    plan = full_plan()
    doc = render(plan).document
    assert doc["networks"][compose.NETWORK]["name"] == plan.network_name
    names = {v["name"] for v in doc["volumes"].values()}
    assert plan.databases[0].volume_name in names, names
    assert plan.monitoring is not None and plan.monitoring.prometheus.volume_name in names, names


def test_a_build_context_is_relative_to_the_render_directory(tmp_path: Path) -> None:
    plan = plan_of({"web": {**WEB, "build": "app"}})
    base = tmp_path / "out"
    base.mkdir()
    web = render(plan, base).document["services"]["web"]
    context = base / web["build"]["context"]
    assert (context / "Dockerfile").is_file(), web["build"]


def test_a_literal_dollar_is_escaped_and_a_reference_is_not() -> None:
    plan = plan_of({"web": {**WEB, "env": {"PRICE": "5$"}}})
    env = render(plan).document["services"]["web"]["environment"]
    assert env["PRICE"] == "5$$", env["PRICE"]
    assert literal({"a": Interpolated("${X}"), "b": "$Y"}) == {"a": "${X}", "b": "$$Y"}


def test_an_argument_compose_does_not_map_stops_the_render() -> None:
    with pytest.raises(ValueError, match=r"'gpus'.*compose\.py"):
        compose.service(Args("x", {"image": "i", "gpus": "all"}), "x", {})


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("/etc/nginx/nginx.conf", "nginx.conf"),
        ("/etc/prometheus/rules/msops.rules.yml", "rules/msops.rules.yml"),
        ("/etc/grafana/provisioning/datasources/msops.yaml", "provisioning/datasources/msops.yaml"),
        ("/config.yml", "config.yml"),
    ],
)
def test_mounted_files_keep_their_path_below_the_programs_folder(path: str, local: str) -> None:
    assert mounted_file(path) == local
