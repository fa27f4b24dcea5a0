"""msops.registry on plain data: where an image is asked for, docker config credentials, the
auth flows against a scripted registry. The real registry is in tests/runtime/test_registry.py."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from msops import registry
from msops.errors import BadInput, OperationFailed
from msops.registry import Credentials, Request, Response

BEARER = 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:msops/demo:pull"'
MANIFEST = "https://ghcr.io/v2/msops/demo/manifests/1.1.0"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Script:
    """A registry that answers from a script: (method, URL prefix) -> responses, in turn."""

    def __init__(self, answers: Mapping[tuple[str, str], list[Response]]) -> None:
        self.answers = {key: list(value) for key, value in answers.items()}
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        for (method, prefix), queue in self.answers.items():
            if request.method == method and request.url.startswith(prefix) and queue:
                return queue.pop(0)
        raise AssertionError(f"unscripted request {request.method} {request.url}")


def client(script: Script, creds: Credentials | None = None) -> registry.Registry:
    return registry.Registry(credentials=lambda host: creds, transport=script)


def challenged(header: str = BEARER) -> Response:
    return Response(401, {"www-authenticate": header})


def token(value: str = "t0k3n") -> Response:
    return Response(200, {}, json.dumps({"token": value}).encode())


USER = Credentials("ci", "s3cret", "auths in test")


# --- where an image is asked for -----------------------------------------------------------------


def test_a_ghcr_image_is_asked_at_ghcr_over_https() -> None:
    assert registry.locate("ghcr.io/msops/demo:1.1.0").manifest_url == MANIFEST


def test_a_bare_docker_hub_name_goes_to_the_hub_api_with_library() -> None:
    loc = registry.locate("nginx:1.27")
    assert loc.manifest_url == "https://registry-1.docker.io/v2/library/nginx/manifests/1.27"
    assert loc.registry == "docker.io"


def test_docker_hubs_other_names_go_to_the_hub_api_too() -> None:
    loc = registry.locate("index.docker.io/nginx:1.27")
    assert (loc.registry, loc.host, loc.name) == (
        "docker.io",
        "registry-1.docker.io",
        "library/nginx",
    )


def test_a_docker_hub_user_image_keeps_its_path() -> None:
    loc = registry.locate("bitnami/redis:7.2")
    assert (loc.host, loc.name) == ("registry-1.docker.io", "bitnami/redis")


def test_a_digest_wins_over_the_tag() -> None:
    digest = "sha256:" + "ab" * 32
    assert registry.locate(f"ghcr.io/msops/demo:1.1.0@{digest}").reference == digest


def test_no_tag_means_latest() -> None:
    assert registry.locate("ghcr.io/msops/demo").reference == "latest"


@pytest.mark.parametrize(
    ("host", "scheme"),
    [
        ("127.0.0.1:5000", "http"),
        ("localhost:5000", "http"),
        ("[::1]:5000", "http"),
        ("ghcr.io", "https"),
        ("registry.example.com:5000", "https"),
        ("10.0.0.5:5000", "https"),
    ],
)
def test_only_loopback_registries_are_asked_over_http(host: str, scheme: str) -> None:
    assert registry.api_scheme(host) == scheme


# --- the docker config ---------------------------------------------------------------------------


def test_docker_config_honours_DOCKER_CONFIG(tmp_path: Path) -> None:
    path = registry.docker_config_path({"DOCKER_CONFIG": str(tmp_path / "d")}, tmp_path)
    assert path == tmp_path / "d" / "config.json"


def test_docker_config_defaults_to_the_home_directory(tmp_path: Path) -> None:
    assert registry.docker_config_path({}, tmp_path) == tmp_path / ".docker" / "config.json"


def test_a_missing_docker_config_is_empty(tmp_path: Path) -> None:
    assert registry.read_docker_config(tmp_path / "config.json") == {}


def test_a_broken_docker_config_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(BadInput, match=str(path)):
        registry.read_docker_config(path)


def test_auths_auth_is_base64_of_user_and_password() -> None:
    config = {"auths": {"ghcr.io": {"auth": b64("ci:pa:ss")}}}
    found = registry.auths_credentials(config, "ghcr.io", "cfg")
    assert found is not None and (found.username, found.secret) == ("ci", "pa:ss")


def test_auths_username_and_password_fields_work_too() -> None:
    config = {"auths": {"ghcr.io": {"username": "ci", "password": "pw"}}}
    found = registry.auths_credentials(config, "ghcr.io", "cfg")
    assert found is not None and (found.username, found.secret) == ("ci", "pw")


def test_auths_keys_with_a_scheme_match_the_bare_registry() -> None:
    config = {"auths": {"https://ghcr.io": {"auth": b64("ci:pw")}}}
    assert registry.auths_credentials(config, "ghcr.io", "cfg") is not None


def test_docker_hub_credentials_are_found_under_the_v1_index_url() -> None:
    config = {"auths": {"https://index.docker.io/v1/": {"auth": b64("me:pw")}}}
    assert registry.auths_credentials(config, "docker.io", "cfg") is not None


def test_another_registrys_credentials_are_not_used() -> None:
    config = {"auths": {"quay.io": {"auth": b64("me:pw")}}}
    assert registry.auths_credentials(config, "ghcr.io", "cfg") is None


def test_an_auth_that_is_not_base64_is_bad_input_with_the_fix() -> None:
    config = {"auths": {"ghcr.io": {"auth": "%%%"}}}
    with pytest.raises(BadInput, match=r"docker login ghcr\.io"):
        registry.auths_credentials(config, "ghcr.io", "cfg")


def test_cred_helpers_win_over_the_creds_store() -> None:
    config = {"credsStore": "desktop", "credHelpers": {"ghcr.io": "gh"}}
    assert registry.credential_helper(config, "ghcr.io") == "gh"
    assert registry.credential_helper(config, "quay.io") == "desktop"


def test_a_helper_is_asked_with_dockers_server_url() -> None:
    asked: list[tuple[str, str]] = []

    def helper(name: str, server: str) -> Credentials | None:
        asked.append((name, server))
        return USER

    creds = registry.DockerCredentials({"credsStore": "pass"}, run_helper=helper)
    assert creds("docker.io") == USER and asked == [("pass", "https://index.docker.io/v1/")]


def test_a_helper_with_nothing_falls_back_to_auths() -> None:
    config = {"credsStore": "pass", "auths": {"ghcr.io": {"auth": b64("ci:pw")}}}
    found = registry.DockerCredentials(config, run_helper=lambda name, server: None)("ghcr.io")
    assert found is not None and found.username == "ci"


# --- a real credential helper program ------------------------------------------------------------


@pytest.fixture
def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Install `docker-credential-msopstest` with the given shell body, first on PATH."""

    def install(body: str) -> None:
        program = tmp_path / "docker-credential-msopstest"
        program.write_text("#!/bin/sh\n" + body + "\n")
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    return install


def test_a_helper_program_gets_the_server_on_stdin(helper_on_path: Callable[[str], None]) -> None:
    helper_on_path(
        '[ "$1" = get ] || exit 9\nread server\n'
        'printf \'{"ServerURL":"%s","Username":"u-%s","Secret":"pw"}\' "$server" "$server"'
    )
    found = registry.run_credential_helper("msopstest", "ghcr.io")
    assert found is not None and (found.username, found.secret) == ("u-ghcr.io", "pw")


def test_a_helper_program_without_credentials_means_anonymous(
    helper_on_path: Callable[[str], None],
) -> None:
    helper_on_path('echo "credentials not found in native keychain"; exit 1')
    assert registry.run_credential_helper("msopstest", "ghcr.io") is None


def test_a_failing_helper_program_is_an_error_with_its_output(
    helper_on_path: Callable[[str], None],
) -> None:
    helper_on_path('echo "keychain locked" >&2; exit 1')
    with pytest.raises(OperationFailed, match="keychain locked"):
        registry.run_credential_helper("msopstest", "ghcr.io")


def test_a_helper_that_is_not_installed_is_named() -> None:
    with pytest.raises(OperationFailed, match="docker-credential-msops-absent is not on PATH"):
        registry.run_credential_helper("msops-absent", "ghcr.io")


# --- WWW-Authenticate ----------------------------------------------------------------------------


def test_a_bearer_challenge_is_split_into_its_params() -> None:
    challenge = registry.parse_challenge(BEARER)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://ghcr.io/token",
        "service": "ghcr.io",
        "scope": "repository:msops/demo:pull",
    }


def test_a_basic_challenge_has_its_realm() -> None:
    challenge = registry.parse_challenge('Basic realm="Registry Realm"')
    assert (challenge.scheme, challenge.params) == ("basic", {"realm": "Registry Realm"})


# --- the lookup ----------------------------------------------------------------------------------


def test_an_image_answered_200_is_present() -> None:
    script = Script({("HEAD", MANIFEST): [Response(200, {})]})
    answer = client(script).lookup("ghcr.io/msops/demo:1.1.0")
    assert (answer.presence, answer.status) == ("present", 200)


def test_the_lookup_accepts_oci_and_docker_manifests_and_indexes() -> None:
    script = Script({("HEAD", MANIFEST): [Response(200, {})]})
    client(script).lookup("ghcr.io/msops/demo:1.1.0")
    accepted = script.requests[0].headers["Accept"].split(", ")
    assert sorted(accepted) == sorted(registry.MANIFEST_MEDIA_TYPES) and len(accepted) == 4


def test_an_image_answered_404_is_missing() -> None:
    script = Script({("HEAD", MANIFEST): [Response(404, {})]})
    assert client(script).lookup("ghcr.io/msops/demo:1.1.0").presence == "missing"


def test_a_bearer_challenge_fetches_a_token_with_the_credentials() -> None:
    script = Script(
        {
            ("HEAD", MANIFEST): [challenged(), Response(200, {})],
            ("GET", "https://ghcr.io/token"): [token()],
        }
    )
    answer = client(script, USER).lookup("ghcr.io/msops/demo:1.1.0")
    get = script.requests[1]
    assert get.url == (
        "https://ghcr.io/token?scope=repository%3Amsops%2Fdemo%3Apull&service=ghcr.io"
    )
    assert get.headers["Authorization"] == "Basic " + b64("ci:s3cret")
    assert script.requests[2].headers["Authorization"] == "Bearer t0k3n"
    assert answer.presence == "present" and answer.credentials == "auths in test"


def test_without_credentials_the_token_is_asked_for_anonymously() -> None:
    script = Script(
        {
            ("HEAD", MANIFEST): [challenged(), Response(404, {})],
            ("GET", "https://ghcr.io/token"): [token()],
        }
    )
    answer = client(script).lookup("ghcr.io/msops/demo:1.1.0")
    assert "Authorization" not in script.requests[1].headers
    assert (answer.presence, answer.credentials) == ("missing", "")


def test_an_access_token_field_is_accepted_too() -> None:
    script = Script(
        {
            ("HEAD", MANIFEST): [challenged(), Response(200, {})],
            ("GET", "https://ghcr.io/token"): [
                Response(200, {}, json.dumps({"access_token": "oauth"}).encode())
            ],
        }
    )
    client(script).lookup("ghcr.io/msops/demo:1.1.0")
    assert script.requests[2].headers["Authorization"] == "Bearer oauth"


def test_a_missing_scope_asks_for_pull_on_the_repository() -> None:
    script = Script(
        {
            ("HEAD", MANIFEST): [
                challenged('Bearer realm="https://ghcr.io/token"'),
                Response(200, {}),
            ],
            ("GET", "https://ghcr.io/token"): [token()],
        }
    )
    client(script).lookup("ghcr.io/msops/demo:1.1.0")
    assert script.requests[1].url == "https://ghcr.io/token?scope=repository%3Amsops%2Fdemo%3Apull"


def test_a_refused_token_means_denied() -> None:
    script = Script(
        {("HEAD", MANIFEST): [challenged()], ("GET", "https://ghcr.io/token"): [Response(403, {})]}
    )
    assert client(script, USER).lookup("ghcr.io/msops/demo:1.1.0").presence == "denied"


def test_a_401_with_the_token_means_denied() -> None:
    script = Script(
        {
            ("HEAD", MANIFEST): [challenged(), challenged()],
            ("GET", "https://ghcr.io/token"): [token()],
        }
    )
    answer = client(script).lookup("ghcr.io/msops/demo:1.1.0")
    assert (answer.presence, answer.status) == ("denied", 401)


def test_a_basic_challenge_is_answered_with_the_credentials() -> None:
    script = Script({("HEAD", MANIFEST): [challenged('Basic realm="r"'), Response(200, {})]})
    assert client(script, USER).lookup("ghcr.io/msops/demo:1.1.0").presence == "present"
    assert script.requests[1].headers["Authorization"] == "Basic " + b64("ci:s3cret")


def test_a_basic_challenge_without_credentials_is_denied_without_a_retry() -> None:
    script = Script({("HEAD", MANIFEST): [challenged('Basic realm="r"')]})
    assert client(script).lookup("ghcr.io/msops/demo:1.1.0").presence == "denied"
    assert len(script.requests) == 1


def test_an_unknown_challenge_is_an_error_naming_it() -> None:
    script = Script({("HEAD", MANIFEST): [challenged('Negotiate realm="x"')]})
    with pytest.raises(registry.RegistryError, match="negotiate"):
        client(script).lookup("ghcr.io/msops/demo:1.1.0")


def test_a_server_error_is_an_error_naming_the_status_and_the_skip_flag() -> None:
    script = Script({("HEAD", MANIFEST): [Response(503, {})]})
    with pytest.raises(registry.RegistryError, match=r"answered 503.*--no-verify-images"):
        client(script).lookup("ghcr.io/msops/demo:1.1.0")


def test_an_unreachable_registry_is_named_with_the_skip_flag() -> None:
    def down(request: Request) -> Response:
        raise registry.RegistryUnreachable("[Errno -2] Name or service not known")

    with pytest.raises(registry.RegistryUnreachable) as caught:
        registry.Registry(lambda host: None, down).lookup("ghcr.io/msops/demo:1.1.0")
    message = str(caught.value)
    assert message.startswith(f"cannot reach registry ghcr.io ({MANIFEST}): [Errno -2]")
    assert "--no-verify-images" in message


def test_the_real_transport_reports_a_closed_port_as_unreachable() -> None:
    # Port 9 on loopback (discard) has no listener here: connection refused, no network used.
    with pytest.raises(registry.RegistryUnreachable, match="refused"):
        registry.urllib_transport(Request("HEAD", "http://127.0.0.1:9/v2/", {}), timeout=5)


def test_from_environment_reads_the_docker_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": b64("a:b")}}}))
    found = registry.from_environment({"DOCKER_CONFIG": str(tmp_path)}).credentials("ghcr.io")
    assert found is not None and found.source == f"auths in {tmp_path / 'config.json'}"


# --- redirects, on loopback ----------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[tuple[str, list[tuple[str, dict[str, str]]]]]]:
    """Two HTTP servers on loopback: the first redirects everything to the second."""
    seen: list[list[tuple[str, dict[str, str]]]] = [[], []]
    started: list[ThreadingHTTPServer] = []

    def handler(index: int) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                seen[index].append((self.command, dict(self.headers.items())))
                if index == 0:
                    port = started[1].server_address[1]
                    self.send_response(307)
                    self.send_header("Location", f"http://localhost:{port}{self.path}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET = answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    for index in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(index))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    try:
        yield [(f"http://127.0.0.1:{s.server_address[1]}", seen[i]) for i, s in enumerate(started)]
    finally:
        for server in started:
            server.shutdown()
            server.server_close()


def test_a_redirect_keeps_the_method_and_drops_credentials_for_another_host(
    servers: list[tuple[str, list[tuple[str, dict[str, str]]]]],
) -> None:
    (first, _), (_, seen) = servers
    headers = {"Authorization": "Basic c2VjcmV0", "Accept": "x"}
    answer = registry.urllib_transport(Request("HEAD", f"{first}/v2/a/manifests/1", headers))
    assert answer.status == 200 and [method for method, _ in seen] == ["HEAD"]
    assert "Authorization" not in seen[0][1] and seen[0][1]["Accept"] == "x"
