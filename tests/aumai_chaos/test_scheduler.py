"""Tests for aumai_chaos.scheduler: registering, running, aborting, reporting."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from aumai_chaos.errors import ExperimentNotFoundError
from aumai_chaos.injector import FaultInjector
from aumai_chaos.models import (
    ChaosExperiment,
    ExperimentResult,
    ExperimentStatus,
    FaultConfig,
    FaultType,
)
from aumai_chaos.observer import ExperimentObserver
from aumai_chaos.scheduler import ExperimentScheduler

TICK = 0.05
SUMMARY_KEYS = {
    "total_faults_fired",
    "faults_by_type",
    "errors_by_type",
    "duration_seconds",
}


def make_experiment(
    experiment_id: str = "exp-1",
    *,
    faults: list[FaultConfig] | None = None,
    duration_seconds: int = 60,
    target_components: list[str] | None = None,
) -> ChaosExperiment:
    """An experiment with a 503 error fault unless told otherwise."""
    default = [FaultConfig(fault_type=FaultType.error, error_code=503)]
    return ChaosExperiment(
        experiment_id=experiment_id,
        name="test experiment",
        faults=default if faults is None else faults,
        duration_seconds=duration_seconds,
        target_components=target_components or [],
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds, failing the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.005)


@contextmanager
def running_in_thread(
    scheduler: ExperimentScheduler, experiment_id: str
) -> Iterator[list[ExperimentResult]]:
    """Run the experiment on a thread; yield once it runs; join it on exit."""
    results: list[ExperimentResult] = []
    thread = threading.Thread(
        target=lambda: results.append(scheduler.run(experiment_id)),
        name="test-experiment-run",
    )
    thread.start()
    try:
        wait_until(lambda: scheduler.get_result(experiment_id) is not None)
        yield results
    finally:
        scheduler.abort(experiment_id)
        thread.join(timeout=5)
    assert not thread.is_alive()


def ticks_seen(result: ExperimentResult) -> int:
    """How many ticks injected something, judging by the observations."""
    return len({point.details["tick"] for point in result.observations})


def observation_count(scheduler: ExperimentScheduler, experiment_id: str) -> int:
    """How many observations the latest result of ``experiment_id`` holds."""
    result = scheduler.get_result(experiment_id)
    return len(result.observations) if result is not None else 0


# -- scheduling ------------------------------------------------------------------------


def test_schedule_keeps_a_given_id_and_marks_it_pending() -> None:
    """A scheduled experiment keeps its id, is pending and has no result yet."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)

    experiment_id = scheduler.schedule(make_experiment("checkout-latency"))

    assert experiment_id == "checkout-latency"
    assert scheduler.status(experiment_id) is ExperimentStatus.pending
    assert scheduler.get_result(experiment_id) is None


def test_schedule_assigns_a_uuid4_to_an_empty_id() -> None:
    """An empty experiment_id counts as absent and gets a fresh UUID4."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)

    first = scheduler.schedule(make_experiment(""))
    second = scheduler.schedule(make_experiment(""))

    assert uuid.UUID(first).version == 4
    assert first != second
    assert scheduler.experiment(first).experiment_id == first


def test_schedule_keeps_its_own_copy() -> None:
    """Changing the experiment after scheduling does not change what will run."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    experiment = make_experiment()

    experiment_id = scheduler.schedule(experiment)
    experiment.faults[0].probability = 0.0

    assert scheduler.experiment(experiment_id).faults[0].probability == 1.0


def test_schedule_rejects_an_incomplete_fault_naming_its_position() -> None:
    """A fault missing a needed field is refused, with its index in the message."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    faults = [
        FaultConfig(fault_type=FaultType.timeout),
        FaultConfig(fault_type=FaultType.latency),
    ]

    with pytest.raises(ValueError, match=r"^faults\[1\]\.duration_ms: required"):
        scheduler.schedule(make_experiment(faults=faults))

    assert scheduler.experiment_ids() == []


def test_experiment_ids_lists_in_scheduling_order() -> None:
    """experiment_ids() returns every registered id, oldest first."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    for name in ["b", "a", "c"]:
        scheduler.schedule(make_experiment(name))

    assert scheduler.experiment_ids() == ["b", "a", "c"]


@pytest.mark.parametrize(
    "call",
    [
        ExperimentScheduler.run,
        ExperimentScheduler.abort,
        ExperimentScheduler.status,
        ExperimentScheduler.experiment,
    ],
    ids=["run", "abort", "status", "experiment"],
)
def test_unknown_id_raises_not_found(
    call: Callable[[ExperimentScheduler, str], object],
) -> None:
    """Every lookup of an unscheduled id raises ExperimentNotFoundError naming it."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)

    with pytest.raises(ExperimentNotFoundError, match="'nope'"):
        call(scheduler, "nope")


def test_get_result_of_unknown_id_is_none() -> None:
    """get_result answers None rather than raising for an unknown id."""
    assert ExperimentScheduler().get_result("nope") is None


@pytest.mark.parametrize(
    "tick_seconds",
    [0.0, -1.0, float("inf"), float("nan")],
    ids=["zero", "negative", "infinite", "nan"],
)
def test_tick_seconds_must_be_positive_and_finite(tick_seconds: float) -> None:
    """A tick that is not a positive finite number is refused."""
    with pytest.raises(ValueError, match="tick_seconds: expected a positive number"):
        ExperimentScheduler(tick_seconds=tick_seconds)


def test_scheduler_module_exports_not_found_error() -> None:
    """The reference imports ExperimentNotFoundError from aumai_chaos.scheduler."""
    from aumai_chaos import scheduler as module

    assert module.ExperimentNotFoundError is ExperimentNotFoundError


# -- running ---------------------------------------------------------------------------


def test_run_to_completion_counts_and_observes_every_fault() -> None:
    """A full run fires faults on every tick and target, and reports them."""
    observer = ExperimentObserver()
    scheduler = ExperimentScheduler(observer=observer, tick_seconds=TICK)
    faults = [
        FaultConfig(fault_type=FaultType.error, error_code=503),
        FaultConfig(
            fault_type=FaultType.latency, duration_ms=1, affected_components=["cache"]
        ),
        FaultConfig(fault_type=FaultType.timeout, probability=0.0),
    ]
    experiment_id = scheduler.schedule(
        make_experiment(faults=faults, duration_seconds=1, target_components=["a", "b"])
    )

    result = scheduler.run(experiment_id)

    ticks = ticks_seen(result)
    assert 10 <= ticks <= 20
    assert result.status is ExperimentStatus.completed
    assert result.end_time is not None
    assert result.end_time > result.start_time
    assert set(result.summary) == SUMMARY_KEYS
    assert result.summary["faults_by_type"] == {"error": 2 * ticks, "latency": ticks}
    assert result.summary["errors_by_type"] == {"error": 2 * ticks}
    assert result.summary["total_faults_fired"] == 3 * ticks
    duration = result.summary["duration_seconds"]
    assert isinstance(duration, float)
    assert 1.0 <= duration < 1.5

    by_type: dict[object, set[str]] = {}
    for point in result.observations:
        assert point.event == "fault_injected"
        assert point.details["experiment_id"] == experiment_id
        by_type.setdefault(point.details["fault_type"], set()).add(point.component)
    assert by_type == {"error": {"a", "b"}, "latency": {"cache"}}
    assert observer.get_observations() == result.observations
    assert scheduler.get_result(experiment_id) is result
    assert scheduler.status(experiment_id) is ExperimentStatus.completed


def test_untargeted_fault_acts_on_the_default_component() -> None:
    """With no components named anywhere, a fault acts once per tick on 'default'."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    faults = [FaultConfig(fault_type=FaultType.resource_exhaustion)]
    experiment_id = scheduler.schedule(
        make_experiment(faults=faults, duration_seconds=1)
    )

    result = scheduler.run(experiment_id)

    assert {point.component for point in result.observations} == {"default"}
    assert len(result.observations) == ticks_seen(result)
    point = result.observations[0]
    assert point.details["error_type"] == "ResourceExhaustedError"
    assert point.details["error"] == "Resource exhausted"


def test_running_result_is_visible_from_another_thread() -> None:
    """While a run goes on, get_result shows a running snapshot with a summary."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    experiment_id = scheduler.schedule(make_experiment())

    with running_in_thread(scheduler, experiment_id):
        wait_until(lambda: observation_count(scheduler, experiment_id) >= 2)
        snapshot = scheduler.get_result(experiment_id)

        assert snapshot is not None
        assert snapshot.status is ExperimentStatus.running
        assert snapshot.end_time is None
        assert set(snapshot.summary) == SUMMARY_KEYS
        assert scheduler.status(experiment_id) is ExperimentStatus.running


def test_abort_from_another_thread_ends_the_run_within_a_tick() -> None:
    """abort() on another thread stops a long run within about one tick."""
    scheduler = ExperimentScheduler(tick_seconds=0.2)
    experiment_id = scheduler.schedule(make_experiment(duration_seconds=60))

    with running_in_thread(scheduler, experiment_id) as results:
        time.sleep(0.3)
        aborted_at = time.monotonic()
        scheduler.abort(experiment_id)
        wait_until(lambda: bool(results))
        stopped_after = time.monotonic() - aborted_at

    assert stopped_after < 0.2 + 0.3
    [result] = results
    assert result.status is ExperimentStatus.aborted
    assert result.end_time is not None
    assert scheduler.status(experiment_id) is ExperimentStatus.aborted


def test_abort_interrupts_a_tick_full_of_latency() -> None:
    """An abort is noticed between the injections of a tick, not only between ticks."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    fault = FaultConfig(fault_type=FaultType.latency, duration_ms=100)
    components = [f"c{index}" for index in range(30)]
    experiment_id = scheduler.schedule(
        make_experiment(faults=[fault], target_components=components)
    )

    with running_in_thread(scheduler, experiment_id) as results:
        time.sleep(0.25)
        scheduler.abort(experiment_id)
        wait_until(lambda: bool(results), timeout=1.0)

    assert results[0].status is ExperimentStatus.aborted
    assert len(results[0].observations) < len(components)


def test_abort_before_run_makes_the_run_end_at_once() -> None:
    """Aborting a pending experiment makes its next run end immediately as aborted."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    experiment_id = scheduler.schedule(make_experiment(duration_seconds=60))

    scheduler.abort(experiment_id)
    assert scheduler.status(experiment_id) is ExperimentStatus.pending
    started = time.monotonic()
    result = scheduler.run(experiment_id)

    assert time.monotonic() - started < 0.5
    assert result.status is ExperimentStatus.aborted
    assert result.observations == []
    assert result.summary["total_faults_fired"] == 0


def test_abort_after_a_run_leaves_the_next_run_alone() -> None:
    """Aborting a finished experiment does nothing; running it again runs afresh."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    experiment_id = scheduler.schedule(make_experiment())
    scheduler.abort(experiment_id)
    first = scheduler.run(experiment_id)

    scheduler.abort(experiment_id)
    assert scheduler.get_result(experiment_id) is first

    with running_in_thread(scheduler, experiment_id) as results:
        time.sleep(0.3)
        assert scheduler.status(experiment_id) is ExperimentStatus.running

    second = results[0]
    assert second.start_time > first.start_time
    assert second.observations
    assert all(point.timestamp >= second.start_time for point in second.observations)


def test_second_run_while_running_is_refused() -> None:
    """run() or schedule() on an experiment running elsewhere raises RuntimeError."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    experiment_id = scheduler.schedule(make_experiment())

    with running_in_thread(scheduler, experiment_id):
        with pytest.raises(RuntimeError, match="'exp-1' is already running"):
            scheduler.run(experiment_id)
        with pytest.raises(RuntimeError, match="'exp-1' is running"):
            scheduler.schedule(make_experiment())


def test_rescheduling_a_finished_experiment_drops_its_result() -> None:
    """Scheduling an id again replaces the experiment and makes it pending."""
    scheduler = ExperimentScheduler(tick_seconds=TICK)
    experiment_id = scheduler.schedule(make_experiment())
    scheduler.abort(experiment_id)
    scheduler.run(experiment_id)

    scheduler.schedule(make_experiment(duration_seconds=5))

    assert scheduler.status(experiment_id) is ExperimentStatus.pending
    assert scheduler.get_result(experiment_id) is None
    assert scheduler.experiment(experiment_id).duration_seconds == 5


def test_unexpected_exception_ends_the_run_and_propagates() -> None:
    """A non-fault exception from the injector escapes run() and is recorded."""

    class Broken(FaultInjector):
        def inject(self, config: FaultConfig) -> None:
            raise ZeroDivisionError("bug in a custom injector")

    scheduler = ExperimentScheduler(injector=Broken(), tick_seconds=TICK)
    experiment_id = scheduler.schedule(make_experiment())

    with pytest.raises(ZeroDivisionError, match="bug in a custom injector"):
        scheduler.run(experiment_id)

    result = scheduler.get_result(experiment_id)
    assert result is not None
    assert result.status is ExperimentStatus.aborted
    assert result.observations[-1].event == "experiment_failed"
    assert result.observations[-1].details["error_type"] == "ZeroDivisionError"
    assert scheduler.status(experiment_id) is ExperimentStatus.aborted
