"""The scheduler: register experiments, run them on ticks, abort them, report.

A run is a loop on the calling thread::

    schedule(experiment) -> id                          status: pending
    run(id):  every tick, until duration_seconds or abort   status: running
                for each fault, for each of its components:
                    injector decides and applies the fault
                    a latency that fires, or an injected exception, is counted
                    and observed; the exception never escapes the run
              the final result                          status: completed | aborted

A fault acts on its ``affected_components``, else on the experiment's
``target_components``, else once on the component ``"default"``. The result kept for
an id is replaced, never mutated, so ``get_result`` from another thread always sees
a consistent snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aumai_chaos.errors import INJECTED_FAULT_ERRORS, ExperimentNotFoundError
from aumai_chaos.injector import FaultInjector
from aumai_chaos.models import (
    ChaosExperiment,
    ExperimentResult,
    ExperimentStatus,
    FaultConfig,
    FaultType,
    ObservationPoint,
)
from aumai_chaos.observer import ExperimentObserver

__all__ = ["ExperimentNotFoundError", "ExperimentScheduler"]

logger = logging.getLogger(__name__)

UNTARGETED_COMPONENT = "default"
"""The component a fault acts on when neither it nor its experiment names any."""


@dataclass
class _Entry:
    """One registered experiment and the state of its runs."""

    experiment: ChaosExperiment
    abort: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    result: ExperimentResult | None = None


@dataclass
class _Run:
    """The state of one run while it goes."""

    experiment: ChaosExperiment
    observer: ExperimentObserver | None
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    observations: list[ObservationPoint] = field(default_factory=list)
    faults_by_type: Counter[str] = field(default_factory=Counter)
    errors_by_type: Counter[str] = field(default_factory=Counter)

    def observe(self, component: str, event: str, details: dict[str, object]) -> None:
        """Record a point in this run, and in the scheduler's observer if any."""
        point = ObservationPoint(
            timestamp=datetime.now(UTC),
            component=component,
            event=event,
            details={"experiment_id": self.experiment.experiment_id, **details},
        )
        self.observations.append(point)
        if self.observer is not None:
            self.observer.record(point)

    def result(self, status: ExperimentStatus) -> ExperimentResult:
        """A snapshot of the run with ``status``; finished unless running."""
        finished = status is not ExperimentStatus.running
        return ExperimentResult(
            experiment=self.experiment,
            status=status,
            start_time=self.start_time,
            end_time=datetime.now(UTC) if finished else None,
            observations=list(self.observations),
            summary={
                "total_faults_fired": sum(self.faults_by_type.values()),
                "faults_by_type": dict(self.faults_by_type),
                "errors_by_type": dict(self.errors_by_type),
                "duration_seconds": round(time.monotonic() - self.started, 3),
            },
        )


class ExperimentScheduler:
    """Registers, runs and aborts chaos experiments, keeping results in memory.

    Args:
        injector: Decides and applies the faults; a fresh ``FaultInjector`` if None.
            Pass a seeded one for repeatable runs.
        observer: Also receives every observation of every run, if given.
        tick_seconds: Time between ticks; faults are injected once per tick.

    Raises:
        ValueError: If ``tick_seconds`` is not a positive number.
    """

    def __init__(
        self,
        *,
        injector: FaultInjector | None = None,
        observer: ExperimentObserver | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        if not 0 < tick_seconds < float("inf"):
            raise ValueError(
                f"tick_seconds: expected a positive number, got {tick_seconds!r}"
            )
        self.injector = injector if injector is not None else FaultInjector()
        self.observer = observer
        self.tick_seconds = tick_seconds
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def schedule(self, experiment: ChaosExperiment) -> str:
        """Register ``experiment`` and return its id; it is then pending.

        The id is kept if the experiment has one; an empty id counts as none and a
        UUID4 is assigned. The scheduler keeps its own copy of the experiment.
        Scheduling an id again replaces that experiment and drops its result.

        Raises:
            ValueError: If a fault lacks a field its type needs (the message names
                the fault, e.g. ``faults[1].error_code``).
            RuntimeError: If the id is registered and running.
        """
        for index, fault in enumerate(experiment.faults):
            try:
                self.injector.check(fault)
            except ValueError as exc:
                raise ValueError(f"faults[{index}].{exc}") from None

        experiment_id = experiment.experiment_id or str(uuid.uuid4())
        copy = experiment.model_copy(deep=True, update={"experiment_id": experiment_id})
        with self._lock:
            current = self._entries.get(experiment_id)
            if current is not None and current.running:
                raise RuntimeError(
                    f"experiment {experiment_id!r} is running; abort it or wait "
                    "for it to end before scheduling it again"
                )
            self._entries[experiment_id] = _Entry(copy)

        return experiment_id

    def run(self, experiment_id: str) -> ExperimentResult:
        """Run the experiment on this thread until its duration ends or it is aborted.

        Faults are injected at the start of each tick (``tick_seconds`` apart);
        latency faults block this thread while they last. Injected exceptions are
        counted and observed, never raised. A finished experiment may be run again:
        the new run starts afresh and its result replaces the old one.

        Raises:
            ExperimentNotFoundError: If the id was never scheduled.
            RuntimeError: If the experiment is already running on another thread.
            Any exception that is not an injected fault (a bug in a custom
            injector, say): the run ends as aborted, with an ``experiment_failed``
            observation, and the exception propagates.
        """
        entry = self._begin(experiment_id)
        run = _Run(entry.experiment, self.observer)
        self._publish(entry, run.result(ExperimentStatus.running))
        logger.info("experiment started", extra={"experiment_id": experiment_id})

        try:
            self._tick_until_done(entry, run)
        except BaseException as exc:
            # Not an injected fault: a bug or an interrupt. Keep the record, re-raise.
            run.observe(
                "scheduler",
                "experiment_failed",
                {"error_type": type(exc).__name__, "error": str(exc)},
            )
            self._end(entry, run, failed=True)
            raise

        return self._end(entry, run)

    def abort(self, experiment_id: str) -> None:
        """Ask the experiment to stop; a running one stops within about a tick.

        Safe to call from any thread. Aborting an experiment that is scheduled but
        has not run yet makes its next run end at once as aborted. Aborting one
        whose run has finished does nothing.

        Raises:
            ExperimentNotFoundError: If the id was never scheduled.
        """
        with self._lock:
            entry = self._lookup(experiment_id)
            if entry.running or entry.result is None:
                entry.abort.set()

    def get_result(self, experiment_id: str) -> ExperimentResult | None:
        """Return the latest result: running, or final; None before the first run.

        Also None for an unknown id. While a run goes on the result is refreshed
        after every tick.
        """
        with self._lock:
            entry = self._entries.get(experiment_id)
            return entry.result if entry is not None else None

    def status(self, experiment_id: str) -> ExperimentStatus:
        """Return pending, running, completed or aborted.

        Raises:
            ExperimentNotFoundError: If the id was never scheduled.
        """
        with self._lock:
            entry = self._lookup(experiment_id)
            if entry.running:
                return ExperimentStatus.running
            if entry.result is None:
                return ExperimentStatus.pending
            return entry.result.status

    def experiment(self, experiment_id: str) -> ChaosExperiment:
        """Return a copy of the registered experiment.

        Raises:
            ExperimentNotFoundError: If the id was never scheduled.
        """
        with self._lock:
            return self._lookup(experiment_id).experiment.model_copy(deep=True)

    def experiment_ids(self) -> list[str]:
        """Return the ids of every registered experiment, in scheduling order."""
        with self._lock:
            return list(self._entries)

    # -- a run's steps -----------------------------------------------------------------

    def _begin(self, experiment_id: str) -> _Entry:
        with self._lock:
            entry = self._lookup(experiment_id)
            if entry.running:
                raise RuntimeError(
                    f"experiment {experiment_id!r} is already running; "
                    "wait for it or abort it"
                )
            entry.running = True
            return entry

    def _tick_until_done(self, entry: _Entry, run: _Run) -> None:
        deadline = run.started + entry.experiment.duration_seconds
        tick = 0
        while not entry.abort.is_set():
            tick_started = time.monotonic()
            if tick_started >= deadline:
                return
            self._tick(entry, run, tick)
            self._publish(entry, run.result(ExperimentStatus.running))

            # Ticks are measured from their start, so the work within a tick does
            # not push later ticks back (unless it outlasts a whole tick).
            next_tick = min(tick_started + self.tick_seconds, deadline)
            delay = next_tick - time.monotonic()
            if delay > 0:
                entry.abort.wait(delay)
            tick += 1

    def _tick(self, entry: _Entry, run: _Run, tick: int) -> None:
        experiment = entry.experiment
        for fault in experiment.faults:
            for component in _components(fault, experiment):
                # Checked per injection so that a tick full of latency stops early.
                if entry.abort.is_set():
                    return
                self._inject(fault, component, run, tick)

    def _inject(self, fault: FaultConfig, component: str, run: _Run, tick: int) -> None:
        kind = fault.fault_type.value
        try:
            fired = self.injector.inject_and_report(fault)
        except INJECTED_FAULT_ERRORS as exc:
            run.faults_by_type[kind] += 1
            run.errors_by_type[kind] += 1
            run.observe(
                component,
                "fault_injected",
                {
                    "fault_type": kind,
                    "tick": tick,
                    "error_type": type(exc).__name__,
                    "error": str(exc),
                },
            )
            return

        if fired:
            run.faults_by_type[kind] += 1
            details: dict[str, object] = {"fault_type": kind, "tick": tick}
            if fault.fault_type is FaultType.latency:
                details["duration_ms"] = fault.duration_ms
            run.observe(component, "fault_injected", details)

    def _end(self, entry: _Entry, run: _Run, failed: bool = False) -> ExperimentResult:
        with self._lock:
            # A run cut short by an unexpected exception did not complete either.
            aborted = failed or entry.abort.is_set()
            # An abort request is spent by the run it stopped.
            entry.abort.clear()
            status = ExperimentStatus.aborted if aborted else ExperimentStatus.completed
            result = run.result(status)
            entry.result = result
            entry.running = False

        logger.info(
            "experiment ended",
            extra={
                "experiment_id": run.experiment.experiment_id,
                "status": status.value,
            },
        )
        return result

    def _publish(self, entry: _Entry, result: ExperimentResult) -> None:
        with self._lock:
            entry.result = result

    def _lookup(self, experiment_id: str) -> _Entry:
        # Callers hold self._lock.
        entry = self._entries.get(experiment_id)
        if entry is None:
            raise ExperimentNotFoundError(experiment_id)
        return entry


def _components(fault: FaultConfig, experiment: ChaosExperiment) -> list[str]:
    return (
        fault.affected_components
        or experiment.target_components
        or [UNTARGETED_COMPONENT]
    )
