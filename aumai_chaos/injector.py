"""The fault injector: decide whether a fault fires, then apply it.

Every fault goes through two steps. ``decide`` checks the config and draws once from
the injector's random generator; ``apply`` performs the fault by calling the
``inject_*`` hook its type names in ``_HOOKS``. ``inject`` is the two together, and
``inject_async`` is its awaitable twin, which awaits its latency (never less than
``duration_ms``) instead of calling ``time.sleep``.

Subclasses may override any hook, ``apply`` or ``inject`` (the proxy does). Such an
override may block, so ``inject_async`` runs it on ``executor`` rather than on the
event loop. Which methods a class overrides is worked out once, when the class is
created.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import ClassVar, NamedTuple

from aumai_chaos.errors import (
    ChaosError,
    ChaosTimeoutError,
    DataCorruptionError,
    PartialFailureError,
    ResourceExhaustedError,
)
from aumai_chaos.models import FaultConfig, FaultType

__all__ = ["FaultInjector", "Sleep"]

#: An awaitable sleep: called with seconds, returns once they have passed.
Sleep = Callable[[float], Awaitable[object]]

# One pool per injector is plenty: only overridden, possibly blocking hooks use it.
_EXECUTOR_WORKERS = 64
_EXECUTOR_THREAD_PREFIX = "aumai-chaos-inject"


class _Hook(NamedTuple):
    """The ``inject_*`` method that applies a fault type, and how to call it."""

    method: str
    arguments: Callable[[FaultConfig], tuple[object, ...]]


def _latency_arguments(config: FaultConfig) -> tuple[object, ...]:
    return (config.duration_ms,)


def _error_arguments(config: FaultConfig) -> tuple[object, ...]:
    return (config.error_code, config.error_message or "Injected error")


def _message_or(default: str) -> Callable[[FaultConfig], tuple[object, ...]]:
    def arguments(config: FaultConfig) -> tuple[object, ...]:
        return (config.error_message or default,)

    return arguments


_HOOKS: dict[FaultType, _Hook] = {
    FaultType.latency: _Hook("inject_latency", _latency_arguments),
    FaultType.error: _Hook("inject_error", _error_arguments),
    FaultType.timeout: _Hook("inject_timeout", lambda config: ()),
    FaultType.partial_failure: _Hook(
        "inject_partial_failure", _message_or("Partial failure")
    ),
    FaultType.resource_exhaustion: _Hook(
        "inject_resource_exhaustion", _message_or("Resource exhausted")
    ),
    FaultType.data_corruption: _Hook(
        "inject_data_corruption", _message_or("Data corrupted")
    ),
}

# Methods a subclass may override with blocking code; see FaultInjector.inject_async.
_OVERRIDABLE = frozenset(
    {"inject", "apply", *(hook.method for hook in _HOOKS.values())}
)


class FaultInjector:
    """Decides whether faults fire and applies them.

    Args:
        seed: Seed for a private ``random.Random``; the same seed gives the same
            sequence of decisions.
        rng: A generator to draw decisions from instead; give ``seed`` or ``rng``,
            not both.
        executor: Where ``inject_async`` runs a subclass's overridden, possibly
            blocking methods. Settable later; when None, a thread pool is created
            the first time one is needed.

    Raises:
        ValueError: If both ``seed`` and ``rng`` are given.
    """

    # Names of the methods in _OVERRIDABLE that this class overrides.
    _overridden: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._overridden = frozenset(
            name
            for name in _OVERRIDABLE
            if getattr(cls, name) is not getattr(FaultInjector, name)
        )

    def __init__(
        self,
        seed: int | None = None,
        rng: random.Random | None = None,
        executor: Executor | None = None,
    ) -> None:
        if seed is not None and rng is not None:
            raise ValueError(
                f"give seed or rng, not both (got seed={seed!r} and an rng)"
            )
        self.rng = rng if rng is not None else random.Random(seed)
        self.executor = executor
        self._executor_lock = threading.Lock()

    # -- the fault hooks ---------------------------------------------------------------

    def inject_latency(self, duration_ms: int) -> None:
        """Block the calling thread for ``duration_ms`` milliseconds.

        Raises:
            ValueError: If ``duration_ms`` is negative.
        """
        if duration_ms < 0:
            raise ValueError(f"duration_ms: expected 0 or more, got {duration_ms!r}")
        time.sleep(duration_ms / 1000)

    def inject_error(self, error_code: int, message: str) -> None:
        """Raise ``ChaosError(error_code, message)``."""
        raise ChaosError(error_code, message)

    def inject_timeout(self) -> None:
        """Raise ``ChaosTimeoutError`` as a hung operation would time out."""
        raise ChaosTimeoutError("Injected timeout")

    def inject_partial_failure(self, message: str = "Partial failure") -> None:
        """Raise ``PartialFailureError``, a ``RuntimeError`` reading
        ``[partial_failure] {message}``."""
        raise PartialFailureError(message)

    def inject_resource_exhaustion(self, message: str = "Resource exhausted") -> None:
        """Raise ``ResourceExhaustedError(message)``."""
        raise ResourceExhaustedError(message)

    def inject_data_corruption(self, message: str = "Data corrupted") -> None:
        """Raise ``DataCorruptionError(message)``."""
        raise DataCorruptionError(message)

    # -- deciding ----------------------------------------------------------------------

    def should_inject(self, probability: float) -> bool:
        """Return True with the given probability.

        Exactly one number is drawn per call, whatever the probability, so a seeded
        injector's sequence of decisions does not depend on the probabilities asked.
        0.0 never fires and 1.0 always does.

        Raises:
            ValueError: If ``probability`` is outside [0.0, 1.0].
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability: expected 0.0 to 1.0, got {probability!r}")
        return self.rng.random() < probability

    def check(self, config: FaultConfig) -> None:
        """Check that ``config`` has what its fault type needs.

        Raises:
            ValueError: A latency fault without ``duration_ms`` or an error fault
                without ``error_code``.
        """
        if config.fault_type is FaultType.latency and config.duration_ms is None:
            raise ValueError("duration_ms: required for fault_type 'latency', got None")
        if config.fault_type is FaultType.error and config.error_code is None:
            raise ValueError("error_code: required for fault_type 'error', got None")

    def decide(self, config: FaultConfig) -> bool:
        """Check ``config``, then draw once: True if the fault should fire.

        ``inject_async`` calls this on the event loop, so an override must stay
        cheap and must not block.

        Raises:
            ValueError: As ``check`` does.
        """
        self.check(config)
        return self.should_inject(config.probability)

    # -- applying ----------------------------------------------------------------------

    def apply(self, config: FaultConfig) -> None:
        """Apply the fault unconditionally, through its ``inject_*`` hook.

        Raises:
            ValueError: As ``check`` does.
            The fault's exception (see ``aumai_chaos.errors``); nothing for latency.
        """
        self.check(config)
        method, arguments = self._hook_call(config)
        method(*arguments)

    def inject(self, config: FaultConfig) -> None:
        """Apply the fault if the probability draw says so; otherwise do nothing.

        Raises:
            ValueError: As ``check`` does, whether or not the fault fires.
            The fault's exception, when it fires.
        """
        if self.decide(config):
            self.apply(config)

    def inject_and_report(self, config: FaultConfig) -> bool:
        """Do what ``inject`` does and return whether the fault fired.

        Only a latency fault can return True: the others raise when they fire. If a
        subclass overrides ``inject``, its outcome is inferred as in
        ``inject_async``.
        """
        if "inject" in self._overridden:
            started = time.monotonic()
            self.inject(config)
            return _latency_elapsed(config, time.monotonic() - started)
        if not self.decide(config):
            return False
        self.apply(config)

        return True

    async def inject_async(
        self, config: FaultConfig, *, sleep: Sleep | None = None
    ) -> bool:
        """Awaitable ``inject``: same checks, same single draw, same exceptions.

        Latency is awaited and never blocks the event loop: with ``sleep`` when
        given (a server may hold many requests its own way), else with
        ``asyncio.sleep``, topped up when the loop woke early, so that a hold is
        never shorter than ``duration_ms``. Methods a subclass overrides run on
        ``executor`` instead: an overridden ``inject`` runs whole there;
        otherwise the decision is taken here and an overridden ``apply`` or
        ``inject_*`` hook runs there.

        Returns:
            True if the fault fired and returned (only latency returns), else False.
            For an overridden ``inject`` a latency fault counts as fired when the
            call took at least ``duration_ms``.
        """
        overridden = self._overridden
        if "inject" in overridden:
            started = time.monotonic()
            await self._run_in_executor(self.inject, config)
            return _latency_elapsed(config, time.monotonic() - started)
        if not self.decide(config):
            return False

        if "apply" in overridden:
            await self._run_in_executor(self.apply, config)
            return True
        method, arguments = self._hook_call(config)
        if _HOOKS[config.fault_type].method in overridden:
            await self._run_in_executor(method, *arguments)
        elif config.fault_type is FaultType.latency:
            await (sleep or _sleep_at_least)(_duration_seconds(config))
        else:
            method(*arguments)

        return True

    # -- helpers -----------------------------------------------------------------------

    def _hook_call(
        self, config: FaultConfig
    ) -> tuple[Callable[..., None], tuple[object, ...]]:
        hook = _HOOKS[config.fault_type]
        method: Callable[..., None] = getattr(self, hook.method)
        return method, hook.arguments(config)

    async def _run_in_executor(
        self, method: Callable[..., None], *args: object
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._ensure_executor(), functools.partial(method, *args)
        )

    def _ensure_executor(self) -> Executor:
        with self._executor_lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(
                    max_workers=_EXECUTOR_WORKERS,
                    thread_name_prefix=_EXECUTOR_THREAD_PREFIX,
                )
            return self.executor


async def _sleep_at_least(seconds: float) -> None:
    """``asyncio.sleep``, then more while ``time.monotonic`` says it is early.

    uvloop keeps time in whole milliseconds and rounds each delay to the nearest
    one, so its timers can fire up to about a millisecond and a half early.
    """
    deadline = time.monotonic() + seconds
    await asyncio.sleep(seconds)
    # The condition is the clock itself, which no Event could signal.
    while (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
        # Whole milliseconds: uvloop would round a shorter delay to none.
        await asyncio.sleep(math.ceil(left * 1000) / 1000)


def _duration_seconds(config: FaultConfig) -> float:
    # Only reached after check(), which rejects a latency fault without a duration.
    return (config.duration_ms or 0) / 1000


def _latency_elapsed(config: FaultConfig, elapsed_seconds: float) -> bool:
    """Whether an opaque ``inject`` call evidently applied its latency fault."""
    if config.fault_type is not FaultType.latency or config.duration_ms is None:
        return False
    return elapsed_seconds >= config.duration_ms / 1000
