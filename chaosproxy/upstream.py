"""The upstream side: one pooled HTTP client, and the boundary where its errors end.

Every aiohttp client exception is translated here, and only here, into an
:class:`UpstreamError` with a kind a user can act on::

    unreachable  connecting failed (refused, no route, name not found)   -> 502
    timeout      no response headers within upstream_timeout_ms         -> 504
    protocol     the upstream broke HTTP (reset, garbage, closed early) -> 502

The client is transparent on purpose: no cookie jar (a Set-Cookie meant for the
client must not be replayed to the upstream), no redirects followed, bodies left
compressed, and none of the default headers aiohttp would add for its own requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

__all__ = ["Upstream", "UpstreamError"]

logger = logging.getLogger(__name__)

UpstreamErrorKind = Literal["unreachable", "timeout", "protocol"]

_STATUS_BY_KIND: dict[UpstreamErrorKind, int] = {
    "unreachable": 502,
    "timeout": 504,
    "protocol": 502,
}

# Headers aiohttp's client adds to requests that lack them; a proxy adds none.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


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

    def to_response(self) -> web.Response:
        """Build the client's answer: the status and a JSON body naming the kind."""
        body = json.dumps({"error": f"upstream_{self.kind}", "message": self.message})
        return web.Response(
            status=self.status, text=body, content_type="application/json"
        )


def _translate(exc: BaseException, timeout_ms: int) -> UpstreamError:
    """Turn an aiohttp or socket exception into an :class:`UpstreamError`."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(
            "timeout", f"upstream sent no response within {timeout_ms} ms"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("unreachable", f"cannot connect to upstream: {exc}")

    return UpstreamError("protocol", f"upstream broke the exchange: {exc}")


class Upstream:
    """A pooled, keep-alive HTTP client for one upstream origin and base path."""

    def __init__(self, url: str, timeout_ms: int, pool_size: int = 0) -> None:
        """Target ``url`` (``scheme://host:port[/base-path]``).

        ``timeout_ms`` bounds connecting, the wait for response headers and each
        pause while reading a body. ``pool_size`` caps open connections (0: none).
        """
        parsed = URL(url)
        self.origin = str(parsed.origin())
        self.base_path = parsed.raw_path.rstrip("/")
        self.timeout_ms = timeout_ms
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool; call once from the running loop."""
        seconds = self.timeout_ms / 1000
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, enable_cleanup_closed=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=seconds, sock_read=seconds
            ),
        )

    async def close(self) -> None:
        """Close the pool and every connection in it."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, raw_target: str) -> URL:
        """Join the base path and the client's raw path and query, byte for byte."""
        return URL(f"{self.origin}{self.base_path}{raw_target}", encoded=True)

    async def open(
        self,
        method: str,
        raw_target: str,
        headers: CIMultiDict[str],
        body: aiohttp.StreamReader | None,
    ) -> aiohttp.ClientResponse:
        """Send the request and return once the response headers have arrived.

        Raises :class:`UpstreamError`. The caller must release the response.
        """
        assert self._session is not None, "Upstream.start() was not awaited"
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):
                return await self._session.request(
                    method,
                    self.url_for(raw_target),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    compress=None,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _translate(exc, self.timeout_ms) from exc

    def translate(self, exc: BaseException) -> UpstreamError:
        """Translate an error raised while reading an upstream body."""
        return _translate(exc, self.timeout_ms)
