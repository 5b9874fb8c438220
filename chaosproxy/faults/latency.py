"""Latency: the request is held, then forwarded as usual.

The library's :meth:`~aumai_chaos.FaultInjector.inject_async` decides the fault
and awaits the hold; the proxy hands it :meth:`Holds.hold` to hold with, and the
timeout fault holds the same way before its 504. Latencies that fire on one
request add up, since each is awaited in turn.

Why not ``asyncio.sleep`` per request:

- **Convoys.** A loop runs every timer that is due when it wakes, then all the
  work those timers released, before it looks at a socket again. Requests read
  in one turn of the loop are held the same time, so they come due together;
  forwarding all of them makes a long turn, in which the next ones come due,
  so the batches grow until a whole wave of held requests wakes as one and its
  last request waits for every other's forwarding and relaying. Measured with
  a 100 ms fault, 200 connections and the proxy on one core: p99 144 ms with a
  sleep per request, 123 ms releasing at most :data:`RELEASES_PER_TURN` a turn,
  which lets the upstream's answers and the clients' next requests in between
  (``bench/README.md``).
- **Early wake-ups.** uvloop keeps time in whole milliseconds and rounds a
  delay to the nearest one, so a 100 ms sleep can end after 99 ms. A hold here
  ends by ``time.monotonic``, never before its time.

All holds share one timer, armed for the earliest; a held request that is
cancelled (its client left) is dropped from the queue lazily.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time

__all__ = ["RELEASES_PER_TURN", "Holds"]

#: Held requests released per turn of the event loop; the rest wait one turn,
#: while the loop reads sockets. 8 to 32 measured alike; 16 keeps the loop's
#: own cost per turn small against the work it releases.
RELEASES_PER_TURN = 16

# Cancelled holds are purged from the queue once they are this many and half
# of it: a 30 s timeout fault whose clients give up must not pile up entries.
_PURGE_AT = 64


class Holds:
    """Holds requests for a time, released in order of their due time.

    Create it on the loop that awaits :meth:`hold`.
    """

    def __init__(self) -> None:
        """Start with nothing held."""
        self._loop = asyncio.get_running_loop()
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        self._release_soon = False
        self._cancelled = 0

    def __len__(self) -> int:
        """Return how many holds are queued, cancelled ones not yet purged too."""
        return len(self._queue)

    async def hold(self, seconds: float) -> None:
        """Return after ``seconds`` (by ``time.monotonic``), never before."""
        due = time.monotonic() + seconds
        future = self._loop.create_future()
        heapq.heappush(self._queue, (due, next(self._order), future))
        if not self._release_soon and due < self._timer_due:
            self._arm(due)
        try:
            await future
        except asyncio.CancelledError:
            # Not when the task was cancelled after its release: the entry has
            # left the queue already.
            if future.cancelled():
                self._forget_cancelled()
            raise

    def close(self) -> None:
        """Stop the timer and cancel every hold still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, _, future in self._queue:
            future.cancel()
        self._queue.clear()

    def _arm(self, due: float) -> None:
        """Set the one timer for ``due``, in place of any set for later."""
        if self._timer is not None:
            self._timer.cancel()
        # Rounded up to a whole millisecond: uvloop would round 0.4 ms to none
        # and wake at once, again and again, until the hold came due.
        delay = max(math.ceil((due - time.monotonic()) * 1000), 0) / 1000
        self._timer_due = due
        self._timer = self._loop.call_later(delay, self._release)

    def _release(self) -> None:
        """Wake up to a turn's worth of due holds; see to the rest."""
        self._timer = None
        self._timer_due = math.inf
        self._release_soon = False
        queue = self._queue
        now = time.monotonic()
        released = 0
        while queue and queue[0][0] <= now and released < RELEASES_PER_TURN:
            future = heapq.heappop(queue)[2]
            if not future.done():
                future.set_result(None)
                released += 1
            elif self._cancelled:
                self._cancelled -= 1
        if not queue:
            return

        if queue[0][0] <= now:
            # More are due: after the loop has read its sockets once.
            self._release_soon = True
            self._loop.call_soon(self._release)
        else:
            self._arm(queue[0][0])

    def _forget_cancelled(self) -> None:
        """Count a cancelled hold; rebuild the queue without them when many."""
        self._cancelled += 1
        if self._cancelled >= _PURGE_AT and self._cancelled * 2 >= len(self._queue):
            self._queue = [entry for entry in self._queue if not entry[2].done()]
            heapq.heapify(self._queue)
            self._cancelled = 0
