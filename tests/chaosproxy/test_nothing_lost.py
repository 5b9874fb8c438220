"""Nothing lost, nothing doubled: every request reaches the upstream exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import ProxyFactory, catch_all, proxy_yaml, serve_app

TOTAL = 10_000
CONCURRENCY = 64
# Every DISCONNECT_EVERY-th request asks for a slow answer and gives up before it.
DISCONNECT_EVERY = 97


class CountingUpstream:
    """An upstream that counts each request id it sees and echoes it back."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        request_id = request.headers["X-Request-Id"]
        self.seen[request_id] += 1
        body = await request.read()
        if request.path == "/slow":
            await asyncio.sleep(1.0)
        return web.Response(text=f"{request_id}:{len(body)}")


@pytest.fixture
async def counting() -> AsyncIterator[CountingUpstream]:
    """A counting upstream on loopback."""
    upstream = CountingUpstream()
    async with serve_app(catch_all(upstream.handle)) as upstream.url:
        yield upstream


async def test_ten_thousand_requests_each_reach_upstream_once(
    counting: CountingUpstream, start_proxy: ProxyFactory
) -> None:
    """10,000 requests with disconnects sprinkled in: each answered, none doubled."""
    proxy = await start_proxy(proxy_yaml(counting.url, observations_window=100))
    answered: dict[str, str] = {}
    abandoned: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(TOTAL):
        queue.put_nowait(number)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            request_id = f"r{number}"
            headers = {"X-Request-Id": request_id}
            if number % DISCONNECT_EVERY == 0:
                abandoned.append(request_id)
                with pytest.raises(asyncio.TimeoutError):
                    async with session.get(
                        proxy.url + "/slow",
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=0.05),
                    ):
                        pass
                continue
            body = b"x" * (number % 300)
            async with session.post(
                proxy.url + f"/item/{number}", data=body, headers=headers
            ) as resp:
                assert resp.status == 200
                answered[request_id] = await resp.text()

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))

    completed = TOTAL - len(abandoned)
    assert len(answered) == completed
    assert all(text == f"{rid}:{int(rid[1:]) % 300}" for rid, text in answered.items())
    assert all(counting.seen[rid] == 1 for rid in answered)
    assert max(counting.seen.values()) == 1
    assert set(counting.seen) - set(answered) <= set(abandoned)
