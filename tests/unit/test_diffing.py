"""msops.diffing on plain config data: effective values compared per service, secrets masked."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from msops import diffing
from tests import fakes

pytestmark = pytest.mark.timeout(60)

SECRET = "planted-secret-value"


def config(**web: Any) -> dict[str, Any]:
    """The decoded config of the test dev stack, with `web`'s keys replaced (None removes)."""
    values = fakes.dev_values("msops/demo:1.4.0", 2, fakes.API_KEYS[-1])
    block = values["msops:services"]["web"]
    for key, value in web.items():
        if value is None:
            block.pop(key, None)
        else:
            block[key] = value
    return values


def compare(before: dict[str, Any], after: dict[str, Any], secret: bool = True) -> Any:
    keys = {"msops:secrets"} if secret else set()
    return diffing.compare(diffing.normalize(before, keys), diffing.normalize(after, keys))


def keys(diff: diffing.ConfigDiff) -> list[str]:
    return [c.key for s in (*diff.services, diff.settings) for c in s.changes]


def everything_shown(diff: diffing.ConfigDiff) -> str:
    """Every value the diff would print, as one text."""
    changes = [c for s in (*diff.services, diff.settings) for c in s.changes]
    trees = [s.before for s in diff.services] + [s.after for s in diff.services]
    shown = [diffing.shown(t) for t in [*trees, diff.settings.before, diff.settings.after]]
    values = [(diffing.shown(c.before), diffing.shown(c.after)) for c in changes]
    return json.dumps([shown, values], default=str)


def test_the_same_config_has_no_difference() -> None:
    assert not compare(config(), config()).different


def test_a_changed_image_is_one_change_naming_its_key() -> None:
    diff = compare(config(), config(image="msops/demo:2.0.0"))
    assert keys(diff) == ["msops:services.web.image"]


def test_an_omitted_key_equals_its_explicit_default() -> None:
    explicit = config(resources={"cpuLimit": "500m"}, health={"path": "/healthz"})
    assert keys(compare(config(), explicit)) == []


def test_omitted_replicas_equal_an_explicit_one() -> None:
    assert keys(compare(config(replicas=None), config(replicas=1))) == []


def test_an_omitted_database_image_equals_the_one_the_model_derives() -> None:
    explicit = copy.deepcopy(config())
    explicit["msops:databases"]["main"]["image"] = "postgres:16.4-alpine"
    assert keys(compare(config(), explicit)) == []


def test_a_changed_default_is_a_change() -> None:
    diff = compare(config(), config(resources={"cpuLimit": "1"}))
    change = diff.services[0].changes[0]
    assert (change.key, change.before, change.after) == (
        "msops:services.web.resources.cpuLimit",
        "500m",
        "1",
    )


def test_numbers_stay_numbers() -> None:
    change = compare(config(), config(replicas=3)).services[0].changes[0]
    assert (change.before, change.after) == (2, 3)


def test_an_added_service_is_added_with_its_settings() -> None:
    after = config()
    after["msops:services"]["api"] = {"image": "msops/demo:1.4.0", "port": 8081}
    section = compare(config(), after).services[-1]
    assert (section.name, section.status) == ("api", "added")
    assert "msops:services.api.image" in [c.key for c in section.changes]


def test_a_removed_service_is_removed() -> None:
    before = config()
    before["msops:services"]["api"] = {"image": "msops/demo:1.4.0", "port": 8081}
    section = compare(before, config()).services[-1]
    assert (section.name, section.status) == ("api", "removed")


def test_a_stack_wide_setting_is_in_the_settings() -> None:
    after = config()
    after["msops:monitoring"]["grafana"] = False
    diff = compare(config(), after)
    assert [c.key for c in diff.settings.changes] == ["msops:monitoring.grafana"]


def test_a_changed_secret_is_reported_without_its_value() -> None:
    after = config()
    after["msops:secrets"]["apiKey"] = SECRET
    diff = compare(config(), after)
    change = diff.settings.changes[0]
    assert (change.key, change.secret, diffing.shown(change.after)) == (
        "msops:secrets.apiKey",
        True,
        "[secret]",
    )
    assert SECRET not in everything_shown(diff) and fakes.API_KEYS[-1] not in everything_shown(diff)


def test_a_database_password_is_a_secret_without_a_secret_flag() -> None:
    after = config()
    after["msops:databases"]["main"]["password"] = SECRET
    diff = compare(config(), after, secret=False)
    assert SECRET not in everything_shown(diff) and diff.settings.changes[0].secret


def test_an_env_value_under_a_key_pulumi_flags_secret_is_masked() -> None:
    before, after = config(env={"TOKEN": "x"}), config(env={"TOKEN": SECRET})
    flagged = {"msops:services"}
    diff = diffing.compare(diffing.normalize(before, flagged), diffing.normalize(after, flagged))
    assert keys(diff) == ["msops:services.web.env.TOKEN"]
    assert SECRET not in everything_shown(diff)


def test_a_secret_known_only_as_the_mask_counts_as_unchanged() -> None:
    masked = config()
    masked["msops:secrets"]["apiKey"] = "[secret]"
    assert keys(compare(config(), masked)) == []


def test_a_service_with_a_bad_value_is_compared_as_recorded() -> None:
    # `replicas: "two"` fails on a value, not a key: no defaults are filled in for it.
    found = keys(compare(config(replicas="two"), config()))
    assert {"msops:services.web.replicas", "msops:services.web.resources.cpuLimit"} <= set(found)


def test_a_side_that_no_longer_validates_lists_its_problems() -> None:
    side = diffing.normalize(config(retiredKey=True), {"msops:secrets"})
    assert not side.valid and any("retiredKey" in p for p in side.problems)


def test_problems_never_quote_a_secret() -> None:
    # Under a key Pulumi flags secret, a secretEnv value is free-form, so a secret: and the
    # cross-reference check quotes it when it names no msops:secrets entry.
    values = config(secretEnv={"API_KEY": SECRET})
    side = diffing.normalize(values, {"msops:services"})
    problem = next(p for p in side.problems if "secretEnv.API_KEY" in p)
    assert SECRET not in problem and "[secret]" in problem


def test_an_entry_that_fails_leaves_the_others_effective() -> None:
    before = config(retiredKey=True)
    before["msops:services"]["api"] = {"image": "msops/demo:1.4.0", "port": 8081}
    after = config()
    after["msops:services"]["api"] = {
        "image": "msops/demo:1.4.0",
        "port": 8081,
        "resources": {"cpuLimit": "500m"},
    }
    assert compare(before, after).services[1].status == "unchanged"


def test_services_that_are_not_a_mapping_are_compared_as_one_value() -> None:
    broken = config()
    broken["msops:services"] = "web"
    diff = compare(broken, config())
    assert "msops:services" in [c.key for c in diff.settings.changes]


def test_a_whole_key_known_only_as_the_mask_hides_the_secrets_under_it() -> None:
    masked = config()
    masked["msops:secrets"] = "[secret]"
    assert keys(compare(masked, config())) == []


def test_a_whole_key_known_only_as_the_mask_is_no_validation_problem() -> None:
    masked = config()
    masked["msops:secrets"] = "[secret]"
    assert diffing.normalize(masked, {"msops:secrets"}).problems == ()


def test_a_service_with_a_retired_key_is_effective_apart_from_it() -> None:
    retired = config(retiredKey=True, health={"path": "/healthz", "oldProbe": 1})
    assert sorted(keys(compare(retired, config()))) == [
        "msops:services.web.health.oldProbe",
        "msops:services.web.retiredKey",
    ]
