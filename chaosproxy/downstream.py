"""The client-facing side: an HTTP/1.1 server of the proxy's own, on llhttp.

Why not aiohttp's server: measured with a 100 ms latency fault on every request,
aiohttp's request handling (its request and response objects, its writer, its
per-request bookkeeping) cost more CPU than the rest of the proxy together, and a
proxy holding hundreds of requests answers each wave of them one after another, so
that cost is what the slowest client waits. This server does only what a proxy
needs: parse a head with llhttp (through ``httptools``), hand the proxy a
:class:`Request` and a :class:`Response`, frame what the proxy writes.

What it adds that a bare parser lacks:

- bounds on a request head (:class:`~chaosproxy.limits.Limits`), and a deadline on
  it (slowloris), counted from the head's first byte, or from the opening of the
  connection for the first request. The wait between requests on a kept-alive
  connection is the keep-alive timeout's business, and a slow body is the
  upstream's: neither counts;
- a malformed request is answered in the proxy's own words, a JSON body naming the
  problem and a closed connection, and logged as one WARNING line on
  ``chaosproxy.downstream``, never as a traceback;
- the request target is settled before routing. An absolute-form target
  (``GET http://elsewhere/x``) becomes origin-form, its authority the ``Host``
  (RFC 9112 section 3.2.2): the proxy forwards it to its own upstream, never to
  the authority named. CONNECT is refused: the proxy opens no tunnels;
- when the client goes away, the handler of its request is cancelled, so a held
  fault stops holding.

What a client gets::

    malformed head or framing (RFC 9112 sections 2-6)      400, connection closed
    request line over max_request_line_bytes               414 (RFC 9112 section 3)
    header line over max_header_line_bytes, too many       431 (RFC 6585 section 5)
    head not complete within header_read_timeout_ms        408, connection closed
    absolute-form target: other scheme, or userinfo        400 (RFC 9110 4.2.4)
    malformed body framing once the request is under way  connection closed
    CONNECT                                                501 (RFC 9110 9.1)
    HTTP/0.9 (a request line without a version)           505
    a failure of the proxy's own                           500, logged with traceback

Requests refused here never reach the router: they are not observations, only log
lines.

Responses are framed here: the caller gives the headers and, when it knows it, the
body's length (with the ``Content-Length`` field already among the headers); a body
of unknown length is sent chunked to an HTTP/1.1 client and delimited by closing
the connection for an HTTP/1.0 one. Nothing is invented: no ``Server``, no
``Content-Type``; ``Date`` is added when absent, as RFC 9110 section 6.6.1 asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from chaosproxy.limits import Limits

__all__ = [
    "DownstreamServer",
    "Reply",
    "Request",
    "RequestBody",
    "Response",
    "json_reply",
    "to_origin_form",
]

logger = logging.getLogger(__name__)

Handler = Callable[["Request", "Response"], Awaitable[None]]

#: A whole answer: status, headers (``Content-Length`` among them) and body.
Reply = tuple[int, list[tuple[str, str]], bytes]

# The "error" member of each refusal's JSON body, by status.
_ERROR_NAMES = {
    400: "bad_request",
    408: "request_timeout",
    414: "request_line_too_long",
    431: "header_fields_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}
_PROXY_FAILURE = "proxy_failure"

# RFC 9112 section 3.2.2: absolute-form is scheme "://" authority, then the
# path and query. Only http and https name something this proxy could serve.
_ABSOLUTE_FORM = re.compile(r"(?i:https?)://([^/?#]+)(.*)", re.DOTALL)

# Reading from a client pauses past this many buffered request-body bytes, and
# resumes once the upstream side has taken them.
_BODY_HIGH_WATER = 256 * 1024

# Deadlines (head, keep-alive) are checked by one sweep over the connections,
# about this many times per the shortest timeout, within these bounds: a 20 s
# head deadline is kept to within half a second, a 400 ms one to 50 ms.
_SWEEPS_PER_TIMEOUT = 8
_SWEEP_MIN_SECONDS = 0.005
_SWEEP_MAX_SECONDS = 0.5

# A status line's reason phrase, by status, for the answers the proxy writes.
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class _BadRequest(Exception):
    """A request the proxy refuses before routing: ``status`` and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        """Record the status to answer with and a one-line reason."""
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _DateCache:
    """The ``Date`` field value, formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        """Start with nothing cached."""
        self._second = -1
        self._value = ""

    def now(self) -> str:
        """Return the current time in the HTTP date format (RFC 9110 5.6.7)."""
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True)

        return self._value


_dates = _DateCache()


def json_reply(
    status: int,
    document: Mapping[str, object],
    extra_headers: Sequence[tuple[str, str]] = (),
) -> Reply:
    """Build a whole answer: ``status``, headers and a JSON body.

    Returns ``(status, headers, body)`` for :meth:`Response.reply`; the headers
    carry ``Content-Type`` and ``Content-Length`` and then ``extra_headers``.
    """
    body = json.dumps(document).encode()
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra_headers,
    ]

    return status, headers, body


def _refusal(status: int, reason: str) -> Reply:
    """A refusal's status, headers and JSON body naming the problem."""
    error = _ERROR_NAMES.get(status, _PROXY_FAILURE)
    return json_reply(status, {"error": error, "message": reason})


def to_origin_form(
    target: str, headers: list[tuple[str, str]]
) -> tuple[str, list[tuple[str, str]]] | None:
    """Rewrite an absolute-form target as origin-form, its authority as ``Host``.

    RFC 9112 section 3.2.2: a server that receives an absolute-form target uses its
    authority and ignores the ``Host`` field sent. Returns the new target and
    headers, or None for a target that is not http(s) absolute-form or whose
    authority carries userinfo (which RFC 9110 section 4.2.4 asks a recipient to
    treat as an error), for the caller to refuse.
    """
    found = _ABSOLUTE_FORM.fullmatch(target)
    if found is None or "@" in found[1]:
        return None
    authority, rest = found[1], found[2]
    origin_target = rest if rest.startswith("/") else "/" + rest
    kept = [(name, value) for name, value in headers if name.lower() != "host"]

    return origin_target, [("Host", authority), *kept]


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


class Response:
    """Writes one response on a client connection, framing its body.

    Use :meth:`start` then :meth:`write` and :meth:`end` for a streamed body, or
    :meth:`reply` for a whole one. :meth:`abort` ends the connection after what
    was written, for a body that must break off.
    """

    __slots__ = (
        "_bodyless",
        "_chunked",
        "_connection",
        "_head",
        "_length",
        "_sent",
        "_version",
        "close_after",
        "finished",
        "started",
        "status",
    )

    def __init__(self, connection: _Connection, request: Request) -> None:
        """Prepare to answer ``request`` on ``connection``."""
        self._connection = connection
        self._version = request.version
        self._bodyless = request.method == "HEAD"
        self.close_after = not request.keep_alive
        self.started = False
        self.finished = False
        self.status = 0
        self._head: bytes | None = None
        self._chunked = False
        self._length: int | None = None
        self._sent = 0

    def start(
        self,
        status: int,
        reason: str | None,
        headers: Sequence[tuple[str, str]],
        length: int | None,
    ) -> None:
        """Prepare the head; it leaves with the first body bytes or :meth:`flush`.

        ``length`` is the body's length when ``headers`` carry a
        ``Content-Length``, else None: the body is then chunked (HTTP/1.1) or
        ends with the connection (HTTP/1.0).
        """
        assert not self.started, "the response has started already"
        self.started = True
        self.status = status
        if self._bodyless or status < 200 or status in (204, 304):
            self._bodyless = True
        connection = self._connection
        if connection.closing:
            self.close_after = True
        lines = [f"HTTP/{self._version} {status} {reason or _REASONS.get(status, '')}"]
        has_date = False
        for name, value in headers:
            if len(name) == 4 and name.lower() == "date":
                has_date = True
            lines.append(f"{name}: {value}")
        if not has_date:
            lines.append(f"Date: {_dates.now()}")
        if not self._bodyless:
            self._length = length
            if length is None:
                if self._version == "1.1":
                    self._chunked = True
                    lines.append("Transfer-Encoding: chunked")
                else:
                    self.close_after = True
        if self.close_after:
            if self._version == "1.1":
                lines.append("Connection: close")
        elif self._version == "1.0":
            lines.append("Connection: keep-alive")
        lines.append("\r\n")
        self._head = "\r\n".join(lines).encode("utf-8", "surrogateescape")

    def flush(self) -> None:
        """Send the head now, before any body (a stream's first bytes may be far)."""
        head = self._head
        if head is not None:
            self._head = None
            self._connection.write(head)

    async def write(self, data: bytes) -> None:
        """Send body bytes; wait while the client is slow to take them."""
        if self._bodyless or not data:
            return
        self._sent += len(data)
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        connection = self._connection
        connection.write(data)
        if connection.writing_paused:
            await connection.drain()

    def end(self) -> None:
        """End the body; the connection is kept for the next request if it can be."""
        if self.finished:
            return
        self.finished = True
        tail = b"0\r\n\r\n" if self._chunked else b""
        head = self._head
        if head is not None:
            self._head = None
            tail = head + tail
        if tail:
            self._connection.write(tail)
        if self._length is not None and self._sent != self._length:
            # The client was promised another length; only closing tells it.
            self.close_after = True
        self._connection.response_done(self)

    def reply(
        self, status: int, headers: Sequence[tuple[str, str]], body: bytes
    ) -> None:
        """Send a whole response: ``headers`` carry its ``Content-Length``."""
        self.start(status, None, headers, len(body))
        head = self._head or b""
        self._head = None
        self._sent = len(body)
        self._connection.write(head if self._bodyless else head + body)
        self.end()

    def abort(self) -> None:
        """Close the connection after the bytes written so far: the body broke off."""
        self.flush()
        self.finished = True
        self.close_after = True
        self._connection.response_done(self)


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
        settled = self._settle_target(method, self._url, headers)
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

    def _settle_target(
        self, method: str, url: bytes, headers: list[tuple[str, str]]
    ) -> tuple[str, list[tuple[str, str]]] | None:
        """The target in origin-form, and the headers; None for one to refuse."""
        if not url.isascii():
            raise _BadRequest(400, "the request target is not ASCII")
        target = url.decode("ascii")
        if target[:1] == "/":
            return target, headers
        if target == "*" and method == "OPTIONS":
            # RFC 9112 section 3.2.4: asterisk-form, for a server-wide OPTIONS.
            return target, headers
        if method == "CONNECT":
            return None

        return to_origin_form(target, headers)

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


def _why_refused(method: str) -> tuple[int, str]:
    """The status and reason for a request target the proxy will not forward."""
    if method == "CONNECT":
        return 501, "CONNECT is not supported: this proxy opens no tunnels"

    return 400, "expected a path, or an http(s) URL without userinfo"


def _check_head(version: str, headers: list[tuple[str, str]]) -> None:
    """Refuse what llhttp lets through but RFC 9112 forbids a server to take."""
    if version not in ("1.1", "1.0"):
        # llhttp takes a request line without a version as HTTP/0.9, which has
        # no headers: nothing to route or forward on.
        raise _BadRequest(505, "expected HTTP/1.0 or HTTP/1.1")
    hosts = 0
    for name, value in headers:
        if len(name) == 4 and name.lower() == "host":
            hosts += 1
        elif len(name) == 17 and name.lower() == "transfer-encoding":
            codings = [c.strip().lower() for c in value.split(",")]
            if codings != ["chunked"]:
                # RFC 9112 section 6.1: chunked must be last and only once, and
                # no other coding is understood here (501 would also do; a 400
                # closes a connection whose framing nobody can know).
                raise _BadRequest(400, f"unsupported Transfer-Encoding: {value}")
    # RFC 9112 section 3.2: exactly one Host in an HTTP/1.1 request.
    if hosts > 1:
        raise _BadRequest(400, "more than one Host header")
    if hosts == 0 and version == "1.1":
        raise _BadRequest(400, "missing Host header")


def _body_framing(headers: list[tuple[str, str]]) -> bool:
    """Return whether the request has a body (chunked, or a length above 0)."""
    for name, value in headers:
        size = len(name)
        if size == 17 and name.lower() == "transfer-encoding":
            return True
        if size == 14 and name.lower() == "content-length":
            return value.strip() not in ("", "0")

    return False


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
