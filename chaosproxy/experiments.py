"""Experiments on real traffic: a ChaosExperiment's faults act for a while, then stop.

The library's models are the whole vocabulary: a :class:`~aumai_chaos.ChaosExperiment`
goes in, an :class:`~aumai_chaos.ExperimentResult` comes out, with the library's
statuses and summary keys. Only the clock differs from
:class:`~aumai_chaos.ExperimentScheduler`: instead of injecting on ticks, the
experiment's faults are put on the proxy's routes and real requests meet them::

    start(experiment)
      check everything first: the proxy's fault rules, known components, no
      clash with a running experiment          -> ExperimentRejected / Conflict
      proxy.add_extra_faults(origin=id)        status: running
      task "chaosproxy-experiment-<id>" sleeps duration_seconds
    each request one of its faults fired on (details["experiments"] has the id)
      is kept as an observation and counted
    the task wakes, or abort(id)
      proxy.remove_extra_faults(id)            status: completed | aborted

A fault acts on its ``affected_components``, else on the experiment's
``target_components``, as in the library. Unlike the library, an experiment that
names no component at all is refused rather than aimed at ``"default"``: on a proxy
whose routes catch every request it would silently do nothing. Name ``"default"``
to act on requests that match no route.

Two experiments run together when they act on different components; one that would
act on a component a running experiment already acts on is refused. A request
belongs to one component, so it then meets the faults of one experiment at most, and
every result counts only what its own experiment did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aumai_chaos import (
    ChaosExperiment,
    ExperimentNotFoundError,
    ExperimentResult,
    ExperimentStatus,
    FaultType,
    ObservationPoint,
)
from chaosproxy.config import DEFAULT_COMPONENT, check_proxy_fault
from chaosproxy.routing import ExtraFault
from chaosproxy.yamlmarks import did_you_mean

if TYPE_CHECKING:
    from chaosproxy.server import ChaosProxy

__all__ = [
    "KEEP_FINISHED",
    "KEEP_OBSERVATIONS",
    "ExperimentConflict",
    "ExperimentRejected",
    "Experiments",
]

logger = logging.getLogger("chaosproxy.admin")

#: How many finished experiments keep their results; the oldest go first.
KEEP_FINISHED = 100
#: How many touched requests one result keeps as observations (the newest); the
#: summary counts every one of them.
KEEP_OBSERVATIONS = 1000

# Experiment ids appear in admin URLs; "route" and "global" are the origins of
# faults from the file, so an experiment cannot be called that.
_ID = re.compile(r"[A-Za-z0-9._-]+")
_RESERVED_IDS = frozenset({"route", "global"})


class ExperimentRejected(ValueError):
    """An experiment that cannot run as given; ``problems`` are (path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        """Hold every problem found, for a field-level error report."""
        self.problems = problems
        super().__init__("; ".join(f"{path}: {text}" for path, text in problems))


class ExperimentConflict(RuntimeError):
    """An experiment that clashes with one already running."""


@dataclass
class _Run:
    """One experiment's run on the proxy: what it is, and what it touched."""

    experiment: ChaosExperiment
    components: frozenset[str]
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    status: ExperimentStatus = ExperimentStatus.running
    end_time: datetime | None = None
    ended: float | None = None
    observations: deque[ObservationPoint] = field(
        default_factory=lambda: deque(maxlen=KEEP_OBSERVATIONS)
    )
    faults_by_type: Counter[str] = field(default_factory=Counter)
    errors_by_type: Counter[str] = field(default_factory=Counter)
    task: asyncio.Task[None] | None = None

    @property
    def experiment_id(self) -> str:
        """The experiment's id."""
        return self.experiment.experiment_id

    def count(self, point: ObservationPoint) -> None:
        """Keep and count one request that this experiment's faults touched.

        ``faults_by_type`` counts this experiment's own faults that fired on it (a
        route's fault of the same type firing on the same request is not one of
        them: each fired fault's origin is in the details). ``errors_by_type``
        counts, among those, every one that made the request fail as its client
        saw it: an error status (``error``,
        ``timeout``, ``resource_exhaustion``), a body cut short
        (``partial_failure``) or bytes changed (``data_corruption``), which is
        every type but ``latency``, as the library counts every injected exception.
        """
        self.observations.append(point)
        fired = point.details.get("faults")
        origins = point.details.get("fault_origins")
        if not isinstance(fired, list) or not isinstance(origins, list):
            return
        for fault_type, origin in zip(fired, origins, strict=False):
            if origin == self.experiment_id:
                self.faults_by_type[fault_type] += 1
                if fault_type != FaultType.latency.value:
                    self.errors_by_type[fault_type] += 1

    def result(self) -> ExperimentResult:
        """A snapshot of the run as the library's result model."""
        ended = self.ended if self.ended is not None else time.monotonic()

        return ExperimentResult(
            experiment=self.experiment,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time,
            observations=list(self.observations),
            summary={
                "total_faults_fired": sum(self.faults_by_type.values()),
                "faults_by_type": dict(self.faults_by_type),
                "errors_by_type": dict(self.errors_by_type),
                "duration_seconds": round(ended - self.started, 3),
            },
        )


class Experiments:
    """The experiments of one proxy: running ones and recent results."""

    def __init__(self, proxy: ChaosProxy, keep_finished: int = KEEP_FINISHED) -> None:
        """Run experiments on ``proxy``; keep ``keep_finished`` finished results."""
        self._proxy = proxy
        self._keep_finished = keep_finished
        self._runs: dict[str, _Run] = {}

    def running_ids(self) -> list[str]:
        """Return the ids of the experiments whose faults act now."""
        return [
            run.experiment_id
            for run in self._runs.values()
            if run.status is ExperimentStatus.running
        ]

    def check(self, experiment: ChaosExperiment) -> list[tuple[str, str]]:
        """Return every reason the proxy cannot run ``experiment`` (empty: none).

        Paths are those of the experiment's fields, as ``faults[1].duration_ms``.
        """
        problems: list[tuple[str, str]] = []
        if experiment.experiment_id and _ID.fullmatch(experiment.experiment_id) is None:
            problems.append(
                (
                    "experiment_id",
                    "expected letters, digits, '.', '_' or '-', got "
                    f"{experiment.experiment_id!r}",
                )
            )
        if experiment.experiment_id in _RESERVED_IDS:
            problems.append(
                ("experiment_id", f"{experiment.experiment_id!r} is reserved")
            )
        if not experiment.faults:
            problems.append(("faults", "expected at least one fault"))

        known = self._known_components()
        for index, fault in enumerate(experiment.faults):
            problems.extend(
                (f"faults[{index}].{name}", message)
                for name, message in check_proxy_fault(fault)
            )
            if fault.affected_components:
                problems.extend(
                    _unknown(
                        fault.affected_components,
                        known,
                        f"faults[{index}].affected_components",
                    )
                )
            elif not experiment.target_components:
                problems.append(
                    (
                        f"faults[{index}].affected_components",
                        "names no component, and neither does target_components; "
                        'name one ("default" is the requests no route matches)',
                    )
                )
        problems.extend(
            _unknown(experiment.target_components, known, "target_components")
        )

        return problems

    def start(self, experiment: ChaosExperiment) -> str:
        """Put ``experiment``'s faults in force now; return its id.

        An empty id is replaced by a fresh UUID4; an id whose previous run has
        finished starts afresh and replaces that result.

        Raises:
            ExperimentRejected: The experiment breaks a rule (every one is listed).
            ExperimentConflict: Its id, or a component it acts on, belongs to a
                running experiment.
        """
        problems = self.check(experiment)
        if problems:
            raise ExperimentRejected(problems)
        experiment_id = experiment.experiment_id or str(uuid.uuid4())
        experiment = experiment.model_copy(
            deep=True, update={"experiment_id": experiment_id}
        )
        components = _components(experiment)
        self._refuse_clash(experiment_id, components)

        run = _Run(experiment, components)
        self._runs.pop(experiment_id, None)
        self._runs[experiment_id] = run
        self._proxy.add_extra_faults(
            [
                ExtraFault(
                    fault,
                    experiment_id,
                    frozenset(
                        fault.affected_components or experiment.target_components
                    ),
                )
                for fault in experiment.faults
            ]
        )
        run.task = asyncio.create_task(
            self._end_after(run), name=f"chaosproxy-experiment-{experiment_id}"
        )
        logger.info("experiment started", extra={"experiment_id": experiment_id})

        return experiment_id

    def result(self, experiment_id: str) -> ExperimentResult:
        """Return the experiment's result so far, or at its end.

        Raises:
            ExperimentNotFoundError: No such experiment (or its result was dropped).
        """
        return self._lookup(experiment_id).result()

    def results(self) -> list[ExperimentResult]:
        """Return every kept result, the oldest first."""
        return [run.result() for run in self._runs.values()]

    def abort(self, experiment_id: str) -> ExperimentResult:
        """Stop a running experiment now (status ``aborted``); return its result.

        Aborting a finished experiment changes nothing and returns its result.

        Raises:
            ExperimentNotFoundError: No such experiment.
        """
        run = self._lookup(experiment_id)
        if run.status is ExperimentStatus.running:
            if run.task is not None:
                run.task.cancel()
            self._end(run, ExperimentStatus.aborted)

        return run.result()

    def abort_all(self) -> list[str]:
        """Abort every running experiment; return their ids."""
        ids = self.running_ids()
        for experiment_id in ids:
            self.abort(experiment_id)

        return ids

    async def close(self) -> None:
        """Abort every running experiment and wait for their tasks to end."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        self.abort_all()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def observe(self, point: ObservationPoint) -> None:
        """Count a proxied request for each experiment whose fault fired on it.

        Requests still in flight when an experiment ends are counted when they
        finish, since its faults did touch them.
        """
        touched = point.details.get("experiments")
        if not touched or not isinstance(touched, list):
            return
        for experiment_id in touched:
            run = self._runs.get(str(experiment_id))
            if run is not None:
                run.count(point)

    async def _end_after(self, run: _Run) -> None:
        """Let the experiment run for its duration, then end it as completed."""
        await asyncio.sleep(run.experiment.duration_seconds)
        self._end(run, ExperimentStatus.completed)

    def _end(self, run: _Run, status: ExperimentStatus) -> None:
        """Take the experiment's faults off the routes and record how it ended."""
        self._proxy.remove_extra_faults(run.experiment_id)
        run.status = status
        run.end_time = datetime.now(UTC)
        run.ended = time.monotonic()
        logger.info(
            "experiment ended",
            extra={"experiment_id": run.experiment_id, "status": status.value},
        )
        self._forget_old()

    def _refuse_clash(self, experiment_id: str, components: frozenset[str]) -> None:
        """Raise :class:`ExperimentConflict` if a running experiment is in the way."""
        for run in self._runs.values():
            if run.status is not ExperimentStatus.running:
                continue
            if run.experiment_id == experiment_id:
                raise ExperimentConflict(
                    f"experiment {experiment_id!r} is running; abort it or wait for "
                    "its end before starting it again"
                )
            shared = sorted(components & run.components)
            if shared:
                raise ExperimentConflict(
                    f"experiment {run.experiment_id!r} is running on "
                    f"{', '.join(shared)}; experiments on the same component do not "
                    "run together: abort it or wait for its end"
                )

    def _forget_old(self) -> None:
        """Drop the oldest finished results beyond the number kept."""
        finished = [
            run.experiment_id
            for run in self._runs.values()
            if run.status is not ExperimentStatus.running
        ]
        for experiment_id in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._runs[experiment_id]

    def _lookup(self, experiment_id: str) -> _Run:
        """Return the run of ``experiment_id`` or raise ExperimentNotFoundError."""
        run = self._runs.get(experiment_id)
        if run is None:
            raise ExperimentNotFoundError(experiment_id)

        return run

    def _known_components(self) -> set[str]:
        """The components of the configured routes, and ``"default"``."""
        config = self._proxy.config
        return {r.effective_component for r in config.routes} | {DEFAULT_COMPONENT}


def _components(experiment: ChaosExperiment) -> frozenset[str]:
    """Every component some fault of ``experiment`` acts on."""
    names: set[str] = set()
    for fault in experiment.faults:
        names.update(fault.affected_components or experiment.target_components)

    return frozenset(names)


def _unknown(names: list[str], known: set[str], path: str) -> list[tuple[str, str]]:
    """Report each of ``names`` that no route carries as a component."""
    return [
        (
            f"{path}[{index}]",
            f"no route has the component {name!r}"
            + (did_you_mean(name, known) or "; known: " + ", ".join(sorted(known))),
        )
        for index, name in enumerate(names)
        if name not in known
    ]
