"""Helpers for the admin API's tests: a proxy with its admin API, traffic, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from chaosproxy.client import AdminClient
from chaosproxy.server import ChaosProxy
from tests.conftest import ProxyFactory, proxy_yaml

T = TypeVar("T")

#: Two routes on two components, used by most admin tests.
ROUTES = """
routes:
  - name: pay
    match: {path: "/api/pay/**"}
    component: payments
  - name: search
    match: {path: "/api/search/**"}
    component: search
"""


async def start_admin_proxy(
    start_proxy: ProxyFactory,
    upstream_url: str,
    body: str = ROUTES,
    **kwargs: object,
) -> tuple[ChaosProxy, AdminClient]:
    """Start a proxy with its admin API on an ephemeral loopback port.

    Keyword arguments that are ChaosProxy parameters go to it; the rest become
    top-level settings of the file.
    """
    proxy_args = {
        k: kwargs.pop(k) for k in list(kwargs) if k in ("config_path", "injector")
    }
    text = proxy_yaml(upstream_url, body, admin="127.0.0.1:0", **kwargs)
    proxy = await start_proxy(text, **proxy_args)
    assert proxy.admin_url is not None
    token = kwargs.get("admin_token")

    return proxy, AdminClient(proxy.admin_url, token=str(token) if token else None)


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call off the loop that serves the proxy."""
    return await asyncio.to_thread(function, *args, **kwargs)


@dataclass
class Traffic:
    """Requests sent in the background, each as (sent at, status, fault header)."""

    seen: list[tuple[float, int, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> list[int]:
        """The statuses of requests sent in [since, until]."""
        return [status for at, status, _ in self.seen if since <= at <= until]


async def send(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """Send one GET; return its status and X-Chaos-Fault header ('' if none)."""
    async with session.get(url) as resp:
        await resp.read()
        return resp.status, resp.headers.get("X-Chaos-Fault", "")


async def keep_sending(
    session: aiohttp.ClientSession, url: str, traffic: Traffic, pause: float = 0.01
) -> None:
    """Send GETs one after another until cancelled, recording each."""
    while True:
        at = time.monotonic()
        status, header = await send(session, url)
        traffic.seen.append((at, status, header))
        await asyncio.sleep(pause)


def start_traffic(session: aiohttp.ClientSession, url: str) -> Traffic:
    """Start sending GETs to ``url`` in the background."""
    traffic = Traffic()
    traffic.task = asyncio.create_task(
        keep_sending(session, url, traffic), name="test-traffic"
    )
    return traffic


async def stop_traffic(traffic: Traffic) -> None:
    """Stop the background requests."""
    assert traffic.task is not None
    traffic.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await traffic.task


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when it is absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0
