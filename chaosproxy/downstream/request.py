"""A request as the handler sees it: its head as sent, its body as it arrives.

The body is read chunk by chunk; while too much of it is buffered
(``_BODY_HIGH_WATER``), the connection stops reading from the client, so a body the
upstream takes slowly waits in the client's socket rather than in the proxy's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from chaosproxy.downstream.connection import _Connection

__all__ = ["Request", "RequestBody"]

# Reading from a client pauses past this many buffered request-body bytes, and
# resumes once the upstream side has taken them.
_BODY_HIGH_WATER = 256 * 1024


class _LazyHeaders:
    """Case-insensitive look-up of a request's headers, built on first use.

    Most routes match on path and method only, so most requests never need the
    multidict; building it for every request would cost more than routing does.
    """

    __slots__ = ("_map", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        """Look up in ``pairs`` (name, value), in order."""
        self._pairs = pairs
        self._map: CIMultiDictProxy[str] | None = None

    def get(self, name: str, /) -> str | None:
        """Return the first value of ``name`` (any case), or None."""
        if self._map is None:
            self._map = CIMultiDictProxy(CIMultiDict(self._pairs))
        return self._map.get(name)


class RequestBody:
    """A request body as it arrives, read chunk by chunk, with flow control."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_discarding",
        "_eof",
        "_error",
        "_expect_continue",
        "_waiter",
    )

    def __init__(self, connection: _Connection, expect_continue: bool) -> None:
        """Start empty; ``connection`` is paused and resumed as bytes pile up."""
        self._connection = connection
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._expect_continue = expect_continue
        self._discarding = False

    @property
    def awaiting_continue(self) -> bool:
        """Whether the client waits for ``100 Continue``, which it was not sent."""
        return self._expect_continue and not self._eof

    def discard(self) -> None:
        """Drop what is buffered and whatever else arrives: nobody will read it."""
        self._discarding = True
        self._chunks.clear()
        self._buffered = 0

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (it may not have been read yet)."""
        return self._eof

    async def readany(self) -> bytes:
        """Return the bytes received so far, waiting if none; ``b""`` at the end.

        Raises ``ConnectionError`` when the client left or broke the framing.
        """
        if self._expect_continue:
            # RFC 9110 section 10.1.1: the client waits for this before sending.
            self._expect_continue = False
            if not self._eof and not self._chunks:
                self._connection.send_continue()
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft() if len(self._chunks) == 1 else self._join()
        self._buffered -= len(data)
        if self._buffered < _BODY_HIGH_WATER:
            self._connection.body_drained()

        return data

    def _join(self) -> bytes:
        """Take every queued chunk as one piece."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def feed(self, data: bytes) -> None:
        """Queue bytes the parser found; tell the caller to pause past the mark."""
        if self._discarding:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= _BODY_HIGH_WATER:
            self._connection.body_backlogged()
        self._wake()

    def end(self) -> None:
        """The body is whole."""
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The body will never be whole: the client left or broke the framing."""
        if not self._eof and self._error is None:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        """Wake the reader, if one waits."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Request:
    """One request's head as the client sent it, its target in origin-form."""

    __slots__ = (
        "body",
        "headers",
        "keep_alive",
        "lookup",
        "method",
        "path",
        "remote",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        remote: str | None,
        keep_alive: bool,
    ) -> None:
        """Describe one request; ``body`` is set when the request has one."""
        self.method = method
        self.target = target
        self.path = target.partition("?")[0]
        self.version = version
        self.headers = headers
        self.lookup = _LazyHeaders(headers)
        self.remote = remote
        self.keep_alive = keep_alive
        self.body: RequestBody | None = None

    @property
    def scheme(self) -> str:
        """The scheme the client used to reach the proxy (plain HTTP only)."""
        return "http"
