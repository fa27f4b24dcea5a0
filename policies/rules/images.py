"""Images: every container runs an image pinned to a version or a digest."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, Severity

from components.vocabulary import SECRET_MASK, parse_image

from .base import Problem, ResourcePolicy, Settings, schema, string_list
from .containers import containers
from .view import DOCKER_IMAGE, DOCKER_REMOTE_IMAGE


def _image_problem(ref: str, forbidden: Sequence[str]) -> str | None:
    image = parse_image(ref)
    if ref.startswith("sha256:") or image.digest:
        # An image ID or a digest: immutable.
        return None
    if image.tag is None:
        return f"image {ref!r} has no tag, so it means ':latest'"
    if image.tag in forbidden:
        return f"image {ref!r} uses the moving tag ':{image.tag}'"
    return None


def _image_refs(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    """(where, image reference) of every image the resource names."""
    if args.resource_type == DOCKER_REMOTE_IMAGE:
        return [("name", args.props.get("name"))]
    if args.resource_type == DOCKER_IMAGE:
        return [("imageName", args.props.get("imageName"))]
    return [(c.where, c.get("image")) for c in containers(args.resource_type, args.props)]


def unpinned_images(args: ResourceValidationArgs, cfg: Settings) -> Iterator[Problem]:
    """Every image reference that is not a fixed version: a moving tag, or no tag at all."""
    forbidden = [str(t) for t in cfg["forbiddenTags"]]
    for where, ref in _image_refs(args):
        if not isinstance(ref, str) or ref == SECRET_MASK:
            continue
        problem = _image_problem(ref, forbidden)
        if problem:
            yield Problem(
                f"{where}: {problem}",
                "pin an exact version (':1.2.3') or a digest ('@sha256:...') in "
                "msops:services.<name>.image, or in the resource's image reference.",
            )


IMAGES_PINNED = ResourcePolicy(
    name="images-pinned",
    description="Container images are pinned to an exact tag or a digest, never ':latest'.",
    why="a moving tag such as ':latest' changes under you: replicas pulled at different times "
    "run different code, and a rollback re-applies the same tag and gets the new image again.",
    check=unpinned_images,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=schema(
        forbiddenTags=string_list(["latest"], "Tags that move and so do not count as pinned."),
    ),
    remediation_steps="Pin an exact version (':1.2.3') or a digest ('@sha256:...').",
)
