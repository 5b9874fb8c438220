"""The benchmark's table: medians with min and max, and each figure's ratio to Envoy.

Ratios are always ours divided by Envoy's, whatever the metric, so a ratio above 1
means a bigger number: better for requests per second and MB/s, worse for
latency, CPU time and memory. The issue's targets are checked below the table.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.harness import WrkResult
from bench.scenarios import Measurement

__all__ = ["Results", "Row", "render", "rows", "targets"]


@dataclass
class Results:
    """Every measurement of a run, by target name and scenario key."""

    runs: dict[tuple[str, str], list[Measurement]] = field(default_factory=dict)
    direct: list[WrkResult] = field(default_factory=list)
    idle_rss: dict[str, float] = field(default_factory=dict)

    def add(self, target: str, scenario: str, measurement: Measurement) -> None:
        """Record one measurement."""
        self.runs.setdefault((target, scenario), []).append(measurement)

    def values(
        self, target: str, scenario: str, metric: Callable[[Measurement], float]
    ) -> list[float]:
        """Return ``metric`` of every measurement of ``target`` in ``scenario``."""
        return [metric(m) for m in self.runs.get((target, scenario), [])]


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric's figures for both targets."""

    label: str
    unit: str
    ours: list[float]
    envoy: list[float]

    @property
    def ratio(self) -> float | None:
        """Our median over Envoy's, when both exist."""
        if not self.ours or not self.envoy or statistics.median(self.envoy) == 0:
            return None
        return statistics.median(self.ours) / statistics.median(self.envoy)


def _p(attr: str) -> Callable[[Measurement], float]:
    """Read a wrk figure of a measurement."""
    return lambda m: float(getattr(m.wrk, attr))


def rows(results: Results, ours: str = "chaosproxy") -> list[Row]:
    """Build the table's rows from ``results``."""
    spec: list[tuple[str, str, str, Callable[[Measurement], float]]] = [
        ("1 KiB, 50 conns: req/s", "req/s", "pass50", lambda m: m.rps),
        ("1 KiB, 50 conns: CPU per request", "us", "pass50", _cpu),
        ("1 KiB, 200 conns: req/s", "req/s", "pass200", lambda m: m.rps),
        ("1 KiB, 200 conns: CPU per request", "us", "pass200", _cpu),
        ("1 MiB, 10 conns: throughput", "MB/s", "mib10", lambda m: m.mb_per_s),
        ("100 ms fault, 200 conns: min", "ms", "lat200", _p("min_ms")),
        ("100 ms fault, 200 conns: p50", "ms", "lat200", _p("p50_ms")),
        ("100 ms fault, 200 conns: p99", "ms", "lat200", _p("p99_ms")),
        ("100 ms fault, 200 conns: max", "ms", "lat200", _p("max_ms")),
        ("100 ms fault, 1000 conns: p50", "ms", "lat1000", _p("p50_ms")),
        ("100 ms fault, 1000 conns: p99", "ms", "lat1000", _p("p99_ms")),
        ("100 ms fault, 1000 conns: max", "ms", "lat1000", _p("max_ms")),
        ("RSS at 1000 conns", "MiB", "lat1000", lambda m: m.peak_rss_mib),
        ("1 conn: p50", "ms", "one", _p("p50_ms")),
        ("1 conn: p99", "ms", "one", _p("p99_ms")),
    ]
    table = [
        Row(label, unit, results.values(ours, key, f), results.values("envoy", key, f))
        for label, unit, key, f in spec
    ]
    direct = statistics.median(r.p50_ms for r in results.direct or [_ZERO])
    added = [
        Row(
            "1 conn: added p50 (minus nginx direct)",
            "ms",
            [v - direct for v in results.values(ours, "one", _p("p50_ms"))],
            [v - direct for v in results.values("envoy", "one", _p("p50_ms"))],
        ),
        Row(
            "RSS idle",
            "MiB",
            [results.idle_rss[ours]] if ours in results.idle_rss else [],
            [results.idle_rss["envoy"]] if "envoy" in results.idle_rss else [],
        ),
    ]

    return table + added


def _cpu(m: Measurement) -> float:
    """CPU microseconds per request."""
    return m.cpu_us_per_request


_ZERO = WrkResult(0, 1.0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)


def _cell(values: Sequence[float]) -> str:
    """``median (min-max)``, or a dash when there is nothing."""
    if not values:
        return "-"
    med, low, high = statistics.median(values), min(values), max(values)
    digits = 0 if med >= 100 else 1 if med >= 10 else 2
    if len(values) == 1:
        return f"{med:.{digits}f}"

    return f"{med:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def render(table: list[Row]) -> str:
    """Render the rows as a fixed-width table."""
    lines = [
        f"{'metric':<42} {'unit':<6} {'chaosproxy':>24} {'envoy':>24} {'ratio':>6}",
        "-" * 106,
    ]
    for row in table:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(
            f"{row.label:<42} {row.unit:<6} {_cell(row.ours):>24} "
            f"{_cell(row.envoy):>24} {ratio:>6}"
        )

    return "\n".join(lines)


def targets(table: list[Row]) -> list[tuple[str, bool | None]]:
    """Check issue #6's and issue #3's targets; None where a figure is missing."""
    by_label = {row.label: row for row in table}

    def ratio(label: str) -> float | None:
        """Our median over Envoy's for ``label``."""
        return by_label[label].ratio

    def ours(label: str) -> float | None:
        """Our median for ``label``."""
        values = by_label[label].ours
        return statistics.median(values) if values else None

    def check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        """Apply ``ok`` to ``value``; None when there is no figure."""
        return None if value is None else ok(value)

    low200 = by_label["100 ms fault, 200 conns: min"].ours
    return [
        (
            "passthrough req/s >= 0.5x Envoy (50 conns)",
            check(ratio("1 KiB, 50 conns: req/s"), lambda r: r >= 0.5),
        ),
        (
            "per-core capacity (1/CPU per request) >= 0.5x Envoy (50 conns)",
            check(ratio("1 KiB, 50 conns: CPU per request"), lambda r: r <= 2.0),
        ),
        (
            "1 MiB throughput >= 0.8x Envoy",
            check(ratio("1 MiB, 10 conns: throughput"), lambda r: r >= 0.8),
        ),
        (
            "100 ms fault p99 at 200 conns <= Envoy's",
            check(ratio("100 ms fault, 200 conns: p99"), lambda r: r <= 1.0),
        ),
        (
            "100 ms fault p99 at 1000 conns <= 1.5x Envoy's",
            check(ratio("100 ms fault, 1000 conns: p99"), lambda r: r <= 1.5),
        ),
        (
            "issue #3: p99 <= 130 ms and none under 100 ms at 200 conns",
            check(
                ours("100 ms fault, 200 conns: p99"),
                lambda p99: p99 <= 130 and bool(low200) and min(low200) >= 100,
            ),
        ),
        (
            "issue #3: p99 <= 500 ms at 1000 conns",
            check(ours("100 ms fault, 1000 conns: p99"), lambda p99: p99 <= 500),
        ),
        (
            "RSS at 1000 conns <= 80 MB",
            check(ours("RSS at 1000 conns"), lambda mib: mib * 1.048576 <= 80),
        ),
    ]
