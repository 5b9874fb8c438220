"""Fault effects: what each fault type does to a request on the wire.

One module per effect, named after its fault type::

    latency              hold, then forward            latency.py
    error                answer error_code now         error.py
    timeout              hold, then answer 504         timeout.py
    resource_exhaustion  answer 429 + Retry-After      resource_exhaustion.py
    partial_failure      forward, cut the body short   partial_failure.py
    data_corruption      forward, change body bytes    data_corruption.py

:func:`decide` runs a route's faults through the library's
:meth:`~aumai_chaos.FaultInjector.inject_async`, in order, each by its own
probability. The injector *decides* (and holds latency, with the proxy's
:class:`~chaosproxy.faults.latency.Holds`); the exceptions it raises
for the other types say which fault fired, and the proxy turns that into the wire
effect. The first terminating fault ends the decisions: nothing after it could act.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aumai_chaos import (
    ChaosError,
    ChaosTimeoutError,
    DataCorruptionError,
    FaultInjector,
    FaultType,
    PartialFailureError,
    ResourceExhaustedError,
)
from aumai_chaos.injector import Sleep
from chaosproxy.faults.base import FAULT_HEADER, BodyFilter
from chaosproxy.routing import RouteFault

__all__ = [
    "FAULT_HEADER",
    "RESPONSE_FAULTS",
    "TERMINATING_FAULTS",
    "BodyFilter",
    "Decision",
    "decide",
]

#: Faults that answer in place of the upstream.
TERMINATING_FAULTS = frozenset(
    {FaultType.error, FaultType.timeout, FaultType.resource_exhaustion}
)
#: Faults that act on the upstream's response.
RESPONSE_FAULTS = frozenset({FaultType.partial_failure, FaultType.data_corruption})

# A subclass of FaultInjector may raise another chaos exception than the configured
# type would; what it raised is what happened. Most specific classes first.
_TYPE_BY_EXCEPTION: tuple[tuple[type[BaseException], FaultType], ...] = (
    (ChaosTimeoutError, FaultType.timeout),
    (ResourceExhaustedError, FaultType.resource_exhaustion),
    (DataCorruptionError, FaultType.data_corruption),
    (PartialFailureError, FaultType.partial_failure),
    (ChaosError, FaultType.error),
)


@dataclass(slots=True)
class Decision:
    """Which of a route's faults fired on one request, and what they call for."""

    fired: list[RouteFault] = field(default_factory=list)
    fired_types: list[FaultType] = field(default_factory=list)
    terminal: RouteFault | None = None
    terminal_type: FaultType | None = None
    terminal_error: BaseException | None = None
    response: list[tuple[RouteFault, FaultType]] = field(default_factory=list)

    @property
    def header_value(self) -> str:
        """The ``X-Chaos-Fault`` value: fired fault types, comma-separated."""
        return ",".join(t.value for t in self.fired_types)


def _effect_type(fault: RouteFault, exc: Exception) -> FaultType:
    """Return the fault type an injector's exception stands for.

    An exception that is no chaos exception, raised while deciding a latency fault,
    is a bug in the injector, not a fault: it is raised again.
    """
    for cls, fault_type in _TYPE_BY_EXCEPTION:
        if isinstance(exc, cls):
            return fault_type
    if fault.config.fault_type is FaultType.latency:
        raise exc

    return fault.config.fault_type


async def decide(
    injector: FaultInjector,
    faults: Sequence[RouteFault],
    *,
    sleep: Sleep | None = None,
) -> Decision:
    """Decide ``faults`` in order; hold latency as it fires, with ``sleep``.

    Returns what fired. A terminating fault stops the decisions, and response faults
    that fired before it are dropped from the result, since no upstream response
    will exist for them to act on.
    """
    decision = Decision()
    for fault in faults:
        try:
            if await injector.inject_async(fault.config, sleep=sleep):
                decision.fired.append(fault)
                decision.fired_types.append(fault.config.fault_type)
            continue
        except Exception as exc:  # the injector's way of saying "this one fired"
            effect = _effect_type(fault, exc)
            # Without its traceback: that would hold this frame, which holds the
            # decision, which holds the exception, a cycle per fault fired.
            error = exc.with_traceback(None)
        if effect in TERMINATING_FAULTS:
            decision.fired.append(fault)
            decision.fired_types.append(effect)
            decision.terminal = fault
            decision.terminal_type = effect
            decision.terminal_error = error
            decision.response = []
            return decision
        decision.response.append((fault, effect))

    # Response faults count as fired only once no terminating fault has ended the
    # request: only then is there an upstream response for them to act on.
    for fault, effect in decision.response:
        decision.fired.append(fault)
        decision.fired_types.append(effect)

    return decision
