"""Benchmark policy evaluation: time per resource on the prod graph (and the others).

    uv run python bench/policies.py [--repeats 20]

Synthesizes each committed stack once, then times `policies.rules.evaluate` on its graph,
best of N. Prints a Markdown table and writes bench/results/policies.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from msops import synth  # noqa: E402
from policies import rules  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--stacks", nargs="+", default=["prod", "staging", "dev"])
    args = parser.parse_args()
    rows = []
    for stack in args.stacks:
        graph = synth.synth(stack)
        rules.evaluate(graph, stack=stack)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            rules.evaluate(graph, stack=stack)
            seconds.append(time.perf_counter() - start)
        best = min(seconds)
        rows.append(
            {
                "stack": stack,
                "resources": len(graph),
                "policies": len(rules.ALL),
                "best_ms": best * 1000,
                "us_per_resource": best / len(graph) * 1e6,
            }
        )
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "repeats": args.repeats,
        "rows": rows,
    }
    (ROOT / "bench" / "results" / "policies.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}; best of {args.repeats}")
    print("| stack | resources | policies | evaluate ms | µs per resource |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stack']} | {r['resources']} | {r['policies']} | {r['best_ms']:.1f} "
            f"| {r['us_per_resource']:.0f} |"
        )


if __name__ == "__main__":
    main()
