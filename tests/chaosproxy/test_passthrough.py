"""Without faults the proxy is invisible: what the client sends, the upstream gets."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from tests.conftest import ProxyFactory, Upstream, pattern_bytes, proxy_yaml


async def _echo(
    client: aiohttp.ClientSession, url: str, **kwargs: object
) -> dict[str, object]:
    method = str(kwargs.pop("method", "GET"))
    async with client.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
        assert resp.status == 200
        doc: dict[str, object] = await resp.json()
        return doc


def _headers(doc: dict[str, object]) -> list[tuple[str, str]]:
    pairs = doc["headers"]
    assert isinstance(pairs, list)
    return [(str(k).lower(), str(v)) for k, v in pairs]


async def test_method_path_query_and_body_reach_upstream_unchanged(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Method, raw path, raw query string and body arrive byte for byte."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    target = "/echo/a%20b/c?x=1&y=%2F&x=2&empty=&plus=a+b"
    url = URL(proxy.url + target, encoded=True)
    doc = await _echo(client, url, method="PATCH", data=b"payload-bytes")  # type: ignore[arg-type]

    assert doc["method"] == "PATCH"
    assert doc["raw_path"] == target
    assert doc["body_sha256"] == hashlib.sha256(b"payload-bytes").hexdigest()


async def test_forwarded_headers_are_added_and_host_becomes_upstream(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """X-Forwarded-* are added (For appended), Host is the upstream's host:port."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    headers = {"X-Forwarded-For": "10.0.0.9", "X-Custom": "kept"}
    doc = await _echo(client, proxy.url + "/echo", headers=headers)
    got = dict(_headers(doc))

    assert got["host"] == upstream.url.removeprefix("http://")
    assert got["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == proxy.url.removeprefix("http://")
    assert got["x-custom"] == "kept"


async def test_proxy_invents_no_request_headers(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A bare request gets only Host and the X-Forwarded-* fields added."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    host, port = proxy.address or ("", 0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    body = raw.partition(b"\r\n\r\n")[2]
    import json

    names = {k.lower() for k, _ in json.loads(body)["headers"]}
    assert names == {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}


async def test_hop_by_hop_request_headers_are_dropped(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Connection, the fields it names, Keep-Alive, TE, Upgrade, Proxy-* stay here."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    host, port = proxy.address or ("", 0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"GET /echo HTTP/1.1\r\nHost: svc\r\nConnection: close, X-Hop\r\n"
        b"X-Hop: private\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        b"Proxy-Authorization: Basic abc\r\nX-Keep: yes\r\n\r\n"
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    import json

    names = {k.lower() for k, _ in json.loads(raw.partition(b"\r\n\r\n")[2])["headers"]}
    assert "x-keep" in names
    for dropped in ("x-hop", "keep-alive", "te", "proxy-authorization", "connection"):
        assert dropped not in names


async def test_repeated_response_headers_and_hop_by_hop_handling(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Set-Cookie and other repeated fields stay repeated; hop-by-hop are removed."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/cookies") as resp:
        assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
        assert resp.headers.getall("X-Multi") == ["one", "two"]
        assert "X-Chaos-Fault" not in resp.headers
    async with client.get(proxy.url + "/hop") as resp:
        assert resp.headers["X-End-To-End"] == "kept"
        assert "X-Private-Hop" not in resp.headers
        assert "Keep-Alive" not in resp.headers


@pytest.mark.parametrize("code", [200, 201, 301, 404, 418, 500, 503], ids=str)
async def test_upstream_status_passes_unchanged(
    code: int,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
) -> None:
    """Any status the upstream answers (redirects included) reaches the client."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + f"/status/{code}", allow_redirects=False) as resp:
        assert resp.status == code
        assert await resp.text() == f"status {code}"


@pytest.mark.parametrize(
    ("method", "path"),
    [("HEAD", "/bytes/1000"), ("GET", "/status/204"), ("GET", "/status/304")],
    ids=["head", "204", "304"],
)
async def test_bodyless_responses_have_no_body(
    method: str, path: str, upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """HEAD, 204 and 304 come back without a body, and the connection stays usable."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    host, port = proxy.address or ("", 0)
    reader, writer = await asyncio.open_connection(host, port)
    request = f"{method} {path} HTTP/1.1\r\nHost: svc\r\n\r\n".encode()
    writer.write(request + b"GET /status/200 HTTP/1.1\r\nHost: svc\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"200", b"204", b"304")
    if method == "HEAD":
        assert b"Content-Length: 1000" in head
    # The very next bytes are the second response: nothing was sent as a body.
    second = await reader.readuntil(b"\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_gzip_body_passes_compressed(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A compressed body is forwarded as the same bytes, encoding header kept."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(upstream.url + "/gzip") as direct:
        expected = await direct.read()
    async with client.get(proxy.url + "/gzip") as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert await resp.read() == expected


async def _chunks(total: int, size: int) -> AsyncIterator[bytes]:
    data = pattern_bytes(size)
    sent = 0
    while sent < total:
        piece = data[: min(size, total - sent)]
        sent += len(piece)
        yield piece


async def test_chunked_upload_streams_to_upstream(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A chunked request body of 5 MiB arrives whole and unchanged."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    total = 5 * 1024 * 1024
    expected = hashlib.sha256()
    async for piece in _chunks(total, 65536):
        expected.update(piece)
    async with client.post(proxy.url + "/upload", data=_chunks(total, 65536)) as resp:
        doc = await resp.json()
    assert doc == {"bytes": total, "sha256": expected.hexdigest()}


async def test_chunked_download_streams_to_client(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A chunked response of 3 MiB arrives whole, without a Content-Length."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    async with client.get(proxy.url + "/stream/3145728") as resp:
        assert "Content-Length" not in resp.headers
        body = await resp.read()
    assert len(body) == 3145728


async def test_upstream_base_path_is_joined(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """With upstream http://host:port/api, a request for /v1/x reaches /api/v1/x."""
    proxy = await start_proxy(proxy_yaml(upstream.url + "/api"))
    doc = await _echo(client, proxy.url + "/v1/x?q=1")
    assert doc["raw_path"] == "/api/v1/x?q=1"


async def test_unreachable_upstream_gives_502_with_json(
    start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Nothing listening upstream: 502 and a JSON body that says so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await start_proxy(proxy_yaml(f"http://127.0.0.1:{port}"))
    async with client.get(proxy.url + "/x") as resp:
        assert resp.status == 502
        doc = await resp.json()
    assert doc["error"] == "upstream_unreachable"
    assert "cannot connect" in doc["message"]


async def test_slow_upstream_gives_504_with_json(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """An upstream slower than upstream_timeout_ms: 504 and a JSON body."""
    proxy = await start_proxy(proxy_yaml(upstream.url, upstream_timeout_ms=200))
    async with client.get(proxy.url + "/slow/2000") as resp:
        assert resp.status == 504
        doc = await resp.json()
    assert doc["error"] == "upstream_timeout"
    assert "200 ms" in doc["message"]


async def test_fifty_mib_response_streams_without_buffering(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A 50 MiB response passes while the process's RSS grows by under 32 MiB."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    size = 50 * 1024 * 1024

    def rss_kib() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    before = rss_kib()
    received = 0
    async with client.get(proxy.url + f"/stream/{size}") as resp:
        async for chunk in resp.content.iter_any():
            received += len(chunk)
    grown_mib = (rss_kib() - before) / 1024

    assert received == size
    assert grown_mib < 32, f"RSS grew {grown_mib:.1f} MiB"
