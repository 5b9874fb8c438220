"""Counting traffic: Prometheus metrics and the admin API's summary.

Both are observation listeners: the proxy records one point per request and each
listener folds it into counters on the spot, so nothing is recomputed when
``/metrics`` or ``/summary`` is read. Every proxy owns its own
:class:`~prometheus_client.CollectorRegistry` (never the process-wide default), so
several proxies in one process, as in a test suite, keep separate counts.

Metrics (label names in braces)::

    chaosproxy_requests_total{route,component,status}
    chaosproxy_faults_injected_total{route,component,fault_type}
    chaosproxy_request_duration_seconds{route,component}     histogram
    chaosproxy_upstream_errors_total{route,kind}              unreachable/timeout/...
    chaosproxy_active_experiments                              gauge
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from aumai_chaos import ObservationPoint

__all__ = ["METRICS_CONTENT_TYPE", "ProxyMetrics", "TrafficSummary"]

_Metric = TypeVar("_Metric", bound=MetricWrapperBase)

#: The ``Content-Type`` of :meth:`ProxyMetrics.render`'s output.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency faults are often hundreds of milliseconds and timeouts tens of seconds,
# so the buckets reach further than a typical service's.
_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def _text(value: object, default: str = "") -> str:
    """A detail value as a label: ``str()`` of it, ``default`` when absent."""
    return default if value is None else str(value)


class ProxyMetrics:
    """The proxy's Prometheus metrics, in a registry of their own.

    Call :meth:`observe` with each observation point (it is an
    :class:`~chaosproxy.observations.ObservationSink` listener) and
    :meth:`render` for the text exposition format.
    """

    def __init__(self, active_experiments: Callable[[], int] = lambda: 0) -> None:
        """Create the metrics; ``active_experiments`` is read at each scrape."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = PromCounter(
            "chaosproxy_requests",
            "Requests proxied, by route, component and status sent to the client.",
            ("route", "component", "status"),
            registry=self.registry,
        )
        self.faults = PromCounter(
            "chaosproxy_faults_injected",
            "Faults that fired, by route, component and fault type.",
            ("route", "component", "fault_type"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "chaosproxy_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ("route", "component"),
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = PromCounter(
            "chaosproxy_upstream_errors",
            "Upstream failures, by route and kind (unreachable, timeout, protocol).",
            ("route", "kind"),
            registry=self.registry,
        )
        self.active_experiments = Gauge(
            "chaosproxy_active_experiments",
            "Experiments whose faults are acting now.",
            registry=self.registry,
        )
        self.active_experiments.set_function(lambda: float(active_experiments()))
        # One entry per label combination seen, as prometheus-client keeps anyway.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def observe(self, point: ObservationPoint) -> None:
        """Count one proxied request."""
        details = point.details
        route = _text(details.get("route"))
        component = point.component
        status = _text(details.get("status"))
        self._child(self.requests, (route, component, status)).inc()
        duration_ms = details.get("duration_ms")
        if isinstance(duration_ms, int | float):
            histogram = self._child(self.duration, (route, component))
            histogram.observe(duration_ms / 1000)

        faults = details.get("faults")
        if isinstance(faults, list):
            for fault_type in faults:
                key = (route, component, str(fault_type))
                self._child(self.faults, key).inc()
        kind = details.get("upstream_error")
        if kind is not None:
            self.upstream_errors.labels(route, str(kind)).inc()

    def _child(self, metric: _Metric, labels: tuple[str, ...]) -> _Metric:
        """The labelled child of ``metric``, cached: ``labels()`` takes a lock."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)

        return child

    def render(self) -> bytes:
        """Return every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class TrafficSummary:
    """Running totals since the proxy started, for ``GET /summary``.

    Counts every request, not only those still in the observation window.
    """

    def __init__(self) -> None:
        """Start from zero, now."""
        self.since = datetime.now(UTC)
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._status: Counter[tuple[str, str]] = Counter()
        self._faults: Counter[tuple[str, str]] = Counter()
        self._upstream_errors: Counter[str] = Counter()

    def observe(self, point: ObservationPoint) -> None:
        """Count one proxied request."""
        details = point.details
        component = point.component
        faults = details.get("faults")
        kind = details.get("upstream_error")
        # A lock, because a user's listener may record from another thread.
        with self._lock:
            self._requests[component] += 1
            self._status[component, _text(details.get("status"))] += 1
            if isinstance(faults, list):
                for fault_type in faults:
                    self._faults[component, str(fault_type)] += 1
            if kind is not None:
                self._upstream_errors[str(kind)] += 1

    def snapshot(self) -> dict[str, object]:
        """Return the totals as JSON-ready data.

        Keys: ``since``, ``requests``, ``by_status``, ``faults_by_type``,
        ``upstream_errors`` and ``components`` (the first three per component).
        """
        with self._lock:
            components: dict[str, dict[str, object]] = {
                name: {"requests": count, "by_status": {}, "faults_by_type": {}}
                for name, count in sorted(self._requests.items())
            }
            for (name, status), count in sorted(self._status.items()):
                _bucket(components, name, "by_status")[status] = count
            for (name, fault_type), count in sorted(self._faults.items()):
                _bucket(components, name, "faults_by_type")[fault_type] = count
            upstream_errors = dict(sorted(self._upstream_errors.items()))
            requests = sum(self._requests.values())

        return {
            "since": self.since.isoformat(),
            "requests": requests,
            "by_status": _add_up(components, "by_status"),
            "faults_by_type": _add_up(components, "faults_by_type"),
            "upstream_errors": upstream_errors,
            "components": components,
        }


def _bucket(
    components: dict[str, dict[str, object]], name: str, key: str
) -> dict[str, int]:
    """The counts under ``key`` for one component, typed for updating."""
    counts = components[name][key]
    assert isinstance(counts, dict)

    return counts


def _add_up(components: dict[str, dict[str, object]], key: str) -> dict[str, int]:
    """Sum one kind of per-component count over every component."""
    total: Counter[str] = Counter()
    for name in components:
        total.update(_bucket(components, name, key))

    return dict(sorted(total.items()))
