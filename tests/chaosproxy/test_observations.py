"""Every request is one observation: in the window, in the file, in the access log."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from aumai_chaos import FaultConfig, FaultInjector
from chaosproxy.logs import JsonFormatter, TextFormatter
from tests.conftest import ProxyFactory, Upstream, proxy_yaml

ROUTES = """
routes:
  - name: pay
    match: {path: "/api/pay"}
    component: payments
    faults: [{fault_type: error, error_code: 503}]
"""


async def test_each_request_is_one_observation_with_details(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Details hold method, path, route, status, duration_ms and faults."""
    proxy = await start_proxy(proxy_yaml(upstream.url, ROUTES))
    async with client.post(proxy.url + "/api/pay?x=1", data=b"{}") as resp:
        assert resp.status == 503
    async with client.get(proxy.url + "/echo") as resp:
        assert resp.status == 200

    fault, plain = proxy.sink.observer.get_observations()
    assert (fault.component, fault.event) == ("payments", "fault_injected")
    assert fault.details["method"] == "POST"
    assert fault.details["path"] == "/api/pay"
    assert fault.details["route"] == "pay"
    assert fault.details["status"] == 503
    assert fault.details["faults"] == ["error"]
    assert isinstance(fault.details["duration_ms"], float)
    assert (plain.component, plain.event, plain.details["faults"]) == (
        "default",
        "proxied",
        [],
    )


async def test_window_keeps_only_the_newest_points(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """With observations_window 5, ten requests leave the last five."""
    proxy = await start_proxy(proxy_yaml(upstream.url, observations_window=5))
    for i in range(10):
        async with client.get(proxy.url + f"/echo/{i}") as resp:
            await resp.read()

    paths = [p.details["path"] for p in proxy.sink.observer.get_observations()]
    assert paths == [f"/echo/{i}" for i in range(5, 10)]


async def test_observations_file_gets_every_point_as_json_lines(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The file has one JSON object per request, all of them, after stop."""
    path = tmp_path / "obs.jsonl"
    proxy = await start_proxy(
        proxy_yaml(upstream.url, ROUTES, observations_window=2),
        observations_file=path,
    )
    for _ in range(7):
        async with client.get(proxy.url + "/api/pay") as resp:
            await resp.read()
    await proxy.stop()

    lines = path.read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == 7
    assert {d["component"] for d in docs} == {"payments"}
    assert all(d["details"]["status"] == 503 for d in docs)


@pytest.mark.parametrize(
    "formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"]
)
async def test_access_log_has_one_line_per_request(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    formatter: logging.Formatter,
) -> None:
    """The access log writes one line per request with its fields."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Collect()
    access = logging.getLogger("chaosproxy.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        proxy = await start_proxy(proxy_yaml(upstream.url, ROUTES))
        async with client.get(proxy.url + "/api/pay") as resp:
            await resp.read()
    finally:
        access.removeHandler(handler)

    assert len(lines) == 1
    if isinstance(formatter, JsonFormatter):
        doc = json.loads(lines[0])
        assert (doc["event"], doc["status"], doc["route"]) == ("request", 503, "pay")
        assert doc["faults"] == ["error"]
    else:
        assert "request" in lines[0]
        assert "status=503" in lines[0]
        assert "faults=error" in lines[0]


class BlockingInjector(FaultInjector):
    """A user's injector whose latency hook blocks its thread, as time.sleep does."""

    def __init__(self) -> None:
        super().__init__(seed=1)
        self.threads: set[int] = set()

    def inject_latency(self, duration_ms: int) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(duration_ms / 1000)


async def test_blocking_injector_subclass_runs_off_the_loop(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Forty concurrent 200 ms blocking holds finish together, never on the loop."""
    import asyncio

    body = """
routes:
  - name: all
    faults: [{fault_type: latency, duration_ms: 200}]
"""
    injector = BlockingInjector()
    proxy = await start_proxy(proxy_yaml(upstream.url, body), injector=injector)

    async def one() -> int:
        async with client.get(proxy.url + "/echo") as resp:
            await resp.read()
            return resp.status

    started = time.monotonic()
    statuses = await asyncio.gather(*(one() for _ in range(40)))
    elapsed = time.monotonic() - started

    assert statuses == [200] * 40
    assert threading.get_ident() not in injector.threads
    assert len(injector.threads) > 1
    # Serialised on a small pool, 40 holds of 200 ms would take 1.6 s or more.
    assert elapsed < 1.5


def test_fault_config_is_the_library_model() -> None:
    """The proxy's faults are the library's FaultConfig, not a copy of it."""
    from chaosproxy.config import parse_config

    config = parse_config(proxy_yaml("http://127.0.0.1:1", ROUTES))
    assert type(config.routes[0].faults[0]) is FaultConfig
