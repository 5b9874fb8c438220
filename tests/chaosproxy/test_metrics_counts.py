"""What the metrics and the summary make of observation points, sample by sample.

These tests feed points straight to the listeners, without a proxy, so they can
pin the exact ``/metrics`` text and ``/summary`` document: names, help texts,
labels, bucket bounds and values.
"""

from __future__ import annotations

import math
import sys
import threading
from datetime import UTC, datetime

import pytest
from prometheus_client import Gauge

from aumai_chaos import ObservationPoint
from chaosproxy.metrics import ProxyMetrics, TrafficSummary
from tests.chaosproxy.adminkit import metric


def _point(component: str, **details: object) -> ObservationPoint:
    """An observation point for ``component`` with ``details``, as the proxy makes."""
    return ObservationPoint(
        timestamp=datetime.now(UTC),
        component=component,
        event="proxied",
        details=details,
    )


# Two faulted payments, a fast search, a search whose upstream was unreachable
# after 70 s (past the last finite bucket), and a point without route or status.
_POINTS = [
    _point("payments", route="pay", status=503, duration_ms=12.5, faults=["error"]),
    _point(
        "payments",
        route="pay",
        status=503,
        duration_ms=300.0,
        faults=["error", "latency"],
    ),
    _point("search", route="search", status=200, duration_ms=5, faults=[]),
    _point(
        "search",
        route="search",
        status=502,
        duration_ms=70000.0,
        faults=[],
        upstream_error="unreachable",
    ),
    _point("default", path="/x"),
]

_BUCKETS = (
    *("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5"),
    *("1.0", "2.5", "5.0", "10.0", "30.0", "60.0", "+Inf"),
)
_PAY_BUCKETS = (0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2)
_SEARCH_BUCKETS = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2)


def _bucket_lines(route: str, component: str, counts: tuple[int, ...]) -> list[str]:
    """The cumulative ``_bucket`` sample lines of one route's histogram."""
    return [
        "chaosproxy_request_duration_seconds_bucket"
        f'{{component="{component}",le="{le}",route="{route}"}} {count}.0'
        for le, count in zip(_BUCKETS, counts, strict=True)
    ]


_EXPOSITION = [
    "# HELP chaosproxy_requests_total Requests proxied, by route, component and "
    "status sent to the client.",
    "# TYPE chaosproxy_requests_total counter",
    'chaosproxy_requests_total{component="payments",route="pay",status="503"} 2.0',
    'chaosproxy_requests_total{component="search",route="search",status="200"} 1.0',
    'chaosproxy_requests_total{component="search",route="search",status="502"} 1.0',
    'chaosproxy_requests_total{component="default",route="",status=""} 1.0',
    "# HELP chaosproxy_faults_injected_total Faults that fired, by route, component "
    "and fault type.",
    "# TYPE chaosproxy_faults_injected_total counter",
    "chaosproxy_faults_injected_total"
    '{component="payments",fault_type="error",route="pay"} 2.0',
    "chaosproxy_faults_injected_total"
    '{component="payments",fault_type="latency",route="pay"} 1.0',
    "# HELP chaosproxy_request_duration_seconds Time from a request's arrival to "
    "the end of its answer.",
    "# TYPE chaosproxy_request_duration_seconds histogram",
    *_bucket_lines("pay", "payments", _PAY_BUCKETS),
    'chaosproxy_request_duration_seconds_count{component="payments",route="pay"} 2.0',
    'chaosproxy_request_duration_seconds_sum{component="payments",route="pay"} 0.3125',
    *_bucket_lines("search", "search", _SEARCH_BUCKETS),
    'chaosproxy_request_duration_seconds_count{component="search",route="search"} 2.0',
    'chaosproxy_request_duration_seconds_sum{component="search",route="search"} 70.005',
    "# HELP chaosproxy_upstream_errors_total Upstream failures, by route and kind "
    "(unreachable, timeout, protocol).",
    "# TYPE chaosproxy_upstream_errors_total counter",
    'chaosproxy_upstream_errors_total{kind="unreachable",route="search"} 1.0',
    "# HELP chaosproxy_active_experiments Experiments whose faults are acting now.",
    "# TYPE chaosproxy_active_experiments gauge",
    "chaosproxy_active_experiments 2.0",
]


def test_exposition_of_a_few_points_is_pinned_line_by_line() -> None:
    """Five points render to exactly these lines, with no ``_created`` series."""
    metrics = ProxyMetrics(active_experiments=lambda: 2)
    for point in _POINTS:
        metrics.observe(point)

    assert metrics.render().decode().splitlines() == _EXPOSITION


def test_exposition_before_any_traffic_has_families_without_samples() -> None:
    """With nothing observed, each family still has its HELP and TYPE lines."""
    metrics = ProxyMetrics()
    lines = metrics.render().decode().splitlines()

    # The gauge's HELP and TYPE come last, so its one sample follows them.
    assert lines == [
        *(line for line in _EXPOSITION if line.startswith("#")),
        "chaosproxy_active_experiments 0.0",
    ]


def test_summary_of_a_few_points_is_pinned() -> None:
    """The same five points give these totals, overall and per component."""
    summary = TrafficSummary()
    for point in _POINTS:
        summary.observe(point)
    snapshot = summary.snapshot()

    assert datetime.fromisoformat(str(snapshot.pop("since"))) <= datetime.now(UTC)
    assert snapshot == {
        "requests": 5,
        "by_status": {"": 1, "200": 1, "502": 1, "503": 2},
        "faults_by_type": {"error": 2, "latency": 1},
        "upstream_errors": {"unreachable": 1},
        "components": {
            "default": {"requests": 1, "by_status": {"": 1}, "faults_by_type": {}},
            "payments": {
                "requests": 2,
                "by_status": {"503": 2},
                "faults_by_type": {"error": 2, "latency": 1},
            },
            "search": {
                "requests": 2,
                "by_status": {"200": 1, "502": 1},
                "faults_by_type": {},
            },
        },
    }


@pytest.mark.parametrize(
    ("duration_ms", "first_bucket"),
    [
        (0, "0.005"),
        (5, "0.005"),
        (5.001, "0.01"),
        (250, "0.25"),
        (60000, "60.0"),
        (60000.5, "+Inf"),
        (float("inf"), "+Inf"),
        (-1, "0.005"),
    ],
    ids=[
        "zero",
        "on-first-bound",
        "just-above-a-bound",
        "on-a-middle-bound",
        "on-last-bound",
        "past-last-bound",
        "infinite",
        "negative",
    ],
)
def test_duration_lands_in_first_bucket_whose_bound_it_does_not_exceed(
    duration_ms: float, first_bucket: str
) -> None:
    """Bounds are inclusive (``le``): a duration on a bound counts in that bucket."""
    metrics = ProxyMetrics()
    metrics.observe(_point("c", route="r", duration_ms=duration_ms))
    text = metrics.render().decode()

    counted = [
        le
        for le in _BUCKETS
        if metric(text, "chaosproxy_request_duration_seconds_bucket", le=le) == 1
    ]
    assert counted[0] == first_bucket
    assert counted == list(_BUCKETS[_BUCKETS.index(first_bucket) :])


def test_nan_duration_counts_in_no_bucket_but_shows_in_the_sum() -> None:
    """A NaN duration is below no bound, so no bucket or count takes it."""
    metrics = ProxyMetrics()
    metrics.observe(_point("c", route="r", duration_ms=float("nan")))
    text = metrics.render().decode()

    name = "chaosproxy_request_duration_seconds"
    assert metric(text, f"{name}_bucket", le="+Inf") == 0
    assert metric(text, f"{name}_count") == 0
    assert math.isnan(metric(text, f"{name}_sum"))


@pytest.mark.parametrize(
    "duration_ms", [None, "12", [1]], ids=["absent", "text", "list"]
)
def test_duration_that_is_not_a_number_leaves_the_histogram_alone(
    duration_ms: object,
) -> None:
    """Only an int or float duration is observed; the request is still counted."""
    metrics = ProxyMetrics()
    metrics.observe(_point("c", route="r", status=200, duration_ms=duration_ms))
    text = metrics.render().decode()

    assert metric(text, "chaosproxy_requests_total", route="r") == 1
    assert "chaosproxy_request_duration_seconds_count" not in text


def test_threads_observing_at_once_lose_no_count() -> None:
    """Eight threads observing the same labels concurrently: every one is counted."""
    metrics = ProxyMetrics()
    summary = TrafficSummary()
    point = _POINTS[3]  # has a status, a duration and an upstream error

    def observe_many() -> None:
        for _ in range(2_000):
            metrics.observe(point)
            summary.observe(point)

    threads = [threading.Thread(target=observe_many) for _ in range(8)]
    # Switch threads as often as the interpreter can, so that an increment split
    # by a switch (a lost update) would almost surely happen if it could.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    text = metrics.render().decode()

    assert metric(text, "chaosproxy_requests_total", route="search") == 16_000
    assert metric(text, "chaosproxy_request_duration_seconds_count") == 16_000
    assert metric(text, "chaosproxy_upstream_errors_total") == 16_000
    snapshot = summary.snapshot()
    assert snapshot["requests"] == 16_000
    assert snapshot["upstream_errors"] == {"unreachable": 16_000}


def test_active_experiments_is_read_at_each_scrape_and_not_before() -> None:
    """Building the metrics never calls the callback; every render calls it once."""
    calls: list[int] = []

    def active_experiments() -> int:
        calls.append(1)
        return len(calls)

    metrics = ProxyMetrics(active_experiments)
    assert calls == []
    first = metrics.render().decode()
    second = metrics.render().decode()

    assert metric(first, "chaosproxy_active_experiments") == 1
    assert metric(second, "chaosproxy_active_experiments") == 2


@pytest.mark.parametrize(
    "name",
    [
        "chaosproxy_requests_total",
        "chaosproxy_faults_injected",
        "chaosproxy_request_duration_seconds_bucket",
        "chaosproxy_upstream_errors_total",
        "chaosproxy_active_experiments",
    ],
)
def test_registry_refuses_a_second_metric_with_one_of_our_names(name: str) -> None:
    """The registry knows every series name the metrics produce, and guards it."""
    metrics = ProxyMetrics()

    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge(name, "A clash.", registry=metrics.registry)
