"""`msops render`: the manifests and config files a stack would deploy, from the offline synth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from msops.actions import steps
from msops.actions.base import Configuration


@dataclass(frozen=True)
class RenderResult:
    out: Path
    paths: tuple[Path, ...]


@dataclass
class Render:
    """Write what the stack would deploy, from the offline synth, under `out`."""

    cfg: Configuration
    stack: str
    out: Path

    def run(self) -> RenderResult:
        from msops import render as renderer

        edit = steps.load(self.cfg, self.stack)
        with self.cfg.busy(f"Synthesizing {self.stack} offline"):
            graph = steps.synth(edit.values, self.stack)
            paths = renderer.render(graph, self.out)
        return RenderResult(out=self.out, paths=tuple(paths))
