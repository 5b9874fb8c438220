"""A 100 ms latency fault on every request, under 200 and 1000 concurrent clients.

The question this answers: does the proxy hold each request for the fault's
duration and no more, however many requests are held at once? A proxy that waits
on a thread per held request (``run_in_executor(None, time.sleep, ...)``) answers in
seconds at 200 clients; one that awaits a timer should stay near 100 ms.

Targets (issue #3): at 200 connections p99 <= 130 ms and no response under 100 ms;
at 1000 connections p99 <= 500 ms. The proxy runs on one core (core 1); nginx and
wrk share core 0.

    python -m bench.latency_fault [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.harness import (
    Processes,
    WrkResult,
    require_tools,
    start_nginx,
    start_proxy,
    wait_until_idle,
    wrk,
)

CONFIG = """
version: 1
listen: "LISTEN"
upstream: "http://127.0.0.1:{upstream_port}"
routes:
  - name: all
    faults:
      - {{fault_type: latency, duration_ms: 100}}
"""

# connections -> p99 ceiling in ms
TARGETS = {200: 130.0, 1000: 500.0}


def _median(results: list[WrkResult], attr: str) -> float:
    return float(statistics.median(float(getattr(r, attr)) for r in results))


def main() -> int:
    """Run the rounds, print a table of medians with min and max, check targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_tools("wrk", "nginx", "taskset")

    runs: dict[int, list[WrkResult]] = {c: [] for c in TARGETS}
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        work = Path(tmp)
        upstream_port = start_nginx(procs, work)
        proxy, port = start_proxy(
            procs, work, CONFIG.format(upstream_port=upstream_port)
        )
        url = f"http://127.0.0.1:{port}/1k"
        wrk(url, 50, 2)  # warm-up: connection pools, code paths
        for _ in range(args.rounds):
            for connections in TARGETS:
                wait_until_idle(proxy.pid)
                runs[connections].append(wrk(url, connections, args.seconds))

    print(
        "100 ms latency fault on every request; proxy on one core; medians of "
        f"{args.rounds} x {args.seconds:g} s rounds"
    )
    print(
        f"{'conns':>6} {'req/s':>8} {'min':>7} {'p50':>7} {'p90':>7} {'p99':>7} "
        f"{'max':>8} {'errors':>6}  target"
    )
    failed = False
    for connections, results in runs.items():
        p99 = _median(results, "p99_ms")
        low = min(r.min_ms for r in results)
        errors = sum(r.errors + r.non2xx for r in results)
        ok = p99 <= TARGETS[connections] and errors == 0
        if connections == 200:
            ok = ok and low >= 100.0
        failed |= not ok
        print(
            f"{connections:>6} {_median(results, 'rps'):>8.0f} {low:>7.1f} "
            f"{_median(results, 'p50_ms'):>7.1f} {_median(results, 'p90_ms'):>7.1f} "
            f"{p99:>7.1f} {max(r.max_ms for r in results):>8.1f} {errors:>6}  "
            f"p99 <= {TARGETS[connections]:g} ms: {'met' if ok else 'MISSED'}"
        )
        print(
            f"{'':>6} p99 per round: " + ", ".join(f"{r.p99_ms:.1f}" for r in results)
        )

    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
