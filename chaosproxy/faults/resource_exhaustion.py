"""Resource exhaustion: answered 429 with ``Retry-After``, as a rate limiter would.

``Retry-After`` is in whole seconds (RFC 9110 section 10.2.3): ``duration_ms``
rounded up when the fault gives one, else 1, so a well-behaved client backs off.
"""

from __future__ import annotations

import math

from aumai_chaos import FaultConfig
from chaosproxy.downstream import Reply
from chaosproxy.faults._reply import fault_reply

__all__ = ["respond", "retry_after_seconds"]

DEFAULT_MESSAGE = "resource exhausted"


def retry_after_seconds(fault: FaultConfig) -> int:
    """Return the ``Retry-After`` value, in seconds, that ``fault`` asks for."""
    if fault.duration_ms is None:
        return 1

    return max(1, math.ceil(fault.duration_ms / 1000))


def respond(fault: FaultConfig, fired: str) -> Reply:
    """Answer 429 with ``Retry-After`` and a JSON body."""
    message = fault.error_message or DEFAULT_MESSAGE
    retry_after = {"Retry-After": str(retry_after_seconds(fault))}

    return fault_reply(429, "resource_exhaustion", message, fired, retry_after)
