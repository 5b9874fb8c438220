"""Error: the request is answered at once with the configured status; not forwarded."""

from __future__ import annotations

from aumai_chaos import ChaosError, FaultConfig
from chaosproxy.downstream import Reply
from chaosproxy.faults._reply import fault_reply

__all__ = ["respond"]

DEFAULT_MESSAGE = "injected error"


def respond(fault: FaultConfig, exc: BaseException, fired: str) -> Reply:
    """Answer with ``error_code`` and a JSON body naming the fault and its message."""
    status = fault.error_code or 500
    message = fault.error_message or DEFAULT_MESSAGE
    if isinstance(exc, ChaosError):
        status = exc.error_code

    return fault_reply(status, "error", message, fired)
