"""Benchmark canary analysis: how long after its start a bad canary is aborted.

    uv run python bench/canary.py [--rounds 3] [--settings fast default]

Each round starts two stable demo replicas (1.0.0) and a canary (1.1.0) failing a fifth of
its requests (DEMO_FAIL_RATE=0.2), the rendered nginx LB in front of them (found through a
real DNS server, dnsmasq), the real Prometheus scraping them, and continuous traffic through
the LB; then it runs msops' analysis of one canary step, as `msops up` does, and measures the
time from the step's start to the abort. A good canary (DEMO_FAIL_RATE unset) is measured
too: it must pass once its pause is over. Settings:
- fast: interval 2s, failureLimit 2, scrape 1s (the runtime tests' own);
- default: interval 10s, failureLimit 2, scrape 15s (msops' defaults, the dev stack's scrape).
The bound for an abort is interval x failureLimit + one scrape interval. Writes
bench/results/canary.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from msops import analysis  # noqa: E402
from tests import dns  # noqa: E402
from tests.runtime.canary import PROBES, Traffic, running_release  # noqa: E402

SETTINGS = {
    "fast": {"interval": 2.0, "failure_limit": 2, "scrape": 1.0, "pause": 4.0},
    "default": {"interval": 10.0, "failure_limit": 2, "scrape": 15.0, "pause": 30.0},
}
THRESHOLDS = analysis.Thresholds(error_rate=0.01, p99_latency=0.3, min_requests=20)


def one(setting: dict[str, float], bad: bool) -> dict[str, float | str]:
    """One canary step on fresh processes; returns how it ended and after how long."""
    binary = dns.find_dnsmasq()
    if binary is None:
        raise SystemExit("dnsmasq is not installed: apt-get install dnsmasq-base")
    env = {"DEMO_FAIL_RATE": "0.2"} if bad else {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        dns.running_dnsmasq(binary) as server,
        dns.service() as svc,
        running_release(svc, server, Path(tmp), scrape_seconds=setting["scrape"], **env) as rel,
        Traffic(rel.lb, [*rel.stable, rel.canary]),
    ):
        step = analysis.Step(
            pause=setting["pause"],
            interval=setting["interval"],
            failure_limit=int(setting["failure_limit"]),
            deadline=setting["pause"] * 4,
        )
        outcome = analysis.analyze_step(
            rel.prometheus_url,
            canary=analysis.Series("web", "1.1.0", excluded_paths=PROBES),
            stable=analysis.Series("web", "1.0.0", excluded_paths=PROBES),
            thresholds=THRESHOLDS,
            step=step,
        )
    return {"status": outcome.status, "seconds": round(outcome.elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    args = parser.parse_args()
    rows = []
    for name in args.settings:
        setting = SETTINGS[name]
        bound = setting["interval"] * setting["failure_limit"] + setting["scrape"]
        aborts = [one(setting, bad=True) for _ in range(args.rounds)]
        passes = [one(setting, bad=False) for _ in range(args.rounds)]
        rows.append(
            {
                "settings": name,
                **setting,
                "bound_seconds": bound,
                "abort_seconds": [r["seconds"] for r in aborts],
                "abort_statuses": [r["status"] for r in aborts],
                "pass_seconds": [r["seconds"] for r in passes],
                "pass_statuses": [r["status"] for r in passes],
            }
        )
    results = {"machine": platform.platform(), "rounds": args.rounds, "rows": rows}
    out = ROOT / "bench" / "results" / "canary.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        "| settings | interval | failureLimit | scrape | bound | abort (median, max) | "
        "bad outcomes | good canary passes after | good outcomes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        aborts, passes = r["abort_seconds"], r["pass_seconds"]
        print(
            f"| {r['settings']} | {r['interval']:g}s | {r['failure_limit']:g} | "
            f"{r['scrape']:g}s | {r['bound_seconds']:g}s | {statistics.median(aborts):.2f}s, "
            f"{max(aborts):.2f}s | {', '.join(r['abort_statuses'])} | "
            f"{statistics.median(passes):.2f}s | {', '.join(r['pass_statuses'])} |"
        )


if __name__ == "__main__":
    main()
