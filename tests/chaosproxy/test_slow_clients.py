"""Slow clients: a dribbled request head is cut off, a slow body or idle pause is not.

The proxy here allows a request head 400 ms (``limits.header_read_timeout_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
import pytest

from chaosproxy.server import ChaosProxy
from tests.chaosproxy.rawkit import (
    assert_no_tracebacks,
    read_reply,
    read_response,
)
from tests.conftest import ProxyFactory, Upstream, proxy_yaml

HEAD_TIMEOUT_MS = 400
LIMITS = f"limits:\n  header_read_timeout_ms: {HEAD_TIMEOUT_MS}\n"
KEEPALIVE = b"GET /echo/ok HTTP/1.1\r\nHost: p\r\n\r\n"


async def slow_proxy(
    start_proxy: ProxyFactory, upstream: Upstream, limits: str = LIMITS
) -> tuple[ChaosProxy, tuple[str, int]]:
    """Start a proxy with the short head deadline; return it and its address."""
    proxy = await start_proxy(proxy_yaml(upstream.url, limits))
    assert proxy.address is not None
    return proxy, proxy.address


async def dribble(
    address: tuple[str, int], opening: bytes = b""
) -> tuple[float, bytes, bool]:
    """Send ``opening`` then one header byte per 50 ms until the proxy answers.

    Returns the seconds until the connection closed, what arrived, and whether it
    closed.
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*address)

    async def trickle() -> None:
        writer.write(opening + b"GET /echo/slow HTTP/1.1\r\nHost: p\r\nX-Slow: ")
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(0.05)
                writer.write(b"a")
                await writer.drain()

    sender = asyncio.create_task(trickle(), name="test-dribble")
    try:
        reply = await read_reply(reader, 5.0)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()

    return time.monotonic() - started, reply.data, reply.closed


async def test_dribbled_heads_get_408_while_everyone_else_is_served(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twenty slowloris connections each get 408 in time; ordinary requests flow."""
    caplog.set_level(logging.DEBUG)
    proxy, address = await slow_proxy(start_proxy, upstream)
    slow = [asyncio.create_task(dribble(address)) for _ in range(20)]

    latencies = []
    for _ in range(20):
        began = time.monotonic()
        async with client.get(proxy.url + "/echo/ok") as resp:
            assert resp.status == 200
            await resp.read()
        latencies.append(time.monotonic() - began)
        await asyncio.sleep(0.02)
    results = await asyncio.gather(*slow)

    assert max(latencies) < 0.3
    for seconds, data, closed in results:
        assert closed
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b'"error": "request_timeout"' in data
        assert HEAD_TIMEOUT_MS / 1000 <= seconds < HEAD_TIMEOUT_MS / 1000 + 0.5
    assert upstream.hits["/echo/slow"] == 0
    assert any(r.getMessage() == "request head too slow" for r in caplog.records)
    assert_no_tracebacks(caplog)


async def test_connection_that_sends_nothing_is_closed_without_an_answer(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A connection that never starts a request is closed at the head deadline."""
    _, address = await slow_proxy(start_proxy, upstream)
    began = time.monotonic()
    reader, writer = await asyncio.open_connection(*address)

    reply = await read_reply(reader, 3.0)
    writer.close()

    assert reply.closed
    assert reply.data == b""
    assert time.monotonic() - began < HEAD_TIMEOUT_MS / 1000 + 0.5


async def test_slow_body_is_not_cut_by_the_head_deadline(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A head sent at once and a body dribbled over a second arrive whole."""
    _, address = await slow_proxy(start_proxy, upstream)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: 10\r\n\r\n")
    for _ in range(10):
        await asyncio.sleep(0.1)
        writer.write(b"b")
        await writer.drain()

    status, body = await read_response(reader)
    writer.close()

    assert status == 200
    assert b'"bytes": 10' in body


async def test_slow_upstream_answer_is_not_cut_by_the_head_deadline(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """An upstream that thinks for twice the head deadline still answers the client."""
    _, address = await slow_proxy(start_proxy, upstream)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"GET /slow/%d HTTP/1.1\r\nHost: p\r\n\r\n" % (2 * HEAD_TIMEOUT_MS))

    status, body = await read_response(reader)
    writer.close()

    assert (status, body) == (200, b"slow")


async def test_idle_pause_between_requests_is_not_cut_by_the_head_deadline(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A connection idle for twice the head deadline still serves its next request."""
    _, address = await slow_proxy(start_proxy, upstream)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(KEEPALIVE)
    first, _ = await read_response(reader)

    await asyncio.sleep(2 * HEAD_TIMEOUT_MS / 1000)
    writer.write(KEEPALIVE)
    second, _ = await read_response(reader)
    writer.close()

    assert (first, second) == (200, 200)


async def test_dribbled_second_head_on_a_kept_alive_connection_gets_408(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """The deadline applies to every head on a connection, not only the first."""
    _, address = await slow_proxy(start_proxy, upstream)

    seconds, data, closed = await dribble(address, opening=KEEPALIVE)

    assert closed
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"HTTP/1.1 408 Request Timeout\r\n" in data
    assert seconds < HEAD_TIMEOUT_MS / 1000 + 0.5


async def test_keepalive_timeout_closes_an_idle_connection(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A kept-alive connection idle past keepalive_timeout_ms is closed by the proxy."""
    limits = "limits:\n  keepalive_timeout_ms: 300\n"
    _, address = await slow_proxy(start_proxy, upstream, limits)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(KEEPALIVE)
    status, _ = await read_response(reader)
    began = time.monotonic()

    reply = await read_reply(reader, 3.0)
    writer.close()

    assert status == 200
    assert reply.closed
    assert reply.data == b""
    assert 0.25 <= time.monotonic() - began < 1.5
