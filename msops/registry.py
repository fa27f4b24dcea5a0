"""Asks an image's registry whether it holds the image: the OCI distribution API, as docker does."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from components.vocabulary import parse_image
from msops.errors import BadInput, OperationFailed

# Docker Hub is written `docker.io` (or nothing) in a reference, answers its API on another
# host, and is keyed in ~/.docker/config.json by its old v1 index URL.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"})
# What a registry may answer for a tag: a multi-platform index/list or a single manifest.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
TIMEOUT_SECONDS = 15.0
SKIP_FLAG = "--no-verify-images"
# How `docker login` and the credential helpers say "I have nothing for that registry".
_HELPER_NOT_FOUND = re.compile(r"credentials not found|not found in native keychain", re.I)


# --- where an image lives ------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """An image's registry (as written), the API host, its repository name and tag or digest."""

    registry: str
    host: str
    name: str
    reference: str

    @property
    def manifest_url(self) -> str:
        return f"{api_scheme(self.host)}://{self.host}/v2/{self.name}/manifests/{self.reference}"


def locate(image: str) -> Location:
    """Where `HEAD /v2/<name>/manifests/<reference>` goes for an image reference.

    A digest wins over a tag: it is what runs. No tag and no digest means `latest`, as docker
    pulls it. Docker Hub names get Hub's API host and `library/` for its official images.
    """
    ref = parse_image(image)
    registry, host, name = ref.registry, ref.registry, ref.path
    if registry in _DOCKER_HUB_ALIASES:
        registry, host = DOCKER_HUB, DOCKER_HUB_API
        name = name if "/" in name else f"library/{name}"
    return Location(registry, host, name, ref.digest or ref.tag or "latest")


def api_scheme(host: str) -> str:
    """https, except for a registry on the loopback interface, which docker also reaches over
    plain http (the 127.0.0.0/8 registries it marks insecure by itself)."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or host
    if name == "localhost":
        return "http"
    try:
        return "http" if ipaddress.ip_address(name).is_loopback else "https"
    except ValueError:
        return "https"


# --- credentials from the docker config ----------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str = field(repr=False)
    # Where they came from, for messages: "auths in ~/.docker/config.json", a helper's name.
    source: str = ""

    def basic(self) -> str:
        pair = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def docker_config_path(env: Mapping[str, str], home: Path) -> Path:
    """$DOCKER_CONFIG/config.json when set, else ~/.docker/config.json (docker's own rule)."""
    base = env.get("DOCKER_CONFIG")
    return (Path(base) if base else home / ".docker") / "config.json"


def read_docker_config(path: Path) -> dict[str, object]:
    """The docker config as data; a missing file is an empty one, a broken one an error."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BadInput(f"cannot read the docker config {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"the docker config {path} is not valid JSON ({exc.msg}, line {exc.lineno}): "
            "fix it, or run `docker login` again to rewrite it"
        ) from None
    if not isinstance(data, dict):
        raise BadInput(f"the docker config {path} must be a JSON object")
    return data


def config_key(registry: str) -> str:
    """A registry as the docker config keys it: bare host[:port], Docker Hub as its aliases."""
    key = registry.strip()
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    key = key.split("/", 1)[0].lower()
    return DOCKER_HUB if key in _DOCKER_HUB_ALIASES else key


def server_url(registry: str) -> str:
    """What `docker login` hands a credential helper for this registry."""
    return DOCKER_HUB_CONFIG_KEY if config_key(registry) == DOCKER_HUB else config_key(registry)


def _entry(mapping: object, registry: str) -> object:
    """The value a docker config mapping (`auths`, `credHelpers`) holds for this registry."""
    if not isinstance(mapping, dict):
        return None
    wanted = config_key(registry)
    for key, value in mapping.items():
        if config_key(str(key)) == wanted:
            return value
    return None


def auths_credentials(
    config: Mapping[str, object], registry: str, where: str
) -> Credentials | None:
    """Credentials from `auths`: base64 `auth` ("user:password"), or `username`/`password`."""
    entry = _entry(config.get("auths"), registry)
    if not isinstance(entry, dict):
        return None
    source = f"auths in {where}"
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            raise BadInput(
                f"{where}: auths.{registry}.auth is not base64 of user:password; "
                f"run `docker login {registry}` again"
            ) from None
        if sep:
            return Credentials(user, secret, source)
    name, password = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(password, str) and name:
        return Credentials(name, password, source)
    return None


def credential_helper(config: Mapping[str, object], registry: str) -> str | None:
    """The helper docker would ask: `credHelpers` for this registry, else `credsStore`."""
    helper = _entry(config.get("credHelpers"), registry)
    if isinstance(helper, str) and helper:
        return helper
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


HelperRunner = Callable[[str, str], "Credentials | None"]


def run_credential_helper(helper: str, server: str) -> Credentials | None:
    """`docker-credential-<helper> get`, the server on stdin; None when it has nothing."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise OperationFailed(
            f"the docker config names the credential helper {helper!r}, but {program} is not "
            f"on PATH: install it, or remove it from credsStore/credHelpers"
        ) from None
    except subprocess.TimeoutExpired:
        raise OperationFailed(
            f"{program} get did not answer within {TIMEOUT_SECONDS:g} s"
        ) from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()
        if _HELPER_NOT_FOUND.search(said):
            return None
        raise OperationFailed(f"{program} get failed for {server}: {said or done.returncode}")
    try:
        answer = json.loads(done.stdout)
        return Credentials(str(answer["Username"]), str(answer["Secret"]), program)
    except (json.JSONDecodeError, KeyError, TypeError):
        raise OperationFailed(f"{program} get answered something other than its JSON") from None


@dataclass(frozen=True)
class DockerCredentials:
    """Looks credentials up the way docker does: a credential helper first, then `auths`."""

    config: Mapping[str, object]
    where: str = "~/.docker/config.json"
    run_helper: HelperRunner = run_credential_helper

    def __call__(self, registry: str) -> Credentials | None:
        helper = credential_helper(self.config, registry)
        if helper is not None:
            found = self.run_helper(helper, server_url(registry))
            if found is not None:
                return found
        return auths_credentials(self.config, registry, self.where)


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    status: int
    # Header names in lower case.
    headers: Mapping[str, str]
    body: bytes = b""


Transport = Callable[[Request], Response]


class RegistryUnreachable(OperationFailed):
    """The registry did not answer: no route, DNS, TLS or a timeout."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect as the same method, and never carry credentials to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        new.method = req.get_method()
        if urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
        return new


_OPENER = urllib.request.build_opener(_Redirects())


def urllib_transport(request: Request, timeout: float = TIMEOUT_SECONDS) -> Response:
    """One HTTP exchange with urllib; 4xx and 5xx are answers, not exceptions."""
    req = urllib.request.Request(request.url, headers=dict(request.headers), method=request.method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return Response(resp.status, _lower(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, _lower(err.headers.items()), err.read())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnreachable(str(reason)) from None


def _lower(items: object) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}  # type: ignore[attr-defined]


# --- the check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """A `WWW-Authenticate` header: `Bearer realm="...",service="...",scope="..."` or `Basic`."""

    scheme: str
    params: Mapping[str, str]


_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): (m[2] if m[2] else m[3]) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()})


Presence = Literal["present", "missing", "denied"]


@dataclass(frozen=True)
class Answer:
    """What the registry said about one image."""

    image: str
    location: Location
    presence: Presence
    status: int
    # Where the credentials came from; "" when the registry was asked anonymously.
    credentials: str = ""


class RegistryError(OperationFailed):
    """The registry answered, but not with yes, no or "not for you"."""


@dataclass(frozen=True)
class Registry:
    """Asks registries for manifests: HEAD, and on a 401 the challenge's auth flow, once."""

    credentials: Callable[[str], Credentials | None]
    transport: Transport = urllib_transport

    def lookup(self, image: str) -> Answer:
        loc = locate(image)
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        resp = self._send("HEAD", loc.manifest_url, headers, loc)
        used = ""
        if resp.status == 401:
            creds = self.credentials(loc.registry)
            used = creds.source if creds else ""
            challenge = parse_challenge(resp.headers.get("www-authenticate", ""))
            authorization = self._authorize(challenge, creds, loc)
            if authorization is None:
                return Answer(image, loc, "denied", resp.status, used)
            headers = {**headers, "Authorization": authorization}
            resp = self._send("HEAD", loc.manifest_url, headers, loc)
        return Answer(image, loc, _presence(resp, loc), resp.status, used)

    def _authorize(
        self, challenge: Challenge, creds: Credentials | None, loc: Location
    ) -> str | None:
        """The Authorization header the challenge asks for; None when none can be had."""
        if challenge.scheme == "basic":
            return creds.basic() if creds else None
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise RegistryError(
                f"registry {loc.registry} asked for an authentication msops does not speak "
                f"({challenge.scheme or 'no WWW-Authenticate header'})"
            )
        query = {"scope": challenge.params.get("scope") or f"repository:{loc.name}:pull"}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        realm = challenge.params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Authorization": creds.basic()} if creds else {}
        resp = self._send("GET", url, headers, loc)
        if resp.status in (401, 403):
            return None
        if resp.status != 200:
            raise RegistryError(
                f"the token service of {loc.registry} ({realm}) answered {resp.status}"
            )
        try:
            body = json.loads(resp.body)
            token = body.get("token") or body.get("access_token")
        except (json.JSONDecodeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {loc.registry} ({realm}) sent no token")
        return f"Bearer {token}"

    def _send(self, method: str, url: str, headers: Mapping[str, str], loc: Location) -> Response:
        try:
            return self.transport(Request(method, url, headers))
        except RegistryUnreachable as exc:
            raise RegistryUnreachable(
                f"cannot reach registry {loc.registry} ({url}): {exc}. Check the network and "
                f"the registry, or pass {SKIP_FLAG} to promote without asking it"
            ) from None


def _presence(resp: Response, loc: Location) -> Presence:
    if resp.status == 200:
        return "present"
    if resp.status == 404:
        return "missing"
    if resp.status in (401, 403):
        return "denied"
    raise RegistryError(
        f"registry {loc.registry} answered {resp.status} to HEAD {loc.manifest_url}; "
        f"try again later, or pass {SKIP_FLAG} to promote without asking it"
    )


def from_environment(env: Mapping[str, str] | None = None, home: Path | None = None) -> Registry:
    """A registry client with the user's docker config ($DOCKER_CONFIG or ~/.docker)."""
    env = os.environ if env is None else env
    path = docker_config_path(env, Path.home() if home is None else home)
    return Registry(DockerCredentials(read_docker_config(path), where=str(path)))


# --- the refusal ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpushed:
    """An image a promotion would pin that its registry does not hold (or will not show)."""

    key: str
    answer: Answer
    # The image the source stack builds on its own machine instead of pulling, and from where.
    built: tuple[str, str] | None = None


class ImagesMissing(BadInput):
    """A promotion refused before anything was written: images it would pin are not pushed."""

    def __init__(self, source: str, destination: str, unpushed: list[Unpushed]) -> None:
        self.unpushed = unpushed
        super().__init__(missing_message(source, destination, unpushed))


def _why(answer: Answer) -> str:
    loc = answer.location
    if answer.presence == "missing":
        return (
            f"registry {loc.registry} has no such image "
            f"(HEAD {loc.manifest_url} answered {answer.status})"
        )
    asked = (
        f"with the credentials from {answer.credentials}"
        if answer.credentials
        else f"anonymously: the docker config has no credentials for {loc.registry}"
    )
    return (
        f"registry {loc.registry} refused to show it ({answer.status}, asked {asked}); it does "
        f"not exist, or it is private and needs `docker login {loc.registry}` by someone who "
        "may pull it"
    )


def missing_message(source: str, destination: str, unpushed: list[Unpushed]) -> str:
    """One line per image: the config key, the image, what the registry said; then the fix."""
    count = f"{len(unpushed)} image{'s' if len(unpushed) != 1 else ''}"
    lines = [
        f"promotion from {source!r} to {destination!r} refused, nothing was written: {count} "
        f"it would pin in {destination} {'is' if len(unpushed) == 1 else 'are'} not in the "
        "registry:"
    ]
    for item in unpushed:
        line = f"  - {item.key}: {item.answer.image}: {_why(item.answer)}."
        if item.built is not None:
            image, context = item.built
            line += (
                f" {source} builds {image} from {context}/ on its own machine, which pushes "
                "nothing."
            )
        lines.append(line)
    lines.append(
        "Push each image first: in CI the `images` job of .github/workflows/deploy.yml builds "
        "app/ and pushes it tagged with the version dev pins; by hand `docker build -t IMAGE "
        f"app && docker push IMAGE`. Then promote again ({SKIP_FLAG} skips this check)."
    )
    return "\n".join(lines)
