"""The words every part of msops shares: label keys, marks, the secret mask, image references.

The backends write these, the policy pack and the CLI read them; each is defined here and
nowhere else. Plain Python only: the CLI imports this module and must start fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# How a secret value is shown wherever msops prints or records one it did not decrypt: the
# offline synth, stack outputs, rendered files. Never a value to deploy.
SECRET_MASK = "[secret]"

# `msops.dev/policy-waiver.<policy>: <reason>` on a resource (a docker or swarm label, a
# Kubernetes annotation) waives that one policy for it; the reason shows in reviews.
WAIVER_PREFIX = "msops.dev/policy-waiver."
# `"true"` on what a service marked `exposed` publishes (a docker LB, a swarm service, a
# Kubernetes Service): it may listen beyond loopback, or be a LoadBalancer.
EXPOSED_MARK = "msops.dev/exposed"

# Labels on docker containers, swarm services and their tasks, volumes and networks.
LABEL_STACK = "msops.stack"
LABEL_SERVICE = "msops.service"
LABEL_ROLE = "msops.role"
LABEL_VERSION = "msops.version"
LABEL_REPLICA = "msops.replica"
LABEL_IMAGE = "msops.image"
LABEL_IMAGE_ID = "msops.image-id"
LABEL_DATABASE = "msops.database"
LABEL_STORAGE = "msops.storage"
LABEL_COMPONENT = "msops.component"
LABEL_MONITORING = "msops.monitoring"
# "canary" on the replicas of a canary step (docker containers, swarm services, pods).
LABEL_TRACK = "msops.dev/track"
TRACK_CANARY = "canary"

# The schema a replica runs on, known once its release's migration has succeeded.
LABEL_SCHEMA = "msops.schema"

# On a docker container whose env holds Pulumi secrets: their variable names, comma-separated.
# Under `pulumi preview --policy-pack` a policy sees secret values decrypted, so this is how it
# tells them from a plain variable; the values themselves stay secret Outputs.
LABEL_SECRET_ENV = "msops.secret-env"

# Values of LABEL_ROLE.
ROLE_REPLICA = "replica"
ROLE_LB = "lb"
ROLE_DATABASE = "database"
ROLE_MONITORING = "monitoring"
# A one-off container that runs a service's migrations to completion.
ROLE_MIGRATION = "migration"

# Where a migrations block's `down` command takes the version it migrates down to.
VERSION_PLACEHOLDER = "{version}"


def down_command(template: tuple[str, ...] | list[str], version: int) -> tuple[str, ...]:
    """A down command with the version it migrates to in place of `{version}`."""
    return tuple(part.replace(VERSION_PLACEHOLDER, str(version)) for part in template)


# How msops hands the Pulumi program the down step of a rollback (`msops rollback
# --migrate-down`): JSON {service: version}. Never config: the stack file holds only real config.
MIGRATE_DOWN_ENV = "MSOPS_MIGRATE_DOWN"

# Kubernetes recommended labels, and msops' own annotations.
K8S_NAME = "app.kubernetes.io/name"
K8S_INSTANCE = "app.kubernetes.io/instance"
K8S_VERSION = "app.kubernetes.io/version"
K8S_COMPONENT = "app.kubernetes.io/component"
K8S_MANAGED_BY = "app.kubernetes.io/managed-by"
K8S_VERSION_ANNOTATION = "msops.dev/version"
MANAGED_BY = "msops"
# Grafana's dashboard sidecar (kube-prometheus-stack) loads ConfigMaps with this label.
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"


# --- image references -----------------------------------------------------------------------------

# An image content digest, as registries and `docker inspect` report it.
DIGEST = r"sha256:[a-f0-9]{64}"

# The Docker reference grammar (distribution/reference), anchored: [domain/]path[:tag][@digest].
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>[\w][\w.-]{{0,127}}))?(?:@(?P<digest>{DIGEST}))?$"
)
_K8S_LABEL_VALUE_MAX = 63


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way registries read it."""

    registry: str
    # The repository path inside the registry, `library/` added for Docker Hub's own images.
    path: str
    tag: str | None
    digest: str | None
    # As written, without tag or digest.
    repository: str

    @property
    def pin(self) -> str:
        """`:tag`, `@digest` or both, as written after the repository."""
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def version(self) -> str:
        """What a person calls this image's version: its tag, else its digest."""
        return self.tag or self.digest or "latest"

    @property
    def version_label(self) -> str:
        """The version as a Kubernetes label value may hold it (63 of [A-Za-z0-9_.-])."""
        text = self.tag or (self.digest or "").replace(":", "-")[: len("sha256-") + 12]
        text = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:_K8S_LABEL_VALUE_MAX]
        return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)


def parse_image(ref: str) -> ImageRef:
    """Split `[registry/]path[:tag][@digest]`; a bare Docker Hub name means docker.io/library/."""
    rest, _, digest = ref.partition("@")
    tag = None
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = "docker.io", rest
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry=registry, path=path, tag=tag, digest=digest or None, repository=rest)


def image_version(ref: str) -> str:
    """The version part of an image reference: its tag, else its digest."""
    return parse_image(ref).version
