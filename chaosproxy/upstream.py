"""The upstream side: a keep-alive connection pool, and the boundary for its errors.

Every failure of an exchange with the upstream is translated here, and only here,
into an :class:`UpstreamError` with a kind a user can act on::

    unreachable  connecting failed (refused, no route, name not found)   -> 502
    timeout      no response headers within upstream_timeout_ms         -> 504
    protocol     the upstream broke HTTP (reset, garbage, closed early) -> 502

The client is transparent on purpose: it sends the head the proxy built and nothing
of its own (no cookie jar, no redirects, no default headers), leaves bodies as they
are (compressed ones included), and adds only ``Host`` and, for a body of unknown
length, chunked framing. The exchanges themselves are in :mod:`chaosproxy.http1`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Literal

from chaosproxy.addresses import parse_upstream
from chaosproxy.downstream import Reply, RequestBody, json_reply
from chaosproxy.http1 import ResponseHead, UpstreamConnection, UpstreamProtocolError

__all__ = ["Upstream", "UpstreamError", "UpstreamResponse"]

logger = logging.getLogger(__name__)

UpstreamErrorKind = Literal["unreachable", "timeout", "protocol"]

_STATUS_BY_KIND: dict[UpstreamErrorKind, int] = {
    "unreachable": 502,
    "timeout": 504,
    "protocol": 502,
}

# An idle connection older than this is closed rather than reused: upstreams drop
# idle keep-alive connections after a while (nginx after 75 s, many sooner), and a
# request sent into one that is closing fails.
_IDLE_SECONDS = 15.0

# Waits (connecting aside) are timed by one sweep over the busy connections, about
# eight times per upstream_timeout_ms, within these bounds: a 30 s timeout is
# kept to within half a second, a 200 ms one to 25 ms.
_SWEEP_MIN_SECONDS = 0.005
_SWEEP_MAX_SECONDS = 0.5

# RFC 9110 section 9.2.2 and RFC 9112 section 9.3.1: only an idempotent request may
# be sent again after its connection failed unanswered, since the upstream may
# have read the first copy and acted on it before the connection went.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamError(Exception):
    """The upstream could not give a response; ``kind`` says why."""

    def __init__(self, kind: UpstreamErrorKind, message: str) -> None:
        """Record the ``kind`` of failure and a message for the client."""
        super().__init__(message)
        self.kind: UpstreamErrorKind = kind
        self.message = message

    @property
    def status(self) -> int:
        """The status the client is answered with: 502, or 504 for a timeout."""
        return _STATUS_BY_KIND[self.kind]

    def to_reply(self) -> Reply:
        """Build the client's answer: the status and a JSON body naming the kind."""
        document = {"error": f"upstream_{self.kind}", "message": self.message}
        return json_reply(self.status, document)


def _translate(exc: BaseException, timeout_ms: int) -> UpstreamError:
    """Turn a failed exchange's exception into an :class:`UpstreamError`."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamError(
            "timeout", f"upstream sent no response within {timeout_ms} ms"
        )

    return UpstreamError("protocol", f"upstream broke the exchange: {exc}")


class UpstreamResponse:
    """The upstream's status and headers, and its body to read; release it after."""

    __slots__ = ("_connection", "_pump", "_upstream", "head")

    def __init__(
        self,
        upstream: Upstream,
        connection: UpstreamConnection,
        head: ResponseHead,
        pump: asyncio.Task[None] | None,
    ) -> None:
        """Wrap one exchange on ``connection``; ``pump`` still sends the request."""
        self._upstream = upstream
        self._connection = connection
        self._pump = pump
        self.head = head

    @property
    def status(self) -> int:
        """The response status."""
        return self.head.status

    @property
    def reason(self) -> str:
        """The reason phrase, as sent."""
        return self.head.reason

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header field, in order, repeats included."""
        return self.head.headers

    @property
    def content_length(self) -> int | None:
        """The declared body length, if the upstream declared one."""
        return self.head.content_length

    @property
    def body_ready(self) -> bool:
        """Whether :meth:`read` would return at once (bytes or the end are here)."""
        return self._connection.body_ready

    async def read(self) -> bytes:
        """Return the next body bytes, ``b""`` at the end.

        Raises :class:`UpstreamError` when the body breaks off or stalls.
        """
        try:
            return await self._connection.read()
        except (UpstreamProtocolError, OSError, TimeoutError) as exc:
            raise self._upstream.translate(exc) from exc

    def close(self) -> None:
        """Drop the connection: the body will not be read to its end."""
        self._connection.close()

    def release(self) -> None:
        """Hand the connection back to the pool, or close it if it cannot be reused."""
        self._upstream.release(self._connection, self._pump)


async def _send_body(
    connection: UpstreamConnection, body: RequestBody, chunked: bool
) -> None:
    """Stream the client's request body to the upstream as it arrives."""
    try:
        while chunk := await body.readany():
            if chunked:
                connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                connection.write(chunk)
            await connection.drain()
        if chunked:
            connection.write(b"0\r\n\r\n")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the client left mid-upload, or the upstream did
        connection.fail(UpstreamProtocolError(f"request body broke off: {exc}"))
        connection.close()


class Upstream:
    """A keep-alive connection pool for one upstream origin and base path."""

    def __init__(self, url: str, timeout_ms: int) -> None:
        """Target ``url`` (``scheme://host:port[/base-path]``).

        ``timeout_ms`` bounds connecting plus the wait for response headers, and
        each pause while reading a body.
        """
        parsed = parse_upstream(url)
        self.origin = parsed.origin
        self.base_path = parsed.base_path
        self.timeout_ms = timeout_ms
        self._host = parsed.host
        self._port = parsed.port
        default_port = 443 if parsed.scheme == "https" else 80
        bracketed = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        host = (
            bracketed if parsed.port == default_port else f"{bracketed}:{parsed.port}"
        )
        self._host_line = f"Host: {host}\r\n"
        self._ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self._ssl = ssl.create_default_context()
        self._idle: list[tuple[UpstreamConnection, float]] = []
        self._busy: set[UpstreamConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_every = min(
            _SWEEP_MAX_SECONDS, max(_SWEEP_MIN_SECONDS, timeout_ms / 1000 / 8)
        )

    async def start(self) -> None:
        """Get ready to connect; call once from the running loop."""
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Close every connection, idle or busy."""
        for connection, _ in self._idle:
            connection.close()
        for connection in self._busy:
            connection.close()
        self._idle.clear()
        self._busy.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def request_head(
        self,
        method: str,
        raw_target: str,
        headers: Sequence[tuple[str, str]],
        chunked: bool,
    ) -> bytes:
        """Serialize the request line and headers, the raw target byte for byte."""
        # RFC 9112 section 3.2.4: asterisk-form names the server, not a path under
        # the base path, so it goes as it came.
        target = raw_target if raw_target == "*" else self.base_path + raw_target
        parts = [f"{method} {target} HTTP/1.1\r\n", self._host_line]
        parts.extend(f"{name}: {value}\r\n" for name, value in headers)
        if chunked:
            parts.append("Transfer-Encoding: chunked\r\n")
        parts.append("\r\n")
        # The server decoded the header values this way; this undoes it.
        return "".join(parts).encode("utf-8", "surrogateescape")

    async def open(
        self,
        method: str,
        raw_target: str,
        headers: Sequence[tuple[str, str]],
        body: RequestBody | None,
    ) -> UpstreamResponse:
        """Send the request and return once the response headers have arrived.

        Raises :class:`UpstreamError`. The caller must release the response.
        """
        loop = self._loop
        assert loop is not None, "Upstream.start() was not awaited"
        chunked = body is not None and not any(
            name.lower() == "content-length" for name, _ in headers
        )
        head = self.request_head(method, raw_target, headers, chunked)
        deadline = loop.time() + self.timeout_ms / 1000
        while True:
            connection = await self._acquire(loop, deadline)
            try:
                return await self._exchange(
                    loop, connection, head, method, body, chunked, deadline
                )
            except UpstreamProtocolError as exc:
                # A kept-alive connection the upstream closed while it sat idle
                # fails before any response byte; a bodiless idempotent request
                # is sent again on a new connection. Anything else is the
                # upstream's: a POST it may have acted on is never sent twice.
                stale = exc.before_response and connection.exchanges > 1
                if not (stale and body is None and method in _IDEMPOTENT):
                    raise self.translate(exc) from exc
            except (OSError, TimeoutError) as exc:
                raise self.translate(exc) from exc

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: UpstreamConnection,
        head: bytes,
        method: str,
        body: RequestBody | None,
        chunked: bool,
        deadline: float,
    ) -> UpstreamResponse:
        """Run one exchange on ``connection`` up to the response head."""
        connection.begin(head, bodyless=method == "HEAD")
        pump = None
        if body is not None:
            pump = loop.create_task(
                _send_body(connection, body, chunked), name="chaosproxy-upstream-body"
            )
        connection.deadline = deadline
        try:
            response_head = await connection.response_head()
        except BaseException:
            self.release(connection, pump, broken=True)
            raise
        finally:
            connection.deadline = None

        return UpstreamResponse(self, connection, response_head, pump)

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> UpstreamConnection:
        """Take the most recently used idle connection, or open a new one."""
        idle = self._idle
        oldest = loop.time() - _IDLE_SECONDS
        while idle:
            connection, since = idle.pop()
            if connection.closed:
                continue
            if since < oldest:
                connection.close()
                continue
            self._mark_busy(connection)
            return connection

        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self.timeout_ms / 1000),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                )
        except TimeoutError as exc:
            raise self.translate(exc) from exc
        except OSError as exc:
            raise UpstreamError(
                "unreachable", f"cannot connect to upstream: {exc}"
            ) from exc
        self._mark_busy(connection)

        return connection

    def _mark_busy(self, connection: UpstreamConnection) -> None:
        """Lend ``connection`` to an exchange; sweep its deadlines meanwhile."""
        self._busy.add(connection)
        if self._sweep is None and self._loop is not None:
            self._sweep = self._loop.call_later(
                self._sweep_every, self._check_deadlines
            )

    def _check_deadlines(self) -> None:
        """Time out every exchange whose wait has run out.

        One sweep over the busy connections instead of a timer per wait: a
        timer per request costs more than the whole sweep.
        """
        assert self._loop is not None
        now = self._loop.time()
        for connection in [
            c for c in self._busy if c.deadline is not None and c.deadline <= now
        ]:
            connection.deadline_passed()
        if self._busy:
            self._sweep = self._loop.call_later(
                self._sweep_every, self._check_deadlines
            )
        else:
            self._sweep = None

    def release(
        self,
        connection: UpstreamConnection,
        pump: asyncio.Task[None] | None,
        *,
        broken: bool = False,
    ) -> None:
        """Keep ``connection`` for the next request, or close it.

        It is kept only when the exchange ended cleanly: the whole response read,
        the whole request sent, and neither side asking to close.
        """
        self._busy.discard(connection)
        sending = pump is not None and not pump.done()
        if sending:
            assert pump is not None
            pump.cancel()
        if broken or sending or not connection.reusable:
            connection.close()
            return
        assert self._loop is not None
        self._idle.append((connection, self._loop.time()))

    def translate(self, exc: BaseException) -> UpstreamError:
        """Translate an exception an exchange raised into an :class:`UpstreamError`."""
        return _translate(exc, self.timeout_ms)
