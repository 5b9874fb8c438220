"""The server: one :class:`_Connection` per client, one sweep over their deadlines.

A connection's deadline is a number, not a timer: one timer, rescheduled while any
connection is open, finds the deadlines that have passed and lets each connection
act on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from chaosproxy.downstream.connection import _Connection
from chaosproxy.downstream.request import Request
from chaosproxy.downstream.response import Response
from chaosproxy.limits import Limits

__all__ = ["DownstreamServer", "Handler"]

Handler = Callable[[Request, Response], Awaitable[None]]

# Deadlines (head, keep-alive) are checked by one sweep over the connections,
# about this many times per the shortest timeout, within these bounds: a 20 s
# head deadline is kept to within half a second, a 400 ms one to 50 ms.
_SWEEPS_PER_TIMEOUT = 8
_SWEEP_MIN_SECONDS = 0.005
_SWEEP_MAX_SECONDS = 0.5


class DownstreamServer:
    """Serves proxied requests on accepted client connections.

    ``limits`` is called for each new connection, so a reload's limits apply to the
    connections opened after it.
    """

    def __init__(self, handler: Handler, limits: Callable[[], Limits]) -> None:
        """Serve ``handler`` every request that is well-formed and servable."""
        self.handler = handler
        self._limits = limits
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self._gone: asyncio.Event | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_every = _SWEEP_MAX_SECONDS

    def __call__(self) -> asyncio.Protocol:
        """Make the protocol for one new client connection."""
        limits = self._limits()
        shortest = min(limits.header_read_timeout_ms, limits.keepalive_timeout_ms)
        self._sweep_every = max(
            _SWEEP_MIN_SECONDS,
            min(self._sweep_every, shortest / 1000 / _SWEEPS_PER_TIMEOUT),
        )

        return _Connection(self, limits)

    def connection_made(self, connection: _Connection) -> None:
        """Track a new connection; start the sweep of deadlines if it is idle."""
        self.connections.add(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._sweep_every, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """Act on every connection whose head or idle deadline has passed."""
        now = self.loop.time()
        for connection in [
            c for c in self.connections if c.deadline is not None and c.deadline <= now
        ]:
            connection.deadline_passed()
        if self.connections:
            self._sweep = self.loop.call_later(self._sweep_every, self._check_deadlines)
        else:
            self._sweep = None

    def connection_gone(self) -> None:
        """A connection closed; wake :meth:`shutdown` when it was the last."""
        if self._gone is not None and not self.connections:
            self._gone.set()

    async def shutdown(self, grace: float) -> None:
        """Let requests in flight finish (up to ``grace`` seconds), then close all.

        Idle connections close at once; busy ones close after their answer.
        """
        self._gone = asyncio.Event()
        for connection in list(self.connections):
            connection.close_if_idle()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), grace)
        for connection in list(self.connections):
            connection.abort()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        # Let the cancelled handlers run their cleanup (observations, pools).
        await asyncio.sleep(0)
