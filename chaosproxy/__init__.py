"""chaosproxy: a fault-injecting HTTP reverse proxy, built on :mod:`aumai_chaos`.

Put it between a service and one of its dependencies; per route it injects latency,
errors, timeouts, rate limiting, truncated and corrupted bodies, records every
request as an observation, and can be steered while it runs.

``ChaosProxy`` is imported on first use: pytest loads ``chaosproxy.pytest_plugin``
in every run where this package is installed, and that must not cost the half
second that importing aiohttp and pydantic takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaosproxy.server import ChaosProxy

__all__ = ["ChaosProxy"]


def __getattr__(name: str) -> object:
    """Import ``ChaosProxy`` when it is first asked for (PEP 562)."""
    if name == "ChaosProxy":
        from chaosproxy.server import ChaosProxy

        return ChaosProxy
    raise AttributeError(f"module 'chaosproxy' has no attribute {name!r}")
