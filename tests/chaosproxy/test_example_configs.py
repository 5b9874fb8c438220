"""Each ready example in configs/ does on the wire what its comments promise."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from chaosproxy.config import load_config
from chaosproxy.server import ChaosProxy
from tests.conftest import Upstream

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

Start = Callable[[str], Awaitable[ChaosProxy]]


@pytest.fixture
async def example(upstream: Upstream) -> AsyncIterator[Start]:
    """Start a proxy from an example file, pointed at the test upstream."""
    proxies: list[ChaosProxy] = []

    async def start(name: str) -> ChaosProxy:
        config = load_config(CONFIGS / name).model_copy(
            update={"listen": "127.0.0.1:0", "upstream": upstream.url, "admin": None}
        )
        proxy = ChaosProxy(config)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.stop()


async def _send(
    client: aiohttp.ClientSession,
    method: str,
    url: str,
    count: int,
    headers: dict[str, str] | None = None,
) -> list[tuple[int, str]]:
    """Send ``count`` concurrent requests; return (status, X-Chaos-Fault) pairs."""

    async def one() -> tuple[int, str]:
        try:
            async with client.request(method, url, headers=headers) as resp:
                await resp.read()
                return resp.status, resp.headers.get("X-Chaos-Fault", "")
        except aiohttp.ClientPayloadError:
            return -1, "partial_failure"

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_flaky_payments_refuses_about_one_post_in_five(
    example: Start, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """POSTs to payments get 503s and latency; refunds add 500s; GETs pass."""
    proxy = await example("flaky-payments.yaml")
    charges = await _send(client, "POST", proxy.url + "/api/payments/x/charge", 300)
    refunds = await _send(client, "POST", proxy.url + "/api/payments/7/refund", 300)
    reads = await _send(client, "GET", proxy.url + "/api/payments/7", 20)

    statuses = Counter(status for status, _ in charges)
    assert 30 <= statuses[503] <= 100
    assert statuses[500] == 0
    assert any("latency" in fired for _, fired in charges)
    assert Counter(status for status, _ in refunds)[500] >= 3
    assert reads == [(200, "")] * 20
    routes = Counter(p.details["route"] for p in proxy.sink.observer.get_observations())
    assert routes == {"payments": 300, "refunds": 300, "default": 20}


async def test_rate_limited_api_throttles_keyed_callers_harder(
    example: Start, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """With the demo key about 37% get 429 + Retry-After; without it about 10%."""
    proxy = await example("rate-limited-api.yaml")
    url = proxy.url + "/v2/quotes/EURUSD"
    keyed = await _send(client, "GET", url, 300, {"X-Api-Key": "demo"})
    anonymous = await _send(client, "GET", url, 300)
    unmatched = await _send(client, "GET", proxy.url + "/health", 300)

    keyed_429 = sum(1 for status, _ in keyed if status == 429)
    anonymous_429 = sum(1 for status, _ in anonymous if status == 429)
    unmatched_429 = sum(1 for status, _ in unmatched if status == 429)
    assert 70 <= keyed_429 <= 160
    assert 10 <= anonymous_429 <= 60
    assert 10 <= unmatched_429 <= 60
    assert any(fired == "data_corruption" for _, fired in keyed)


async def test_slow_search_slows_most_queries_and_times_some_out(
    example: Start, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """Search queries meet latency, partial bodies and 504s; suggest shares them."""
    proxy = await example("slow-search.yaml")
    searches = await _send(client, "GET", proxy.url + "/search?q=shoes", 120)
    suggests = await _send(client, "GET", proxy.url + "/search/suggest?q=sh", 40)

    fired = Counter(f for _, header in searches for f in header.split(",") if f)
    assert 40 <= fired["latency"] <= 130
    assert fired["timeout"] + fired["partial_failure"] >= 2
    assert all(status in (200, 504, -1) for status, _ in searches)
    assert any("latency" in header for _, header in suggests)
    points = proxy.sink.observer.get_observations()
    assert {p.component for p in points} == {"search"}
    held = [
        float(str(p.details["duration_ms"]))
        for p in points
        if p.details["faults"] == ["latency"]
    ]
    assert held
    assert min(held) >= 100
