"""Benchmark the generated LB: wrk through the rendered nginx over N demo replicas vs one replica.

    uv run python bench/lb.py [--duration 5] [--connections 16]

Needs nginx and wrk (apt-get install nginx-light wrk). Everything runs on 127.0.0.1 and
every process it starts is stopped before it exits. Prints a Markdown table and writes
bench/results/lb.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.artifacts import nginx  # noqa: E402
from tests.runtime.processes import free_port, http_get, launch_app  # noqa: E402

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, duration: int, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(pct["50"]),
        "p99_ms": _ms(pct["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def run(duration: int, connections: int, threads: int, replica_counts: list[int]) -> dict:
    for tool, package in (("nginx", "nginx-light"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install {package}")
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "duration_s": duration,
        "connections": connections,
        "runs": [],
    }
    apps = [launch_app(REPLICA_ID=f"r{i}") for i in range(max(replica_counts))]
    try:
        direct = wrk(apps[0].url + "/", duration, connections, threads)
        results["runs"].append({"target": "one replica, direct", "replicas": 1, **direct})
        for count in replica_counts:
            with tempfile.TemporaryDirectory() as tmp:
                port = free_port()
                conf = Path(tmp) / "nginx.conf"
                conf.write_text(
                    nginx.render_nginx_conf(
                        upstreams=[f"127.0.0.1:{a.port}" for a in apps[:count]],
                        listen=f"127.0.0.1:{port}",
                    )
                )
                proc = subprocess.Popen(
                    ["nginx", "-p", tmp, "-c", str(conf), "-g", "daemon off;"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    url = f"http://127.0.0.1:{port}"
                    for _ in range(100):
                        try:
                            if http_get(url + nginx.LB_HEALTH_PATH, timeout=1).status == 200:
                                break
                        except OSError:
                            time.sleep(0.05)
                    stats = wrk(url + "/", duration, connections, threads)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
            results["runs"].append({"target": f"nginx LB over {count}", "replicas": count, **stats})
    finally:
        for app in apps:
            app.stop()
    return results


def table(results: dict) -> str:
    base = results["runs"][0]
    lines = [
        "| target | req/s | p50 ms | p99 ms | p50 vs direct | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        delta = (r["p50_ms"] / base["p50_ms"] - 1) * 100
        lines.append(
            f"| {r['target']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {delta:+.0f}% | {r['non_2xx']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    # SIGTERM becomes SystemExit, so the finally blocks stop every process we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(args.duration, args.connections, args.threads, args.replicas)
    (ROOT / "bench" / "results" / "lb.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}; wrk -c{args.connections} -d{args.duration}s")
    print(table(results))


if __name__ == "__main__":
    main()
