"""``--workers``: what a second worker process buys on this machine, honestly.

A 2-core machine cannot show clean scaling: nginx and wrk need a core too. Here
both proxies may use both cores (nothing is pinned but the load generator and
nginx, which keep core 0), so the second worker competes with them for core 0.
The figure printed is what a user would see on such a host; on a host with spare
cores the workers spread further.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.harness import Processes, cpu_seconds, start_nginx, start_proxy, wrk

__all__ = ["measure_scaling"]

_CONFIG = """
version: 1
listen: "LISTEN"
upstream: "http://127.0.0.1:{upstream_port}"
"""


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (the workers), as far as /proc says."""
    total = cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            total += sum(cpu_seconds(int(child)) for child in children.read().split())
    except OSError:
        pass

    return total


def measure_scaling(seconds: float, rounds: int) -> str:
    """Measure 1 KiB passthrough at 200 connections with 1 and 2 workers."""
    figures: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        work = Path(tmp)
        upstream_port = start_nginx(procs, work)
        config = _CONFIG.format(upstream_port=upstream_port)
        started = {
            workers: start_proxy(
                procs,
                work,
                config,
                f"workers{workers}",
                cores="0,1",
                extra_args=("--workers", str(workers)),
            )
            for workers in figures
        }
        for _, port in started.values():
            wrk(f"http://127.0.0.1:{port}/1k", 200, 1)
        for number in range(rounds):
            order = [1, 2] if number % 2 == 0 else [2, 1]
            for workers in order:
                process, port = started[workers]
                before = _tree_cpu(process.pid)
                result = wrk(f"http://127.0.0.1:{port}/1k", 200, seconds)
                spent = _tree_cpu(process.pid) - before
                figures[workers].append(result.rps)
                cpu[workers].append(spent / result.seconds)

    one, two = statistics.median(figures[1]), statistics.median(figures[2])
    busy = {workers: statistics.median(cpu[workers]) for workers in cpu}
    return "\n".join(
        [
            "--workers scaling: 1 KiB passthrough, 200 conns; proxy free to use both "
            "cores, nginx and wrk on core 0",
            f"  --workers 1: {one:>8.0f} req/s, {busy[1]:.2f} cores busy",
            f"  --workers 2: {two:>8.0f} req/s, {busy[2]:.2f} cores busy"
            f"  ({two / one:.2f}x)",
        ]
    )
