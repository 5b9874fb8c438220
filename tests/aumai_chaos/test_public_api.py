"""Tests for the public API of aumai_chaos: names, exports and reference signatures."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

import aumai_chaos

REFERENCE_NAMES = {
    "FaultInjector",
    "ExperimentScheduler",
    "ExperimentObserver",
    "chaos_monkey",
    "resilience_test",
    "ChaosError",
    "ChaosTimeoutError",
    "DataCorruptionError",
    "ResourceExhaustedError",
    "ExperimentNotFoundError",
    "ChaosExperiment",
    "ExperimentResult",
    "ExperimentStatus",
    "FaultConfig",
    "FaultType",
    "ObservationPoint",
}
ADDED_NAMES = {"PartialFailureError"}

EMPTY = inspect.Parameter.empty
INJECTOR_METHODS: dict[str, dict[str, object]] = {
    "inject_latency": {"duration_ms": EMPTY},
    "inject_error": {"error_code": EMPTY, "message": EMPTY},
    "inject_timeout": {},
    "inject_partial_failure": {"message": "Partial failure"},
    "inject_resource_exhaustion": {"message": "Resource exhausted"},
    "inject_data_corruption": {"message": "Data corrupted"},
    "should_inject": {"probability": EMPTY},
    "inject": {"config": EMPTY},
}
OTHER_METHODS = [
    ("ExperimentScheduler", "schedule", ["experiment"]),
    ("ExperimentScheduler", "run", ["experiment_id"]),
    ("ExperimentScheduler", "abort", ["experiment_id"]),
    ("ExperimentScheduler", "get_result", ["experiment_id"]),
    ("ExperimentObserver", "observe", ["component", "event", "details"]),
    ("ExperimentObserver", "get_observations", []),
    ("ExperimentObserver", "clear", []),
    ("ExperimentObserver", "scope", ["component", "event_prefix"]),
]


def test_all_is_exactly_the_reference_names_plus_additions() -> None:
    """__all__ lists every reference name and the documented additions, no more."""
    assert sorted(aumai_chaos.__all__) == sorted(REFERENCE_NAMES | ADDED_NAMES)


def test_star_import_brings_every_reference_name() -> None:
    """'from aumai_chaos import *' defines every name of the reference."""
    namespace: dict[str, Any] = {}

    exec("from aumai_chaos import *", namespace)

    assert namespace.keys() >= REFERENCE_NAMES


@pytest.mark.parametrize("name", sorted(REFERENCE_NAMES | ADDED_NAMES))
def test_every_public_name_is_documented(name: str) -> None:
    """Each exported class or function carries a docstring."""
    assert inspect.getdoc(getattr(aumai_chaos, name))


def test_package_is_marked_as_typed() -> None:
    """py.typed ships beside the package so type checkers read its annotations."""
    assert (Path(aumai_chaos.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize(
    ("method", "parameters"),
    list(INJECTOR_METHODS.items()),
    ids=list(INJECTOR_METHODS),
)
def test_fault_injector_methods_match_the_reference(
    method: str, parameters: dict[str, object]
) -> None:
    """FaultInjector's reference methods keep their parameter names and defaults."""
    signature = inspect.signature(getattr(aumai_chaos.FaultInjector, method))

    found = {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if name != "self"
    }
    assert found == parameters


@pytest.mark.parametrize(
    ("owner", "method", "parameters"),
    OTHER_METHODS,
    ids=[f"{owner}.{method}" for owner, method, _ in OTHER_METHODS],
)
def test_scheduler_and_observer_methods_match_the_reference(
    owner: str, method: str, parameters: list[str]
) -> None:
    """Scheduler and observer reference methods keep their parameter names."""
    signature = inspect.signature(getattr(getattr(aumai_chaos, owner), method))

    assert [name for name in signature.parameters if name != "self"] == parameters


@pytest.mark.parametrize("owner", ["ExperimentScheduler", "ExperimentObserver"])
def test_reference_constructors_need_no_arguments(owner: str) -> None:
    """The reference builds the scheduler and observer with no arguments."""
    instance = getattr(aumai_chaos, owner)()

    assert isinstance(instance, getattr(aumai_chaos, owner))
