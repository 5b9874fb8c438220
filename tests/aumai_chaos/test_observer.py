"""Tests for aumai_chaos.observer: recording, bounding, thread safety and scopes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from aumai_chaos.models import ObservationPoint
from aumai_chaos.observer import ExperimentObserver


def test_observe_records_a_utc_timestamped_point() -> None:
    """observe() records component, event and details with the current UTC time."""
    observer = ExperimentObserver()
    before = datetime.now(UTC)

    observer.observe("llm_tool_call", "latency_injected", {"duration_ms": 200})

    [point] = observer.get_observations()
    assert point.component == "llm_tool_call"
    assert point.event == "latency_injected"
    assert point.details == {"duration_ms": 200}
    assert point.timestamp.utcoffset() == timedelta(0)
    assert before <= point.timestamp <= datetime.now(UTC)


def test_observe_without_details_records_empty_details() -> None:
    """Leaving out details gives an empty dict."""
    observer = ExperimentObserver()

    observer.observe("cache", "miss")

    assert observer.get_observations()[0].details == {}


def test_observe_copies_the_details() -> None:
    """Changing the caller's dict afterwards does not alter what was recorded."""
    observer = ExperimentObserver()
    details: dict[str, object] = {"attempt": 1}

    observer.observe("db", "retry", details)
    details["attempt"] = 2

    assert observer.get_observations()[0].details == {"attempt": 1}


def test_record_appends_a_prebuilt_point() -> None:
    """record() stores the given point itself, timestamp included."""
    observer = ExperimentObserver()
    point = ObservationPoint(
        timestamp=datetime(2024, 1, 1, tzinfo=UTC), component="api", event="proxied"
    )

    observer.record(point)

    assert observer.get_observations() == [point]


def test_get_observations_returns_an_independent_list() -> None:
    """Mutating the returned list leaves the observer's record alone."""
    observer = ExperimentObserver()
    observer.observe("a", "x")

    observations = observer.get_observations()
    observations.clear()

    assert len(observer) == 1


def test_clear_discards_everything() -> None:
    """clear() empties the observer."""
    observer = ExperimentObserver()
    for index in range(3):
        observer.observe("a", f"e{index}")

    observer.clear()

    assert len(observer) == 0
    assert observer.get_observations() == []


def test_unbounded_by_default() -> None:
    """Without max_points, every point is kept."""
    observer = ExperimentObserver()
    for index in range(1_000):
        observer.observe("a", str(index))

    assert observer.max_points is None
    assert len(observer) == 1_000


def test_max_points_keeps_the_newest() -> None:
    """A bounded observer drops the oldest points and keeps the newest N in order."""
    observer = ExperimentObserver(max_points=3)
    for index in range(10):
        observer.observe("a", str(index))

    assert observer.max_points == 3
    assert [point.event for point in observer.get_observations()] == ["7", "8", "9"]


@pytest.mark.parametrize("max_points", [0, -1], ids=["zero", "negative"])
def test_max_points_below_one_is_rejected(max_points: int) -> None:
    """max_points under 1 raises ValueError naming the value."""
    with pytest.raises(
        ValueError, match=f"max_points: expected 1 or more.*{max_points}"
    ):
        ExperimentObserver(max_points=max_points)


@pytest.mark.parametrize("max_points", [None, 250], ids=["unbounded", "bounded"])
def test_concurrent_observers_lose_nothing(max_points: int | None) -> None:
    """Eight threads observing at once lose no point (beyond the bound)."""
    observer = ExperimentObserver(max_points=max_points)
    start = threading.Barrier(8)

    def observe_many(worker: int) -> None:
        start.wait()
        for index in range(500):
            observer.observe(f"worker-{worker}", "tick", {"index": index})

    threads = [threading.Thread(target=observe_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    points = observer.get_observations()
    assert len(observer) == len(points) == (max_points or 4_000)
    if max_points is None:
        seen = {(point.component, point.details["index"]) for point in points}
        assert len(seen) == 4_000


def test_scope_records_start_and_end_with_prefix() -> None:
    """A clean block records '{prefix}_start' then '{prefix}_end' with elapsed time."""
    observer = ExperimentObserver()

    with observer.scope("database", "query"):
        pass

    start, end = observer.get_observations()
    assert (start.component, start.event) == ("database", "query_start")
    assert (end.component, end.event) == ("database", "query_end")
    elapsed = end.details["elapsed_ms"]
    assert isinstance(elapsed, float)
    assert elapsed >= 0


def test_scope_without_prefix_uses_bare_event_names() -> None:
    """An empty prefix gives the events 'start' and 'end'."""
    observer = ExperimentObserver()

    with observer.scope("cache"):
        pass

    assert [point.event for point in observer.get_observations()] == ["start", "end"]


@pytest.mark.parametrize(
    ("prefix", "error_event"),
    [("query", "query_error"), ("", "error")],
    ids=["prefixed", "bare"],
)
def test_scope_records_the_error_and_reraises(prefix: str, error_event: str) -> None:
    """A failing block records the error's type and message, then re-raises it."""
    observer = ExperimentObserver()
    failure = ConnectionError("connection reset")

    with pytest.raises(ConnectionError) as caught, observer.scope("db", prefix):
        raise failure

    assert caught.value is failure
    start, error = observer.get_observations()
    assert start.event.endswith("start")
    assert error.event == error_event
    assert error.details["error_type"] == "ConnectionError"
    assert error.details["error"] == "connection reset"
    assert "elapsed_ms" in error.details


def test_scope_records_base_exceptions_too() -> None:
    """An interrupt or cancellation inside a scope is recorded, then re-raised."""
    observer = ExperimentObserver()

    with pytest.raises(KeyboardInterrupt), observer.scope("worker", "job"):
        raise KeyboardInterrupt

    assert observer.get_observations()[-1].event == "job_error"
    assert observer.get_observations()[-1].details["error_type"] == "KeyboardInterrupt"
