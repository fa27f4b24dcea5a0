"""Benchmark program cost: offline synth time and peak memory as services grow, per backend.

    uv run python bench/synth.py [--services 1 10 50 200] [--backends docker swarm kubernetes]

For each backend and service count it builds a stack config with that many services (the
committed stack of that backend, with its one service copied N times), and measures, each
in a fresh process:
- msops: the real program (`__main__.py`) under the offline synth's mocks;
- plain: a hand-written-style Pulumi program that registers the very same resources (type,
  name, inputs) as flat `pulumi.CustomResource`s under the same mocks, with no components,
  no validation and no rendering.
The ratio msops/plain is the overhead of our components. Prints a Markdown table and writes
bench/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STACK_OF = {"docker": "dev", "swarm": "staging", "kubernetes": "prod"}
REPEATS = 3


def stack_config(backend: str, services: int) -> dict[str, Any]:
    """The committed stack of `backend` with its one service copied `services` times."""
    from msops import synth

    values, _ = synth.config_from_file(STACK_OF[backend])
    template = next(iter(values["msops:services"].values()))
    template.pop("build", None)
    copies = {}
    for i in range(services):
        svc = json.loads(json.dumps(template))
        if "lb" in svc:
            svc["lb"]["port"] = 20000 + i
        copies[f"svc-{i:03d}"] = svc
    values["msops:services"] = copies
    return values


def _child(backend: str, services: int, mode: str, graph_file: Path) -> dict[str, Any]:
    """One measurement in this fresh process; msops writes the graph that plain replays."""
    import pulumi

    from msops import synth

    stack = STACK_OF[backend]
    seconds = []
    if mode == "msops":
        config = stack_config(backend, services)
        synth.synth_config(config, stack=stack)  # warm-up: first-use imports and caches
        for _ in range(REPEATS):
            start = time.perf_counter()
            graph = synth.synth_config(config, stack=stack)
            seconds.append(time.perf_counter() - start)
        custom = [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in graph if r.custom]
        graph_file.write_text(json.dumps(custom))
    else:
        custom = json.loads(graph_file.read_text())

        def plain() -> None:
            for res in custom:
                pulumi.CustomResource(res["type"], res["name"], dict(res["inputs"]))

        synth.run_program(plain, {}, stack=stack)  # warm-up
        for _ in range(REPEATS):
            start = time.perf_counter()
            replay = synth.run_program(plain, {}, stack=stack)
            seconds.append(time.perf_counter() - start)
        assert len(replay) == len(custom), (len(replay), len(custom))
    return {
        "seconds": min(seconds),
        "resources": len(custom),
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(backend: str, services: int, mode: str, graph_file: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", backend, str(services), mode, str(graph_file)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def profile(backend: str, services: int) -> None:
    """Where one synth's time goes: msops' own code, serialization, the Pulumi SDK, asyncio."""
    import cProfile
    import pstats

    from msops import synth

    config = stack_config(backend, services)
    synth.synth_config(config, stack=STACK_OF[backend])
    profiler = cProfile.Profile()
    profiler.runcall(synth.synth_config, config, stack=STACK_OF[backend])
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    shares = {
        "msops (components/, msops/)": ("/components/", "/msops/"),
        "YAML and JSON": ("/yaml/", "json"),
        "Pulumi SDK": ("/pulumi/",),
        "provider SDKs (pulumi_docker, ...)": ("/pulumi_",),
        "asyncio and builtins": ("asyncio", "~"),
    }
    print(f"{backend}, {services} services, {total:.2f} s under cProfile:")
    for label, needles in shares.items():
        spent = sum(v[2] for k, v in stats.items() if any(n in k[0] for n in needles))
        print(f"  {label}: {spent / total:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--backends", nargs="+", default=list(STACK_OF))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", nargs=2, metavar=("BACKEND", "SERVICES"), help="where one synth's time goes"
    )
    args = parser.parse_args()
    if args.profile:
        profile(args.profile[0], int(args.profile[1]))
        return
    if args.child:
        backend, services, mode, graph_file = args.child
        print(json.dumps(_child(backend, int(services), mode, Path(graph_file))))
        return
    rows = []
    graph_file = Path(tempfile.mkstemp(suffix=".json")[1])
    for backend in args.backends:
        for n in args.services:
            ours = measure(backend, n, "msops", graph_file)
            plain = measure(backend, n, "plain", graph_file)
            rows.append(
                {
                    "backend": backend,
                    "services": n,
                    "msops": ours,
                    "plain": plain,
                    "ratio": ours["seconds"] / plain["seconds"],
                }
            )
            print(
                f"{backend} {n}: {ours['seconds']:.3f}s vs {plain['seconds']:.3f}s", file=sys.stderr
            )
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "repeats": REPEATS,
        "rows": rows,
    }
    graph_file.unlink()
    (ROOT / "bench" / "results" / "synth.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}; best of {REPEATS}")
    print(
        "| backend | services | resources | msops s | plain s | ratio | ms/service "
        "| peak RSS MiB (msops / plain) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        o, p = r["msops"], r["plain"]
        print(
            f"| {r['backend']} | {r['services']} | {o['resources']} | {o['seconds']:.3f} "
            f"| {p['seconds']:.3f} | {r['ratio']:.2f} | {o['seconds'] / r['services'] * 1000:.1f} "
            f"| {o['maxrss_mib']:.0f} / {p['maxrss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
