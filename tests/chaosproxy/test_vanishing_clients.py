"""Clients that vanish or break off mid-request: no traceback, no truncated upload.

The danger in a proxy is quiet: a client that disappears half-way through a chunked
upload must not become a complete, shorter request at the upstream. These tests send
part of a request on a raw socket, make it vanish, and check what the upstream saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.chaosproxy.rawkit import abort, assert_no_tracebacks, read_reply
from tests.conftest import ProxyFactory, catch_all, pattern_bytes, proxy_yaml, serve_app


@dataclass
class RecordingUpstream:
    """An upstream that notes each request head and each body read to its end."""

    url: str = ""
    heads: list[str] = field(default_factory=list)
    completed: list[tuple[str, int]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Read the whole body, then answer; a big download for /download."""
        self.heads.append(request.path)
        try:
            body = await request.read()
        except (asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
            # aiohttp cancels the handler of a connection that was lost.
            self.broken.append(request.path)
            raise
        self.completed.append((request.path, len(body)))
        if request.path == "/download":
            return web.Response(body=pattern_bytes(8 << 20))
        return web.Response(text=f"got {len(body)}")


@pytest.fixture
async def recording() -> AsyncIterator[RecordingUpstream]:
    """A recording upstream on loopback."""
    upstream = RecordingUpstream()
    async with serve_app(catch_all(upstream.handle)) as upstream.url:
        yield upstream


async def wait_for(condition: object, seconds: float = 5.0) -> None:
    """Poll ``condition`` (a callable) until it is true."""
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def still_serves(url: str) -> None:
    """A fresh client still gets an ordinary answer through the proxy."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/after", data=b"abc") as resp,
    ):
        assert (resp.status, await resp.text()) == (200, "got 3")


HEADS = {
    "content-length": b"Content-Length: 1000000\r\n",
    "chunked": b"Transfer-Encoding: chunked\r\n",
}


@pytest.mark.parametrize("framing", list(HEADS))
@pytest.mark.parametrize("vanish", ["close", "reset"])
async def test_client_vanishing_mid_upload_never_completes_the_upstream_request(
    framing: str,
    vanish: str,
    recording: RecordingUpstream,
    start_proxy: ProxyFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Half an upload then gone: the upstream never reads a complete, shorter body."""
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(proxy_yaml(recording.url))
    assert proxy.address is not None
    _, writer = await asyncio.open_connection(*proxy.address)
    piece = b"x" * 65536
    if framing == "chunked":
        piece = b"%x\r\n%b\r\n" % (len(piece), piece)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: p\r\n" + HEADS[framing] + b"\r\n")
    writer.write(piece)
    await writer.drain()
    await wait_for(lambda: "/upload" in recording.heads)

    if vanish == "reset":
        abort(writer)
    else:
        writer.close()
    await wait_for(lambda: "/upload" in recording.broken)

    assert recording.completed == []
    await still_serves(proxy.url)
    assert_no_tracebacks(caplog)


async def test_bad_chunk_after_the_head_was_forwarded_breaks_the_upstream_request(
    recording: RecordingUpstream,
    start_proxy: ProxyFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bad chunk size mid-body: the client's connection ends, the upload breaks."""
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(proxy_yaml(recording.url))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(b"5\r\nhello\r\n")
    await writer.drain()
    await wait_for(lambda: "/upload" in recording.heads)

    writer.write(b"zz\r\nhello\r\n0\r\n\r\n")
    reply = await read_reply(reader, 5.0)

    assert reply.closed
    assert reply.status is None or 400 <= reply.status < 600
    await wait_for(lambda: "/upload" in recording.broken)
    assert recording.completed == []
    writer.close()
    await still_serves(proxy.url)
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize("vanish", ["close", "reset"])
async def test_client_vanishing_mid_download_leaves_the_proxy_serving(
    vanish: str,
    recording: RecordingUpstream,
    start_proxy: ProxyFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Gone after the first bytes of an 8 MiB answer: no traceback, others served."""
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(proxy_yaml(recording.url))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"GET /download HTTP/1.1\r\nHost: p\r\n\r\n")
    await writer.drain()
    first = await reader.read(65536)
    assert first.startswith(b"HTTP/1.1 200")

    if vanish == "reset":
        abort(writer)
    else:
        writer.close()
    await wait_for(lambda: len(proxy.sink.observer.get_observations()) == 1)

    await still_serves(proxy.url)
    assert_no_tracebacks(caplog)


async def test_client_vanishing_before_the_answer_is_recorded_as_499(
    start_proxy: ProxyFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Gone while the upstream thinks: recorded as 499, nothing logged as an error."""
    caplog.set_level(logging.DEBUG)
    slow = web.Application()

    async def think(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    slow.router.add_get("/slow", think)
    async with serve_app(slow) as slow_url:
        proxy = await start_proxy(proxy_yaml(slow_url))
        assert proxy.address is not None
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: p\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        abort(writer)
        await wait_for(lambda: len(proxy.sink.observer.get_observations()) == 1)

    [point] = proxy.sink.observer.get_observations()
    assert point.details["status"] == 499
    assert_no_tracebacks(caplog)
