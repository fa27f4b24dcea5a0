"""`msops render`: what a stack deploys, as files for kubectl, GitOps, Compose or Swarm."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from msops.actions import steps
from msops.actions.base import Configuration
from msops.errors import BadInput, OperationFailed

if TYPE_CHECKING:
    from msops.render import Rendered

SECRETS_AS = ("placeholder", "omit")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RenderResult:
    """`paths`: every file of the render under `out` (none for `--out -`, whose text is
    `text`); `changed` and `removed` against the render that was there before."""

    out: Path
    rendered: Rendered
    paths: tuple[Path, ...] = ()
    changed: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()
    text: str | None = None


@dataclass
class Render:
    """Render the stack under `out`, or as one YAML stream when `out` is `-`.

    The config is validated and the program synthesized offline first, so that a config
    `msops up` would refuse is refused here too, changing nothing.
    """

    cfg: Configuration
    stack: str
    out: Path
    # Kubernetes Secrets: "placeholder" (keys kept, values say where to set them) or "omit".
    secrets_as: str = "placeholder"
    project_root: Path = field(default=PROJECT_ROOT)

    def run(self) -> RenderResult:
        from components import plan as plans
        from msops import render as renderer

        if self.secrets_as not in SECRETS_AS:
            raise BadInput(
                f"--secrets-as {self.secrets_as}: not a choice; use {' or '.join(SECRETS_AS)}"
            )
        to_stdout = renderer.is_stdout(self.out)
        if not to_stdout:
            renderer.check_out(self.out)
            writable(self.out)
        edit = steps.load(self.cfg, self.stack)
        with self.cfg.busy(f"Synthesizing {self.stack} offline"):
            graph = steps.synth(edit.values, self.stack)
        plan = plans.build(edit.spec, stack=self.stack)
        base = Path.cwd() if to_stdout else self.out.resolve()
        rendered = renderer.render(
            graph,
            plan,
            base=base,
            project_root=self.project_root,
            secrets_as="omit" if self.secrets_as == "omit" else "placeholder",
        )
        if to_stdout:
            return RenderResult(out=self.out, rendered=rendered, text=renderer.stream(rendered))
        try:
            written = renderer.write(rendered, self.out)
        except OSError as exc:
            # Checked writable above, so only a full disk or a race gets here, part-way.
            raise OperationFailed(
                f"--out {self.out}: writing {exc.filename or self.out} failed ({exc.strerror}); "
                "the render there is incomplete: free the space or fix the cause, and render "
                "again"
            ) from None
        return RenderResult(
            out=self.out,
            rendered=rendered,
            paths=written.paths,
            changed=written.changed,
            removed=written.removed,
        )


def writable(out: Path) -> None:
    """Refuse an `--out` that cannot be written before anything is synthesized or written.

    `os.access` says yes to root everywhere, so the nearest existing directory is tried for
    real: a temporary file made and removed at once (a read-only mount, /proc, /sys).
    """
    try:
        existing = next(p for p in (out, *out.parents) if p.exists())
    except OSError as exc:
        raise BadInput(f"--out {out}: {exc.strerror}; choose another directory") from None
    if not existing.is_dir():
        raise BadInput(
            f"--out {out}: {existing} is a file, not a directory; choose a directory outside it"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".msops-render-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInput(
            f"--out {out}: {existing} cannot be written ({exc.strerror}); choose a directory "
            "you can write to"
        ) from None
