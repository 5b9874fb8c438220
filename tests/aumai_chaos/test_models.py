"""Tests for aumai_chaos.models: fields, defaults, bounds and strictness."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from aumai_chaos.models import (
    ChaosExperiment,
    ExperimentResult,
    ExperimentStatus,
    FaultConfig,
    FaultType,
    ObservationPoint,
)


def test_fault_type_members_match_the_reference() -> None:
    """FaultType has exactly the six reference members, each valued by its name."""
    assert {member.name: member.value for member in FaultType} == {
        "latency": "latency",
        "error": "error",
        "timeout": "timeout",
        "partial_failure": "partial_failure",
        "resource_exhaustion": "resource_exhaustion",
        "data_corruption": "data_corruption",
    }
    assert FaultType.latency == "latency"


def test_experiment_status_members_match_the_reference() -> None:
    """ExperimentStatus has exactly pending, running, completed and aborted."""
    assert [member.value for member in ExperimentStatus] == [
        "pending",
        "running",
        "completed",
        "aborted",
    ]
    assert ExperimentStatus.aborted == "aborted"


def test_fault_config_defaults_match_the_reference() -> None:
    """A FaultConfig given only its type fires always and carries no extras."""
    config = FaultConfig(fault_type=FaultType.timeout)

    assert config.probability == 1.0
    assert config.duration_ms is None
    assert config.error_code is None
    assert config.error_message is None
    assert config.affected_components == []


def test_fault_config_accepts_fault_type_by_name() -> None:
    """A fault type written as its string (as in YAML or JSON) becomes the enum."""
    config = FaultConfig.model_validate({"fault_type": "data_corruption"})

    assert config.fault_type is FaultType.data_corruption


@pytest.mark.parametrize(
    "probability", [0.0, 0.5, 1.0], ids=["never", "half", "always"]
)
def test_fault_config_accepts_probabilities_in_range(probability: float) -> None:
    """Probabilities from 0.0 to 1.0 inclusive are accepted unchanged."""
    config = FaultConfig(fault_type=FaultType.error, probability=probability)

    assert config.probability == probability


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("probability", -0.1),
        ("probability", 1.1),
        ("probability", float("nan")),
        ("duration_ms", -1),
        ("fault_type", "meteor_strike"),
    ],
    ids=[
        "probability-below",
        "probability-above",
        "probability-nan",
        "duration-negative",
        "unknown-fault-type",
    ],
)
def test_fault_config_rejects_out_of_range_values(field: str, value: object) -> None:
    """An out-of-range value is rejected, and the error names the field."""
    data: dict[str, Any] = {"fault_type": "latency", field: value}

    with pytest.raises(ValidationError) as caught:
        FaultConfig.model_validate(data)

    assert caught.value.errors()[0]["loc"] == (field,)


def test_fault_config_accepts_zero_duration() -> None:
    """A latency of 0 ms is allowed: the bound is inclusive."""
    assert FaultConfig(fault_type=FaultType.latency, duration_ms=0).duration_ms == 0


def test_fault_config_rejects_unknown_keys() -> None:
    """A misspelt field is an error rather than silently dropped."""
    with pytest.raises(ValidationError) as caught:
        FaultConfig.model_validate({"fault_type": "latency", "durationms": 5})

    error = caught.value.errors()[0]
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("durationms",)


def test_fault_config_rechecks_bounds_on_assignment() -> None:
    """Assigning an out-of-range probability after construction is rejected too."""
    config = FaultConfig(fault_type=FaultType.error, error_code=500)

    with pytest.raises(ValidationError):
        config.probability = 2.0

    assert config.probability == 1.0


def test_chaos_experiment_defaults_match_the_reference() -> None:
    """An experiment given only id and name runs 60 s with no faults or targets."""
    experiment = ChaosExperiment(experiment_id="e1", name="smoke")

    assert experiment.description == ""
    assert experiment.faults == []
    assert experiment.duration_seconds == 60
    assert experiment.target_components == []


@pytest.mark.parametrize("missing", ["experiment_id", "name"])
def test_chaos_experiment_requires_id_and_name(missing: str) -> None:
    """experiment_id and name are required fields."""
    data = {"experiment_id": "e1", "name": "smoke"}
    del data[missing]

    with pytest.raises(ValidationError) as caught:
        ChaosExperiment.model_validate(data)

    assert caught.value.errors()[0]["loc"] == (missing,)


@pytest.mark.parametrize("seconds", [0, -5], ids=["zero", "negative"])
def test_chaos_experiment_rejects_non_positive_duration(seconds: int) -> None:
    """duration_seconds must be greater than zero."""
    with pytest.raises(ValidationError) as caught:
        ChaosExperiment(experiment_id="e1", name="smoke", duration_seconds=seconds)

    assert caught.value.errors()[0]["loc"] == ("duration_seconds",)


def test_chaos_experiment_rejects_unknown_keys_in_nested_faults() -> None:
    """An unknown key inside one of the faults is reported with its path."""
    data = {
        "experiment_id": "e1",
        "name": "smoke",
        "faults": [{"fault_type": "timeout"}, {"fault_type": "error", "code": 1}],
    }

    with pytest.raises(ValidationError) as caught:
        ChaosExperiment.model_validate(data)

    assert caught.value.errors()[0]["loc"] == ("faults", 1, "code")


def test_chaos_experiment_rejects_unknown_top_level_keys() -> None:
    """A misspelt experiment field is an error."""
    with pytest.raises(ValidationError) as caught:
        ChaosExperiment.model_validate(
            {"experiment_id": "e1", "name": "smoke", "duration": 5}
        )

    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_experiment_result_round_trips_through_json() -> None:
    """A result with observations serialises to JSON and back unchanged."""
    now = datetime.now(UTC)
    result = ExperimentResult(
        experiment=ChaosExperiment(
            experiment_id="e1",
            name="smoke",
            faults=[FaultConfig(fault_type=FaultType.latency, duration_ms=5)],
        ),
        status=ExperimentStatus.completed,
        start_time=now,
        end_time=now,
        observations=[
            ObservationPoint(
                timestamp=now,
                component="db",
                event="fault_injected",
                details={"fault_type": "latency", "tick": 0},
            )
        ],
        summary={"total_faults_fired": 1},
    )

    copy = ExperimentResult.model_validate_json(result.model_dump_json())

    assert copy == result


def test_experiment_result_defaults_to_unfinished_and_empty() -> None:
    """A new result has no end time, observations or summary."""
    result = ExperimentResult(
        experiment=ChaosExperiment(experiment_id="e1", name="smoke"),
        status=ExperimentStatus.running,
        start_time=datetime.now(UTC),
    )

    assert result.end_time is None
    assert result.observations == []
    assert result.summary == {}


def test_observation_point_details_default_to_empty() -> None:
    """An observation without details carries an empty dict, not a shared one."""
    first = ObservationPoint(timestamp=datetime.now(UTC), component="a", event="x")
    second = ObservationPoint(timestamp=datetime.now(UTC), component="b", event="y")
    first.details["k"] = 1

    assert second.details == {}
