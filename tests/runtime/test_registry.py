"""msops promote against a real distribution registry (Debian's docker-registry) on loopback:
images pushed with the distribution API, lookups anonymous and with docker-config credentials."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msops import cli, registry, stackfiles
from msops.actions.promote import Promote
from msops.errors import OperationFailed
from msops.registry import ImagesMissing
from tests import fakes
from tests.runtime.conftest import require_tool
from tests.runtime.registry import (
    TOKEN_SERVICE,
    RegistryServer,
    TokenService,
    push_image,
    start_registry,
    start_token_registry,
)

pytestmark = pytest.mark.timeout(120)

USER = ("ci", "pushed-by-ci")
# What the test dev stack pins; a promotion onto staging takes this tag.
DEV_TAG = "1.4.0"


@pytest.fixture(scope="module")
def binary() -> str:
    return require_tool("docker-registry", "docker-registry")


@pytest.fixture(scope="module")
def open_registry(binary: str) -> Iterator[RegistryServer]:
    """A registry anyone may push to and pull from."""
    server = start_registry(binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def locked_registry(binary: str) -> Iterator[RegistryServer]:
    """A registry with htpasswd auth: one user, a bcrypt password."""
    server = start_registry(binary, user=USER)
    try:
        yield server
    finally:
        server.stop()


def docker_config(directory: Path, config: dict[str, object]) -> dict[str, str]:
    """Write a docker config.json in `directory`; the environment that points docker at it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory)}


def auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def lookup(tmp_path: Path, config: dict[str, object] | None = None) -> registry.Registry:
    """The real client, with a docker config of the test's own (empty: anonymous)."""
    return registry.from_environment(docker_config(tmp_path / "docker", config or {}))


@pytest.fixture
def bench(tmp_path: Path) -> fakes.Bench:
    return fakes.Bench(tmp_path)


def staging_on(bench: fakes.Bench, server: RegistryServer, name: str) -> str:
    """Point staging's pin at `name` in the test registry; the image promote will pin."""
    bench.edit("staging", "ghcr.io/msops/demo:1.0.0", f"{server.host}/{name}:1.0.0")
    bench.edit("dev", "msops/demo:1.4.0", f"{name}:{DEV_TAG}")
    return f"{server.host}/{name}:{DEV_TAG}"


def stack_bytes(bench: fakes.Bench) -> dict[str, bytes]:
    return {s: bench.path(s).read_bytes() for s in ("dev", "staging", "prod")}


# --- lookups -------------------------------------------------------------------------------------


def test_a_pushed_image_is_present(open_registry: RegistryServer, tmp_path: Path) -> None:
    push_image(open_registry, "msops/present", "1.0.0")
    answer = lookup(tmp_path).lookup(f"{open_registry.host}/msops/present:1.0.0")
    assert (answer.presence, answer.status) == ("present", 200)


def test_a_pushed_oci_image_is_present(open_registry: RegistryServer, tmp_path: Path) -> None:
    push_image(open_registry, "msops/oci", "1.0.0", kind="oci")
    answer = lookup(tmp_path).lookup(f"{open_registry.host}/msops/oci:1.0.0")
    assert answer.presence == "present"


def test_a_pushed_image_is_present_by_digest(open_registry: RegistryServer, tmp_path: Path) -> None:
    digest = push_image(open_registry, "msops/digest", "1.0.0")
    answer = lookup(tmp_path).lookup(f"{open_registry.host}/msops/digest:9.9.9@{digest}")
    assert answer.presence == "present"


def test_a_tag_never_pushed_is_missing(open_registry: RegistryServer, tmp_path: Path) -> None:
    push_image(open_registry, "msops/other-tag", "1.0.0")
    answer = lookup(tmp_path).lookup(f"{open_registry.host}/msops/other-tag:1.0.1")
    assert (answer.presence, answer.status) == ("missing", 404)


def test_a_repository_never_pushed_is_missing(
    open_registry: RegistryServer, tmp_path: Path
) -> None:
    answer = lookup(tmp_path).lookup(f"{open_registry.host}/msops/never:1.0.0")
    assert answer.presence == "missing"


# --- promote -------------------------------------------------------------------------------------


def test_promote_of_a_pushed_image_pins_and_deploys_it(
    bench: fakes.Bench, open_registry: RegistryServer, tmp_path: Path
) -> None:
    image = staging_on(bench, open_registry, "msops/promoted")
    push_image(open_registry, "msops/promoted", DEV_TAG)
    result = Promote(bench.cfg(), "dev", "staging", yes=True, lookup=lookup(tmp_path).lookup).run()
    assert f"image: {image}\n" in bench.text("staging") and result.deployment is not None


def test_promote_of_an_unpushed_image_is_refused_and_writes_nothing(
    bench: fakes.Bench, open_registry: RegistryServer, tmp_path: Path
) -> None:
    image = staging_on(bench, open_registry, "msops/unpushed")
    push_image(open_registry, "msops/unpushed", "1.0.0")  # staging's own, not dev's
    before = stack_bytes(bench)
    with pytest.raises(ImagesMissing) as caught:
        Promote(bench.cfg(), "dev", "staging", yes=True, lookup=lookup(tmp_path).lookup).run()
    assert stack_bytes(bench) == before and bench.gateway.calls == []
    assert f"{image}: registry {open_registry.host} has no such image" in str(caught.value)


def test_promote_to_a_registry_that_is_down_says_how_to_skip(
    bench: fakes.Bench, binary: str, tmp_path: Path
) -> None:
    server = start_registry(binary)
    image = staging_on(bench, server, "msops/gone")
    server.stop()
    before = stack_bytes(bench)
    with pytest.raises(OperationFailed, match=f"cannot reach registry {server.host}") as caught:
        Promote(bench.cfg(), "dev", "staging", yes=True, lookup=lookup(tmp_path).lookup).run()
    assert "--no-verify-images" in str(caught.value) and image not in bench.text("staging")
    assert stack_bytes(bench) == before


# --- credentials from the docker config ----------------------------------------------------------


def test_a_locked_registry_answers_with_auths_from_the_docker_config(
    locked_registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(locked_registry, "msops/private", "1.0.0")
    config = {"auths": {locked_registry.host: auth_entry(*USER)}}
    answer = lookup(tmp_path, config).lookup(f"{locked_registry.host}/msops/private:1.0.0")
    assert answer.presence == "present" and answer.credentials.startswith("auths in ")


def test_a_locked_registry_tells_a_missing_image_apart_with_credentials(
    locked_registry: RegistryServer, tmp_path: Path
) -> None:
    config = {"auths": {f"http://{locked_registry.host}": auth_entry(*USER)}}
    answer = lookup(tmp_path, config).lookup(f"{locked_registry.host}/msops/private:0.0.0")
    assert (answer.presence, answer.status) == ("missing", 404)


def test_a_locked_registry_denies_an_anonymous_lookup(
    locked_registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(locked_registry, "msops/anonymous", "1.0.0")
    answer = lookup(tmp_path).lookup(f"{locked_registry.host}/msops/anonymous:1.0.0")
    assert (answer.presence, answer.status, answer.credentials) == ("denied", 401, "")


def test_a_locked_registry_denies_a_wrong_password(
    locked_registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(locked_registry, "msops/wrong", "1.0.0")
    config = {"auths": {locked_registry.host: auth_entry(USER[0], "not-it")}}
    answer = lookup(tmp_path, config).lookup(f"{locked_registry.host}/msops/wrong:1.0.0")
    assert (answer.presence, answer.status) == ("denied", 401)


@pytest.fixture
def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Install `docker-credential-msopstest` printing the given credentials; its call log."""

    def install(answer: str) -> Path:
        calls = tmp_path / "helper-calls"
        program = tmp_path / "bin" / "docker-credential-msopstest"
        program.parent.mkdir(exist_ok=True)
        program.write_text(
            f"#!/bin/sh\nread server\necho \"$1 $server\" >>{calls}\necho '{answer}'\n"
        )
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ['PATH']}")
        return calls

    return install


def test_a_locked_registry_answers_with_a_credential_helper(
    locked_registry: RegistryServer, tmp_path: Path, helper_on_path: Callable[[str], Path]
) -> None:
    push_image(locked_registry, "msops/helped", "1.0.0")
    calls = helper_on_path(json.dumps({"Username": USER[0], "Secret": USER[1]}))
    config = {"credsStore": "msopstest", "auths": {locked_registry.host: {}}}
    answer = lookup(tmp_path, config).lookup(f"{locked_registry.host}/msops/helped:1.0.0")
    assert answer.presence == "present" and answer.credentials == "docker-credential-msopstest"
    assert calls.read_text() == f"get {locked_registry.host}\n"


def test_promote_refuses_an_image_a_locked_registry_will_not_show(
    bench: fakes.Bench, locked_registry: RegistryServer, tmp_path: Path
) -> None:
    staging_on(bench, locked_registry, "msops/locked")
    push_image(locked_registry, "msops/locked", DEV_TAG)
    before = stack_bytes(bench)
    with pytest.raises(ImagesMissing, match=f"docker login {locked_registry.host}"):
        Promote(bench.cfg(), "dev", "staging", yes=True, lookup=lookup(tmp_path).lookup).run()
    assert stack_bytes(bench) == before


def test_promote_with_the_users_login_pins_the_private_image(
    bench: fakes.Bench, locked_registry: RegistryServer, tmp_path: Path
) -> None:
    image = staging_on(bench, locked_registry, "msops/logged-in")
    push_image(locked_registry, "msops/logged-in", DEV_TAG)
    client = lookup(tmp_path, {"auths": {locked_registry.host: auth_entry(*USER)}})
    Promote(bench.cfg(), "dev", "staging", yes=True, lookup=client.lookup).run()
    assert f"image: {image}\n" in bench.text("staging")


# --- the command, wired as a user runs it -------------------------------------------------------


@pytest.fixture
def cli_bench(bench: fakes.Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.Bench:
    """`msops promote` on the bench's stacks and fake gateway, its docker config in tmp."""
    monkeypatch.setattr(stackfiles, "STACKS_DIR", bench.stacks)
    monkeypatch.setattr(cli, "make_gateway", lambda: bench.gateway)
    monkeypatch.setattr(cli, "interactive", lambda: False)
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])
    for name, value in docker_config(tmp_path / "cli-docker", {}).items():
        monkeypatch.setenv(name, value)
    return bench


def test_the_command_refuses_an_unpushed_image_with_exit_2(
    cli_bench: fakes.Bench, open_registry: RegistryServer
) -> None:
    image = staging_on(cli_bench, open_registry, "msops/cli-unpushed")
    before = stack_bytes(cli_bench)
    outcome = CliRunner().invoke(cli.app, ["promote", "dev", "staging", "--yes"])
    assert outcome.exit_code == 2 and stack_bytes(cli_bench) == before
    assert f"{image}: registry {open_registry.host} has no such image" in outcome.stderr


def test_the_command_promotes_a_pushed_image(
    cli_bench: fakes.Bench, open_registry: RegistryServer
) -> None:
    image = staging_on(cli_bench, open_registry, "msops/cli-pushed")
    push_image(open_registry, "msops/cli-pushed", DEV_TAG)
    outcome = CliRunner().invoke(cli.app, ["promote", "dev", "staging", "--yes"])
    assert outcome.exit_code == 0, outcome.output
    assert f"In the registry: {image}." in outcome.stdout
    assert f"image: {image}\n" in cli_bench.text("staging")


# --- a registry with token auth: the Bearer flow of ghcr.io and Docker Hub ----------------------


@pytest.fixture(scope="module")
def token_registry(binary: str) -> Iterator[tuple[RegistryServer, TokenService]]:
    require_tool("openssl", "openssl")
    server, service = start_token_registry(binary, USER)
    try:
        yield server, service
    finally:
        server.stop()


def test_a_token_registry_answers_with_a_token_got_with_the_credentials(
    token_registry: tuple[RegistryServer, TokenService], tmp_path: Path
) -> None:
    server, service = token_registry
    push_image(server, "msops/tokened", "1.0.0")
    config = {"auths": {server.host: auth_entry(*USER)}}
    answer = lookup(tmp_path, config).lookup(f"{server.host}/msops/tokened:1.0.0")
    assert answer.presence == "present"
    asked = service.requests[-1]
    assert (asked["scope"], asked["service"]) == ("repository:msops/tokened:pull", TOKEN_SERVICE)
    assert asked["authorization"].startswith("Basic ")


def test_a_token_registry_tells_a_missing_image_apart(
    token_registry: tuple[RegistryServer, TokenService], tmp_path: Path
) -> None:
    server, _ = token_registry
    config = {"auths": {server.host: auth_entry(*USER)}}
    answer = lookup(tmp_path, config).lookup(f"{server.host}/msops/tokened-never:1.0.0")
    assert (answer.presence, answer.status) == ("missing", 404)


def test_a_token_registry_denies_an_anonymous_token(
    token_registry: tuple[RegistryServer, TokenService], tmp_path: Path
) -> None:
    server, service = token_registry
    push_image(server, "msops/tokened-private", "1.0.0")
    answer = lookup(tmp_path).lookup(f"{server.host}/msops/tokened-private:1.0.0")
    assert (answer.presence, answer.status) == ("denied", 401)
    assert service.requests[-1]["authorization"] == ""


def test_promote_through_a_token_registry_pins_the_image(
    bench: fakes.Bench, token_registry: tuple[RegistryServer, TokenService], tmp_path: Path
) -> None:
    server, _ = token_registry
    image = staging_on(bench, server, "msops/tokened-promoted")
    push_image(server, "msops/tokened-promoted", DEV_TAG)
    client = lookup(tmp_path, {"auths": {server.host: auth_entry(*USER)}})
    Promote(bench.cfg(), "dev", "staging", yes=True, lookup=client.lookup).run()
    assert f"image: {image}\n" in bench.text("staging")
