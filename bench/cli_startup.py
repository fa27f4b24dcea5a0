"""Benchmark CLI start-up: wall time of `msops --help` and `msops history --help`.

    uv run python bench/cli_startup.py [--runs 20]

Runs the installed console script (.venv/bin/msops) in fresh processes and reports the
median and best wall time of each, plus the modules the bare import pulls in. Writes
bench/results/cli_startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MSOPS = Path(sys.executable).parent / "msops"
COMMANDS = (["--help"], ["history", "--help"])
HEAVY = ("pulumi", "pulumi_kubernetes", "pulumi_docker", "grpc", "pydantic")


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for command in COMMANDS:
        wall([str(MSOPS), *command])  # warm the page cache and .pyc files
        times = [wall([str(MSOPS), *command]) for _ in range(args.runs)]
        rows.append(
            {
                "command": " ".join(["msops", *command]),
                "median_s": statistics.median(times),
                "best_s": min(times),
            }
        )
    probe = (
        "import sys, msops.cli; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    heavy = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "runs": args.runs,
        "rows": rows,
        "heavy_modules_at_import": heavy,
    }
    out = ROOT / "bench" / "results" / "cli_startup.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}; {args.runs} runs each")
    print("| command | median s | best s |")
    print("|---|---|---|")
    for r in rows:
        print(f"| `{r['command']}` | {r['median_s']:.3f} | {r['best_s']:.3f} |")
    print(f"heavy modules imported by `import msops.cli`: {heavy}")


if __name__ == "__main__":
    main()
