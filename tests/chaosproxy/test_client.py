"""The Python client of the admin API, used as a test suite would use it."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from aumai_chaos import ChaosExperiment, FaultConfig, FaultType, ObservationPoint
from chaosproxy.client import AdminClient, AdminError
from chaosproxy.config import parse_config
from chaosproxy.server import ChaosProxy
from tests.chaosproxy.adminkit import call, send, start_admin_proxy
from tests.chaosproxy.test_cli import free_port
from tests.conftest import ProxyFactory, Upstream

FILE_FAULT = """
routes:
  - name: pay
    match: {path: "/api/pay/**"}
    component: payments
    faults: [{fault_type: error, error_code: 500}]
"""
ERROR_503 = FaultConfig(fault_type=FaultType.error, error_code=503)


async def test_set_faults_block_restores_the_file_faults_on_exit(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Inside the ``with`` block the new faults act; after it, the file's again."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url, FILE_FAULT)

    def scenario() -> None:
        with admin.set_faults("pay", [ERROR_503], ttl_seconds=60) as change:
            assert change.view["faults"][0]["error_code"] == 503
            asyncio.run_coroutine_threadsafe(check(503), loop).result()
        asyncio.run_coroutine_threadsafe(check(500), loop).result()

    async def check(status: int) -> None:
        assert (await send(client, proxy.url + "/api/pay/x"))[0] == status

    loop = asyncio.get_running_loop()
    await call(scenario)
    assert proxy.route_fault_overrides() == {}


async def test_set_faults_block_restores_an_earlier_override(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A block over run-time faults puts them back, with their time to live."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url, FILE_FAULT)
    latency = {"fault_type": "latency", "duration_ms": 5}
    await call(admin.set_faults, "pay", [latency], 30)

    def scenario() -> None:
        with admin.set_faults("pay", [ERROR_503]):
            assert admin.route("pay")["expires_in_seconds"] is None

    await call(scenario)
    view = await call(admin.route, "pay")
    assert [f["fault_type"] for f in view["faults"]] == ["latency"]
    assert 0 < view["expires_in_seconds"] <= 30


async def test_clear_faults_block_restores_the_file_faults(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``clear_faults`` also works as a block: quiet inside, the file's faults after."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url, FILE_FAULT)
    change = await call(admin.clear_faults, "pay")
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")
    await call(change.restore)
    assert (await send(client, proxy.url + "/api/pay/x"))[0] == 500


async def test_refusals_raise_admin_error_with_field_errors(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A 422 becomes AdminError carrying status, code and every field error."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    with pytest.raises(AdminError) as caught:
        await call(admin.set_faults, "pay", [{"fault_type": "latency"}])

    error = caught.value
    assert (error.status, error.code) == (422, "invalid")
    assert error.errors == [
        {"path": "faults[0].duration_ms", "message": error.errors[0]["message"]}
    ]
    assert "faults[0].duration_ms" in str(error)


async def test_client_sends_the_token_and_never_shows_it(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """With the token the client is let in; its repr does not contain the token."""
    proxy, admin = await start_admin_proxy(
        start_proxy, upstream.url, admin_token="hunter2-token"
    )
    assert (await call(admin.summary))["requests"] == 0
    assert "hunter2-token" not in repr(admin)

    anonymous = AdminClient(proxy.admin_url or "")
    with pytest.raises(AdminError) as caught:
        await call(anonymous.summary)
    assert caught.value.status == 401


async def test_observations_come_back_as_library_models(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``observations()`` returns ObservationPoint objects with the request details."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await send(client, proxy.url + "/api/pay/x")
    [point] = await call(admin.observations, 1)

    assert isinstance(point, ObservationPoint)
    assert (point.component, point.event) == ("payments", "proxied")
    assert point.details["status"] == 200


async def test_experiment_round_trip_with_library_models(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A ChaosExperiment goes in; ``wait_for_experiment`` gives an ExperimentResult."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    experiment = ChaosExperiment(
        experiment_id="",
        name="short",
        faults=[ERROR_503],
        target_components=["payments"],
        duration_seconds=1,
    )
    experiment_id = await call(admin.start_experiment, experiment)
    with pytest.raises(TimeoutError):
        await call(admin.wait_for_experiment, experiment_id, 0.1, 0.05)
    result = await call(admin.wait_for_experiment, experiment_id, 10, 0.05)

    assert result.experiment.name == "short"
    assert result.status.value == "completed"


def test_unreachable_admin_api_raises_oserror() -> None:
    """No admin API listening: the client raises OSError (URLError), not AdminError."""
    admin = AdminClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(urllib.error.URLError):
        admin.health()


@pytest.fixture
def proxy_in_thread() -> Iterator[ChaosProxy]:
    """A proxy served by its own event loop on another thread, as a plugin would."""
    config = parse_config(
        f"""
version: 1
listen: "127.0.0.1:0"
upstream: "http://127.0.0.1:{free_port()}"
admin: "127.0.0.1:0"
seed: 7
routes: [{{name: pay, match: {{path: "/api/pay/**"}}}}]
"""
    )
    proxy = ChaosProxy(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-proxy-loop")
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    yield proxy
    asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _status(url: str) -> int:
    """GET ``url`` with the standard library; return the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_plain_synchronous_test_fails_a_share_of_a_route(
    proxy_in_thread: ChaosProxy,
) -> None:
    """The README's story: fail 30% of /api/pay for one test, from sync code."""
    admin = AdminClient(proxy_in_thread.admin_url or "")
    faults = [{"fault_type": "error", "probability": 0.3, "error_code": 503}]
    with admin.set_faults("pay", faults, ttl_seconds=60):
        statuses = [_status(proxy_in_thread.url + "/api/pay/x") for _ in range(60)]
    after = _status(proxy_in_thread.url + "/api/pay/x")

    # Not 503: the upstream in this test does not exist, so unfaulted requests 502.
    assert 5 <= statuses.count(503) <= 35
    assert set(statuses) == {502, 503}
    assert after == 502
