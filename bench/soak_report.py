"""What a soak run measured, the checks it must pass, and how it is printed.

The run is cut in quarters: the first is warm-up (pools fill, the observation window
fills, caches settle); the second is the baseline; the last is compared with it.
Comparing medians of whole quarters, rather than two single readings, keeps the
check blind to the moment-to-moment churn of connections (descriptors move by a few
as clients abandon requests and partial failures close connections) while a leak of
one descriptor or a few kilobytes per request still shows many times over.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EXPECTED", "GROWTH_LIMIT", "Sample", "SoakReport"]

#: Allowed growth of memory and descriptors from the baseline to the last quarter.
GROWTH_LIMIT = 0.05

#: What each kind of request may end in, given the soak's faults: statuses, or the
#: name of the client error a cut body or an abandoned request raises.
EXPECTED = {
    "small": {"200"},  # latency and corruption change nothing visible
    "upload": {"200", "503"},  # error fault
    "big": {"200", "ClientPayloadError"},  # partial failure
    "stream": {"200", "503"},  # an error fault set through the admin API
    "slow": {"200", "504"},  # timeout fault
    "limited": {"200", "429"},  # resource exhaustion
    "rare": {"200"},  # latency experiments
    "abandoned": {"TimeoutError"},  # the client gives up after 20 ms
}


@dataclass
class Sample:
    """One reading of the proxy process."""

    at: float
    rss_mib: float
    fds: int
    requests: int


@dataclass
class SoakReport:
    """What a soak run measured, and which of its checks failed."""

    seconds: float
    concurrency: int
    window: int
    samples: list[Sample] = field(default_factory=list)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    # "step status" (409: an experiment on a component that is busy) -> count
    admin_steps: Counter[str] = field(default_factory=Counter)
    observations_seen_max: int = 0
    series_after_warmup: int = 0
    series_at_end: int = 0
    proxy_errors: list[str] = field(default_factory=list)

    @property
    def warmup(self) -> float:
        """Seconds of warm-up: the first quarter of the run."""
        return self.seconds / 4

    @property
    def requests(self) -> int:
        """Requests completed or abandoned by the clients."""
        return sum(sum(counts.values()) for counts in self.outcomes.values())

    def _quarter(self, number: int) -> list[Sample]:
        """The samples of quarter ``number`` (0 to 3) of the run."""
        start, end = number * self.warmup, (number + 1) * self.warmup
        return [s for s in self.samples if start <= s.at < end or (
            number == 3 and s.at >= end
        )]  # fmt: skip

    def medians(self, attribute: str) -> tuple[float, float]:
        """The baseline's and the last quarter's medians of ``rss_mib`` or ``fds``."""
        return (
            statistics.median(getattr(s, attribute) for s in self._quarter(1)),
            statistics.median(getattr(s, attribute) for s in self._quarter(3)),
        )

    def growth(self, attribute: str) -> float:
        """Relative growth of ``rss_mib`` or ``fds`` from the baseline to the end."""
        baseline, end = self.medians(attribute)
        return end / baseline - 1

    def problems(self) -> list[str]:
        """Every check the run failed, in words; empty when it passed."""
        found = []
        for attribute in ("rss_mib", "fds"):
            if self.growth(attribute) > GROWTH_LIMIT:
                baseline, end = self.medians(attribute)
                found.append(f"{attribute} grew from {baseline:.1f} to {end:.1f}")
        if self.observations_seen_max > self.window:
            found.append(f"{self.observations_seen_max} observations kept")
        if self.series_at_end > self.series_after_warmup:
            found.append(
                f"metric series grew from {self.series_after_warmup} "
                f"to {self.series_at_end}"
            )
        found += [f"proxy logged: {line}" for line in self.proxy_errors]
        found += [
            f"admin step answered {step}"
            for step in sorted(self.admin_steps)
            if not step.endswith((" 200", " 201", " 409"))
        ]
        for kind, counts in sorted(self.outcomes.items()):
            unexpected = set(counts) - EXPECTED[kind]
            if unexpected:
                found.append(f"{kind}: unexpected {sorted(unexpected)}")

        return found

    def render(self) -> str:
        """The figures a reader wants, as lines of text."""
        first, warm, last = self.samples[0], self._quarter(1)[0], self.samples[-1]
        rss, fds = self.medians("rss_mib"), self.medians("fds")
        lines = [
            f"soak: {self.seconds:.0f} s, {self.concurrency} clients, "
            f"{self.requests} requests ({self.requests / self.seconds:.0f}/s), "
            f"{sum(self.admin_steps.values())} admin steps",
            "               start  after warm-up   end   baseline  last quarter"
            "  growth",
            f"RSS (MiB)    {first.rss_mib:6.1f} {warm.rss_mib:14.1f} "
            f"{last.rss_mib:6.1f} {rss[0]:9.1f} {rss[1]:13.1f} "
            f"{self.growth('rss_mib'):+7.1%}",
            f"open fds     {first.fds:6d} {warm.fds:14d} {last.fds:6d} "
            f"{fds[0]:9.1f} {fds[1]:13.1f} {self.growth('fds'):+7.1%}",
            f"observations kept at most {self.observations_seen_max} (window "
            f"{self.window}); metric series {self.series_after_warmup} after "
            f"warm-up, {self.series_at_end} at the end",
        ]
        for kind, counts in sorted(self.outcomes.items()):
            shown = ", ".join(f"{k} {v}" for k, v in counts.most_common())
            lines.append(f"  {kind:<10} {shown}")
        steps = ", ".join(f"{k} x{v}" for k, v in sorted(self.admin_steps.items()))
        lines.append(f"  admin      {steps}")
        problems = self.problems()
        lines.append("result: " + ("; ".join(problems) if problems else "flat, ok"))

        return "\n".join(lines)
