"""The client-facing side: which request heads the proxy takes, and how it refuses.

aiohttp parses every request head; :class:`DownstreamServer` sets the bounds it
parses within (:class:`~chaosproxy.limits.Limits`) and adds what a proxy needs and
aiohttp's server lacks:

- a deadline on each request head (slowloris), counted from the head's first byte,
  or from the opening of the connection for the first request. The wait between
  requests on a kept-alive connection is the keep-alive timeout's business, and a
  slow body is the upstream's: neither counts;
- a malformed request is answered in the proxy's own words, a JSON body naming the
  problem and a closed connection, and logged as one WARNING line on
  ``chaosproxy.downstream``, never as a traceback;
- the request target is settled before routing. An absolute-form target
  (``GET http://elsewhere/x``) becomes origin-form, its authority the ``Host``
  (RFC 9112 section 3.2.2): the proxy forwards it to its own upstream, never to
  the authority named. CONNECT is refused: the proxy opens no tunnels.

What a client gets::

    malformed head or framing (RFC 9112 sections 2-6)      400, connection closed
    request line over max_request_line_bytes               414 (RFC 9112 section 3)
    header line over max_header_line_bytes, too many       431 (RFC 6585 section 5)
    head not complete within header_read_timeout_ms        408, connection closed
    absolute-form target: other scheme, or userinfo        400 (RFC 9110 4.2.4)
    malformed body framing once the request is under way  connection closed
    CONNECT                                                501 (RFC 9110 9.1)
    HTTP/0.9 (a request line without a version)           505

Requests refused here never reach the router: they are not observations, only log
lines. The per-head deadline leans on two attributes of aiohttp's RequestHandler
(``_waiter``, set while it waits for a head, and ``_request_count``); the tests in
``tests/chaosproxy/test_hostile_clients.py`` pin that behaviour.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from chaosproxy.limits import Limits

__all__ = ["DownstreamServer", "to_origin_form"]

logger = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

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


def _refusal(status: int, message: str) -> web.Response:
    """Build a refusal: ``status``, a JSON body, and the connection closed after."""
    error = _ERROR_NAMES.get(status, _PROXY_FAILURE)
    body = json.dumps({"error": error, "message": message})
    response = web.Response(status=status, text=body, content_type="application/json")
    response.force_close()

    return response


def to_origin_form(message: RawRequestMessage) -> RawRequestMessage:
    """Rewrite an absolute-form request as origin-form, its authority as ``Host``.

    RFC 9112 section 3.2.2: a server that receives an absolute-form target uses its
    authority and ignores the ``Host`` field sent. A target that is not http(s)
    absolute-form, or whose authority carries userinfo (which RFC 9110 section
    4.2.4 asks a recipient to treat as an error), is returned unchanged, for the
    caller to refuse.
    """
    found = _ABSOLUTE_FORM.fullmatch(message.path)
    if found is None or "@" in found[1]:
        return message
    authority, rest = found[1], found[2]
    target = rest if rest.startswith("/") else "/" + rest

    headers = CIMultiDict(message.headers)
    headers["Host"] = authority
    raw_host = authority.encode("utf-8", "surrogateescape")
    raw_headers = [
        (name, value) for name, value in message.raw_headers if name.lower() != b"host"
    ]
    raw_headers.insert(0, (b"Host", raw_host))

    return message._replace(
        path=target,
        url=URL(target, encoded=True),
        headers=CIMultiDictProxy(headers),
        raw_headers=tuple(raw_headers),
    )


class DownstreamServer(web.Server):
    """aiohttp's low-level server with the proxy's limits, deadline and refusals.

    ``limits`` is called for each new connection, so a reload's limits apply to the
    connections opened after it.
    """

    def __init__(self, handler: Handler, limits: Callable[[], Limits]) -> None:
        """Serve ``handler`` every request that is well-formed and servable."""
        super().__init__(
            self._admit,
            request_factory=self._build_request,
            handler_cancellation=True,
        )
        self._proxy_handler = handler
        self._limits = limits
        self._event_loop = asyncio.get_running_loop()

    def __call__(self) -> RequestHandler:
        """Make the protocol for one new client connection."""
        limits = self._limits()

        return _ClientConnection(
            self,
            loop=self._event_loop,
            head_timeout_ms=limits.header_read_timeout_ms,
            keepalive_timeout=limits.keepalive_timeout_ms / 1000,
            max_line_size=limits.max_request_line_bytes,
            max_field_size=limits.max_header_line_bytes,
            max_headers=limits.max_headers,
            access_log=None,
            logger=logger,
        )

    def _build_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        """Wrap a parsed head as a request, its target settled to origin-form."""
        if message.path[:1] != "/":
            message = to_origin_form(message)

        return web.BaseRequest(
            message, payload, protocol, writer, task, self._event_loop
        )

    async def _admit(self, request: web.BaseRequest) -> web.StreamResponse:
        """Pass a servable request to the proxy; refuse any other."""
        target = request.raw_path
        if request.version.major == 1 and (
            target[:1] == "/"
            # RFC 9112 section 3.2.4: asterisk-form, for a server-wide OPTIONS.
            or (target == "*" and request.method == "OPTIONS")
        ):
            return await self._proxy_handler(request)

        status, reason = _why_refused(request)
        logger.warning(
            "request refused",
            extra={"client": request.remote, "method": request.method, "error": reason},
        )

        return _refusal(status, reason)


def _why_refused(request: web.BaseRequest) -> tuple[int, str]:
    """The status and reason for a request the proxy will not forward."""
    if request.version.major != 1:
        # An HTTP/0.9 request has no headers, so nothing to route or forward on.
        return 505, "expected HTTP/1.0 or HTTP/1.1"
    if request.method == "CONNECT":
        return 501, "CONNECT is not supported: this proxy opens no tunnels"

    return 400, "expected a path, or an http(s) URL without userinfo"


class _ClientConnection(RequestHandler):
    """One client connection: aiohttp's handler, with a deadline on each head."""

    def __init__(
        self, manager: web.Server, *, head_timeout_ms: int, **kwargs: Any
    ) -> None:
        """Serve one connection; a request head may take ``head_timeout_ms``."""
        super().__init__(manager, **kwargs)
        self._head_timeout_ms = head_timeout_ms
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False
        # Bytes of the current head's request line so far; None once it ended.
        self._line_bytes: int | None = 0
        self._line_too_long = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the first head's clock as the connection opens."""
        super().connection_made(transport)
        self._begin_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the clock; the connection is gone."""
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; time the head it starts, stop the clock when one ends."""
        if data and self._head_timer is None and self._waiting_for_head():
            self._begin_head()
        if self._head_timer is not None and data:
            self._note_head_bytes(data)
        requests = self._request_count
        in_flight = self._current_request
        super().data_received(data)
        if self._request_count != requests:
            self._stop_head_clock()
            if in_flight is not None and not in_flight.content.is_eof():
                self._abandon_body(in_flight)

    def _abandon_body(self, request: web.BaseRequest) -> None:
        """Fail a body whose framing broke mid-way, and close the connection.

        aiohttp's parser drops such a body without a word, which would leave the
        request waiting for bytes that never come. Failing it makes the upstream
        exchange break off, so the upstream never takes a shortened body as whole;
        closing is the only answer left, since a response may already be under way.
        """
        logger.warning(
            "bad request body",
            extra={"client": request.remote, "method": request.method},
        )
        error = RequestPayloadError("the request body's framing is broken")
        request.content.set_exception(error)
        self.force_close()

    def _waiting_for_head(self) -> bool:
        """Whether the connection is idle between requests, waiting for the next."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _begin_head(self) -> None:
        """Start timing a new request head."""
        self._head_begun = False
        self._line_bytes = 0
        self._line_too_long = False
        self._head_timer = self._loop.call_later(
            self._head_timeout_ms / 1000, self._on_head_timeout
        )

    def _note_head_bytes(self, data: bytes) -> None:
        """Record that the head has begun, and how long its request line is."""
        self._head_begun = True
        if self._line_bytes is None:
            return
        end = data.find(b"\n")
        if end < 0:
            self._line_bytes += len(data)
        else:
            self._line_too_long = self._line_bytes + end > self.max_line_size
            self._line_bytes = None

    def _stop_head_clock(self) -> None:
        """Cancel the head's deadline: the head is complete, or the connection gone."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timeout(self) -> None:
        """Answer 408 to a head that began but did not end in time; close."""
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        peer = self.peername
        client = peer[0] if isinstance(peer, tuple) else None
        if self._head_begun:
            reason = f"no complete request head within {self._head_timeout_ms} ms"
            logger.warning("request head too slow", extra={"client": client})
            transport.write(_raw_refusal(408, reason))
        else:
            logger.debug("silent connection closed", extra={"client": client})
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a malformed request (4xx) or a failure of the proxy's own (5xx)."""
        if request.writer.output_size > 0:
            # The head of another answer is out already; only closing is left.
            raise ConnectionError("response already started")
        if isinstance(exc, HttpProcessingError) and status < 500:
            status, reason = self._classify(exc)
            logger.warning(
                "bad request",
                extra={"client": request.remote, "status": status, "error": reason},
            )
            return _refusal(status, reason)

        logger.error(
            "request failed",
            exc_info=exc,
            extra={"client": request.remote, "method": request.method},
        )
        return _refusal(status, "the proxy failed to handle this request")

    def _classify(self, exc: HttpProcessingError) -> tuple[int, str]:
        """The status and a one-line reason for a request aiohttp could not parse."""
        if isinstance(exc, LineTooLong):
            line_open = self._line_bytes is not None
            if self._line_too_long or line_open:
                return 414, f"request line longer than {self.max_line_size} bytes"
            return 431, f"header line longer than {self.max_field_size} bytes"
        if exc.message.startswith("Too many headers"):
            return 431, f"more than {self.max_headers} header fields"
        # aiohttp's first paragraph names the problem; the next quotes the bytes.
        lines = exc.message.partition("\n\n")[0].splitlines()
        reason = " ".join(line.strip().rstrip(":") for line in lines)

        return 400, reason[:200] or "malformed request"


def _raw_refusal(status: int, message: str) -> bytes:
    """A whole refusal as bytes, for a connection that has no request to answer."""
    body = json.dumps({"error": _ERROR_NAMES[status], "message": message}).encode()
    reason = {408: "Request Timeout"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )

    return head.encode("ascii") + body
