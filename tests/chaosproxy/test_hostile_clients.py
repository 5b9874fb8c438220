"""Hostile clients: each gets a clean 4xx or a closed connection, and never a traceback.

Every case is sent on a raw socket between two ordinary requests on a kept-alive
connection, which must both succeed; nothing of a refused request may reach the
upstream, which sees only the ordinary requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.chaosproxy.rawkit import assert_no_tracebacks, exchange
from tests.conftest import ProxyFactory, Upstream, proxy_yaml

H = b"Host: proxy\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: proxy\r\n\r\n"


def post(headers: bytes, body: bytes = b"") -> bytes:
    """A POST to /hostile with ``headers`` (CRLF-terminated lines) and ``body``."""
    return b"POST /hostile HTTP/1.1\r\n" + H + headers + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    """A chunked POST whose body is ``body`` as written."""
    return post(b"Transfer-Encoding: chunked\r\n", body)


def get(line: bytes, headers: bytes = H) -> bytes:
    """A request with the request line ``line`` and ``headers``."""
    return line + b"\r\n" + headers + b"\r\n"


# (id, bytes sent, status expected). Cases marked big may instead be reset by the
# proxy before its answer is read: it stops reading at the limit and closes.
FRAMING = [
    ("content-length-and-chunked",
     post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
          b"0\r\n\r\n" + SMUGGLED),
     400),
    ("chunked-and-content-length",
     post(b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
          b"0\r\n\r\n" + SMUGGLED),
     400),
    ("two-content-lengths", post(b"Content-Length: 5\r\nContent-Length: 45\r\n",
                                 b"hello" + SMUGGLED), 400),
    ("two-equal-content-lengths",
     post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400),
    ("content-length-list", post(b"Content-Length: 5, 5\r\n", b"hello"), 400),
    ("content-length-negative", post(b"Content-Length: -5\r\n", b"hello"), 400),
    ("content-length-plus-sign", post(b"Content-Length: +5\r\n", b"hello"), 400),
    ("content-length-hex", post(b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("content-length-inner-space", post(b"Content-Length: 1 0\r\n", b"hello"), 400),
    ("content-length-empty", post(b"Content-Length: \r\n", b"hello"), 400),
    ("content-length-overflow",
     post(b"Content-Length: 99999999999999999999999999\r\n", b"hello"), 400),
    ("transfer-encoding-unknown", post(b"Transfer-Encoding: gzip\r\n", b"hello"), 400),
    ("chunked-not-final",
     post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400),
    ("chunked-twice", post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
     400),
    ("transfer-encoding-folded",
     post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED), 400),
    ("transfer-encoding-space-before-colon",
     post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), 400),
    ("transfer-encoding-misspelt",
     post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 400),
]  # fmt: skip

CHUNKS = [
    ("chunk-size-not-hex", chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", chunked(b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-with-prefix", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-longer-than-size", chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-without-crlf", chunked(b"5\r\nhello0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
]

REQUEST_LINE = [
    ("nul-in-target", get(b"GET /a\x00b HTTP/1.1"), 400),
    ("control-in-target", get(b"GET /a\x01b HTTP/1.1"), 400),
    ("delete-in-target", get(b"GET /a\x7fb HTTP/1.1"), 400),
    ("bare-cr-in-target", get(b"GET /a\rb HTTP/1.1"), 400),
    ("tab-in-target", get(b"GET /a\tb HTTP/1.1"), 400),
    ("space-in-target", get(b"GET /a b HTTP/1.1"), 400),
    ("non-ascii-target", get(b"GET /\xff\xfe HTTP/1.1"), 400),
    ("nul-in-method", get(b"G\x00T / HTTP/1.1"), 400),
    ("unknown-version", get(b"GET / HTTP/9.9"), 400),
    ("missing-version", get(b"GET /"), 505),
    ("lowercase-protocol", get(b"GET / http/1.1"), 400),
    ("bare-lf-line-ends", b"GET / HTTP/1.1\nHost: proxy\n\n", 400),
]

HEADERS = [
    ("nul-in-header-value", get(b"GET / HTTP/1.1", H + b"X-A: a\x00b\r\n"), 400),
    ("control-in-header-name", get(b"GET / HTTP/1.1", H + b"X-\x01A: b\r\n"), 400),
    ("bare-cr-in-header", get(b"GET / HTTP/1.1", H + b"X-A: a\rb\r\n"), 400),
    ("space-before-colon", get(b"GET / HTTP/1.1", H + b"X-A : b\r\n"), 400),
    ("folded-header", get(b"GET / HTTP/1.1", H + b"X-A: b\r\n c\r\n"), 400),
    ("header-without-colon", get(b"GET / HTTP/1.1", H + b"X-A b\r\n"), 400),
    ("empty-header-name", get(b"GET / HTTP/1.1", H + b": b\r\n"), 400),
    ("two-hosts", get(b"GET / HTTP/1.1", H + b"Host: other\r\n"), 400),
    ("missing-host", get(b"GET / HTTP/1.1", b""), 400),
]

NOT_HTTP = [
    ("tls-client-hello",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)), 400),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("ssh-banner", b"SSH-2.0-OpenSSH_9.6\r\n", 400),
    ("binary-noise", bytes(range(255, -1, -1)) * 4, 400),
    ("nul-bytes", b"\x00" * 512, 400),
]  # fmt: skip

LIMITS = [
    ("request-line-over-limit", get(b"GET /" + b"a" * 10_000 + b" HTTP/1.1"), 414),
    ("header-value-over-limit",
     get(b"GET / HTTP/1.1", H + b"X-Big: " + b"a" * 10_000 + b"\r\n"), 431),
    ("header-name-over-limit",
     get(b"GET / HTTP/1.1", H + b"X-" + b"a" * 10_000 + b": b\r\n"), 431),
    ("thousands-of-headers",
     get(b"GET / HTTP/1.1", H + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))),
     431),
]  # fmt: skip

TARGETS = [
    ("connect-tunnel", get(b"CONNECT elsewhere.invalid:443 HTTP/1.1"), 501),
    ("absolute-form-with-userinfo",
     get(b"GET http://user:pw@elsewhere/ HTTP/1.1"), 400),
    ("absolute-form-other-scheme", get(b"GET ftp://elsewhere/x HTTP/1.1"), 400),
    ("authority-form-without-connect", get(b"GET elsewhere.invalid:443 HTTP/1.1"), 400),
    ("asterisk-form-without-options", get(b"GET * HTTP/1.1"), 400),
]  # fmt: skip

BIG = {"thousands-of-headers", "request-line-over-limit", "header-value-over-limit",
       "header-name-over-limit"}  # fmt: skip

CASES = [
    pytest.param(data, status, id=name)
    for table in (FRAMING, CHUNKS, REQUEST_LINE, HEADERS, NOT_HTTP, LIMITS, TARGETS)
    for name, data, status in table
]


async def get_ok(session: aiohttp.ClientSession, url: str) -> None:
    """An ordinary request through the proxy succeeds."""
    async with session.get(url + "/echo/ok") as resp:
        assert resp.status == 200
        await resp.read()


@pytest.mark.parametrize(("data", "status"), CASES)
async def test_hostile_request_gets_a_clean_refusal_and_reaches_no_one(
    data: bytes,
    status: int,
    request: pytest.FixtureRequest,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client gets the expected 4xx and a closed connection; the rest go on."""
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None
    await get_ok(client, proxy.url)

    reply = await exchange(proxy.address, data)

    big = request.node.callspec.id in BIG
    assert reply.closed
    if not (big and reply.reset and not reply.data):
        assert reply.status == status, reply.data[:300]
        assert reply.body.startswith(b'{"error": ')
    await get_ok(client, proxy.url)
    assert [hit["raw"] for hit in upstream.requests] == ["/echo/ok", "/echo/ok"]
    assert any(r.name == "chaosproxy.downstream" for r in caplog.records)
    assert_no_tracebacks(caplog)


@pytest.fixture
async def elsewhere() -> AsyncIterator[list[int]]:
    """A listening socket that no request should ever reach; yields [port, hits]."""
    seen = [0, 0]

    async def note(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen[1] += 1
        writer.close()

    server = await asyncio.start_server(note, "127.0.0.1", 0)
    seen[0] = server.sockets[0].getsockname()[1]
    yield seen
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("http://{authority}/echo/abs?x=1", "/echo/abs?x=1"),
        ("HTTPS://{authority}/echo/abs", "/echo/abs"),
        ("http://{authority}", "/"),
        ("http://{authority}?q=%41", "/?q=%41"),
        ("http://{authority}/echo/a%2Fb", "/echo/a%2Fb"),
    ],
    ids=["path-and-query", "https-uppercase", "empty-path", "query-only", "encoded"],
)
async def test_absolute_form_goes_to_the_upstream_and_never_elsewhere(
    target: str,
    forwarded: str,
    elsewhere: list[int],
    upstream: Upstream,
    start_proxy: ProxyFactory,
) -> None:
    """The named authority is only X-Forwarded-Host; the upstream gets origin-form."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    assert proxy.address is not None
    authority = f"127.0.0.1:{elsewhere[0]}"
    line = f"GET {target.format(authority=authority)} HTTP/1.1".encode()

    reply = await exchange(
        proxy.address, get(line, b"Host: proxy\r\nConnection: close\r\n")
    )

    assert reply.status == 200
    echoed = json.loads(reply.body)
    headers = dict(echoed["headers"])
    assert echoed["raw_path"] == forwarded
    assert headers["Host"] == upstream.url.removeprefix("http://")
    assert headers["X-Forwarded-Host"] == authority
    assert elsewhere[1] == 0


async def test_absolute_form_is_routed_by_its_path(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A route on /echo/** matches http://other/echo/x: faults cannot be sidestepped."""
    routes = """
routes:
  - name: guarded
    match: {path: "/echo/**"}
    faults:
      - {fault_type: error, probability: 1.0, error_code: 503}
"""
    proxy = await start_proxy(proxy_yaml(upstream.url, routes))
    assert proxy.address is not None

    reply = await exchange(
        proxy.address,
        get(b"GET http://other.invalid/echo/x HTTP/1.1", H + b"Connection: close\r\n"),
    )

    assert reply.status == 503
    assert upstream.requests == []


async def test_asterisk_form_options_reaches_the_upstream_as_an_asterisk(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """OPTIONS * names the server, so the upstream's base path is not put before it."""
    proxy = await start_proxy(proxy_yaml(upstream.url + "/base"))
    assert proxy.address is not None

    reply = await exchange(
        proxy.address, get(b"OPTIONS * HTTP/1.1", H + b"Connection: close\r\n")
    )

    assert reply.status is not None
    assert [hit["raw"] for hit in upstream.requests] == ["*"]
