"""A retrying HTTP client, tested through the chaosproxy pytest plugin.

This module is written the way a user of aumai-chaos would write it: the client is
ordinary application code, the upstream is the suite's own test server, and the
``chaosproxy`` fixture (from the plugin, no import needed) sits between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from chaosproxy.testing import ProxyFixture
from tests.conftest import Upstream

RETRYABLE = frozenset({429, 502, 503, 504})


async def get_with_retries(
    session: aiohttp.ClientSession,
    url: str,
    *,
    attempts: int = 3,
    backoff: float = 0.05,
) -> aiohttp.ClientResponse:
    """GET ``url``, retrying retryable statuses with exponential backoff.

    A ``Retry-After`` header, when the server sends one, is honoured instead of the
    backoff. The last response is returned whatever its status.
    """
    for attempt in range(attempts):
        response = await session.get(url)
        await response.read()
        if response.status not in RETRYABLE or attempt == attempts - 1:
            return response
        retry_after = response.headers.get("Retry-After")
        delay = float(retry_after) if retry_after else backoff * 2**attempt
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@pytest.fixture
def chaosproxy_upstream(upstream: Upstream) -> str:
    """Put the proxy in front of the suite's test upstream."""
    return upstream.url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for the test."""
    async with aiohttp.ClientSession() as session:
        yield session


UNAVAILABLE: dict[str, object] = {
    "fault_type": "error",
    "probability": 1.0,
    "error_code": 503,
}


async def test_client_gives_up_after_three_attempts_with_growing_waits(
    chaosproxy: ProxyFixture, session: aiohttp.ClientSession
) -> None:
    """A dependency that keeps failing gets three attempts, 50 ms then 100 ms apart."""
    with chaosproxy.faults("default", [UNAVAILABLE]):
        response = await get_with_retries(session, f"{chaosproxy.url}/api/orders")

    assert response.status == 503
    assert chaosproxy.calls(path="/api/orders") == 3
    first, second = chaosproxy.waits(path="/api/orders")
    assert 0.05 <= first < 0.5
    assert 0.10 <= second < 0.6
    assert second > first


async def test_client_does_not_retry_a_client_error(
    chaosproxy: ProxyFixture, session: aiohttp.ClientSession
) -> None:
    """A 400 is the caller's mistake: retrying it would only repeat it."""
    bad_request = {**UNAVAILABLE, "error_code": 400}
    with chaosproxy.faults("default", [bad_request]):
        response = await get_with_retries(session, f"{chaosproxy.url}/api/orders")

    assert response.status == 400
    assert not chaosproxy.retried(path="/api/orders")


async def test_client_waits_as_long_as_retry_after_asks(
    chaosproxy: ProxyFixture, session: aiohttp.ClientSession
) -> None:
    """After a 429 with Retry-After: 1 the next attempt comes a second later."""
    throttled = {"fault_type": "resource_exhaustion", "probability": 1.0}
    with chaosproxy.faults("default", [throttled]):
        response = await get_with_retries(
            session, f"{chaosproxy.url}/api/quotes", attempts=2
        )

    assert response.status == 429
    assert [a.status for a in chaosproxy.attempts()] == [429, 429]
    (wait,) = chaosproxy.waits()
    assert 1.0 <= wait < 1.5


async def test_client_succeeds_once_the_fault_is_lifted(
    chaosproxy: ProxyFixture, session: aiohttp.ClientSession, upstream: Upstream
) -> None:
    """Faults end with their block: the next request reaches the upstream at once."""
    with chaosproxy.faults("default", [UNAVAILABLE]):
        await get_with_retries(session, f"{chaosproxy.url}/api/orders", attempts=1)
    response = await get_with_retries(session, f"{chaosproxy.url}/api/orders")

    assert response.status == 200
    assert [a.status for a in chaosproxy.attempts()] == [503, 200]
    assert upstream.hits["/api/orders"] == 1


@pytest.mark.chaosproxy(config="configs/flaky-payments.yaml", seed=1)
async def test_refunds_survive_a_payment_processor_outage(
    chaosproxy: ProxyFixture, session: aiohttp.ClientSession
) -> None:
    """With every refund answered 503, the client retries and reports the 503."""
    refund = f"{chaosproxy.url}/api/payments/p-17/refund"
    with chaosproxy.faults("refunds", [UNAVAILABLE]):
        response = await session.post(refund)
        await response.read()

    assert response.status == 503
    assert response.headers["X-Chaos-Fault"] == "error"
    (attempt,) = chaosproxy.attempts("refunds")
    assert (attempt.method, attempt.faults) == ("POST", ("error",))
