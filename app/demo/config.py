"""The demo's settings, read once from the environment at start; secrets may come from files."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from demo.migrations import LATEST_VERSION

# Variables that may carry a secret. Each can instead be given as `<NAME>_FILE`, the path of
# a file holding the value (Docker and Swarm secrets, Kubernetes secret volumes), so the
# value need not sit in the process environment where `docker inspect` shows it.
SECRET_VARS = ("DATABASE_URL", "UPSTREAM_URL")

DEFAULT_UPSTREAM_TIMEOUT_SECONDS = 2.0
MAX_DELAY_SECONDS = 30.0


class ConfigError(Exception):
    """A setting the app cannot start with. The message is safe to print: it never holds a
    secret's value, only the variable's name and, for files, the path."""


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """`name` from the environment, or from the file `name_FILE` points at.

    Both set is an error, as in the official postgres image: which one wins would be a
    guess, and a stale one winning is the kind of bug nobody finds. An empty variable
    counts as unset, as it does there.
    """
    value = env.get(name) or None
    path = env.get(f"{name}_FILE") or None
    if value is not None and path is not None:
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one of them")
    if path is None:
        return value
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{name}_FILE={path}: cannot read the file ({reason})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}_FILE={path}: the file is not UTF-8 text") from None
    # `echo secret > file` and most secret stores end the value with a newline.
    content = content.rstrip("\r\n")
    if not content:
        raise ConfigError(f"{name}_FILE={path}: the file is empty")
    return content


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: it must be {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range: it must be {low:g}..{high:g}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a switch: use 1 or 0")


def schema_version_from_env(env: Mapping[str, str]) -> int:
    value = _int(env, "SCHEMA_VERSION", LATEST_VERSION, 0, 2**31 - 1)
    if value > LATEST_VERSION:
        raise ConfigError(
            f"SCHEMA_VERSION={value}, but this build has migrations up to {LATEST_VERSION} "
            "only: the image is older than the schema it was told to expect"
        )
    return value


def _upstream(env: Mapping[str, str]) -> str | None:
    url = read_secret(env, "UPSTREAM_URL")
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        # The value itself stays out of the message: it may carry credentials.
        raise ConfigError("UPSTREAM_URL is not an http(s) URL with a host, e.g. http://api:8080")
    return url.rstrip("/")


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    version: str = "dev"
    service: str = "demo"
    replica: str = ""
    access_log: bool = False
    database_url: str | None = None
    # The schema this build needs; /readyz fails while the database is older.
    schema_version: int = LATEST_VERSION
    upstream_url: str | None = None
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT_SECONDS
    # Faults, to show a bad release for real (canary analysis, alerts).
    fail_rate: float = 0.0
    delay_seconds: float = 0.0
    delay_rate: float = 1.0
    seed: int | None = None
    healthy: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        seed_raw = env.get("DEMO_SEED", "")
        return cls(
            host=env.get("HOST") or cls.host,
            port=_int(env, "PORT", cls.port, 0, 65535),
            version=env.get("APP_VERSION") or cls.version,
            service=env.get("SERVICE_NAME") or cls.service,
            # The hostname is the container id under Docker and the pod name under
            # Kubernetes, which is what a person reading X-Replica wants to see.
            replica=env.get("REPLICA_ID") or socket.gethostname(),
            access_log=_flag(env, "ACCESS_LOG", False),
            database_url=read_secret(env, "DATABASE_URL"),
            schema_version=schema_version_from_env(env),
            upstream_url=_upstream(env),
            upstream_timeout=_float(
                env, "UPSTREAM_TIMEOUT_SECONDS", DEFAULT_UPSTREAM_TIMEOUT_SECONDS, 0.05, 60.0
            ),
            fail_rate=_float(env, "DEMO_FAIL_RATE", 0.0, 0.0, 1.0),
            delay_seconds=_float(env, "DEMO_DELAY_SECONDS", 0.0, 0.0, MAX_DELAY_SECONDS),
            delay_rate=_float(env, "DEMO_DELAY_RATE", 1.0, 0.0, 1.0),
            seed=None if seed_raw == "" else _int(env, "DEMO_SEED", 0, -(2**63), 2**63 - 1),
            healthy=_flag(env, "DEMO_HEALTHY", True),
        )
