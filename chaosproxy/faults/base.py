"""What every fault effect shares: the marker header and the body-filter protocol."""

from __future__ import annotations

from typing import Protocol

__all__ = ["FAULT_HEADER", "BodyFilter"]

#: Set on every response a fault touched, so a client can tell chaos from a real
#: failure; several fired faults are listed comma-separated, in firing order.
FAULT_HEADER = "X-Chaos-Fault"


class BodyFilter(Protocol):
    """A response fault, fed the upstream's body chunk by chunk."""

    @property
    def finished(self) -> bool:
        """Whether the body must stop here and the connection close."""

    def feed(self, chunk: bytes) -> bytes:
        """Return what to send to the client in place of ``chunk``."""
