"""The upstream client against upstreams that answer in the awkward ways HTTP allows.

Each upstream here is a raw socket server that writes exactly the bytes a test
gives it, so framing cases an aiohttp upstream would never produce can be tried:
interim 1xx responses, close-delimited bodies, HEAD with a length, idle
connections closed under the proxy, malformed and truncated responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.conftest import ProxyFactory, proxy_yaml

Answer = Callable[[bytes], bytes | None]


@dataclass
class RawUpstream:
    """A socket server that answers each request head with ``answer(head)``.

    ``answer`` returns the bytes to send, or None to close the connection at once;
    after sending, the connection closes if ``close_after`` is set.
    """

    answer: Answer
    close_after: bool = False
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    url: str = ""

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer request heads on one connection until it closes."""
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                reply = self.answer(head)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


StartRaw = Callable[..., Awaitable[RawUpstream]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[StartRaw]:
    """Start raw upstreams on loopback; all are closed when the test ends."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer, close_after: bool = False) -> RawUpstream:
        upstream = RawUpstream(answer, close_after)
        server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
        servers.append(server)
        upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return upstream

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def ok(body: bytes = b"hello", extra: bytes = b"") -> Answer:
    """An answer of 200 with ``body`` and a Content-Length."""
    return lambda head: (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)
    )


async def test_interim_100_response_is_skipped(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """A 100 Continue before the final response never reaches the client."""
    final = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    upstream = await raw_upstream(lambda head: b"HTTP/1.1 100 Continue\r\n\r\n" + final)
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 201
        assert await resp.read() == b"ok"


async def test_close_delimited_body_ends_at_upstream_close(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """A body with neither length nor chunking runs until the upstream closes."""
    upstream = await raw_upstream(
        lambda head: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 70000,
        close_after=True,
    )
    proxy = await start_proxy(proxy_yaml(upstream.url))
    for _ in range(2):
        async with client.get(proxy.url + "/x") as resp:
            assert resp.status == 200
            assert await resp.read() == b"z" * 70000
    assert upstream.connections == 2


async def test_head_response_with_length_keeps_connection_usable(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """HEAD's Content-Length is passed on, no body awaited, the connection reused."""

    def answer(head: bytes) -> bytes:
        if head.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget"

    upstream = await raw_upstream(answer)
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.head(proxy.url + "/x") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "5000"
    async with client.get(proxy.url + "/x") as resp:
        assert await resp.read() == b"get"
    assert upstream.connections == 1


async def test_idle_connection_dropped_by_upstream_is_not_reused(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """An idle connection the upstream reset is noticed and replaced, no 502."""
    upstream = await raw_upstream(ok())
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/x") as resp:
        assert await resp.read() == b"hello"
    for writer in upstream.writers:
        writer.transport.abort()
    await asyncio.sleep(0.05)
    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 200
        assert await resp.read() == b"hello"
    assert upstream.connections == 2


async def test_request_lost_on_a_closing_connection_is_sent_again(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """A bodiless request whose kept-alive connection closes unanswered is retried."""
    answers = iter([ok()(b""), None, ok(b"again")(b"")])
    upstream = await raw_upstream(lambda head: next(answers))
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/x") as resp:
        assert await resp.read() == b"hello"
    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 200
        assert await resp.read() == b"again"
    assert upstream.connections == 2


async def test_malformed_response_gives_502_protocol(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """Bytes that are not HTTP: 502 with ``upstream_protocol``."""
    upstream = await raw_upstream(lambda head: b"SSH-2.0-OpenSSH\r\n\r\n")
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 502
        assert (await resp.json())["error"] == "upstream_protocol"


async def test_body_cut_short_closes_client_connection(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """An upstream that closes mid-body: the client's read breaks too."""
    upstream = await raw_upstream(
        lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part",
        close_after=True,
    )
    proxy = await start_proxy(proxy_yaml(upstream.url))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(proxy.url + "/x") as resp:
            await resp.read()


async def test_request_head_is_exact_and_invents_nothing(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
) -> None:
    """The upstream gets the raw target and the client's fields, plus Host and X-F-*."""
    upstream = await raw_upstream(ok())
    proxy = await start_proxy(proxy_yaml(upstream.url + "/base"))
    host, port = proxy.address or ("", 0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"GET /a%2Fb/%7e?q=%20&x HTTP/1.1\r\nHost: svc\r\nX-Odd:  v\xc3\xa9 \r\n"
        b"Connection: close\r\n\r\n"
    )
    await reader.read()
    writer.close()

    head = upstream.heads[0]
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /base/a%2Fb/%7e?q=%20&x HTTP/1.1"
    names = sorted(line.split(b":")[0].lower() for line in lines[1:] if line)
    assert names == [
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-odd",
    ]
    assert b"X-Odd: v\xc3\xa9\r\n" in head
    assert f"Host: {upstream.url.removeprefix('http://')}\r\n".encode() in head


async def test_oversized_response_head_gives_502_protocol(
    raw_upstream: StartRaw,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """A response head with hundreds of fields is refused, not held: 502."""
    fields = b"".join(b"X-Filler-%d: %b\r\n" % (i, b"v" * 100) for i in range(300))
    upstream = await raw_upstream(
        lambda head: b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n"
    )
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 502
        assert (await resp.json())["error"] == "upstream_protocol"
