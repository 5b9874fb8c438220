"""Timeout: the request hangs for ``duration_ms``, then the proxy answers 504.

This is what a client behind a gateway sees when the dependency never answers. The
upstream is never asked. If the client gives up first, the server cancels the handler,
which ends the hold at once, so an abandoned hang holds no resources. The hold is
the latency fault's (:class:`~chaosproxy.faults.latency.Holds`): never shorter
than asked, and released a turn's worth at a time.
"""

from __future__ import annotations

from aumai_chaos import FaultConfig
from chaosproxy.downstream import Reply
from chaosproxy.faults._reply import fault_reply
from chaosproxy.faults.latency import Holds

__all__ = ["respond"]


async def respond(
    fault: FaultConfig, default_ms: int, fired: str, holds: Holds
) -> Reply:
    """Hold ``duration_ms`` (or ``default_ms``), then answer 504 with a JSON body."""
    held_ms = fault.duration_ms if fault.duration_ms is not None else default_ms
    await holds.hold(held_ms / 1000)
    message = fault.error_message or f"injected timeout after {held_ms} ms"

    return fault_reply(504, "timeout", message, fired)
