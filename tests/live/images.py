"""Stand-in images for the live tier, built offline from one debootstrapped Debian base.

No registry can be reached, so every image a stack pins is replaced by a local stand-in that
behaves like it for what msops uses (see tests/live/images/*/Dockerfile):

  nginx            Debian's nginx-light, user 101, busybox wget
  postgres         Debian's PostgreSQL 15, an entrypoint honouring POSTGRES_USER, POSTGRES_DB,
                   POSTGRES_PASSWORD(_FILE) and PGDATA, pg_isready on PATH
  prometheus       Debian's prometheus as nobody, the official ENTRYPOINT/CMD split
  grafana          a Python stand-in serving the health API and its provisioning
  demo             app/demo on Debian's python3, uid 10001, no wget or curl (like python:slim)
  demo-unhealthy   the demo app whose /healthz answers 500

The base is `debootstrap --variant=minbase bookworm` from the configured apt mirror, with the
stand-ins' packages installed in the chroot (images/build-base.sh), then `docker import`ed.
The tarball is cached under /var/cache/msops-live keyed by a hash of its inputs; the image
stays in the engine. Each stand-in is a small `docker build` FROM the base, which needs no
network, then tagged as every reference the graphs use (`tag_refs`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from tests.live.engine import CACHE_DIR

HERE = Path(__file__).resolve().parent / "images"
APP_DIR = Path(__file__).resolve().parents[2] / "app"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "busybox",
    "nginx-light",
    "postgresql-15",
    "prometheus",
    "python3",
    "python3-prometheus-client",
    "python3-psycopg",
    "python3-yaml",
)
BASE_REPO = "msops-live/base"
STANDIN_REPO = "msops-live"
BUILD_TIMEOUT = 900

# Which stand-in serves an image reference, by repository (the tag is whatever the graph pins).
STANDINS = {
    "nginx": "nginx",
    "postgres": "postgres",
    "prom/prometheus": "prometheus",
    "grafana/grafana": "grafana",
    "msops/demo": "demo",
    "ghcr.io/msops/demo": "demo",
}
# A demo tag ending in this is the variant whose health check never passes.
UNHEALTHY_SUFFIX = "-unhealthy"


class ImageBuildError(Exception):
    """A stand-in image could not be built; the message carries the builder's output."""


@dataclass
class BuildReport:
    """What the build cost, for the terminal summary."""

    base_cached: bool = False
    base_tarball_seconds: float = 0.0
    base_import_seconds: float = 0.0
    standins_seconds: float = 0.0
    total_seconds: float = 0.0
    tags: list[str] = field(default_factory=list)


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line), else deb.debian.org."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        text = path.read_text(errors="replace")
        if "Suites:" in text and f"{SUITE}\n" in text.replace(" ", "\n"):
            for line in text.splitlines():
                if line.startswith("URIs:"):
                    uri = line.split(":", 1)[1].split()[0]
                    if "security" not in uri:
                        return uri
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return DEFAULT_MIRROR


def base_key(mirror: str) -> str:
    digest = hashlib.sha256()
    digest.update((HERE / "build-base.sh").read_bytes())
    digest.update(f"{SUITE}\n{mirror}\n{' '.join(PACKAGES)}".encode())
    return digest.hexdigest()[:12]


def _has_image(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_base(client: docker.DockerClient, report: BuildReport) -> str:
    """The base image's tag, importing it (and debootstrapping it first) when missing."""
    mirror = apt_mirror()
    key = base_key(mirror)
    tag = f"{BASE_REPO}:{key}"
    if _has_image(client, tag):
        report.base_cached = True
        return tag
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"base-{key}.tar"
    with (CACHE_DIR / "base.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            if os.geteuid() != 0 or shutil.which("debootstrap") is None:
                raise ImageBuildError(
                    "building the live tier's base image needs root and debootstrap "
                    "(apt-get install debootstrap)"
                )
            for stale in CACHE_DIR.glob("base-*.tar"):
                stale.unlink()
            started = time.monotonic()
            done = subprocess.run(
                ["sh", str(HERE / "build-base.sh"), str(tarball), SUITE, mirror, *PACKAGES],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
            )
            report.base_tarball_seconds = time.monotonic() - started
            if done.returncode != 0:
                raise ImageBuildError(
                    f"build-base.sh failed ({done.returncode}) from {mirror}:\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
        started = time.monotonic()
        with tarball.open("rb") as data:
            client.api.import_image_from_data(data, repository=BASE_REPO, tag=key)
        report.base_import_seconds = time.monotonic() - started
    if not _has_image(client, tag):
        raise ImageBuildError(f"docker import of {tarball} did not produce {tag}")
    return tag


def _build(client: docker.DockerClient, context: Path, tag: str, buildargs: dict[str, str]) -> None:
    try:
        client.images.build(
            path=str(context),
            tag=tag,
            buildargs=buildargs,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise ImageBuildError(f"docker build of {tag} failed: {exc.msg}\n{log[-3000:]}") from exc


def _demo_context(into: Path) -> None:
    """app/demo plus the locked prometheus-client next to the demo Dockerfile."""
    import prometheus_client

    shutil.copy(HERE / "demo" / "Dockerfile", into / "Dockerfile")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(APP_DIR / "demo", into / "demo", ignore=ignore)
    shutil.copytree(
        Path(prometheus_client.__file__).parent,
        into / "vendor" / "prometheus_client",
        ignore=ignore,
    )


def build_standins(client: docker.DockerClient) -> tuple[dict[str, str], BuildReport]:
    """Build every stand-in; returns {stand-in name: local tag} and what it cost."""
    report = BuildReport()
    started = time.monotonic()
    base = ensure_base(client, report)
    built_at = time.monotonic()
    tags: dict[str, str] = {}
    for name in ("nginx", "postgres", "prometheus", "grafana"):
        tags[name] = f"{STANDIN_REPO}/{name}:latest"
        _build(client, HERE / name, tags[name], {"BASE": base})
    with tempfile.TemporaryDirectory(prefix="msops-live-demo-") as tmp:
        _demo_context(Path(tmp))
        tags["demo"] = f"{STANDIN_REPO}/demo:latest"
        _build(client, Path(tmp), tags["demo"], {"BASE": base})
    tags["demo-unhealthy"] = f"{STANDIN_REPO}/demo-unhealthy:latest"
    _build(client, HERE / "demo-unhealthy", tags["demo-unhealthy"], {"DEMO": tags["demo"]})
    tags["base"] = base
    report.standins_seconds = time.monotonic() - built_at
    report.total_seconds = time.monotonic() - started
    return tags, report


def standin_for(ref: str) -> str:
    """The stand-in that serves an image reference; KeyError names references with none."""
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    name = STANDINS[repo]
    if name == "demo" and tag.endswith(UNHEALTHY_SUFFIX):
        return "demo-unhealthy"
    return name


def tag_refs(client: docker.DockerClient, standins: dict[str, str], refs: Iterable[str]) -> None:
    """Tag the stand-ins as the references a graph runs (`nginx:1.27.3-alpine`, ...)."""
    for ref in sorted(set(refs)):
        image = client.images.get(standins[standin_for(ref)])
        repo, _, tag = ref.rpartition(":")
        image.tag(repo, tag)


def image_refs(graph_resources: Iterable[object]) -> set[str]:
    """Every image reference a synthesized graph would run or pull."""
    refs: set[str] = set()
    for res in graph_resources:
        inputs = getattr(res, "inputs", {})
        kind = getattr(res, "type", "")
        if kind == "docker:index/remoteImage:RemoteImage":
            refs.add(inputs["name"])
        elif kind == "docker:index/image:Image":
            refs.add(inputs["imageName"])
        elif kind == "docker:index/container:Container":
            refs.add(inputs["image"])
        elif kind == "docker:index/service:Service":
            refs.add(inputs["taskSpec"]["containerSpec"]["image"])
    return {r for r in refs if r}
