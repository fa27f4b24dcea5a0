"""Stack-file editing: byte-identical round trips, comment-preserving edits, secrets kept secret."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from msops import releases, stackfiles
from msops.errors import BadInput, ConfigInvalid, OperationFailed
from msops.stackfiles import StackDocument
from tests import fakes

pytestmark = pytest.mark.timeout(30)

COMMITTED = Path(__file__).resolve().parents[2] / "stacks"


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of the committed stack files, with `dev` replaced by the test copy with a secret."""
    for path in COMMITTED.glob("Pulumi.*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    return tmp_path


def history() -> list[releases.Release]:
    return releases.number_releases(list(reversed(fakes.realistic_history())))


def changed_lines(diff: str) -> list[str]:
    return [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def set_replicas(stacks: Path, stack: str, service: str, replicas: int) -> None:
    doc = StackDocument.load(stack, stacks)
    doc.set_replicas(service, replicas, doc.validate())


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_committed_stack_files_round_trip_byte_identical(stack: str) -> None:
    doc = StackDocument.load(stack, COMMITTED)
    assert doc.text() == doc.original, f"stacks/Pulumi.{stack}.yaml changes on a bare round trip"


def test_saving_an_unchanged_document_does_not_touch_the_file(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    wrote = StackDocument.load("dev", stacks).save()
    assert (wrote, path.read_bytes(), path.stat().st_mtime_ns) == (False, *before)


def test_applying_the_current_config_leaves_the_file_byte_identical(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    newest = history()[-1]
    writes = doc.apply_config(newest.config, newest.secret_keys, newest.config)
    assert (writes, doc.text()) == ([], doc.original), "a no-op rollback must not rewrite a byte"


def test_missing_stack_file_names_the_known_stacks(stacks: Path) -> None:
    with pytest.raises(stackfiles.StackFileError, match=r"stacks: dev, prod, staging"):
        StackDocument.load("qa", stacks)


def test_invalid_yaml_is_a_stack_file_error(stacks: Path) -> None:
    (stacks / "Pulumi.bad.yaml").write_text("config: [unclosed\n")
    with pytest.raises(stackfiles.StackFileError, match=r"Pulumi\.bad\.yaml is not valid YAML"):
        StackDocument.load("bad", stacks)


# --- edits ----------------------------------------------------------------------------------------


def test_set_image_changes_exactly_one_line(stacks: Path) -> None:
    doc = StackDocument.load("staging", stacks)
    doc.set_image("web", "ghcr.io/msops/demo:1.3.0")
    assert changed_lines(doc.diff()) == [
        "-      image: ghcr.io/msops/demo:1.0.0",
        "+      image: ghcr.io/msops/demo:1.3.0",
    ], doc.diff()


def test_edit_keeps_every_comment(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    doc.set_image("web", "msops/demo:9.9.9")
    doc.set_replicas("web", 4, doc.validate())
    assert comments(doc.text()) == comments(doc.original)


def test_edit_keeps_key_order(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    before = list(doc.config["msops:services"]["web"])
    doc.set_replicas("web", 4, doc.validate())
    doc.save()
    after = list(StackDocument.load("dev", stacks).config["msops:services"]["web"])
    assert after == before, f"msops:services.web keys reordered: {before} -> {after}"


def test_set_replicas_adds_the_key_after_the_image_when_absent(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      replicas: 2\n", ""))
    doc = StackDocument.load("dev", stacks)
    doc.set_replicas("web", 3, doc.validate())
    keys = list(doc.config["msops:services"]["web"])
    assert keys[keys.index("image") + 1] == "replicas", keys


SERVICE_WITHOUT_REPLICAS = """\
config:
  msops:backend: docker
  msops:services:
    web:
      image: msops/demo:1.4.0{eol}
      # Built from app/ on this machine.
      build: app

      # The port the app listens on.
      port: 8080
    # The worker has no LB.
    worker:
      image: msops/demo:1.4.0
"""


@pytest.mark.parametrize("eol", ["", "  # pinned by CI"], ids=["plain", "eol-comment"])
def test_set_replicas_keeps_each_comment_above_its_key(tmp_path: Path, eol: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(SERVICE_WITHOUT_REPLICAS.format(eol=eol))
    doc = StackDocument.load("dev", tmp_path)
    doc.set_replicas("web", 3, doc.validate())
    image = f"      image: msops/demo:1.4.0{eol}\n"
    expected = SERVICE_WITHOUT_REPLICAS.format(eol=eol).replace(
        image, image + "      replicas: 3\n", 1
    )
    assert doc.text() == expected, doc.diff()


def test_set_replicas_on_a_service_whose_image_is_its_last_key_keeps_the_next_comment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(SERVICE_WITHOUT_REPLICAS.format(eol=""))
    doc = StackDocument.load("dev", tmp_path)
    doc.set_replicas("worker", 2, doc.validate())
    assert doc.text().endswith("    worker:\n      image: msops/demo:1.4.0\n      replicas: 2\n"), (
        doc.diff()
    )
    assert comments(doc.text()) == comments(doc.original)


def test_set_replicas_of_an_unknown_service_is_refused(stacks: Path) -> None:
    with pytest.raises(
        BadInput, match=r"service 'api' is not in stack 'dev' \(its services: web\)"
    ):
        set_replicas(stacks, "dev", "api", 2)


def test_negative_replicas_are_refused(stacks: Path) -> None:
    with pytest.raises(BadInput, match="replicas must be 0 or more, got -1"):
        set_replicas(stacks, "dev", "web", -1)


def test_scaling_an_autoscaled_service_points_at_autoscaling(stacks: Path) -> None:
    with pytest.raises(BadInput, match=r"autoscales \(min 3, max 10\).*autoscaling.min/max"):
        set_replicas(stacks, "prod", "web", 4)


def test_set_replicas_returns_the_config_of_the_edited_file(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    edited = doc.set_replicas("web", 5, doc.validate())
    assert edited == doc.validate(), "the returned config must be what the edited file validates to"


def test_set_replicas_leaves_the_config_it_was_given_alone(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    spec = doc.validate()
    doc.set_replicas("web", 5, spec)
    assert spec.services["web"].replicas == 2


def test_images_are_read_as_written(stacks: Path) -> None:
    assert StackDocument.load("staging", stacks).images() == {
        "web": "ghcr.io/msops/demo:1.0.0",
        "api": "ghcr.io/msops/demo:1.0.0",
    }


def test_document_validate_counts_pending_secrets_as_set(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    del doc.config["msops:secrets"]
    write = stackfiles.SecretWrite("msops:secrets", ("apiKey",), "k")
    assert doc.validate(pending=[write]).secrets["apiKey"].get_secret_value() == "[secret]"


def test_save_replaces_the_file_without_leaving_temporaries(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    doc.set_replicas("web", 5, doc.validate())
    doc.save()
    leftovers = [p.name for p in stacks.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and "replicas: 5" in (stacks / "Pulumi.dev.yaml").read_text()


# --- writing a release's config back --------------------------------------------------------------


def test_rollback_edit_touches_only_the_image_line(stacks: Path) -> None:
    rels = history()
    doc = StackDocument.load("dev", stacks)
    writes = doc.apply_config(rels[11].config, rels[11].secret_keys, rels[13].config)
    assert writes == [] and changed_lines(doc.diff()) == [
        "-      image: msops/demo:1.4.0",
        "+      image: msops/demo:1.3.2",
    ], doc.diff()


def test_unchanged_secret_keeps_its_ciphertext(stacks: Path) -> None:
    rels = history()
    doc = StackDocument.load("dev", stacks)
    doc.apply_config(rels[7].config, rels[7].secret_keys, rels[13].config)
    assert f"secure: {fakes.encrypt(fakes.API_KEYS[1])}" in doc.text()


def test_changed_secret_becomes_a_secret_write(stacks: Path) -> None:
    rels = history()
    doc = StackDocument.load("dev", stacks)
    writes = doc.apply_config(rels[4].config, rels[4].secret_keys, rels[13].config)
    assert [(w.pulumi_key, w.uses_path, w.value) for w in writes] == [
        ("msops:secrets.apiKey", True, fakes.API_KEYS[0])
    ]


def test_changed_secret_is_never_written_in_plain_text(stacks: Path) -> None:
    rels = history()
    doc = StackDocument.load("dev", stacks)
    doc.apply_config(rels[4].config, rels[4].secret_keys, rels[13].config)
    doc.save()
    assert fakes.API_KEYS[0] not in (stacks / "Pulumi.dev.yaml").read_text()


def test_schema_secret_inside_an_object_is_set_as_a_secret(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    target: dict[str, Any] = {
        **current,
        "msops:databases": {"main": {**current["msops:databases"]["main"], "password": "pw-123"}},
    }
    writes = doc.apply_config(target, {"msops:secrets", "msops:databases"}, current)
    assert [w.pulumi_key for w in writes] == ["msops:databases.main.password"]
    assert "pw-123" not in doc.text() and 'version: "16.4"' in doc.text()


def test_free_form_strings_of_a_secret_key_are_set_as_secrets(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    web = {**current["msops:services"]["web"], "image": "msops/demo:1.5.0"}
    web["env"] = {**web["env"], "TOKEN": "tok-1"}
    target = {**current, "msops:services": {"web": web}}
    writes = doc.apply_config(target, {"msops:secrets", "msops:services"}, current)
    assert [w.pulumi_key for w in writes] == ["msops:services.web.env.TOKEN"]
    assert "image: msops/demo:1.5.0" in doc.text(), "a typed field (image) stays plain"


def test_plain_object_keys_never_become_secrets(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    web = {**current["msops:services"]["web"], "env": {"LOG_LEVEL": "debug"}}
    writes = doc.apply_config(
        {**current, "msops:services": {"web": web}}, {"msops:secrets"}, current
    )
    assert writes == [] and "LOG_LEVEL: debug" in doc.text()


def test_secret_top_level_scalar_is_set_without_path(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    writes = doc.apply_config(
        {**current, "other:token": "t-1"}, {"msops:secrets", "other:token"}, current
    )
    assert [(w.pulumi_key, w.uses_path) for w in writes] == [("other:token", False)]


def test_keys_absent_from_the_release_are_removed(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    target = {k: v for k, v in current.items() if k != "msops:monitoring"}
    doc.apply_config(target, {"msops:secrets"}, current)
    assert "msops:monitoring" not in doc.text()


def test_new_keys_are_added(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    doc.apply_config(
        {**current, "msops:target": {"bindAddress": "0.0.0.0"}}, {"msops:secrets"}, current
    )
    assert "msops:target:\n    bindAddress: 0.0.0.0" in doc.text(), doc.text()


def test_undecrypted_secret_in_history_is_refused(stacks: Path) -> None:
    doc = StackDocument.load("dev", stacks)
    current = history()[-1].config
    target = {**current, "msops:secrets": {"apiKey": releases.SECRET_PLACEHOLDER}}
    with pytest.raises(
        OperationFailed, match=r"no decrypted value for the secret msops:secrets.apiKey"
    ):
        doc.apply_config(target, {"msops:secrets"}, current)


def test_place_secrets_takes_the_ciphertext_and_keeps_comments(stacks: Path) -> None:
    rels = history()
    doc = StackDocument.load("dev", stacks)
    writes = doc.apply_config(rels[4].config, rels[4].secret_keys, rels[13].config)
    doc.save()
    gateway = fakes.FakeGateway(stacks)
    gateway.set_secret("dev", writes[0].pulumi_key, writes[0].value, path=True)
    assert comments((stacks / "Pulumi.dev.yaml").read_text()) == [], "the fake CLI drops comments"
    doc.place_secrets(writes, (stacks / "Pulumi.dev.yaml").read_text())
    text = doc.text()
    assert f"secure: {fakes.encrypt(fakes.API_KEYS[0])}" in text
    assert comments(text) == comments(fakes.dev_stack_text()) and "encryptionsalt:" in text


def test_place_secrets_without_a_ciphertext_fails(stacks: Path) -> None:
    write = stackfiles.SecretWrite("msops:secrets", ("apiKey",), "x")
    doc = StackDocument.load("dev", stacks)
    with pytest.raises(OperationFailed, match=r"did not store msops:secrets\.apiKey as a secret"):
        doc.place_secrets([write], "config:\n  msops:secrets:\n    apiKey: x\n")


def test_keep_layout_restores_comments_after_a_cli_rewrite(stacks: Path) -> None:
    path = stacks / "Pulumi.staging.yaml"
    original = path.read_text()
    data = stackfiles.read_config("staging", stacks)
    with stackfiles.keep_layout(path):
        # What `pulumi stack init` may do: add the salt, re-emit the same config bare.
        path.write_text("encryptionsalt: v1:salt\nconfig: " + json.dumps(data) + "\n")
    assert path.read_text() == original.replace("config:", "encryptionsalt: v1:salt\nconfig:", 1)


def test_keep_layout_leaves_a_changed_config_alone(stacks: Path) -> None:
    path = stacks / "Pulumi.staging.yaml"
    with stackfiles.keep_layout(path):
        path.write_text("config:\n  msops:backend: docker\n")
    assert path.read_text() == "config:\n  msops:backend: docker\n"


# --- reading --------------------------------------------------------------------------------------


def test_values_mask_secrets(stacks: Path) -> None:
    values = StackDocument.load("dev", stacks).values()
    assert values["msops:secrets"] == {"apiKey": "[secret]"}


def test_values_include_pending_secrets_masked(stacks: Path) -> None:
    write = stackfiles.SecretWrite("msops:databases", ("main", "password"), "pw")
    values = StackDocument.load("dev", stacks).values(pending=[write])
    assert values["msops:databases"]["main"]["password"] == "[secret]"


def test_validate_names_the_bad_key(stacks: Path) -> None:
    values = StackDocument.load("dev", stacks).values()
    values["msops:services"]["web"]["replicas"] = "two"
    with pytest.raises(ConfigInvalid) as caught:
        stackfiles.validate(values, "dev")
    assert any(p.startswith("msops:services.web.replicas") for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("main", "password"), "msops:databases.main.password"),
        (("my.key",), 'msops:databases["my.key"]'),
        (("list", 0), "msops:databases.list[0]"),
    ],
)
def test_config_path_syntax(path: tuple[Any, ...], expected: str) -> None:
    assert stackfiles.config_path("msops:databases", path) == expected


def test_secret_write_repr_hides_the_value() -> None:
    write = stackfiles.SecretWrite("msops:secrets", ("apiKey",), "hunter2")
    assert "hunter2" not in repr(write) and "msops:secrets.apiKey" in repr(write)


def test_file_mode_is_kept_on_save(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    path.chmod(0o600)
    doc = StackDocument.load("dev", stacks)
    doc.set_replicas("web", 6, doc.validate())
    doc.save()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_guessed_indentation_is_kept(stacks: Path) -> None:
    path = stacks / "Pulumi.wide.yaml"
    path.write_text("config:\n    msops:services:\n        web:\n            image: a/b:1\n")
    doc = StackDocument.load("wide", stacks)
    doc.set_image("web", "a/b:2")
    assert doc.text() == "config:\n    msops:services:\n        web:\n            image: a/b:2\n"
