"""Upstreams that break HTTP: the right 502 or 504, a record of why, no bad reuse.

Each upstream here is a raw socket server whose first connection follows a script
(it misbehaves in one way) while every later one answers ``200 ok``. After each
failure the test sends a second request and checks that it was answered on a new
connection: the one that went wrong was not kept in the pool. What happened is
checked where a user looks: the observation's ``upstream_error`` and the access log.

What a client gets (decided here, and listed in docs/reliability.md):

- the upstream fails before its response head is complete: ``502`` with
  ``upstream_protocol`` (``upstream_unreachable`` when nothing listens), ``504``
  with ``upstream_timeout`` when it is silent; the request reached it once;
- the body breaks off (closed, stalled, malformed chunk): the head has gone out, so
  the client's connection is closed and the client sees a cut body;
- the body runs past its ``Content-Length``: the client gets exactly the declared
  bytes, and the connection that over-ran is closed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.chaosproxy.rawkit import assert_no_tracebacks
from tests.conftest import ProxyFactory, proxy_yaml

GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
TIMEOUT_MS = 400


@dataclass
class ScriptedUpstream:
    """A raw upstream: connection 1 runs ``first``; the others answer ``GOOD``."""

    first: Script
    url: str = ""
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Run the script of this connection; every head read is noted."""
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        try:
            if self.connections == 1:
                await self.first(self, reader, writer)
            else:
                while True:
                    await self.read_head(reader)
                    writer.write(GOOD)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request head and note it."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head


Script = Callable[
    [ScriptedUpstream, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]
StartScripted = Callable[[Script], Awaitable[ScriptedUpstream]]


@pytest.fixture
async def scripted() -> AsyncIterator[StartScripted]:
    """Start scripted upstreams on loopback; all are stopped when the test ends."""
    running: list[tuple[asyncio.Server, ScriptedUpstream]] = []

    async def start(first: Script) -> ScriptedUpstream:
        upstream = ScriptedUpstream(first)
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
        upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        running.append((server, upstream))
        return upstream

    yield start
    for server, upstream in running:
        server.close()
        for task in list(upstream.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.wait_closed()


def reply(data: bytes, linger: float = 0.0) -> Script:
    """A script: read the request head, send ``data``, wait ``linger`` s, close."""

    async def script(
        upstream: ScriptedUpstream,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        await upstream.read_head(reader)
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(linger)

    return script


async def reset(
    upstream: ScriptedUpstream,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Read the request head, then vanish with a TCP reset."""
    await upstream.read_head(reader)
    abort(writer)


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset rather than an orderly close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# The late answer a silent upstream finally sends: no request may ever get it.
LATE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"


async def _answer_late(
    upstream: ScriptedUpstream,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Read the request head; answer only well after the proxy's deadline."""
    await upstream.read_head(reader)
    await asyncio.sleep(3 * TIMEOUT_MS / 1000)
    writer.write(LATE)
    await writer.drain()
    await asyncio.sleep(1)


BEFORE_HEAD = [
    pytest.param(reset, 502, "protocol", id="reset"),
    pytest.param(reply(b""), 502, "protocol", id="closed-before-answer"),
    pytest.param(reply(b"SPROCKETS 9000 what\r\n\r\n"), 502, "protocol",
                 id="garbage-status-line"),
    pytest.param(reply(b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok"), 502,
                 "protocol", id="status-below-100"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                 502, "protocol", id="length-and-chunked"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                       b"Content-Length: 7\r\n\r\nok"),
                 502, "protocol", id="two-lengths"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n"
                       b"Content-Length: 2\r\n\r\nok"),
                 502, "protocol", id="nul-in-header"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\n"
                       b"Content-Length: 2\r\n\r\nok"),
                 502, "protocol", id="folded-header"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\n"
                       + b"".join(b"X-H%d: v\r\n" % n for n in range(500))
                       + b"Content-Length: 2\r\n\r\nok"),
                 502, "protocol", id="too-many-headers"),
    pytest.param(reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                       b"Connection: Upgrade\r\n\r\n"),
                 502, "protocol", id="switches-protocols"),
    pytest.param(_answer_late, 504, "timeout", id="never-answers"),
]  # fmt: skip


@pytest.mark.parametrize(("script", "status", "kind"), BEFORE_HEAD)
async def test_upstream_failing_before_its_head_gets_a_json_error(
    script: Script,
    status: int,
    kind: str,
    scripted: StartScripted,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """502 (504 if silent) naming the kind; reached once; next request on a new one."""
    caplog.set_level(logging.INFO)
    upstream = await scripted(script)
    proxy = await start_proxy(proxy_yaml(upstream.url, upstream_timeout_ms=TIMEOUT_MS))

    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == status
        assert (await resp.json())["error"] == f"upstream_{kind}"
    async with client.get(proxy.url + "/y") as resp:
        assert (resp.status, await resp.read()) == (200, b"ok")

    assert [head.split(b" ")[1] for head in upstream.heads] == [b"/x", b"/y"]
    assert upstream.connections == 2
    failed, answered = proxy.sink.observer.get_observations()
    assert failed.details["upstream_error"] == kind
    assert "upstream_error" not in answered.details
    assert access_errors(caplog) == [kind, None]
    assert_no_tracebacks(caplog)


def access_errors(caplog: pytest.LogCaptureFixture) -> list[object]:
    """The ``upstream_error`` of each access-log line, None where there is none."""
    return [
        getattr(record, "upstream_error", None)
        for record in caplog.records
        if record.name == "chaosproxy.access"
    ]


async def test_unreachable_upstream_gets_502_unreachable(
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listening: 502 ``upstream_unreachable``, logged as such."""
    caplog.set_level(logging.INFO)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await start_proxy(proxy_yaml(f"http://127.0.0.1:{port}"))

    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 502
        assert (await resp.json())["error"] == "upstream_unreachable"

    [point] = proxy.sink.observer.get_observations()
    assert point.details["upstream_error"] == "unreachable"
    assert access_errors(caplog) == ["unreachable"]


MID_BODY = [
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40),
                 "protocol", id="closed-mid-body"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40,
                       linger=3 * TIMEOUT_MS / 1000),
                 "timeout", id="stalls-mid-body"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n", linger=0.5),
                 "protocol", id="bad-chunk-size"),
    pytest.param(reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"a\r\nhel"),
                 "protocol", id="closed-mid-chunk"),
]  # fmt: skip


@pytest.mark.parametrize(("script", "kind"), MID_BODY)
async def test_upstream_body_breaking_off_reaches_the_client_as_a_cut_body(
    script: Script,
    kind: str,
    scripted: StartScripted,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The head went out, so the client's body breaks off; the record says why."""
    caplog.set_level(logging.INFO)
    upstream = await scripted(script)
    proxy = await start_proxy(proxy_yaml(upstream.url, upstream_timeout_ms=TIMEOUT_MS))

    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    async with client.get(proxy.url + "/y") as resp:
        assert (resp.status, await resp.read()) == (200, b"ok")

    assert upstream.connections == 2
    failed, _ = proxy.sink.observer.get_observations()
    assert failed.details["upstream_error"] == kind
    assert access_errors(caplog) == [kind, None]
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("script", "status", "body"),
    [
        pytest.param(
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello-and-more", 0.3),
            200,
            b"hello",
            id="more-than-content-length",
        ),
        pytest.param(
            reply(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", 0.3),
            204,
            b"",
            id="body-after-204",
        ),
    ],
)
async def test_upstream_sending_more_than_its_framing_is_cut_and_not_reused(
    script: Script,
    status: int,
    body: bytes,
    scripted: StartScripted,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """The client gets exactly the framed bytes; the over-running connection goes."""
    upstream = await scripted(script)
    proxy = await start_proxy(proxy_yaml(upstream.url))

    async with client.get(proxy.url + "/x") as resp:
        assert (resp.status, await resp.read()) == (status, body)
    async with client.get(proxy.url + "/y") as resp:
        assert (resp.status, await resp.read()) == (200, b"ok")

    assert upstream.connections == 2


async def _answer_then_reset(
    upstream: ScriptedUpstream,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer the first request, read the second, then reset without answering."""
    await upstream.read_head(reader)
    writer.write(GOOD)
    await writer.drain()
    await upstream.read_head(reader)
    abort(writer)


@pytest.mark.parametrize(
    ("method", "status", "sent"),
    [
        pytest.param("GET", 200, 2, id="idempotent-get-sent-again"),
        pytest.param("DELETE", 200, 2, id="idempotent-delete-sent-again"),
        pytest.param("POST", 502, 1, id="post-never-sent-twice"),
        pytest.param("PATCH", 502, 1, id="patch-never-sent-twice"),
    ],
)
async def test_request_lost_on_a_reused_connection_is_resent_only_if_idempotent(
    method: str,
    status: int,
    sent: int,
    scripted: StartScripted,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """A reset with no answer: GET and DELETE may go again (RFC 9110 9.2.2), POST not.

    The upstream read the request before it reset, so it may have acted on it; only
    an idempotent request can be sent again without risk of doing it twice.
    """
    upstream = await scripted(_answer_then_reset)
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/warm") as resp:
        assert await resp.read() == b"ok"

    async with client.request(method, proxy.url + "/act") as resp:
        assert resp.status == status
        await resp.read()

    acted = [head for head in upstream.heads if b" /act " in head]
    assert len(acted) == sent


async def test_connection_left_mid_body_by_a_vanished_client_is_not_reused(
    scripted: StartScripted,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """A client gone mid-download leaves an unread body: that connection is closed."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"
    upstream = await scripted(reply(head + b"b" * 65536, linger=2.0))
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"GET /x HTTP/1.1\r\nHost: p\r\n\r\n")
    assert (await reader.read(1024)).startswith(b"HTTP/1.1 200 OK")
    abort(writer)

    async with client.get(proxy.url + "/y") as resp:
        assert (resp.status, await resp.read()) == (200, b"ok")
    assert upstream.connections == 2
