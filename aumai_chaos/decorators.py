"""Decorators that inject faults before each call of a function.

Both decorators accept plain and ``async def`` functions. A plain function gets
``FaultInjector.inject`` (latency blocks the calling thread); a coroutine function
gets ``FaultInjector.inject_async`` (latency is awaited), and its wrapper is still a
coroutine function. The fault configs and the injector are made once, when the
function is decorated, and shared by every call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from aumai_chaos.injector import FaultInjector
from aumai_chaos.models import FaultConfig, FaultType

__all__ = ["chaos_monkey", "resilience_test"]

F = TypeVar("F", bound=Callable[..., Any])


def chaos_monkey(
    fault_type: FaultType = FaultType.latency,
    probability: float = 0.1,
    duration_ms: int = 500,
    error_code: int = 500,
    error_message: str = "Chaos monkey error",
    affected_components: list[str] | None = None,
    *,
    injector: FaultInjector | None = None,
) -> Callable[[F], F]:
    """Inject one fault, with the given probability, before each call.

    Args:
        fault_type: The fault to inject.
        probability: Chance that the fault fires on a call, 0.0 to 1.0.
        duration_ms: How long a latency fault lasts.
        error_code: The code an error fault carries.
        error_message: The message of an error (or other raising) fault.
        affected_components: Labels for the component the function stands for.
        injector: Draws the decisions; pass a seeded one for repeatable runs. A new
            ``FaultInjector`` when None.

    Raises:
        pydantic.ValidationError: At decoration, for an out-of-range value.
    """
    config = FaultConfig(
        fault_type=fault_type,
        probability=probability,
        duration_ms=duration_ms,
        error_code=error_code,
        error_message=error_message,
        affected_components=list(affected_components or []),
    )
    return _injecting([config], injector)


def resilience_test(
    faults: list[FaultConfig],
    *,
    injector: FaultInjector | None = None,
) -> Callable[[F], F]:
    """Inject several faults, in order, before each call.

    Each fault is decided independently by its own probability; the first one that
    raises ends the sequence and the function is not called.

    Args:
        faults: The faults to try, in order. The list is copied at decoration.
        injector: Draws the decisions; a new ``FaultInjector`` when None.

    Raises:
        ValueError: At decoration, for a fault that lacks a field its type needs.
    """
    return _injecting(list(faults), injector)


def _injecting(
    faults: Sequence[FaultConfig], injector: FaultInjector | None
) -> Callable[[F], F]:
    chosen = injector if injector is not None else FaultInjector()
    # A bad config should fail where the function is defined, not on its first call.
    for fault in faults:
        chosen.check(fault)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            return cast(F, _wrap_async(func, faults, chosen))
        return cast(F, _wrap_sync(func, faults, chosen))

    return decorate


def _wrap_sync(
    func: Callable[..., Any], faults: Sequence[FaultConfig], injector: FaultInjector
) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for fault in faults:
            injector.inject(fault)
        return func(*args, **kwargs)

    return wrapper


def _wrap_async(
    func: Callable[..., Any], faults: Sequence[FaultConfig], injector: FaultInjector
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        for fault in faults:
            await injector.inject_async(fault)
        return await func(*args, **kwargs)

    return wrapper
