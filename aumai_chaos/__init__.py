"""aumai-chaos: inject faults into Python code to test how it copes.

The package is small and each module is one concept:

- ``models``: what a fault, an experiment, an observation and a result are.
- ``injector``: ``FaultInjector`` decides whether a fault fires and applies it.
- ``decorators``: ``chaos_monkey`` and ``resilience_test`` inject before each call.
- ``scheduler``: ``ExperimentScheduler`` runs experiments on ticks and reports.
- ``observer``: ``ExperimentObserver`` records what happened.
- ``errors``: the exceptions injected faults raise (the tree is drawn there).
"""

from __future__ import annotations

from aumai_chaos.decorators import chaos_monkey, resilience_test
from aumai_chaos.errors import (
    ChaosError,
    ChaosTimeoutError,
    DataCorruptionError,
    ExperimentNotFoundError,
    PartialFailureError,
    ResourceExhaustedError,
)
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
from aumai_chaos.scheduler import ExperimentScheduler

__all__ = [
    "ChaosError",
    "ChaosExperiment",
    "ChaosTimeoutError",
    "DataCorruptionError",
    "ExperimentNotFoundError",
    "ExperimentObserver",
    "ExperimentResult",
    "ExperimentScheduler",
    "ExperimentStatus",
    "FaultConfig",
    "FaultInjector",
    "FaultType",
    "ObservationPoint",
    "PartialFailureError",
    "ResourceExhaustedError",
    "chaos_monkey",
    "resilience_test",
]
