"""`msops secret set` without typer: through the engine's config, encrypted, comments kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from msops.actions.secret import SecretSet
from msops.errors import BadInput, ConfigInvalid
from tests import fakes

pytestmark = pytest.mark.timeout(60)

VALUE = "pw-set-through-stdin-5e1"


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def config(bench: fakes.Bench) -> dict:
    return YAML(typ="safe").load(bench.text("dev"))["config"]


def digest(bench: fakes.Bench) -> str:
    return hashlib.sha256(bench.text("dev").encode()).hexdigest()


def test_the_secret_goes_through_the_engine_with_a_path(bench: fakes.Bench) -> None:
    SecretSet(bench.cfg(), "dev", "msops:databases.main.password", VALUE).run()
    assert bench.gateway.called("set_secret") == [
        ("set_secret", "dev", "msops:databases.main.password", True)
    ]
    assert bench.gateway.secrets_set[("dev", "msops:databases.main.password")] == VALUE


def test_the_file_holds_the_ciphertext_never_the_value(bench: fakes.Bench) -> None:
    SecretSet(bench.cfg(), "dev", "msops:databases.main.password", VALUE).run()
    stored = config(bench)["msops:databases"]["main"]["password"]
    assert fakes.decrypt(stored["secure"]) == VALUE and VALUE not in bench.text("dev")


def test_the_comments_of_the_file_stay(bench: fakes.Bench) -> None:
    # The fake engine rewrites the file without its comments, as `pulumi config set` may.
    SecretSet(bench.cfg(), "dev", "msops:databases.main.password", VALUE).run()
    text = bench.text("dev")
    assert "# Built from app/ on this machine" in text and text.startswith("# dev:"), text


def test_the_namespace_may_be_left_out(bench: fakes.Bench) -> None:
    result = SecretSet(bench.cfg(), "dev", "secrets.newToken", VALUE).run()
    assert result.key == "msops:secrets.newToken"
    assert fakes.decrypt(config(bench)["msops:secrets"]["newToken"]["secure"]) == VALUE


def test_a_trailing_newline_from_stdin_is_not_part_of_the_value(bench: fakes.Bench) -> None:
    SecretSet(bench.cfg(), "dev", "msops:secrets.apiKey", VALUE + "\n").run()
    assert fakes.decrypt(config(bench)["msops:secrets"]["apiKey"]["secure"]) == VALUE


def test_a_plaintext_secret_in_the_file_is_replaced_and_reported(bench: fakes.Bench) -> None:
    fakes.add_lines(bench.stacks, "dev", 'version: "16.4"\n', "      password: hunter2\n")
    result = SecretSet(bench.cfg(), "dev", "msops:databases.main.password", VALUE).run()
    assert result.before == "plaintext" and "hunter2" not in bench.text("dev")


def test_a_key_that_is_not_a_secret_field_is_refused_untouched(bench: fakes.Bench) -> None:
    before = digest(bench)
    with pytest.raises(BadInput, match=r"'msops:services\.web\.image' is not a secret"):
        SecretSet(bench.cfg(), "dev", "msops:services.web.image", VALUE).run()
    assert (digest(bench), bench.gateway.called("set_secret")) == (before, [])


def test_a_password_for_a_database_not_in_the_stack_is_refused(bench: fakes.Bench) -> None:
    before = digest(bench)
    with pytest.raises(BadInput, match="there is no database 'orders'"):
        SecretSet(bench.cfg(), "dev", "msops:databases.orders.password", VALUE).run()
    assert (digest(bench), bench.gateway.called("set_secret")) == (before, [])


def test_an_empty_value_is_refused(bench: fakes.Bench) -> None:
    with pytest.raises(BadInput, match="the value is empty"):
        SecretSet(bench.cfg(), "dev", "msops:secrets.apiKey", "\n").run()
    assert bench.gateway.called("set_secret") == []


def test_a_file_that_stays_invalid_reaches_no_engine(bench: fakes.Bench) -> None:
    fakes.add_lines(bench.stacks, "dev", "      replicas: 2\n", "      bogus: 1\n")
    before = digest(bench)
    with pytest.raises(ConfigInvalid, match="bogus"):
        SecretSet(bench.cfg(), "dev", "msops:secrets.apiKey", VALUE).run()
    assert (digest(bench), bench.gateway.called("set_secret")) == (before, [])


def test_the_value_never_shows_in_the_actions_repr(bench: fakes.Bench) -> None:
    assert VALUE not in repr(SecretSet(bench.cfg(), "dev", "msops:secrets.apiKey", VALUE))
