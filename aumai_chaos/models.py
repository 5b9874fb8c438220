"""The data model: what a fault is, what an experiment is, what a run recorded.

``FaultConfig`` and ``ChaosExperiment`` are written by users, so they reject unknown
keys (a misspelt field must not silently vanish) and re-validate on assignment (a
bound checked at construction stays checked afterwards). ``ObservationPoint`` and
``ExperimentResult`` are produced by the library and read by users.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChaosExperiment",
    "ExperimentResult",
    "ExperimentStatus",
    "FaultConfig",
    "FaultType",
    "ObservationPoint",
]


# The reference defines both enums as (str, Enum); StrEnum would change str(member).
class FaultType(str, Enum):  # noqa: UP042
    """The kinds of fault the injector can apply."""

    latency = "latency"
    error = "error"
    timeout = "timeout"
    partial_failure = "partial_failure"
    resource_exhaustion = "resource_exhaustion"
    data_corruption = "data_corruption"


class ExperimentStatus(str, Enum):  # noqa: UP042
    """Where an experiment is in its life: pending, running, completed or aborted."""

    pending = "pending"
    running = "running"
    completed = "completed"
    aborted = "aborted"


class FaultConfig(BaseModel):
    """One fault to inject, and how often.

    ``duration_ms`` is required by ``latency`` faults and ``error_code`` by ``error``
    faults; the injector checks that when it decides, because the model alone cannot
    know which fields a caller will fill in later.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    fault_type: FaultType
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    duration_ms: int | None = Field(default=None, ge=0)
    error_code: int | None = None
    error_message: str | None = None
    affected_components: list[str] = Field(default_factory=list)


class ChaosExperiment(BaseModel):
    """A named set of faults injected against components for a fixed time.

    An empty ``experiment_id`` counts as absent: ``ExperimentScheduler.schedule``
    assigns a fresh UUID4 in its place.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    experiment_id: str
    name: str
    description: str = ""
    faults: list[FaultConfig] = Field(default_factory=list)
    duration_seconds: int = Field(default=60, gt=0)
    target_components: list[str] = Field(default_factory=list)


class ObservationPoint(BaseModel):
    """One timestamped event seen on one component."""

    timestamp: datetime
    component: str
    event: str
    details: dict[str, object] = Field(default_factory=dict)


class ExperimentResult(BaseModel):
    """What one run of an experiment did, so far or in the end.

    ``summary`` holds ``total_faults_fired``, ``faults_by_type``, ``errors_by_type``
    and ``duration_seconds``; ``end_time`` is None while the run goes on.
    """

    experiment: ChaosExperiment
    status: ExperimentStatus
    start_time: datetime
    end_time: datetime | None = None
    observations: list[ObservationPoint] = Field(default_factory=list)
    summary: dict[str, object] = Field(default_factory=dict)
