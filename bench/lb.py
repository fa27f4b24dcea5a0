"""Benchmark the generated LB: wrk through the rendered nginx over N demo replicas vs one replica.

    uv run python bench/lb.py [--duration 10] [--replicas 1 2 3] [--rounds 3] [--static-baseline]

The LB finds the replicas as it does on Docker, through DNS at run time: dnsmasq on
127.0.0.1 answers the service name with the replicas' addresses (127.0.0.2, .3, ...; one
port), and nginx resolves it per request (resolver valid=2s). One more row adds an address
that refuses connections (a replica gone, still in a cached answer) to the largest count.

--static-baseline also runs the config this LB replaced, a static upstream block naming
every replica, rendered by the previous renderer (git show a272cf6~1:components/artifacts/
nginx.py), so the two are measured under the same conditions. Every target runs once per
round, in turn, and the table shows each target's median round, which keeps a noisy
machine from favouring whichever target happened to run in a quiet moment.

Needs nginx, wrk and dnsmasq (apt-get install nginx-light wrk dnsmasq-base). Every process
it starts is stopped before it exits. Prints a Markdown table and writes
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
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.artifacts import nginx  # noqa: E402
from tests import dns  # noqa: E402

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
NAME = "web"
PREVIOUS_RENDERER = "a272cf6~1:components/artifacts/nginx.py"


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, duration: int, connections: int, threads: int) -> dict:
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


def previous_renderer() -> Callable[..., str]:
    """render_nginx_conf(upstreams=[...], listen=...) as it was before DNS discovery."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", PREVIOUS_RENDERER],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    namespace: dict = {"__name__": "previous_nginx"}
    exec(compile(source, PREVIOUS_RENDERER, "exec"), namespace)
    return namespace["render_nginx_conf"]


def _through_lb(render: Callable[[str], str], wrk_args: tuple[int, int, int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lb = dns.start_nginx("nginx", render, Path(tmp))
        try:
            return wrk(lb.url + "/", *wrk_args)
        finally:
            lb.stop()


def run(
    duration: int,
    connections: int,
    threads: int,
    replica_counts: list[int],
    rounds: int,
    static_baseline: bool,
) -> dict:
    for tool, package in (("nginx", "nginx-light"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install {package}")
    dnsmasq = dns.find_dnsmasq()
    if dnsmasq is None:
        sys.exit("dnsmasq is not installed: apt-get install dnsmasq-base")
    static = previous_renderer() if static_baseline else None
    wrk_args = (duration, connections, threads)
    most = max(replica_counts)
    raw: dict[str, list[dict]] = {}
    replicas_of: dict[str, int] = {}

    def record(target: str, replicas: int, stats: dict) -> None:
        raw.setdefault(target, []).append(stats)
        replicas_of[target] = replicas

    with dns.running_dnsmasq(dnsmasq) as resolver, dns.service() as svc:
        apps = svc.apps(*({"REPLICA_ID": f"r{i}"} for i in range(most)))
        dead = svc.dead()

        def by_dns(listen: str) -> str:
            return nginx.render_nginx_conf(
                service=NAME, port=svc.port, listen=listen, resolver=resolver.resolver
            )

        for _ in range(rounds):
            record("one replica, direct", 1, wrk(apps[0].url + "/", *wrk_args))
            for count in replica_counts:
                hosts = [a.host for a in apps[:count]]
                resolver.set(NAME, hosts)
                record(f"nginx LB over {count} (DNS)", count, _through_lb(by_dns, wrk_args))
                if static is not None:
                    upstreams = [f"{h}:{svc.port}" for h in hosts]
                    stats = _through_lb(
                        lambda listen, u=upstreams: static(upstreams=u, listen=listen), wrk_args
                    )
                    record(f"nginx LB over {count} (static, before)", count, stats)
            resolver.set(NAME, [dead, *(a.host for a in apps)])
            record(f"nginx LB over {most} + 1 dead (DNS)", most, _through_lb(by_dns, wrk_args))

    def median_round(runs: list[dict]) -> dict:
        # The round with the median throughput, whole: its latencies belong with it.
        ordered = sorted(runs, key=lambda r: r["rps"])
        return ordered[(len(ordered) - 1) // 2]

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "duration_s": duration,
        "connections": connections,
        "rounds": rounds,
        "discovery": "dnsmasq on 127.0.0.1; nginx resolver valid=2s; proxy_pass http://$app",
        "runs": [
            {
                "target": target,
                "replicas": replicas_of[target],
                **median_round(runs),
                "rps_rounds": [r["rps"] for r in runs],
                "rps_spread": (
                    round(statistics.pstdev(r["rps"] for r in runs), 1) if len(runs) > 1 else 0
                ),
            }
            for target, runs in raw.items()
        ],
    }


def table(results: dict) -> str:
    base = results["runs"][0]
    lines = [
        "| target | req/s | p50 ms | p99 ms | p50 vs direct | non-2xx | socket errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        delta = (r["p50_ms"] / base["p50_ms"] - 1) * 100
        lines.append(
            f"| {r['target']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {delta:+.0f}% | {r['non_2xx']} | {r['socket_errors']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--static-baseline", action="store_true")
    args = parser.parse_args()
    # SIGTERM becomes SystemExit, so the finally blocks stop every process we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(
        args.duration,
        args.connections,
        args.threads,
        args.replicas,
        args.rounds,
        args.static_baseline,
    )
    (ROOT / "bench" / "results" / "lb.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"machine: {results['machine']}; wrk -c{args.connections} -d{args.duration}s; "
        f"median of {args.rounds} rounds; load average at the end "
        + ", ".join(f"{x:.2f}" for x in results["load_average_at_end"])
    )
    print(table(results))


if __name__ == "__main__":
    main()
