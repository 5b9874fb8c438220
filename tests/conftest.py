"""Shared fixtures: a real upstream on loopback, and proxies to put in front of it.

The upstream records every request it receives (``upstream.hits``), so tests can
assert what really crossed the wire on both sides of the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chaosproxy.config import parse_config
from chaosproxy.server import ChaosProxy


def pattern_bytes(size: int) -> bytes:
    """Return ``size`` deterministic, non-repeating-looking bytes."""
    block = hashlib.sha256(b"aumai-chaos").digest() * 32  # 1 KiB
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


@dataclass
class Upstream:
    """A running test upstream: its base URL and what it has seen."""

    url: str
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, object]] = field(default_factory=list)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    doc = {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "headers": [[k, v] for k, v in request.headers.items()],
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return web.json_response(doc)


async def _upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    total = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        total += len(chunk)
    return web.json_response({"bytes": total, "sha256": digest.hexdigest()})


async def _bytes(request: web.Request) -> web.Response:
    return web.Response(
        body=pattern_bytes(int(request.match_info["n"])),
        content_type="application/octet-stream",
    )


async def _stream(request: web.Request) -> web.StreamResponse:
    """Send ``n`` bytes in 64 KiB chunks, chunked (no Content-Length)."""
    size = int(request.match_info["n"])
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    data = pattern_bytes(min(size, 1 << 20))
    sent = 0
    while sent < size:
        piece = data[: min(65536, size - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def _status(request: web.Request) -> web.Response:
    status = int(request.match_info["code"])
    if status in (204, 304):
        return web.Response(status=status)
    return web.Response(status=status, text=f"status {status}")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return web.Response(text="slow")


async def _cookies(request: web.Request) -> web.Response:
    response = web.Response(text="cookies")
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    response.headers.add("X-Multi", "one")
    response.headers.add("X-Multi", "two")
    return response


async def _gzip(request: web.Request) -> web.Response:
    body = gzip.compress(json.dumps({"hello": "world" * 100}).encode())
    return web.Response(
        body=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


async def _hop(request: web.Request) -> web.Response:
    response = web.Response(text="hop")
    response.headers["Connection"] = "X-Private-Hop"
    response.headers["X-Private-Hop"] = "secret"
    response.headers["Keep-Alive"] = "timeout=5"
    response.headers["X-End-To-End"] = "kept"
    return response


def make_upstream_app(upstream: Upstream) -> web.Application:
    """Build the test upstream's application, counting hits by path."""

    @web.middleware
    async def count(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        upstream.hits[request.path] += 1
        upstream.requests.append(
            {"method": request.method, "path": request.path, "raw": request.raw_path}
        )
        return await handler(request)

    app = web.Application(middlewares=[count])
    app.router.add_route("*", "/echo{tail:.*}", _echo)
    app.router.add_route("*", "/api/{tail:.*}", _echo)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/bytes/{n}", _bytes)
    app.router.add_get("/stream/{n}", _stream)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_get("/slow/{ms}", _slow)
    app.router.add_get("/cookies", _cookies)
    app.router.add_get("/gzip", _gzip)
    app.router.add_get("/hop", _hop)
    # Anything else is echoed, so example configs can be driven unchanged.
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 with an ephemeral port; yield its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def catch_all(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.Application:
    """An application that sends every method and path to ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A real aiohttp upstream on 127.0.0.1 with an ephemeral port."""
    state = Upstream(url="")
    async with serve_app(make_upstream_app(state)) as state.url:
        yield state


ProxyFactory = Callable[..., Awaitable[ChaosProxy]]


@pytest.fixture
async def start_proxy() -> AsyncIterator[ProxyFactory]:
    """Start proxies from YAML text; every one is stopped when the test ends."""
    started: list[ChaosProxy] = []

    async def start(yaml_text: str, **kwargs: object) -> ChaosProxy:
        config = parse_config(yaml_text)
        proxy = ChaosProxy(config, **kwargs)  # type: ignore[arg-type]
        await proxy.start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.stop()


def proxy_yaml(upstream_url: str, body: str = "", **top: object) -> str:
    """Return a config document for ``upstream_url`` with ``body`` appended."""
    lines = ["version: 1", 'listen: "127.0.0.1:0"', f'upstream: "{upstream_url}"']
    lines += [f"{key}: {json.dumps(value)}" for key, value in top.items()]

    return "\n".join(lines) + "\n" + body


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client that leaves bodies exactly as they arrive."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session
