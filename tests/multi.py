"""A test stack of two microservices (web in front of api) and a history of their releases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ruamel.yaml import YAML

from msops import releases
from msops.releases import Update
from tests import fakes

STACK = """\
# dev: web in front of api (a test copy with a secret only api uses).
config:
  msops:backend: docker
  msops:services:
    # The front end people reach.
    web:
      image: msops/demo:{web}
      replicas: 2
      port: 8080
      env:
        LOG_LEVEL: info
      lb:
        port: 8000
    # The API behind it; it alone holds the key.
    api:
      image: ghcr.io/msops/api:{api}
      replicas: {api_replicas}  # sized for the load
      port: 8080
      env:
        LOG_LEVEL: {api_log}
      secretEnv:
        API_KEY: apiKey
      lb:
        port: 8001
  msops:secrets:
    apiKey:
      secure: {ciphertext}
  msops:monitoring:
    enabled: false
"""

# (web tag, api tag, api replicas, api log level, api key) of releases 1-3; 3 is the file.
RELEASES = (
    ("1.3.0", "2.0.0", 2, "info", fakes.API_KEYS[0]),
    ("1.4.0", "2.0.0", 2, "info", fakes.API_KEYS[0]),
    ("1.4.0", "2.1.0", 3, "warn", fakes.API_KEYS[1]),
)


def digest(name: str) -> str:
    """A made-up but well-formed digest, one per name."""
    import hashlib

    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


# What each release's images resolved to: one digest per image reference.
DIGESTS = {
    n: {"web": digest(f"web:{r[0]}"), "api": digest(f"api:{r[1]}")}
    for n, r in enumerate(RELEASES, start=1)
}


def text(web: str, api: str, api_replicas: int, api_log: str, key: str) -> str:
    return STACK.format(
        web=web, api=api, api_replicas=api_replicas, api_log=api_log, ciphertext=fakes.encrypt(key)
    )


def file_text() -> str:
    return text(*RELEASES[-1])


def values(web: str, api: str, api_replicas: int, api_log: str, key: str) -> dict[str, Any]:
    """The decoded config of one release, its secret decrypted, as history reports it."""
    config = YAML(typ="safe").load(text(web, api, api_replicas, api_log, key))["config"]
    config["msops:secrets"]["apiKey"] = key
    return config


def update(number: int, release: tuple[Any, ...], *, message: str = "", **kw: Any) -> Update:
    start = fakes.EPOCH + timedelta(hours=number)
    return Update(
        kind=kw.get("kind", "update"),
        result=kw.get("result", "succeeded"),
        start_time=start,
        end_time=start + timedelta(minutes=2),
        message=message or f"release {number}",
        version=0,
        config=fakes.entries(values(*release), {"msops:secrets"}),
    )


def history() -> list[Update]:
    """Releases 1-3, oldest first; each update after the first carries, as msops writes it,
    the digests of the release before it (the stack outputs hold release 3's)."""
    found = []
    for number, release in enumerate(RELEASES, start=1):
        before = DIGESTS.get(number - 1, {})
        message = releases.with_digests(f"release {number}", before) or ""
        found.append(update(number, release, message=message))
    return found


def outputs() -> dict[str, Any]:
    """The stack outputs release 3 left: each service's digest."""
    return {"services": {s: {"digest": d} for s, d in DIGESTS[3].items()}}


def bench(root: Any) -> fakes.Bench:
    """A bench whose dev stack is this two-service stack, deployed as release 3."""
    made = fakes.Bench(root, outputs=outputs())
    made.deployed("dev", history(), file_text())
    return made


def block(stack_text: str, service: str) -> str:
    """The lines of one service's block in a stack file, its comment line above included."""
    lines = stack_text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line == f"    {service}:\n") - 1
    end = start + 2
    while end < len(lines) and lines[end].startswith("      "):
        end += 1
    return "".join(lines[start:end])
