"""Experiments on real traffic: their window, their result, abort and composition."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from aumai_chaos import ChaosExperiment, ExperimentStatus, FaultConfig, FaultType
from chaosproxy.client import AdminError
from chaosproxy.experiments import ExperimentConflict, Experiments
from tests.chaosproxy.adminkit import (
    call,
    send,
    start_admin_proxy,
    start_traffic,
    stop_traffic,
)
from tests.conftest import ProxyFactory, Upstream


def experiment(**fields: Any) -> dict[str, Any]:
    """An experiment body: 503 on payments for a second, unless told otherwise."""
    body: dict[str, Any] = {
        "name": "pay outage",
        "faults": [{"fault_type": "error", "error_code": 503}],
        "target_components": ["payments"],
        "duration_seconds": 1,
    }
    body.update(fields)
    return body


async def test_experiment_faults_act_only_during_its_window(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Before and after the window requests pass; inside it they meet the fault."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    traffic = start_traffic(client, proxy.url + "/api/pay/x")
    await asyncio.sleep(0.2)

    started = time.monotonic()
    experiment_id = await call(admin.start_experiment, experiment())
    result = await call(admin.wait_for_experiment, experiment_id, 10, 0.05)
    ended = time.monotonic()
    await asyncio.sleep(0.3)
    await stop_traffic(traffic)

    assert result.status is ExperimentStatus.completed
    assert set(traffic.statuses(until=started)) == {200}
    assert 503 in traffic.statuses(since=started, until=ended)
    assert set(traffic.statuses(since=ended)) == {200}
    duration = result.summary["duration_seconds"]
    assert isinstance(duration, float)
    assert 0.9 <= duration < 3
    assert result.end_time is not None


async def test_result_counts_exactly_the_requests_the_experiment_touched(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """The summary's counts equal the injected answers the clients really got."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    body = experiment(
        faults=[
            {"fault_type": "latency", "duration_ms": 1},
            {"fault_type": "error", "error_code": 503, "probability": 0.5},
        ]
    )
    experiment_id = await call(admin.start_experiment, body)
    seen = [await send(client, proxy.url + "/api/pay/x") for _ in range(40)]
    await send(client, proxy.url + "/api/search/x")
    result = await call(admin.experiment, experiment_id)

    errors = sum(1 for status, _ in seen if status == 503)
    assert result.status is ExperimentStatus.running
    assert result.summary["faults_by_type"] == {"latency": 40, "error": errors}
    assert result.summary["errors_by_type"] == {"error": errors}
    assert result.summary["total_faults_fired"] == 40 + errors
    assert len(result.observations) == 40
    assert all(p.details["experiments"] == [experiment_id] for p in result.observations)
    assert {p.component for p in result.observations} == {"payments"}


async def test_result_leaves_out_the_routes_own_faults_of_the_same_type(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A route's latency firing beside the experiment's is not counted as its own."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.set_faults, "pay", [{"fault_type": "latency", "duration_ms": 1}])
    body = experiment(faults=[{"fault_type": "latency", "duration_ms": 1}])
    experiment_id = await call(admin.start_experiment, body)
    seen = [await send(client, proxy.url + "/api/pay/x") for _ in range(10)]
    result = await call(admin.experiment, experiment_id)

    assert all(fired == "latency,latency" for _, fired in seen)
    assert result.summary["faults_by_type"] == {"latency": 10}
    assert result.summary["total_faults_fired"] == 10


async def test_abort_stops_the_faults_at_once(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Abort ends a long experiment now: status aborted, the route clean again."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    experiment_id = await call(
        admin.start_experiment,
        experiment(experiment_id="game-day", duration_seconds=600),
    )
    assert await send(client, proxy.url + "/api/pay/x") == (503, "error")

    result = await call(admin.abort_experiment, experiment_id)
    assert result.status is ExperimentStatus.aborted
    duration = result.summary["duration_seconds"]
    assert isinstance(duration, float)
    assert duration < 5
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")
    again = await call(admin.abort_experiment, experiment_id)
    assert (again.status, again.end_time) == (result.status, result.end_time)
    assert proxy.experiments.running_ids() == []


async def test_experiments_on_different_components_run_together(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Two experiments on two components compose, each counting its own requests."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    pay = await call(admin.start_experiment, experiment(duration_seconds=60))
    search = await call(
        admin.start_experiment,
        experiment(
            faults=[{"fault_type": "resource_exhaustion"}],
            target_components=["search"],
            duration_seconds=60,
        ),
    )
    assert await send(client, proxy.url + "/api/pay/x") == (503, "error")
    assert await send(client, proxy.url + "/api/search/x") == (
        429,
        "resource_exhaustion",
    )

    pay_result = await call(admin.experiment, pay)
    search_result = await call(admin.experiment, search)
    assert pay_result.summary["faults_by_type"] == {"error": 1}
    assert search_result.summary["faults_by_type"] == {"resource_exhaustion": 1}
    await call(admin.reset)


async def test_experiment_on_a_busy_component_is_refused_with_409(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A second experiment on a component already under one answers 409."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    first = await call(admin.start_experiment, experiment(duration_seconds=60))
    second = experiment(
        faults=[
            {
                "fault_type": "latency",
                "duration_ms": 5,
                "affected_components": ["payments"],
            }
        ],
        target_components=["search"],
    )
    with pytest.raises(AdminError) as caught:
        await call(admin.start_experiment, second)

    assert (caught.value.status, caught.value.code) == (409, "conflict")
    assert first in str(caught.value)
    assert "payments" in str(caught.value)
    assert proxy.experiments.running_ids() == [first]
    await call(admin.abort_experiment, first)


async def test_running_experiment_id_cannot_be_started_twice(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Starting an id that is running answers 409; once it ended, it may run again."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(
        admin.start_experiment, experiment(experiment_id="e1", duration_seconds=60)
    )
    with pytest.raises(AdminError) as caught:
        await call(admin.start_experiment, experiment(experiment_id="e1"))
    assert caught.value.status == 409

    await call(admin.abort_experiment, "e1")
    assert await call(admin.start_experiment, experiment(experiment_id="e1")) == "e1"
    assert (await call(admin.experiment, "e1")).status is ExperimentStatus.running


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"target_components": ["paymnts"]}, "target_components[0]", "did you mean"),
        (
            {"target_components": []},
            "faults[0].affected_components",
            "names no component",
        ),
        ({"faults": []}, "faults", "at least one"),
        ({"faults": [{"fault_type": "latency"}]}, "faults[0].duration_ms", "required"),
        ({"duration_seconds": 0}, "duration_seconds", "more than 0"),
        ({"name": None}, "name", "string"),
        ({"experiment_id": "a/b"}, "experiment_id", "letters"),
        ({"experiment_id": "route"}, "experiment_id", "reserved"),
        ({"colour": "red"}, "colour", "unknown key"),
    ],
    ids=[
        "unknown-component",
        "no-target",
        "no-faults",
        "fault-rule",
        "zero-duration",
        "bad-name",
        "id-with-slash",
        "reserved-id",
        "unknown-key",
    ],
)
async def test_bad_experiments_are_refused_with_field_errors(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    fields: dict[str, Any],
    path: str,
    words: str,
) -> None:
    """A bad experiment answers 422 naming the field, and nothing starts."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    with pytest.raises(AdminError) as caught:
        await call(admin.start_experiment, experiment(**fields))

    assert caught.value.status == 422
    messages = {e["path"]: e["message"] for e in caught.value.errors}
    assert words in messages[path]
    assert proxy.experiments.results() == []
    assert all(not r.faults for r in proxy.state.router.routes)


async def test_experiment_on_default_acts_on_unmatched_requests(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Targeting ``default`` reaches the requests that match no route."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.start_experiment, experiment(target_components=["default"]))
    assert await send(client, proxy.url + "/elsewhere") == (503, "error")
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")
    await call(admin.reset)


async def test_reset_aborts_running_experiments(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``POST /reset`` leaves only the file's faults: experiments are aborted."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    experiment_id = await call(admin.start_experiment, experiment(duration_seconds=60))
    answer = await call(admin.reset)

    assert answer["aborted_experiments"] == [experiment_id]
    assert (
        await call(admin.experiment, experiment_id)
    ).status is ExperimentStatus.aborted
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")


async def test_experiments_endpoint_lists_results_without_observations(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``GET /experiments`` lists each kept result, its observations left out."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    async with client.post(f"{proxy.admin_url}/experiments", json=experiment()) as resp:
        started = await resp.json()
        assert resp.status == 201
        assert resp.headers["Location"] == f"/experiments/{started['experiment_id']}"
    async with client.get(f"{proxy.admin_url}/experiments") as resp:
        listed = (await resp.json())["experiments"]

    assert [r["experiment"]["experiment_id"] for r in listed] == [
        started["experiment_id"]
    ]
    assert "observations" not in listed[0]
    await proxy.experiments.close()


async def test_only_the_newest_finished_results_are_kept(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Past ``keep_finished`` finished results, the oldest are dropped."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    experiments = Experiments(proxy, keep_finished=2)
    fault = FaultConfig(fault_type=FaultType.error, error_code=503)
    for n in range(4):
        experiments.start(
            ChaosExperiment(
                experiment_id=f"e{n}",
                name="x",
                faults=[fault],
                target_components=["payments"],
            )
        )
        experiments.abort(f"e{n}")

    kept = [r.experiment.experiment_id for r in experiments.results()]
    assert kept == ["e2", "e3"]


async def test_python_api_refuses_a_clash_like_the_http_api(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """``proxy.experiments.start`` raises ExperimentConflict on a busy component."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    fault = FaultConfig(fault_type=FaultType.error, error_code=503)
    first = ChaosExperiment(
        experiment_id="", name="a", faults=[fault], target_components=["payments"]
    )
    proxy.experiments.start(first)
    with pytest.raises(ExperimentConflict):
        proxy.experiments.start(first)
    await proxy.experiments.close()
    assert proxy.experiments.running_ids() == []
