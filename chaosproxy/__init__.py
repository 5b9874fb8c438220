"""chaosproxy: a fault-injecting HTTP reverse proxy, built on :mod:`aumai_chaos`.

Put it between a service and one of its dependencies; per route it injects latency,
errors, timeouts, rate limiting, truncated and corrupted bodies, records every
request as an observation, and can be steered while it runs.
"""

from __future__ import annotations

from chaosproxy.server import ChaosProxy

__all__ = ["ChaosProxy"]
