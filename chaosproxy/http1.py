"""One keep-alive HTTP/1.1 connection to the upstream, one exchange at a time.

The proxy's upstream side does little: write a request head it has already built,
stream a body, read a response head, stream a body back. A general-purpose client
(cookie jars, redirects, tracing, per-request timeout contexts, URL objects) costs
more CPU per request than the whole rest of the proxy, so this module does just the
exchange, on an :class:`asyncio.Protocol`, with llhttp (through ``httptools``)
parsing what the upstream sends::

    UpstreamConnection.begin(head)      request head written, parser fresh
        .write(chunk) / .drain()        request body, if any, with flow control
        await .response_head()          status, reason, headers (1xx skipped)
        await .read() ... b""           body chunks as they came, coalesced
        .reusable                       whether the pool may keep it

Framing follows RFC 9112 section 6.3: no body after HEAD or for 1xx, 204 and 304;
``Transfer-Encoding`` ending in chunked, then ``Content-Length``, else the body runs
until the upstream closes. A body arriving faster than the client takes it pauses
reading from the upstream, so a large response never piles up here.
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

__all__ = ["ResponseHead", "UpstreamConnection", "UpstreamProtocolError"]

# Reading from the upstream pauses past this many buffered body bytes and resumes
# once the proxy has taken them, so memory per exchange stays bounded.
_HIGH_WATER = 256 * 1024
# A response head larger than this is refused (aiohttp's client allowed 128 fields
# of 8 KiB); llhttp itself sets no bound, and the head is held whole until parsed.
_MAX_HEAD_BYTES = 64 * 1024
_MAX_HEADERS = 128
# Body bytes up to this size are joined into one piece for one write downstream;
# larger pieces go out as they came, since joining them would only copy them.
_JOIN_LIMIT = 64 * 1024


class UpstreamProtocolError(Exception):
    """The upstream broke the exchange: bad HTTP, a reset, a close mid-response.

    ``before_response`` is true when not one byte of a response had arrived, the
    sign of a kept-alive connection the upstream had closed while it sat idle.
    """

    def __init__(self, message: str, *, before_response: bool = False) -> None:
        """Record ``message`` and whether any response byte had arrived."""
        super().__init__(message)
        self.before_response = before_response


class ResponseHead:
    """A response's status line and headers, as the upstream sent them."""

    __slots__ = ("content_length", "headers", "reason", "status")

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]]
    ) -> None:
        """Keep ``headers`` in order, repeats included; find ``Content-Length``."""
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                # llhttp has already refused a malformed or conflicting length.
                self.content_length = int(value)


def _has_transfer_coding(headers: list[tuple[str, str]]) -> bool:
    """Return whether any ``Transfer-Encoding`` was sent (it overrides a length)."""
    return any(
        len(name) == 17 and name.lower() == "transfer-encoding" for name, _ in headers
    )


def _is_chunked(headers: list[tuple[str, str]]) -> bool:
    """Return whether the last transfer coding named is ``chunked``."""
    codings = [value for name, value in headers if name.lower() == "transfer-encoding"]
    if not codings:
        return False

    return codings[-1].rsplit(",", 1)[-1].strip().lower() == "chunked"


class UpstreamConnection(asyncio.Protocol):
    """A connection to the upstream that carries one exchange at a time."""

    def __init__(self, read_timeout: float) -> None:
        """Create an unconnected protocol; the loop connects it.

        ``read_timeout`` bounds each wait for more of a response body, in seconds.
        """
        self._loop = asyncio.get_running_loop()
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.exchanges = 0
        self._parser: httptools.HttpResponseParser | None = None
        self._bodyless = False
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._head: ResponseHead | None = None
        self._informational = False
        self._complete = False
        self._keep_alive = False
        self._received = False
        self._error: BaseException | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._raw_left: int | None = None
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        #: When the wait in progress (for the response head, or for more of its
        #: body) runs out, in loop time; the pool's sweep checks it.
        self.deadline: float | None = None

    # -- the exchange, as the pool's user sees it ------------------------------------

    def begin(self, head: bytes, *, bodyless: bool) -> None:
        """Start an exchange by writing the request ``head``.

        ``bodyless`` says the response can carry no body (a HEAD request).
        """
        assert self.transport is not None
        self.exchanges += 1
        self._parser = httptools.HttpResponseParser(self)
        self._bodyless = bodyless
        self._head = None
        self._complete = False
        self._keep_alive = False
        self._received = False
        self._error = None
        self._raw_left = None
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        """Send part of the request body."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the upstream has taken what was written (flow control)."""
        if self._error is not None:
            raise self._error
        if self._writing_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
        if self.closed:
            raise UpstreamProtocolError("upstream closed the connection mid-request")

    async def response_head(self) -> ResponseHead:
        """Wait for the final response's head; raise what broke the exchange."""
        while self._head is None:
            if self._error is not None:
                raise self._error
            await self._wait()

        return self._head

    async def read(self) -> bytes:
        """Return the body bytes received so far, waiting if none; ``b""`` at end."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self.deadline = self._loop.time() + self._read_timeout
            try:
                await self._wait()
            finally:
                self.deadline = None

        chunks = self._chunks
        if len(chunks) == 1 or self._buffered <= _JOIN_LIMIT:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = []
        else:
            data = chunks.pop(0)
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= _JOIN_LIMIT:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()

        return data

    @property
    def body_ready(self) -> bool:
        """Whether :meth:`read` has bytes, the end or an error to return at once."""
        return bool(self._chunks) or self._complete or self._error is not None

    @property
    def reusable(self) -> bool:
        """Whether the exchange ended cleanly and the connection may carry another."""
        return (
            self._complete
            and self._keep_alive
            and not self.closed
            and self._error is None
            and not self._chunks
        )

    def fail(self, exc: BaseException) -> None:
        """End the exchange with ``exc`` (a deadline passed) and wake the waiter."""
        if self._error is None:
            self._error = exc
        self._wake()

    def deadline_passed(self) -> None:
        """The wait in progress ran out: fail the exchange as timed out."""
        self.deadline = None
        reason = "upstream body stalled" if self._head is not None else "no response"
        self.fail(TimeoutError(reason))

    def close(self) -> None:
        """Close the connection now; an exchange in progress is abandoned."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self) -> None:
        """Sleep until the parser or the transport has news."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        """Wake whoever waits in :meth:`_wait`."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a response nobody asked for closes the connection."""
        parser = self._parser
        if parser is None or self._complete:
            # Bytes between exchanges: the connection is out of step. Drop it.
            self.close()
            return
        self._received = True
        if self._raw_left is not None:
            self._take_raw(data, self._raw_left)
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._break("upstream switched protocols, which the proxy does not relay")
        except httptools.HttpParserError as exc:
            self._break(f"upstream sent a malformed response: {exc}")

    def eof_received(self) -> bool:
        """End a close-delimited body; anything else cut short is an error."""
        head = self._head
        if head is not None and not self._complete:
            framed = head.content_length is not None or _is_chunked(head.headers)
            if not framed and not self._bodyless:
                self._complete = True
                self._keep_alive = False
                self._wake()
        self.closed = True

        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail an unfinished exchange; wake every waiter."""
        self.closed = True
        if self._parser is not None and not self._complete:
            reason = f": {exc}" if exc is not None else ""
            self._break(f"upstream closed the connection mid-exchange{reason}")
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        # The parser refers back to this protocol; undone, a closed connection
        # is freed at once rather than by the cyclic collector.
        self._parser = None

    def pause_writing(self) -> None:
        """The upstream is slow to take the request body; stop sending."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """The upstream caught up; let the body flow again."""
        self._writing_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _take_raw(self, data: bytes, left: int) -> None:
        """Queue the next bytes of a body of known length without parsing them.

        Past the head, a ``Content-Length`` body needs no parser, only counting:
        the bytes received are queued as they are, with no copy.
        """
        if len(data) > left:
            # More than the response holds: the connection is out of step, and
            # the extra bytes (nothing any request asked for) are dropped with it.
            data = data[:left]
            self._keep_alive = False
        self._raw_left = left - len(data)
        self._queue(data)
        if self._raw_left == 0:
            self._complete = True
            self._wake()

    def _queue(self, body: bytes) -> None:
        """Queue body bytes for :meth:`read`; pause the upstream when too many wait."""
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def _break(self, message: str) -> None:
        """Fail the exchange with a protocol error and drop the connection."""
        if self._error is None:
            self._error = UpstreamProtocolError(
                message, before_response=not self._received
            )
        self.close()
        self._wake()

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        """A response (or a 1xx before it) starts."""
        if self._complete:
            # A second response to one request: the upstream is out of step.
            raise UpstreamProtocolError("upstream sent a response nobody asked for")
        self._reason = b""
        self._headers = []
        self._head_bytes = 0

    def on_status(self, reason: bytes) -> None:
        """Collect the reason phrase (it may arrive in pieces)."""
        self._reason += reason
        self._count_head(len(reason))

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect one header field, in order."""
        self._count_head(len(name) + len(value))
        if len(self._headers) >= _MAX_HEADERS:
            raise UpstreamProtocolError(f"upstream sent over {_MAX_HEADERS} headers")
        # Decoded as aiohttp's server side decodes, so the bytes survive the trip.
        self._headers.append(
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        )

    def _count_head(self, size: int) -> None:
        """Refuse a response head that grows past its bound."""
        self._head_bytes += size
        if self._head_bytes > _MAX_HEAD_BYTES:
            raise UpstreamProtocolError(
                f"upstream sent a response head over {_MAX_HEAD_BYTES} bytes"
            )

    def on_headers_complete(self) -> None:
        """Publish the head, unless it is an interim 1xx (RFC 9110 section 15.2)."""
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status < 100:
            # RFC 9110 section 15: a status is three digits, 100 or more; relaying
            # this one would put a status line no client can parse on the wire.
            raise UpstreamProtocolError(f"upstream sent status {status}")
        self._informational = 100 <= status < 200
        if self._informational:
            return
        self._head = ResponseHead(
            status, self._reason.decode("utf-8", "surrogateescape"), self._headers
        )
        if self._bodyless:
            # A HEAD response's Content-Length describes a body that is not sent;
            # this parser would wait for it, so the exchange ends here and the
            # next one gets a fresh parser.
            self._keep_alive = self._parser.should_keep_alive()
            self._complete = True
        elif self._head.content_length and not _has_transfer_coding(self._headers):
            # The rest of this body is counted, not parsed (see _take_raw); the
            # parser, never fed again, still answers for the headers it has seen.
            self._keep_alive = self._parser.should_keep_alive()
            self._raw_left = self._head.content_length
        self._wake()

    def on_body(self, body: bytes) -> None:
        """Queue body bytes the parser found."""
        if self._raw_left is not None:
            self._raw_left -= len(body)
        self._queue(body)

    def on_message_complete(self) -> None:
        """The body is whole; an interim response only clears the way."""
        if self._informational:
            self._informational = False
            return
        assert self._parser is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        self._wake()
