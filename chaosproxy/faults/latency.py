"""Latency: the request is held, then forwarded as usual.

The hold itself is :meth:`aumai_chaos.FaultInjector.inject_async`, an awaited sleep,
so thousands of held requests cost one timer each and never a thread. Latencies that
fire on one request add up, since each is awaited in turn.
"""

from __future__ import annotations

from aumai_chaos import FaultConfig, FaultInjector

__all__ = ["hold"]


async def hold(injector: FaultInjector, fault: FaultConfig) -> bool:
    """Decide ``fault`` and, when it fires, hold for its ``duration_ms``."""
    return await injector.inject_async(fault)
