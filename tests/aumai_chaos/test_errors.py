"""Tests for aumai_chaos.errors: the exception tree, messages and attributes."""

from __future__ import annotations

import pickle

import pytest

from aumai_chaos.errors import (
    INJECTED_FAULT_ERRORS,
    ChaosError,
    ChaosTimeoutError,
    DataCorruptionError,
    ExperimentNotFoundError,
    PartialFailureError,
    ResourceExhaustedError,
)


def test_chaos_error_reads_code_then_message() -> None:
    """ChaosError keeps its code and message and renders them as '[code] message'."""
    exc = ChaosError(429, "Rate limit exceeded")

    assert exc.error_code == 429
    assert exc.message == "Rate limit exceeded"
    assert str(exc) == "[429] Rate limit exceeded"


def test_partial_failure_error_reads_with_its_prefix() -> None:
    """PartialFailureError reads '[partial_failure] message' and keeps the message."""
    exc = PartialFailureError("half the shards answered")

    assert str(exc) == "[partial_failure] half the shards answered"
    assert exc.message == "half the shards answered"


@pytest.mark.parametrize(
    ("exception_type", "builtin"),
    [
        (ChaosError, RuntimeError),
        (PartialFailureError, RuntimeError),
        (ResourceExhaustedError, RuntimeError),
        (ChaosTimeoutError, TimeoutError),
        (DataCorruptionError, ValueError),
        (ExperimentNotFoundError, KeyError),
    ],
    ids=["error", "partial", "exhaustion", "timeout", "corruption", "not-found"],
)
def test_each_exception_is_caught_by_its_builtin(
    exception_type: type[Exception], builtin: type[Exception]
) -> None:
    """Each exception derives directly from the built-in a real failure would raise."""
    assert exception_type.__bases__ == (builtin,)


def test_experiment_not_found_names_the_id_without_keyerror_quoting() -> None:
    """ExperimentNotFoundError reads as a sentence naming the id, and keeps the id."""
    exc = ExperimentNotFoundError("exp-7")

    assert exc.experiment_id == "exp-7"
    assert str(exc) == "no experiment with id 'exp-7' has been scheduled"


def test_experiment_not_found_is_caught_as_key_error() -> None:
    """Code that catches KeyError around a lookup also catches the not-found error."""
    with pytest.raises(KeyError, match="exp-9"):
        raise ExperimentNotFoundError("exp-9")


@pytest.mark.parametrize(
    "exc",
    [
        ChaosError(503, "down"),
        PartialFailureError("half"),
        ResourceExhaustedError("quota"),
        ChaosTimeoutError("slow"),
        DataCorruptionError("flipped"),
        ExperimentNotFoundError("exp-1"),
    ],
    ids=["error", "partial", "exhaustion", "timeout", "corruption", "not-found"],
)
def test_exceptions_survive_pickling(exc: Exception) -> None:
    """Every exception pickles and unpickles to the same type and text."""
    copy = pickle.loads(pickle.dumps(exc))

    assert type(copy) is type(exc)
    assert str(copy) == str(exc)


def test_injected_fault_errors_lists_exactly_the_fault_exceptions() -> None:
    """The injected-fault tuple holds the five fault exceptions and nothing broader."""
    assert set(INJECTED_FAULT_ERRORS) == {
        ChaosError,
        ChaosTimeoutError,
        DataCorruptionError,
        PartialFailureError,
        ResourceExhaustedError,
    }
    assert RuntimeError not in INJECTED_FAULT_ERRORS
