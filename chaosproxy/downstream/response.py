"""What the proxy writes to a client: a framed response, or a whole reply.

Responses are framed here: the caller gives the headers and, when it knows it, the
body's length (with the ``Content-Length`` field already among the headers); a body
of unknown length is sent chunked to an HTTP/1.1 client and delimited by closing
the connection for an HTTP/1.0 one. Nothing is invented: no ``Server``, no
``Content-Type``; ``Date`` is added when absent, as RFC 9110 section 6.6.1 asks.

A refusal (:func:`_refusal`) is a JSON body naming the problem: an ``error`` member
by status, from ``_ERROR_NAMES``, and a one-line ``message``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaosproxy.downstream.connection import _Connection
    from chaosproxy.downstream.request import Request

__all__ = ["Reply", "Response", "json_reply"]

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

# A status line's reason phrase, by status, for the answers the proxy writes.
_REASONS = {status.value: status.phrase for status in HTTPStatus}


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
