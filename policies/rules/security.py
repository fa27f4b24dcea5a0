"""Security: no privileged containers, no root, no secret in plain text in an environment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, Severity

from components.vocabulary import SECRET_MASK

from .base import Problem, ResourcePolicy, Settings, schema, string_list
from .containers import Container, Env, containers
from .view import number

# --- no-privileged-containers ---------------------------------------------------------------------


def _capability(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def privileged_containers(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every container that runs privileged or is given a forbidden capability."""
    forbidden = {_capability(str(c)) for c in cfg["forbiddenCapabilities"]}
    for container in containers(args.resource_type, args.props):
        if container.get("privileged"):
            yield Problem(
                f"{container.where} runs privileged",
                "remove `privileged` and add only the capabilities the process needs.",
            )
        added = sorted(c for c in container.get("cap_adds") if _capability(c) in forbidden)
        if added:
            yield Problem(
                f"{container.where} adds the capabilities {', '.join(added)}",
                "drop ALL capabilities and add back only the narrow ones the process "
                "needs (for example NET_BIND_SERVICE).",
            )


NO_PRIVILEGED = ResourcePolicy(
    name="no-privileged-containers",
    description="No container runs privileged or is given ALL or SYS_ADMIN capabilities.",
    why="a privileged container (or one given ALL or SYS_ADMIN capabilities) can take over the "
    "host, so one compromised process owns the machine.",
    check=privileged_containers,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    config_schema=schema(
        forbiddenCapabilities=string_list(
            ["ALL", "SYS_ADMIN"], "Added capabilities that amount to a privileged container."
        ),
    ),
    remediation_steps="Drop privileged mode; drop ALL capabilities and add back narrow ones.",
)

# --- containers-non-root --------------------------------------------------------------------------


def _is_root_user(user: Any) -> bool:
    if not isinstance(user, str) or not user.strip():
        return True
    return user.split(":", 1)[0].strip() in ("root", "0")


def _k8s_root(container: Container) -> Problem | None:
    """A Kubernetes container that may run as root: uid 0, or nothing that rules root out."""
    uid = number(container.get("run_as_user"))
    if uid == 0:
        detail = f"{container.where} sets runAsUser: 0 (root)"
    elif uid is not None or container.get("run_as_non_root") is True:
        return None
    else:
        detail = f"{container.where} sets neither runAsNonRoot: true nor a runAsUser above 0"
    fix = (
        "set securityContext.runAsNonRoot: true and a runAsUser above 0 on the pod or "
        "the container (msops:services.<name>.runAsUser sets it for a service)."
    )
    return Problem(detail, fix, waivable=True)


def _docker_root(container: Container) -> Problem | None:
    """A docker or swarm container that runs as root: root, uid 0, or no user at all."""
    user = container.get("user")
    if not _is_root_user(user):
        return None
    shown = user if isinstance(user, str) and user else None
    detail = (
        f"{container.where} runs as {shown!r}"
        if shown
        else f"{container.where} sets no user, so it runs as the image's default, root"
    )
    field = "user" if container.backend == "docker" else "taskSpec.containerSpec.user"
    fix = (
        f"set `{field}` to a uid above 0 ('10001' or '10001:10001'); "
        "msops:services.<name>.runAsUser sets it for a service."
    )
    return Problem(detail, fix, waivable=True)


def root_containers(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every container that runs, or may run, as root."""
    for container in containers(args.resource_type, args.props):
        root = _k8s_root if container.backend == "kubernetes" else _docker_root
        problem = root(container)
        if problem is not None:
            yield problem


NON_ROOT = ResourcePolicy(
    name="containers-non-root",
    description="Every container runs as an explicitly set non-root user.",
    why="a process running as root inside the container is root on the host the moment it "
    "escapes, and can rewrite everything the image holds.",
    check=root_containers,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=schema(),
    remediation_steps="Set the container user (docker/swarm) or runAsNonRoot and runAsUser "
    "(Kubernetes); waive a deliberate exception with a reason.",
)

# --- no-plaintext-secret-env ----------------------------------------------------------------------


def is_secret_name(name: str, secret_words: set[str]) -> bool:
    """Whether one word of a variable's name (split at `_`, `-`, `.` and camelCase) is secret."""
    parts = [p for chunk in re.split(r"[^A-Za-z0-9]+", name) for p in _camel_parts(chunk)]
    return any(p.upper() in secret_words for p in parts)


def _camel_parts(chunk: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[0-9]+", chunk) or [chunk]


def _plain_secret(env: Env, secret_words: set[str]) -> bool:
    """True when a secret-looking variable holds a literal value in the resource."""
    if env.by_reference or env.secret or not is_secret_name(env.name, secret_words):
        return False
    value = env.value
    if value is None or value == SECRET_MASK or not isinstance(value, str) or not value:
        return False
    parts = re.split(r"[^A-Za-z0-9]+", env.name.upper())
    # NAME_FILE=/run/secrets/name is how Docker images take a secret without holding it.
    return not (parts[-1] == "FILE" and value.startswith("/"))


def _secret_fix(backend: str, variable: str) -> str:
    if backend == "kubernetes":
        return (
            "take the value from a Secret with valueFrom.secretKeyRef "
            "(msops:services.<name>.secretEnv does this for a service)."
        )
    fix = "move it to msops:services.<name>.secretEnv and set it with `pulumi config set --secret`"
    if backend == "swarm":
        fix += f", or mount it as a Docker secret and pass {variable}_FILE=/run/secrets/<name>"
    return fix + "."


def plaintext_secrets(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every environment variable named like a secret that holds a plain value."""
    secret_words = {str(w).upper() for w in cfg["secretWords"]}
    for container in containers(args.resource_type, args.props):
        variables = container.get("env")
        if variables is None:
            # One secret value for the whole environment: no variable in it can be checked,
            # and a plain one would pass unseen. msops sets each variable on its own.
            yield Problem(
                f"{container.where} has its whole environment as one secret value, so no "
                "variable in it can be checked",
                "set each variable on its own, and only the secret ones as secrets.",
            )
            continue
        for env in variables:
            if _plain_secret(env, secret_words):
                yield Problem(
                    f"{container.where} sets {env.name} to a plain value",
                    _secret_fix(container.backend, env.name),
                )


NO_PLAINTEXT_SECRET_ENV = ResourcePolicy(
    name="no-plaintext-secret-env",
    description="No environment variable named like a secret carries a plain value.",
    why="a plain value is stored unencrypted in the stack config, the Pulumi state and its "
    "history, and shows in `docker inspect` or the manifest.",
    check=plaintext_secrets,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=schema(
        secretWords=string_list(
            ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "APIKEY"],
            "A variable is secret-looking when one of the words of its name "
            "(split at '_', '-', '.' and camelCase) is one of these.",
        ),
    ),
    remediation_steps="Use secretEnv (a Pulumi secret), valueFrom.secretKeyRef, or *_FILE.",
)
