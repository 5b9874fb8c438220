"""The client-facing server itself: framing, connections, and its own failures."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web

from chaosproxy.accept import Acceptor, listening_sockets
from chaosproxy.config import parse_config
from chaosproxy.downstream import DownstreamServer, Request, Response
from chaosproxy.limits import Limits
from chaosproxy.server import ChaosProxy
from tests.chaosproxy.rawkit import exchange, read_response
from tests.conftest import (
    ProxyFactory,
    Upstream,
    catch_all,
    pattern_bytes,
    proxy_yaml,
    serve_app,
)


async def test_failure_of_the_proxys_own_is_a_json_500_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises: the client gets JSON 500, the log the traceback."""

    async def broken(request: Request, response: Response) -> None:
        raise RuntimeError("handler bug")

    server = DownstreamServer(broken, Limits)
    sockets = listening_sockets("127.0.0.1", 0)
    acceptor = Acceptor(asyncio.get_running_loop(), sockets, server)
    await acceptor.start_serving()
    host, port = sockets[0].getsockname()[:2]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/x") as resp,
        ):
            assert resp.status == 500
            assert (await resp.json())["error"] == "proxy_failure"
    finally:
        acceptor.close()
        await server.shutdown(1.0)

    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (record.name, record.getMessage()) == (
        "chaosproxy.downstream",
        "request failed",
    )
    assert record.exc_info is not None
    assert "handler bug" in str(record.exc_info[1])


# -- framing and connection handling, on the wire -----------------------------------


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Three requests sent in one write get three answers, in the order sent."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(
        b"GET /slow/150 HTTP/1.1\r\nHost: p\r\n\r\n"
        b"GET /echo/second HTTP/1.1\r\nHost: p\r\n\r\n"
        b"GET /echo/third HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    )
    answers = [await read_response(reader) for _ in range(3)]
    assert await reader.read() == b""
    writer.close()

    assert [status for status, _ in answers] == [200, 200, 200]
    assert json.loads(answers[1][1])["raw_path"] == "/echo/second"
    assert json.loads(answers[2][1])["raw_path"] == "/echo/third"
    assert [hit["raw"] for hit in upstream.requests] == [
        "/slow/150",
        "/echo/second",
        "/echo/third",
    ]


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A client that waits for 100 Continue gets it, sends its body, gets the echo."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    status, body = await read_response(reader)
    writer.close()

    assert status == 200
    assert json.loads(body)["bytes"] == 5


async def test_http_1_0_client_gets_a_close_delimited_body_and_a_closed_connection(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """No chunked coding for HTTP/1.0: a body of unknown length ends at the close."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None

    reply = await exchange(proxy.address, b"GET /stream/5000 HTTP/1.0\r\n\r\n")

    assert reply.closed
    head = reply.data.partition(b"\r\n\r\n")[0].lower()
    assert reply.data.startswith(b"HTTP/1.0 200 ")
    assert b"transfer-encoding" not in head
    assert reply.body == pattern_bytes(5000)


async def test_http_1_0_keep_alive_is_honoured_when_the_length_is_known(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """HTTP/1.0 with Connection: keep-alive keeps the connection for a second one."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    request = b"GET /bytes/10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    writer.write(request)
    first = await read_response(reader)
    writer.write(request)
    second = await read_response(reader)
    writer.close()

    assert first == second == (200, pattern_bytes(10))


async def test_a_value_keeps_no_trailing_whitespace_and_date_is_added_only_when_absent(
    start_proxy: ProxyFactory,
) -> None:
    """Trailing whitespace is not part of a value; the upstream's Date is kept as is."""
    seen: list[str] = []

    async def dated(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Padded"])
        return web.Response(
            text="ok", headers={"Date": "Sun, 06 Nov 1994 08:49:37 GMT"}
        )

    async with serve_app(catch_all(dated)) as url:
        proxy = await start_proxy(proxy_yaml(url))
        assert proxy.address is not None
        reply = await exchange(
            proxy.address,
            b"GET / HTTP/1.1\r\nHost: p\r\nX-Padded: value \t \r\n"
            b"Connection: close\r\n\r\n",
        )

    assert seen == ["value"]
    head = reply.data.partition(b"\r\n\r\n")[0]
    assert head.count(b"Date: ") == 1
    assert b"Date: Sun, 06 Nov 1994 08:49:37 GMT" in head


async def test_a_handler_that_never_answers_gets_a_json_500_on_its_behalf() -> None:
    """A handler that returns without a response: the client is not left waiting."""

    async def silent(request: Request, response: Response) -> None:
        return None

    server = DownstreamServer(silent, Limits)
    sockets = listening_sockets("127.0.0.1", 0)
    acceptor = Acceptor(asyncio.get_running_loop(), sockets, server)
    await acceptor.start_serving()
    try:
        address = sockets[0].getsockname()[:2]
        reply = await exchange(address, b"GET /x HTTP/1.1\r\nHost: p\r\n\r\n", wait=1)
    finally:
        acceptor.close()
        await server.shutdown(1.0)

    assert reply.status == 500
    assert json.loads(reply.body)["error"] == "proxy_failure"


async def test_shutdown_lets_a_request_in_flight_finish_and_closes_idle_ones(
    upstream: Upstream,
) -> None:
    """Idle kept-alive connections close at once; a request in flight is answered."""
    proxy = ChaosProxy(parse_config(proxy_yaml(upstream.url)), shutdown_grace=5)
    await proxy.start()
    assert proxy.address is not None
    idle_reader, idle_writer = await asyncio.open_connection(*proxy.address)
    idle_writer.write(b"GET /echo/idle HTTP/1.1\r\nHost: p\r\n\r\n")
    await read_response(idle_reader)
    busy_reader, busy_writer = await asyncio.open_connection(*proxy.address)
    busy_writer.write(b"GET /slow/300 HTTP/1.1\r\nHost: p\r\n\r\n")
    await asyncio.sleep(0.1)

    stopping = asyncio.create_task(proxy.stop())
    assert await asyncio.wait_for(idle_reader.read(), 1) == b""
    status, _ = await read_response(busy_reader)
    await stopping
    idle_writer.close()
    busy_writer.close()

    assert status == 200


async def test_a_body_still_arriving_after_a_fault_answered_is_read_and_dropped(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """The client gets the fault's 503, finishes its upload, and reuses the connection.

    Closing at once would reset a client still sending, which would then see a
    connection error instead of the injected 503.
    """
    body_rule = "routes:\n  - name: up\n    match: {path: /upload}\n"
    faults = "    faults:\n      - {fault_type: error, error_code: 503}\n"
    proxy = await start_proxy(proxy_yaml(upstream.url, body_rule + faults))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    size = 4 * 1024 * 1024
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n" % size
    )
    writer.write(b"x" * 65536)
    status, _ = await asyncio.wait_for(read_response(reader), 2)
    writer.write(b"x" * (size - 65536))
    writer.write(b"GET /echo/after HTTP/1.1\r\nHost: p\r\n\r\n")
    after, echoed = await asyncio.wait_for(read_response(reader), 5)
    writer.close()

    assert status == 503
    assert after == 200
    assert json.loads(echoed)["raw_path"] == "/echo/after"
    assert [hit["raw"] for hit in upstream.requests] == ["/echo/after"]


async def test_a_client_waiting_for_100_continue_is_answered_and_closed(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A fault answers before the body was asked for: the answer, then a close."""
    rule = "routes:\n  - name: up\n    match: {path: /upload}\n"
    faults = "    faults:\n      - {fault_type: resource_exhaustion}\n"
    proxy = await start_proxy(proxy_yaml(upstream.url, rule + faults))
    assert proxy.address is not None

    reply = await exchange(
        proxy.address,
        b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )

    assert reply.status == 429
    assert reply.closed
    assert b"100 Continue" not in reply.data
