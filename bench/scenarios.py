"""What the side-by-side benchmark measures, and how one measurement is taken.

Each target (our proxy, Envoy) runs as two processes pinned to core 1: one that
only forwards (Envoy's fault filter at 0 %), one with a 100 ms latency fault on
every request. wrk (one thread) and nginx share core 0. A measurement starts once
the target's process is idle, and is one wrk run plus what the process spent
meanwhile, read from ``/proc``: CPU time per request is steadier than requests
per second on a machine that other work shares, since it does not count the time
the process waited for a core.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass

from bench.harness import WrkResult, cpu_seconds, rss_mib, wait_until_idle, wrk

__all__ = ["SCENARIOS", "Measurement", "Scenario", "Target", "measure"]


@dataclass(frozen=True)
class Scenario:
    """One load shape: which body, how many connections, with or without the fault."""

    key: str
    title: str
    path: str
    connections: int
    latency_fault: bool = False


SCENARIOS = (
    Scenario("pass50", "1 KiB passthrough, 50 connections", "/1k", 50),
    Scenario("pass200", "1 KiB passthrough, 200 connections", "/1k", 200),
    Scenario("mib10", "1 MiB responses, 10 connections", "/1m", 10),
    Scenario("lat200", "100 ms latency fault, 200 connections", "/1k", 200, True),
    Scenario("lat1000", "100 ms latency fault, 1000 connections", "/1k", 1000, True),
    Scenario("one", "added latency, 1 connection", "/1k", 1),
)


@dataclass(frozen=True)
class Target:
    """A proxy under test: its forwarding process and its latency-fault process."""

    name: str
    passthrough: subprocess.Popen[bytes]
    passthrough_port: int
    faulty: subprocess.Popen[bytes]
    faulty_port: int

    def endpoint(self, scenario: Scenario) -> tuple[int, str]:
        """Return the PID and base URL that ``scenario`` loads."""
        if scenario.latency_fault:
            return self.faulty.pid, f"http://127.0.0.1:{self.faulty_port}"
        return self.passthrough.pid, f"http://127.0.0.1:{self.passthrough_port}"


@dataclass(frozen=True)
class Measurement:
    """One wrk run against one target, with the target's CPU and peak memory."""

    wrk: WrkResult
    cpu_us_per_request: float
    peak_rss_mib: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.wrk.rps

    @property
    def mb_per_s(self) -> float:
        """Response bytes per second, in MB (10**6) as wrk counts them."""
        return self.wrk.bytes / self.wrk.seconds / 1e6


class _PeakRss:
    """Samples a process's resident memory in a thread, keeping the highest."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


def measure(target: Target, scenario: Scenario, seconds: float) -> Measurement:
    """Load ``target`` with ``scenario`` for ``seconds``; return what was seen."""
    pid, base = target.endpoint(scenario)
    wait_until_idle(pid)
    before = cpu_seconds(pid)
    with _PeakRss(pid) as rss:
        result = wrk(base + scenario.path, scenario.connections, seconds)
    spent = cpu_seconds(pid) - before

    return Measurement(
        wrk=result,
        cpu_us_per_request=spent * 1e6 / max(result.requests, 1),
        peak_rss_mib=rss.peak,
    )
