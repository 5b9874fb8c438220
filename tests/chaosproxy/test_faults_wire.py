"""Each fault type, as a client and the upstream really see it on the wire."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.conftest import ProxyFactory, Upstream, pattern_bytes, proxy_yaml


def one_fault(upstream_url: str, fault: str, **top: object) -> str:
    """A config with one catch-all route carrying the given fault entry (YAML)."""
    body = f"""
routes:
  - name: all
    match: {{path: "/**"}}
    faults:
      - {fault}
"""
    return proxy_yaml(upstream_url, body, **top)


async def test_latency_fault_holds_then_forwards(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A 300 ms latency fault: the upstream's answer arrives 300 ms or more later."""
    proxy = await start_proxy(
        one_fault(upstream.url, "{fault_type: latency, duration_ms: 300}")
    )
    started = time.monotonic()
    async with client.get(proxy.url + "/bytes/10") as resp:
        body = await resp.read()
    elapsed = time.monotonic() - started

    assert resp.status == 200
    assert body == pattern_bytes(10)
    assert resp.headers["X-Chaos-Fault"] == "latency"
    assert 0.3 <= elapsed < 2.0
    assert upstream.hits["/bytes/10"] == 1


async def test_latencies_that_fire_add_up(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Two latency faults of 200 ms each hold the request at least 400 ms."""
    body = """
routes:
  - name: all
    faults:
      - {fault_type: latency, duration_ms: 200}
      - {fault_type: latency, duration_ms: 200}
"""
    proxy = await start_proxy(proxy_yaml(upstream.url, body))
    started = time.monotonic()
    async with client.get(proxy.url + "/echo") as resp:
        assert resp.status == 200
        assert resp.headers["X-Chaos-Fault"] == "latency,latency"
    assert time.monotonic() - started >= 0.4


async def test_error_fault_answers_without_forwarding(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """An error fault answers its status and JSON body; the upstream sees nothing."""
    fault = '{fault_type: error, error_code: 503, error_message: "down for chaos"}'
    proxy = await start_proxy(one_fault(upstream.url, fault))
    async with client.post(proxy.url + "/echo", data=b"x" * 1000) as resp:
        doc = await resp.json()

    assert resp.status == 503
    assert resp.headers["X-Chaos-Fault"] == "error"
    assert doc == {"fault": "error", "message": "down for chaos"}
    assert upstream.hits["/echo"] == 0


async def test_timeout_fault_holds_then_answers_504(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A timeout fault of 300 ms: 504 after at least 300 ms, never forwarded."""
    proxy = await start_proxy(
        one_fault(upstream.url, "{fault_type: timeout, duration_ms: 300}")
    )
    started = time.monotonic()
    async with client.get(proxy.url + "/echo") as resp:
        doc = await resp.json()
    elapsed = time.monotonic() - started

    assert resp.status == 504
    assert resp.headers["X-Chaos-Fault"] == "timeout"
    assert doc["fault"] == "timeout"
    assert elapsed >= 0.3
    assert upstream.hits["/echo"] == 0


async def test_timeout_fault_defaults_to_upstream_timeout(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Without duration_ms, a timeout fault holds for upstream_timeout_ms."""
    proxy = await start_proxy(
        one_fault(upstream.url, "{fault_type: timeout}", upstream_timeout_ms=250)
    )
    started = time.monotonic()
    async with client.get(proxy.url + "/echo") as resp:
        assert resp.status == 504
    assert time.monotonic() - started >= 0.25


async def test_timeout_fault_stops_holding_when_client_leaves(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A client that gives up ends the hold: the observation shows status 499 soon."""
    proxy = await start_proxy(
        one_fault(upstream.url, "{fault_type: timeout, duration_ms: 30000}")
    )
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(
            proxy.url + "/echo", timeout=aiohttp.ClientTimeout(total=0.3)
        ):
            pass
    for _ in range(50):
        if len(proxy.sink.observer) == 1:
            break
        await asyncio.sleep(0.05)
    [point] = proxy.sink.observer.get_observations()
    assert point.details["status"] == 499
    assert point.details["faults"] == ["timeout"]
    assert upstream.hits["/echo"] == 0


async def test_resource_exhaustion_answers_429_with_retry_after(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Exhaustion answers 429 with Retry-After from duration_ms, rounded up."""
    fault = "{fault_type: resource_exhaustion, duration_ms: 2500}"
    proxy = await start_proxy(one_fault(upstream.url, fault))
    async with client.get(proxy.url + "/echo") as resp:
        doc = await resp.json()

    assert resp.status == 429
    assert resp.headers["Retry-After"] == "3"
    assert resp.headers["X-Chaos-Fault"] == "resource_exhaustion"
    assert doc["fault"] == "resource_exhaustion"
    assert upstream.hits["/echo"] == 0


async def test_partial_failure_sends_headers_and_half_the_body(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """With a Content-Length, the client gets the status, headers, half, then EOF."""
    proxy = await start_proxy(one_fault(upstream.url, "{fault_type: partial_failure}"))
    host, port = proxy.address or ("", 0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /bytes/10000 HTTP/1.1\r\nHost: svc\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 10000" in head
    assert b"X-Chaos-Fault: partial_failure" in head
    assert body == pattern_bytes(10000)[:5000]


async def test_partial_failure_breaks_a_client_read(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A real HTTP client reading a cut chunked body gets a payload error."""
    proxy = await start_proxy(one_fault(upstream.url, "{fault_type: partial_failure}"))
    async with client.get(proxy.url + "/stream/1000000") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_data_corruption_changes_bytes_not_length(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A corrupted body has the same length and Content-Length, different bytes."""
    proxy = await start_proxy(
        one_fault(upstream.url, "{fault_type: data_corruption}", seed=3)
    )
    expected = pattern_bytes(200_000)
    async with client.get(proxy.url + "/bytes/200000") as resp:
        body = await resp.read()

    assert resp.status == 200
    assert resp.headers["Content-Length"] == "200000"
    assert resp.headers["X-Chaos-Fault"] == "data_corruption"
    assert len(body) == len(expected)
    changed = sum(1 for a, b in zip(body, expected, strict=True) if a != b)
    assert 1 <= changed <= 400


async def test_data_corruption_alters_compressed_bytes_as_bytes(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A gzip body is corrupted raw: same length, encoding header kept."""
    proxy = await start_proxy(one_fault(upstream.url, "{fault_type: data_corruption}"))
    async with client.get(upstream.url + "/gzip") as direct:
        expected = await direct.read()
    async with client.get(proxy.url + "/gzip") as resp:
        body = await resp.read()
    assert resp.headers["Content-Encoding"] == "gzip"
    assert len(body) == len(expected)
    assert body != expected


async def test_terminating_fault_after_latency_is_held_first(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Latency listed after an error is still applied first, then the error answers."""
    body = """
routes:
  - name: all
    faults:
      - {fault_type: error, error_code: 500}
      - {fault_type: latency, duration_ms: 200}
"""
    proxy = await start_proxy(proxy_yaml(upstream.url, body))
    started = time.monotonic()
    async with client.get(proxy.url + "/echo") as resp:
        assert resp.status == 500
        assert resp.headers["X-Chaos-Fault"] == "latency,error"
    assert time.monotonic() - started >= 0.2


async def test_probability_zero_never_fires(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A fault with probability 0 never touches a request."""
    fault = "{fault_type: error, error_code: 500, probability: 0.0}"
    proxy = await start_proxy(one_fault(upstream.url, fault))
    for _ in range(20):
        async with client.get(proxy.url + "/echo") as resp:
            assert resp.status == 200
            assert "X-Chaos-Fault" not in resp.headers
    assert upstream.hits["/echo"] == 20


async def _statuses(client: aiohttp.ClientSession, url: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        async with client.get(url) as resp:
            await resp.read()
            statuses.append(resp.status)
    return statuses


async def test_seeded_decisions_repeat_run_after_run(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Two proxies with the same seed fail the same sequential requests."""
    fault = "{fault_type: error, error_code: 503, probability: 0.5}"
    first = await start_proxy(one_fault(upstream.url, fault, seed=1234))
    second = await start_proxy(one_fault(upstream.url, fault, seed=1234))
    other = await start_proxy(one_fault(upstream.url, fault, seed=99))

    a = await _statuses(client, first.url + "/echo", 40)
    b = await _statuses(client, second.url + "/echo", 40)
    c = await _statuses(client, other.url + "/echo", 40)

    assert a == b
    assert a != c
    assert 5 < a.count(503) < 35
