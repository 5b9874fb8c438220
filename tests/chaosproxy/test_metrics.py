"""Prometheus metrics at ``GET /metrics``, moving with real traffic."""

from __future__ import annotations

import socket

import aiohttp

from tests.chaosproxy.adminkit import call, metric, send, start_admin_proxy
from tests.conftest import ProxyFactory, Upstream, proxy_yaml


async def test_request_and_fault_counters_follow_the_traffic(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Requests by route and status, faults by type: each moves as traffic flows."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    before = await call(admin.metrics)
    await call(admin.set_faults, "pay", [{"fault_type": "error", "error_code": 503}])
    for _ in range(3):
        await send(client, proxy.url + "/api/pay/x")
    for _ in range(2):
        await send(client, proxy.url + "/api/search/x")
    after = await call(admin.metrics)

    pay = {"route": "pay", "component": "payments"}
    assert metric(before, "chaosproxy_requests_total", **pay, status="503") == 0
    assert metric(after, "chaosproxy_requests_total", **pay, status="503") == 3
    assert (
        metric(
            after,
            "chaosproxy_requests_total",
            route="search",
            component="search",
            status="200",
        )
        == 2
    )
    assert (
        metric(after, "chaosproxy_faults_injected_total", **pay, fault_type="error")
        == 3
    )
    assert metric(after, "chaosproxy_request_duration_seconds_count", **pay) == 3


async def test_duration_histogram_sees_latency_faults(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A 300 ms latency fault lands above the 0.25 s bucket of the histogram."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.set_faults, "pay", [{"fault_type": "latency", "duration_ms": 300}])
    await send(client, proxy.url + "/api/pay/x")
    text = await call(admin.metrics)

    bucket = "chaosproxy_request_duration_seconds_bucket"
    assert metric(text, bucket, route="pay", le="0.25") == 0
    assert metric(text, bucket, route="pay", le="0.5") == 1


async def test_upstream_errors_are_counted_by_kind(
    start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """An upstream nobody listens on is counted as ``unreachable``, and 502."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy, admin = await start_admin_proxy(start_proxy, f"http://127.0.0.1:{port}")
    assert (await send(client, proxy.url + "/api/pay/x"))[0] == 502
    text = await call(admin.metrics)

    assert metric(text, "chaosproxy_upstream_errors_total", kind="unreachable") == 1
    assert metric(text, "chaosproxy_requests_total", status="502") == 1


async def test_active_experiments_gauge_rises_and_falls(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """The gauge counts running experiments: 1 while one runs, 0 after abort."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    experiment_id = await call(
        admin.start_experiment,
        {
            "name": "x",
            "faults": [{"fault_type": "latency", "duration_ms": 1}],
            "target_components": ["payments"],
        },
    )
    running = await call(admin.metrics)
    await call(admin.abort_experiment, experiment_id)
    ended = await call(admin.metrics)

    assert metric(running, "chaosproxy_active_experiments") == 1
    assert metric(ended, "chaosproxy_active_experiments") == 0


async def test_two_proxies_in_one_process_count_separately(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Each proxy has its own registry: traffic through one leaves the other at 0."""
    first, first_admin = await start_admin_proxy(start_proxy, upstream.url)
    _, second_admin = await start_admin_proxy(start_proxy, upstream.url)
    await send(client, first.url + "/api/pay/x")

    name = "chaosproxy_requests_total"
    assert metric(await call(first_admin.metrics), name, route="pay") == 1
    assert metric(await call(second_admin.metrics), name, route="pay") == 0


async def test_metrics_work_without_the_admin_api(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A proxy without ``admin`` still counts; its metrics render from Python."""
    proxy = await start_proxy(proxy_yaml(upstream.url))
    await send(client, proxy.url + "/echo")

    assert proxy.admin_url is None
    text = proxy.metrics.render().decode()
    assert metric(text, "chaosproxy_requests_total", route="default") == 1
