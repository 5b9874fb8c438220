"""Exceptions raised by aumai-chaos.

Each injected fault raises an exception that subclasses the built-in a real failure
of that kind would raise, so application code under test catches it with the
handlers it already has::

    RuntimeError
    ├── ChaosError               error fault: "[{error_code}] {message}"
    ├── PartialFailureError      partial_failure fault: "[partial_failure] {message}"
    └── ResourceExhaustedError   resource_exhaustion fault
    TimeoutError
    └── ChaosTimeoutError        timeout fault
    ValueError
    └── DataCorruptionError      data_corruption fault
    KeyError
    └── ExperimentNotFoundError  an experiment id that was never scheduled

``INJECTED_FAULT_ERRORS`` gathers the five exceptions that stand for an injected
fault, for callers (such as the scheduler) that absorb injected faults but must let
genuine bugs through.
"""

from __future__ import annotations

__all__ = [
    "INJECTED_FAULT_ERRORS",
    "ChaosError",
    "ChaosTimeoutError",
    "DataCorruptionError",
    "ExperimentNotFoundError",
    "PartialFailureError",
    "ResourceExhaustedError",
]


class ChaosError(RuntimeError):
    """A simulated application error carrying an HTTP-style status code.

    Args:
        error_code: The status code the simulated failure reports, e.g. 503.
        message: What went wrong, in words.

    ``str(exc)`` reads ``[{error_code}] {message}``.
    """

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(error_code, message)
        self.error_code = error_code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.error_code}] {self.message}"


class PartialFailureError(RuntimeError):
    """A simulated degraded service: part of the work done, the rest failed.

    Args:
        message: What failed, in words.

    ``str(exc)`` reads ``[partial_failure] {message}``. It is a ``RuntimeError``, so
    code written against the founding reference (which promised a ``RuntimeError``
    with that prefix) keeps working, while new code can catch it precisely.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"[partial_failure] {self.message}"


class ChaosTimeoutError(TimeoutError):
    """A simulated hung operation; caught by ``except TimeoutError``."""


class ResourceExhaustedError(RuntimeError):
    """A simulated exhausted resource: memory, a quota, a rate limit."""


class DataCorruptionError(ValueError):
    """A simulated corrupted read or write; caught by ``except ValueError``."""


class ExperimentNotFoundError(KeyError):
    """An experiment id that was never registered with the scheduler.

    Args:
        experiment_id: The id that was looked up.

    ``KeyError`` would quote its whole message; ``str(exc)`` here is a plain sentence
    that names the id.
    """

    def __init__(self, experiment_id: str) -> None:
        super().__init__(experiment_id)
        self.experiment_id = experiment_id

    def __str__(self) -> str:
        return f"no experiment with id {self.experiment_id!r} has been scheduled"


INJECTED_FAULT_ERRORS: tuple[type[Exception], ...] = (
    ChaosError,
    ChaosTimeoutError,
    DataCorruptionError,
    PartialFailureError,
    ResourceExhaustedError,
)
