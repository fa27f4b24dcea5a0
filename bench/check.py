"""Benchmark `msops check`: wall time per committed stack, and what its imports cost.

    uv run python bench/check.py [--runs 5] [--tree PATH] [--stacks dev staging prod]

Runs `msops check STACK` in fresh processes, with bytecode caching on, in a checkout (this
one, or `--tree`, for example an older commit's worktree, run with its own locked
environment) and reports the median and best wall time of each stack, and `python -X
importtime`'s cumulative time of the heavy modules one check imports. Writes
bench/results/check.json (or check-<commit>.json for another tree).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pulumi", "pulumi_docker", "pulumi_kubernetes", "pydantic", "grpc", "ruamel")
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)")


def check_argv(tree: Path, stack: str, *flags: str) -> list[str]:
    bin_dir = tree / ".venv" / "bin"
    return [str(bin_dir / "python"), *flags, str(bin_dir / "msops"), "check", stack]


def run(argv: list[str], tree: Path) -> subprocess.CompletedProcess[str]:
    # As on a user's machine, Python caches bytecode after the first run (this machine sets
    # PYTHONDONTWRITEBYTECODE, which makes every run compile ~600 modules: +2.6 s).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run(argv, cwd=tree, capture_output=True, text=True, env=env)


def wall(argv: list[str], tree: Path) -> float:
    start = time.perf_counter()
    done = run(argv, tree)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def import_costs(tree: Path, stack: str) -> dict[str, float]:
    """Cumulative import seconds of each heavy top-level package one check loads."""
    done = run(check_argv(tree, stack, "-X", "importtime"), tree)
    costs: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match and match.group(3) in HEAVY and len(match.group(2)) == 1:
            costs[match.group(3)] = costs.get(match.group(3), 0) + int(match.group(1)) / 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--stacks", nargs="+", default=["dev", "staging", "prod"])
    args = parser.parse_args()
    tree = args.tree.resolve()
    rows = []
    for stack in args.stacks:
        wall(check_argv(tree, stack), tree)  # warm the page cache and .pyc files
        times = [wall(check_argv(tree, stack), tree) for _ in range(args.runs)]
        rows.append(
            {
                "stack": stack,
                "median_s": statistics.median(times),
                "best_s": min(times),
                "imports_s": import_costs(tree, stack),
            }
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "tree": str(tree),
        "commit": commit,
        "load_average": os.getloadavg()[0],
        "runs": args.runs,
        "rows": rows,
    }
    name = "check.json" if tree == ROOT else f"check-{commit}.json"
    out = ROOT / "bench" / "results" / name
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"commit {commit}, load average {results['load_average']:.1f}\n")
    print("| stack | median s | best s | imports (cumulative s) |")
    print("|---|---|---|---|")
    for row in rows:
        imports = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["imports_s"].items()))
        print(f"| {row['stack']} | {row['median_s']:.2f} | {row['best_s']:.2f} | {imports} |")


if __name__ == "__main__":
    sys.exit(main())
