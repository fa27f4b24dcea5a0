"""The stack config model: every committed stack validates; every kind of mistake is named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import spec
from msops import synth
from tests.graphs import stack_values

STACKS = ("dev", "staging", "prod")
DIGEST = "sha256:" + "a" * 64


def raw(stack: str) -> dict[str, Any]:
    return spec.raw_config(stack_values(stack))


def minimal(**service: Any) -> dict[str, Any]:
    return {"services": {"web": {"image": "ghcr.io/acme/web:1.2.3", **service}}}


def problems_of(config: dict[str, Any]) -> list[str]:
    with pytest.raises(spec.ConfigError) as info:
        spec.load(config, "test")
    return info.value.problems


def only_problem(config: dict[str, Any]) -> str:
    problems = problems_of(config)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stack_validates(stack: str) -> None:
    config = spec.load(raw(stack), stack)
    assert config.services, f"stack {stack} has no services"


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stack_pins_every_image(stack: str) -> None:
    config = spec.load(raw(stack), stack)
    images = [s.image for s in config.services.values()]
    assert all(":" in i.rsplit("/", 1)[-1] or "@" in i for i in images), images


def test_defaults_are_safe() -> None:
    svc = spec.load(minimal(), "t").services["web"]
    assert svc.run_as_user > 0
    assert svc.resources.cpu_limit and svc.resources.memory_limit
    assert svc.rollout.max_unavailable == 0
    assert svc.exposed is False
    assert spec.Target().bind_address == "127.0.0.1"


def test_every_field_documents_its_default() -> None:
    undocumented = [
        f"{model.__name__}.{name}"
        for model in _models(spec.StackConfig)
        for name, field in model.model_fields.items()
        if not field.description
        or (
            not field.is_required()
            and "Default" not in field.description
            and "See " not in field.description
        )
    ]
    assert undocumented == []


def _models(model: Any, seen: set[Any] | None = None) -> list[Any]:
    seen = seen if seen is not None else set()
    if model in seen:
        return []
    seen.add(model)
    found = [model]
    for field in model.model_fields.values():
        inner = spec.model_of(field.annotation)
        if inner is not None:
            found += _models(inner, seen)
    return found


# --- images ------------------------------------------------------------------------------------


def test_image_without_tag_is_rejected() -> None:
    message = only_problem(minimal(image="ghcr.io/acme/web"))
    assert message.startswith("msops:services.web.image:")
    assert "'ghcr.io/acme/web'" in message and "not pinned" in message and "pin" in message


def test_image_tagged_latest_is_rejected() -> None:
    message = only_problem(minimal(image="nginx:latest"))
    assert message.startswith("msops:services.web.image:")
    assert "'nginx:latest'" in message and "':1.2.3'" in message


def test_malformed_image_reference_is_rejected() -> None:
    message = only_problem(minimal(image="Acme/Web::1"))
    assert message.startswith("msops:services.web.image:")
    assert "'Acme/Web::1'" in message and "repository:tag" in message


def test_image_by_digest_is_accepted() -> None:
    config = spec.load(minimal(image=f"ghcr.io/acme/web@{DIGEST}"), "t")
    assert config.services["web"].image.endswith(DIGEST)


def test_image_with_registry_port_and_tag_is_accepted() -> None:
    config = spec.load(minimal(image="registry.local:5000/team/web:2024.1-rc1"), "t")
    assert config.services["web"].image == "registry.local:5000/team/web:2024.1-rc1"


# --- names and ports ---------------------------------------------------------------------------


def test_service_name_must_be_a_dns_label() -> None:
    message = only_problem({"services": {"Web_API": {"image": "a/b:1"}}})
    assert message.startswith("msops:services.Web_API:")
    assert "'Web_API'" in message and "DNS-1123" in message and "lowercase" in message


def test_database_name_must_be_a_dns_label() -> None:
    config = {**minimal(), "databases": {"main.db": {}}}
    message = only_problem(config)
    assert message.startswith("msops:databases.main.db:") and "DNS-1123" in message


def test_two_services_publishing_the_same_port_are_rejected() -> None:
    config = {
        "services": {
            "web": {"image": "a/web:1", "lb": {"port": 8000}},
            "api": {"image": "a/api:1", "lb": {"port": 8000}},
        }
    }
    message = only_problem(config)
    assert message.startswith("msops:services.api.lb.port:")
    assert "8000" in message and "services.web.lb.port" in message and "different port" in message


def test_a_service_port_colliding_with_prometheus_is_rejected() -> None:
    message = only_problem(minimal(lb={"port": 9090}))
    assert message.startswith("msops:monitoring.prometheusPort:") and "9090" in message


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_out_of_range_is_rejected(port: int) -> None:
    message = only_problem(minimal(port=port))
    assert message.startswith("msops:services.web.port:")
    assert f"got {port}" in message and ("65535" in message or "1" in message)


# --- replicas and autoscaling ------------------------------------------------------------------


def test_negative_replicas_are_rejected() -> None:
    message = only_problem(minimal(replicas=-1))
    assert message.startswith("msops:services.web.replicas:")
    assert "got -1" in message and "must be 0 or more" in message


def test_replicas_must_be_a_number_not_a_boolean() -> None:
    message = only_problem(minimal(replicas=True))
    assert message.startswith("msops:services.web.replicas:") and "got true" in message


def test_autoscaling_min_above_max_is_rejected() -> None:
    message = only_problem(minimal(autoscaling={"min": 5, "max": 3}))
    assert message.startswith("msops:services.web.autoscaling:")
    assert "min (5) is above max (3)" in message and "set min <= max" in message


def test_autoscaling_min_below_one_is_rejected() -> None:
    message = only_problem(minimal(autoscaling={"min": 0, "max": 3}))
    assert message.startswith("msops:services.web.autoscaling:")
    assert "min is 0" in message and "at least 1" in message


def test_replicas_and_autoscaling_together_are_rejected() -> None:
    message = only_problem(minimal(replicas=2, autoscaling={"min": 2, "max": 4}))
    assert message.startswith("msops:services.web:") and "remove replicas" in message


def test_autoscaling_sets_the_replica_count_where_nothing_autoscales() -> None:
    svc = spec.load(minimal(autoscaling={"min": 3, "max": 6}), "t").services["web"]
    assert (svc.desired_replicas, svc.max_replicas) == (3, 6)


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_service_key_is_rejected_with_a_suggestion() -> None:
    message = only_problem(minimal(replica=2))
    assert message.startswith("msops:services.web.replica:")
    assert "unknown key" in message and "did you mean 'replicas'?" in message


def test_unknown_top_level_key_is_rejected() -> None:
    message = only_problem({**minimal(), "monitorng": {"enabled": False}})
    assert message.startswith("msops:monitorng:") and "did you mean 'monitoring'?" in message


def test_unknown_nested_key_lists_the_allowed_keys() -> None:
    message = only_problem(minimal(resources={"gpu": "1"}))
    assert message.startswith("msops:services.web.resources.gpu:")
    assert "cpuLimit" in message and "memoryRequest" in message


# --- references --------------------------------------------------------------------------------


def test_service_referencing_a_missing_database_is_rejected() -> None:
    config = {**minimal(database="orders"), "databases": {"main": {}}}
    message = only_problem(config)
    assert message.startswith("msops:services.web.database:")
    assert "'orders'" in message and "(main)" in message and "add it there" in message


def test_secret_env_referencing_a_missing_secret_is_rejected() -> None:
    message = only_problem(minimal(secretEnv={"API_TOKEN": "apiToken"}))
    assert message.startswith("msops:services.web.secretEnv.API_TOKEN:")
    assert "'apiToken'" in message and "--secret" in message


# --- quantities --------------------------------------------------------------------------------


def test_database_url_in_env_beside_a_database_is_rejected() -> None:
    config = minimal(database="main", env={"DATABASE_URL": "postgresql://x"})
    config["databases"] = {"main": {}}
    message = only_problem(config)
    assert message.startswith("msops:services.web:") and "remove it from env" in message, message


def test_bad_cpu_quantity_is_rejected() -> None:
    message = only_problem(minimal(resources={"cpuLimit": "1.5 cores"}))
    assert message.startswith("msops:services.web.resources.cpuLimit:")
    assert "'1.5 cores'" in message and "'250m'" in message


def test_bad_memory_quantity_is_rejected() -> None:
    message = only_problem(minimal(resources={"memoryLimit": "12XB"}))
    assert message.startswith("msops:services.web.resources.memoryLimit:")
    assert "'12XB'" in message and "'256Mi'" in message


def test_request_above_limit_is_rejected() -> None:
    message = only_problem(minimal(resources={"memoryRequest": "1Gi", "memoryLimit": "512Mi"}))
    assert message.startswith("msops:services.web.resources:")
    assert "'1Gi'" in message and "raise memoryLimit" in message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", 0.5),
        ("2", 2),
        ("1Gi", 2**30),
        ("256Mi", 256 * 2**20),
        ("1e3", 1000),
        ("1.5k", 1500),
    ],
)
def test_quantities_parse_like_kubernetes(text: str, value: float) -> None:
    assert float(spec.parse_quantity(text)) == value


# --- all at once -------------------------------------------------------------------------------


def test_all_problems_are_reported_at_once() -> None:
    config = {
        "services": {
            "web": {"image": "web", "replica": 2, "database": "nope"},
            "api": {"image": "api:latest", "port": 99999},
        }
    }
    problems = problems_of(config)
    keys = sorted(p.split(":", 2)[1] for p in problems)
    assert keys == [
        "services.api.image",
        "services.api.port",
        "services.web.database",
        "services.web.image",
        "services.web.replica",
    ]


def test_error_names_the_stack_and_says_nothing_was_deployed() -> None:
    with pytest.raises(spec.ConfigError) as info:
        spec.load(minimal(image="web"), "staging")
    assert "stack 'staging'" in str(info.value) and "nothing was deployed" in str(info.value)


# --- property: malformed configs never crash ---------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**16), 2**16) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["image", "replicas", "replica", "port", "autoscaling", "resources", "database", "env", "lb"]
)
services = st.dictionaries(
    st.text(max_size=8), st.dictionaries(keys, json_values, max_size=5), max_size=3
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "backend": json_values | st.sampled_from(["docker", "swarm", "kubernetes"]),
        "services": services | json_values,
        "databases": st.dictionaries(st.text(max_size=8), json_values, max_size=2),
        "monitoring": json_values,
        "target": json_values,
        "bogus": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_random_malformed_configs_give_validation_errors_not_tracebacks(config: dict) -> None:
    try:
        spec.load(config, "fuzz")
    except spec.ConfigError as exc:
        assert exc.problems and all(p.startswith("msops:") for p in exc.problems), exc.problems


def test_raw_config_decodes_json_objects_and_drops_other_namespaces() -> None:
    values = {"msops:services": '{"web": {"image": "a/b:1"}}', "aws:region": "eu-west-1"}
    assert spec.raw_config(values) == {"services": {"web": {"image": "a/b:1"}}}


def test_synth_masks_secure_values_from_stack_files() -> None:
    masked, had_secret = synth._mask_secure({"main": {"password": {"secure": "v1:abc"}}})
    assert had_secret and masked == {"main": {"password": synth.SECRET}}
