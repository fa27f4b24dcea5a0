"""A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1, and a push to it
with the distribution API alone: blobs, config and manifest, no Docker engine."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from tests.runtime.processes import AppHandle, free_port

INSTALL_HINT = "apt-get install docker-registry (scripts/test.sh does it)"
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
BIND_ATTEMPTS = 5

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPES = {
    "docker": (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
    "oci": (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
}


def bcrypt_entry(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash, the only kind the registry accepts.

    No htpasswd (apache2-utils) and no bcrypt package here: Python 3.11's crypt module asks
    the C library (libxcrypt), which does bcrypt (`$2b$`). 16 rounds: the cheapest allowed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError(f"the C library made no bcrypt hash (got {hashed!r})")
    return f"{user}:{hashed}\n"


def config_yaml(port: int, storage: Path, auth: Mapping[str, Any] | None) -> str:
    """The registry's config.yml (JSON is YAML): filesystem storage, loopback only."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = dict(auth)
    return json.dumps(config, indent=2)


@dataclass
class RegistryServer:
    """A running registry: its address, its process, and its temporary directory."""

    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    workdir: tempfile.TemporaryDirectory[str]
    auth: tuple[str, str] | None = None
    pushed: list[str] = field(default_factory=list)
    # With `token` auth: the service that signs the tokens, asked for a push token.
    token_service: TokenService | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def _process(self) -> AppHandle:
        # A server process like a demo app replica: the same log reading and the same stop.
        return AppHandle(self.port, self.proc, self.log)

    def logs(self) -> str:
        return self._process.logs()

    def stop(self) -> None:
        """Stop the registry (SIGTERM, then SIGKILL) and remove its storage; safe twice."""
        self._process.stop(STOP_TIMEOUT_SECONDS)
        self.workdir.cleanup()
        while self.cleanups:
            self.cleanups.pop()()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status)
    except urllib.error.HTTPError:
        return True  # 401 from an htpasswd registry: it is up
    except OSError:
        return False


def _launch(binary: str, work: Path, auth: Mapping[str, Any] | None) -> tuple[int, Any, Any]:
    port = free_port()
    (work / "config.yml").write_text(config_yaml(port, work / "storage", auth))
    log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 (the server handle owns it)
    proc = subprocess.Popen(
        [binary, "serve", str(work / "config.yml")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return port, proc, log


def start_registry(
    binary: str, auth: Mapping[str, Any] | None = None, user: tuple[str, str] | None = None
) -> RegistryServer:
    """Start `docker-registry serve` on a free port and wait until /v2/ answers.

    `user` (name, password) turns on htpasswd auth with a generated bcrypt entry. A port
    taken between free_port() and the bind is retried on another one.
    """
    workdir = tempfile.TemporaryDirectory(prefix="msops-registry-")
    work = Path(workdir.name)
    if user is not None:
        (work / "htpasswd").write_text(bcrypt_entry(*user))
        auth = {"htpasswd": {"realm": "msops-test", "path": str(work / "htpasswd")}}
    output = ""
    for _ in range(BIND_ATTEMPTS):
        port, proc, log = _launch(binary, work, auth)
        server = RegistryServer(port, proc, log, workdir, auth=user)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(f"{server.url}/v2/"):
                return server
            time.sleep(0.05)
        output = server.logs()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
        if "address already in use" not in output:
            break
    workdir.cleanup()
    raise RuntimeError(f"docker-registry did not start:\n{output}")


# --- a push with the distribution API ------------------------------------------------------------


def _request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Mapping[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as err:
        with err:
            raise AssertionError(f"{method} {url} answered {err.code}: {err.read()!r}") from None


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(text: str) -> tuple[bytes, str]:
    """A gzipped tar with one file: the layer, and the digest of the uncompressed tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("msops-test.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), digest_of(raw.getvalue())


def _auth_headers(server: RegistryServer, name: str) -> dict[str, str]:
    """What a pusher sends: the user's basic auth, or a token for pushing to `name`."""
    if server.auth is None:
        return {}
    basic = "Basic " + base64.b64encode(":".join(server.auth).encode()).decode()
    if server.token_service is None:
        return {"Authorization": basic}
    scope = {"scope": f"repository:{name}:pull,push", "service": TOKEN_SERVICE}
    token = server.token_service.answer(scope, basic)["token"]
    return {"Authorization": f"Bearer {token}"}


def upload_blob(server: RegistryServer, name: str, blob: bytes) -> str:
    """POST an upload, PUT the blob into it (a monolithic upload): its digest."""
    headers = _auth_headers(server, name)
    status, answer = _request("POST", f"{server.url}/v2/{name}/blobs/uploads/", b"", headers)
    assert status == 202, f"starting an upload answered {status}"
    location = urllib.parse.urljoin(server.url, answer["Location"])
    digest = digest_of(blob)
    sep = "&" if "?" in location else "?"
    put_headers = {**headers, "Content-Type": "application/octet-stream"}
    status, _ = _request("PUT", f"{location}{sep}digest={digest}", blob, put_headers)
    assert status == 201, f"finishing the upload answered {status}"
    return digest


def push_image(server: RegistryServer, name: str, tag: str, kind: str = "docker") -> str:
    """Push a one-layer image as `name:tag` (a Docker v2 or an OCI manifest): its digest."""
    manifest_type, config_type, layer_type = MEDIA_TYPES[kind]
    layer, diff_id = layer_tar(f"{name}:{tag}")
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["true"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    blobs = [(config_type, config), (layer_type, layer)]
    described = [
        {"mediaType": media, "size": len(blob), "digest": upload_blob(server, name, blob)}
        for media, blob in blobs
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": described[0],
            "layers": described[1:],
        }
    ).encode()
    headers = {**_auth_headers(server, name), "Content-Type": manifest_type}
    status, answer = _request("PUT", f"{server.url}/v2/{name}/manifests/{tag}", manifest, headers)
    assert status == 201, f"putting the manifest answered {status}"
    server.pushed.append(f"{server.host}/{name}:{tag}")
    return answer.get("Docker-Content-Digest") or digest_of(manifest)


# --- a token service: the registry's `token` auth, for the Bearer flow ----------------------------

TOKEN_SERVICE = "msops-test-registry"
TOKEN_ISSUER = "msops-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Hands out registry tokens the way Docker Hub's and ghcr.io's token services do.

    `GET /token?service=...&scope=repository:NAME:ACTIONS`, with Basic credentials: the user
    gets the actions asked for; anyone else gets a token that grants nothing. Tokens are JWTs
    signed RS256 by a self-signed certificate (openssl) that the registry trusts
    (`rootcertbundle`), the certificate in the header's `x5c`.
    """

    workdir: Path
    user: tuple[str, str]
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    _server: Any = None

    def __post_init__(self) -> None:
        self.key, self.cert = self.workdir / "token.key", self.workdir / "token.crt"
        subject = ["-subj", "/CN=msops-test-token"]
        files = ["-keyout", str(self.key), "-out", str(self.cert)]
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                *subject,
                *files,
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def auth_config(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(self.cert),
            }
        }

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 30,
            "iat": now - 30,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = ".".join(_b64url(json.dumps(p).encode()) for p in (header, claims))
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def answer(self, query: Mapping[str, str], authorization: str | None) -> dict[str, str]:
        """The token for one request: the scope's actions for the user, nothing for others."""
        self.requests.append({**query, "authorization": authorization or ""})
        expected = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
        access = []
        scope = query.get("scope", "")
        if authorization == expected and scope.startswith("repository:"):
            _, name, actions = scope.split(":", 2)
            access = [{"type": "repository", "name": name, "actions": actions.split(",")}]
        subject = self.user[0] if access else ""
        token = self.token(subject, access)
        return {"token": token, "access_token": token}

    def start(self) -> None:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                body = json.dumps(service.answer(query, self.headers.get("Authorization")))
                self.send_response(200 if url.path == "/token" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_token_registry(binary: str, user: tuple[str, str]) -> tuple[RegistryServer, TokenService]:
    """A registry with `token` auth, and the token service it sends clients to."""
    keys = tempfile.TemporaryDirectory(prefix="msops-token-")
    service = TokenService(Path(keys.name), user)
    service.start()
    try:
        server = start_registry(binary, auth=service.auth_config())
    except BaseException:
        service.stop()
        keys.cleanup()
        raise
    server.auth = user
    server.token_service = service
    server.cleanups.append(service.stop)
    server.cleanups.append(keys.cleanup)
    return server, service
