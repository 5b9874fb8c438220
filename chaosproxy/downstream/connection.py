"""One client connection: llhttp parses, the head is bounded, handlers run in turn.

:class:`_Connection` is the ``asyncio.Protocol`` of one client. Its sections follow
a request through it: the transport's events, llhttp's callbacks that build the
:class:`~chaosproxy.downstream.request.Request`, the running of one handler at a
time (pipelined requests wait their turn, the client is paused meanwhile), and last
the refusals and the clocks (the head's line limits and deadline, the keep-alive
wait) that :class:`~chaosproxy.downstream.server.DownstreamServer` sweeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from chaosproxy.downstream.checks import (
    _BadRequest,
    _body_framing,
    _check_head,
    _settle_target,
    _why_refused,
)
from chaosproxy.downstream.request import Request, RequestBody
from chaosproxy.downstream.response import _REASONS, Response, _dates, _refusal
from chaosproxy.limits import Limits

if TYPE_CHECKING:
    from chaosproxy.downstream.server import DownstreamServer

__all__: list[str] = []

# The channel, not the module's name: every part of this server logs on the one
# channel ``chaosproxy.logs`` lists, which users and tests filter on.
logger = logging.getLogger("chaosproxy.downstream")


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and runs the handler for each."""

    def __init__(self, server: DownstreamServer, limits: Limits) -> None:
        """Serve one connection within ``limits``."""
        self._server = server
        self._loop = server.loop
        self._handler = server.handler
        self._max_line = limits.max_request_line_bytes
        self._max_field = limits.max_header_line_bytes
        self._max_headers = limits.max_headers
        self._head_timeout = limits.header_read_timeout_ms / 1000
        self._keepalive_timeout = limits.keepalive_timeout_ms / 1000
        self._head_timeout_ms = limits.header_read_timeout_ms
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(
            self
        )
        self.transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self.closing = False
        self.writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        # The head being parsed.
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._line_run = 0
        self._on_request_line = True
        self._in_head = False
        self._parsing: Request | None = None
        # Requests parsed and waiting their turn (pipelining), and the one running.
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._current: Response | None = None
        # When the head being read, or the idle wait, runs out (loop time); the
        # server's sweep checks it. A timer per request would cost more than
        # the rest of the bookkeeping together.
        self.deadline: float | None = None
        self._idle = False
        # Reading and dropping the rest of a body whose request was answered.
        self._draining = False
        self._head_begun = False
        # Nothing more is parsed from this connection; nothing queued will run.
        self._stopped = False
        self._refused = False

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the first head's clock as the connection opens."""
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        self._server.connection_made(self)
        self._start_head_clock(begun=False)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop everything this connection started; cancel a running handler."""
        self.closing = True
        self._server.connections.discard(self)
        self._stop_clock()
        lost = ConnectionResetError("the client closed the connection")
        if self._parsing is not None and self._parsing.body is not None:
            self._parsing.body.fail(lost)
        for request in self._queue:
            if request.body is not None:
                request.body.fail(lost)
        self._queue.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(lost)
        # The parser and this protocol refer to each other, and so do a request
        # in flight and this protocol: undone here, a closed connection is freed
        # at once rather than by the cyclic collector, which runs seldom.
        self._parser = None
        self._parsing = None
        self._current = None
        self._task = None
        self._server.connection_gone()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; answer what it refuses."""
        if self._stopped or self.transport is None or self.transport.is_closing():
            return
        if self._idle:
            # Idle between requests: the keep-alive clock gives way to a head's.
            self._start_head_clock(begun=True)
        else:
            self._head_begun = True
        if self._in_head or self._parsing is None:
            self._check_head_lines(data)
            if self._stopped:
                return
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._on_upgrade()
        except _BadRequest as exc:
            self._refuse(exc.status, exc.reason)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _BadRequest):
                self._refuse(cause.status, cause.reason)
            else:
                self._parse_failed(str(exc))
        except httptools.HttpParserError as exc:
            self._parse_failed(str(exc))
        if self._task is None and self._queue and not self._refused:
            self._run(self._queue.popleft())

    def eof_received(self) -> None:
        """The client stopped sending: taken as gone, as nginx takes it.

        Returning nothing closes the transport, which cancels a request in
        flight (a held fault stops holding; the observation says 499).
        """

    def pause_writing(self) -> None:
        """The client is slow to take the response; writers wait in drain."""
        self.writing_paused = True

    def resume_writing(self) -> None:
        """The client caught up."""
        self.writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        """A request head starts."""
        self._in_head = True
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        """Collect the request target (it may arrive in pieces)."""
        self._url += url
        if len(self._url) > self._max_line:
            raise _BadRequest(414, f"request line longer than {self._max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect one header field, in order."""
        if len(name) + len(value) + 2 > self._max_field:
            raise _BadRequest(431, f"header line longer than {self._max_field} bytes")
        if len(self._headers) >= self._max_headers:
            raise _BadRequest(431, f"more than {self._max_headers} header fields")
        # Names are tokens (ASCII); values are kept byte for byte through
        # surrogateescape, and encoded back the same way upstream.
        # llhttp strips the whitespace before a value, not after it (RFC 9110
        # section 5.5: neither belongs to the value).
        self._headers.append(
            (
                name.decode("latin-1"),
                value.rstrip(b" \t").decode("utf-8", "surrogateescape"),
            )
        )

    def on_headers_complete(self) -> None:
        """The head is whole: settle the target, queue the request."""
        self._in_head = False
        self._stop_clock()
        parser = self._parser
        assert parser is not None
        version = parser.get_http_version()
        method = parser.get_method().decode("ascii", "replace")
        headers = self._headers
        settled = _settle_target(method, self._url, headers)
        if settled is None:
            raise _BadRequest(*_why_refused(method))
        target, headers = settled
        _check_head(version, headers)
        request = Request(
            method,
            target,
            version,
            headers,
            self._remote,
            parser.should_keep_alive() and not self.closing,
        )
        body = _body_framing(headers)
        if body:
            expect = any(
                len(n) == 6 and n.lower() == "expect" and v.lower() == "100-continue"
                for n, v in headers
            )
            request.body = RequestBody(self, expect and version == "1.1")
        self._parsing = request
        # It starts once the bytes at hand are parsed (a body that breaks in
        # them is refused before anything is sent upstream), or, pipelined
        # behind a request in flight, when its turn comes; the client waits
        # meanwhile, so that queued requests cannot pile up.
        self._queue.append(request)
        if self._task is not None:
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        """Pass body bytes to the request being read."""
        request = self._parsing
        if request is not None and request.body is not None:
            request.body.feed(body)

    def on_message_complete(self) -> None:
        """The request, body included, has been read."""
        self._line_run = 0
        self._on_request_line = True
        request = self._parsing
        self._parsing = None
        if request is not None and request.body is not None:
            request.body.end()
        if self._draining:
            self._draining = False
            self._stop_clock()
            self._next_request()

    # -- the requests ----------------------------------------------------------------

    def _run(self, request: Request) -> None:
        """Start the handler for ``request``."""
        response = Response(self, request)
        self._current = response
        self._task = self._loop.create_task(self._handle(request, response))

    async def _handle(self, request: Request, response: Response) -> None:
        """Run the handler; answer for it if it fails before answering."""
        try:
            await self._handler(request, response)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "request failed",
                extra={"client": request.remote, "method": request.method},
            )
            if response.started:
                response.abort()
            else:
                response.reply(
                    *_refusal(500, "the proxy failed to handle this request")
                )
        finally:
            if not response.finished and not (
                self.transport is None or self.transport.is_closing()
            ):
                # The handler returned without ending its answer: end it.
                if response.started:
                    response.end()
                else:
                    response.reply(*_refusal(500, "the proxy sent no answer"))

    def response_done(self, response: Response) -> None:
        """A response ended: go on to the next request, or close."""
        transport = self.transport
        self._task = None
        self._current = None
        if transport is None:
            return
        if response.close_after or self.closing or self._stopped:
            transport.close()
            return
        body = self._parsing.body if self._parsing is not None else None
        if body is not None:
            # Answered before its body was all read (a fault answered in place of
            # the upstream): the rest is read and dropped, so that the client,
            # still sending, reads the answer instead of a reset, and the
            # connection can carry the next request.
            if body.awaiting_continue:
                # The client waits to be told to send; it is told nothing.
                transport.close()
                return
            body.discard()
            self._draining = True
            self.deadline = self._loop.time() + self._head_timeout
            self._resume_reading()
            return
        self._next_request()

    def _next_request(self) -> None:
        """Start the next queued request, or wait for one."""
        self._resume_reading()
        if self._queue:
            self._run(self._queue.popleft())
        else:
            self._start_keepalive_clock()

    def send_continue(self) -> None:
        """Tell a client waiting on ``Expect: 100-continue`` to send its body."""
        self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def write(self, data: bytes) -> None:
        """Write ``data`` unless the connection is gone."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def drain(self) -> None:
        """Wait until the client has taken what was written."""
        if self.writing_paused:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def body_backlogged(self) -> None:
        """A request body piles up faster than the upstream takes it: pause."""
        self._pause_reading()

    def body_drained(self) -> None:
        """The upstream caught up with a request body: read again."""
        if not self._queue:
            self._resume_reading()

    def _pause_reading(self) -> None:
        """Stop reading from the client."""
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def _resume_reading(self) -> None:
        """Read from the client again."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    def close_if_idle(self) -> None:
        """Close now if no request is in flight; else after the current one."""
        self.closing = True
        if self._task is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now, cancelling a handler that is still running."""
        if self.transport is not None:
            self.transport.abort()

    # -- refusals and clocks ---------------------------------------------------------

    def _on_upgrade(self) -> None:
        """A request asked to switch protocols, or to CONNECT (llhttp stops there).

        The proxy opens no tunnels and relays no other protocol: the request is
        handled as an ordinary one (its Upgrade fields are hop-by-hop and dropped),
        and the connection closes after the answer.
        """
        self._stopped = True
        request = self._parsing
        if request is not None:
            self._parsing = None
            if request.body is not None:
                request.body.end()
        self._pause_reading()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a malformed or unservable request; close the connection."""
        logger.warning(
            "bad request",
            extra={"client": self._remote, "status": status, "error": reason},
        )
        self._reject(status, reason)

    def _parse_failed(self, message: str) -> None:
        """Refuse a request llhttp could not parse, or break off a body."""
        request = self._parsing
        if request is not None and request.body is not None:
            self._parsing = None
            if request in self._queue:
                # Not started yet: nothing went upstream, so it is refused whole.
                self._queue.remove(request)
                self._refuse(400, f"malformed request body: {message}")
                return
            # The request is under way; its body's framing broke. Failing the
            # body makes the upstream exchange break off, so the upstream never
            # takes a shortened body as whole.
            logger.warning(
                "bad request body",
                extra={"client": self._remote, "error": message},
            )
            request.body.fail(
                ConnectionResetError("the request body's framing is broken")
            )
            self._stopped = True
            self._pause_reading()
            self.closing = True
            return
        self._refuse(400, message[:200] or "malformed request")

    def _reject(self, status: int, reason: str) -> None:
        """Send a refusal unless another answer is under way; close after."""
        self._stopped = True
        self._refused = True
        self._stop_clock()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._task is None and self._queue:
            # Requests before the bad one came whole: the first is answered,
            # then the connection closes.
            self._run(self._queue.popleft())
        if self._task is None:
            status_, headers, body = _refusal(status, reason)
            head = [f"HTTP/1.1 {status_} {_REASONS.get(status_, '')}"]
            head += [f"{n}: {v}" for n, v in headers]
            head += [f"Date: {_dates.now()}", "Connection: close", "\r\n"]
            transport.write("\r\n".join(head).encode() + body)
            transport.close()
        else:
            # A request is in flight; its answer goes first, then the close.
            self.closing = True
            self._queue.clear()
            self._pause_reading()

    def _check_head_lines(self, data: bytes) -> None:
        """Refuse a request line or header line over its limit as it arrives.

        llhttp holds a field whole until it ends, so a line without end would
        grow without bound; counting as bytes arrive stops it at the limit.
        Lines are counted up to the blank line that ends the head; bytes after
        it are body, which no line limit applies to.
        """
        run = self._line_run
        if run + len(data) <= min(self._max_line, self._max_field):
            # The common case: no line in ``data`` can be over either limit.
            end = data.rfind(b"\n")
            if end < 0:
                self._line_run = run + len(data)
            else:
                self._line_run = len(data) - end - 1
                self._on_request_line = False
            return
        start = 0
        while True:
            end = data.find(b"\n", start)
            length = run + (len(data) if end < 0 else end) - start
            limit = self._max_line if self._on_request_line else self._max_field
            if length > limit:
                if self._on_request_line:
                    self._refuse(414, f"request line longer than {limit} bytes")
                else:
                    self._refuse(431, f"header line longer than {limit} bytes")
                return
            if end < 0:
                self._line_run = length
                return
            if length <= 1 and not self._on_request_line:
                # The blank line (CRLF, or a bare LF llhttp will refuse).
                self._line_run = 0
                self._on_request_line = True
                return
            run = 0
            self._on_request_line = False
            start = end + 1

    def _start_head_clock(self, *, begun: bool) -> None:
        """Start timing a request head."""
        self._head_begun = begun
        self._idle = False
        self._line_run = 0
        self._on_request_line = True
        self.deadline = self._loop.time() + self._head_timeout

    def _start_keepalive_clock(self) -> None:
        """Start the idle wait for the next request."""
        self._idle = True
        self.deadline = self._loop.time() + self._keepalive_timeout

    def _stop_clock(self) -> None:
        """Stop the head's deadline or the keep-alive wait."""
        self._idle = False
        self.deadline = None

    def deadline_passed(self) -> None:
        """The server's sweep found :attr:`deadline` passed: act on it."""
        self.deadline = None
        if self._draining:
            # The rest of an answered request's body is too slow to come.
            if self.transport is not None:
                self.transport.close()
        elif self._idle:
            self._on_keepalive_timeout()
        else:
            self._on_head_timeout()

    def _on_head_timeout(self) -> None:
        """Answer 408 to a head that began but did not end in time; close."""
        if self._head_begun:
            reason = f"no complete request head within {self._head_timeout_ms} ms"
            logger.warning("request head too slow", extra={"client": self._remote})
            self._reject(408, reason)
        else:
            logger.debug("silent connection closed", extra={"client": self._remote})
            if self.transport is not None:
                self.transport.close()

    def _on_keepalive_timeout(self) -> None:
        """Close a connection idle for longer than the keep-alive timeout."""
        self._idle = False
        if self._task is None and self.transport is not None:
            self.transport.close()
