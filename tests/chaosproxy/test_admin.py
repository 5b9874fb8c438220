"""The admin API's endpoints, against a running proxy with real traffic."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from chaosproxy.client import AdminError
from tests.chaosproxy.adminkit import call, send, start_admin_proxy
from tests.conftest import ProxyFactory, Upstream

ERROR_503 = {"fault_type": "error", "error_code": 503}


async def test_healthz_answers_ok(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """``GET /healthz`` answers ``{"status": "ok"}``."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    assert await call(admin.health) == {"status": "ok"}


async def test_config_shows_the_configuration_with_the_token_redacted(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """``GET /config`` returns the configuration in force, never the token itself."""
    _, admin = await start_admin_proxy(
        start_proxy, upstream.url, admin_token="s3cret-token"
    )
    config = await call(admin.config)

    assert config["upstream"] == upstream.url
    assert [r["name"] for r in config["routes"]] == ["pay", "search"]
    assert config["admin_token"] == "<redacted>"
    assert "s3cret-token" not in json.dumps(config)


async def test_put_faults_acts_on_the_next_request(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A PUT list of faults is in force for the next request on that route only."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    change = await call(admin.set_faults, "pay", [ERROR_503])

    assert change.view["overridden"] is True
    assert [f["origin"] for f in change.view["faults"]] == ["route"]
    assert await send(client, proxy.url + "/api/pay/x") == (503, "error")
    assert await send(client, proxy.url + "/api/search/x") == (200, "")


async def test_put_faults_takes_the_object_form_with_a_ttl(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``{"faults": [...], "ttl_seconds": N}`` sets faults that revert by themselves."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    body = {"faults": [ERROR_503], "ttl_seconds": 0.5}
    async with client.put(f"{proxy.admin_url}/routes/pay/faults", json=body) as resp:
        view = await resp.json()

    assert resp.status == 200
    assert 0 < view["expires_in_seconds"] <= 0.5
    assert await send(client, proxy.url + "/api/pay/x") == (503, "error")
    await asyncio.sleep(0.8)
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")
    assert proxy.route_fault_overrides() == {}


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ([{"fault_type": "latency"}], "[0].duration_ms", "required"),
        (
            [ERROR_503, {"fault_type": "error", "error_code": 600}],
            "[1].error_code",
            "400 to 599",
        ),
        (
            [{"fault_type": "error", "error_code": 503, "probability": 1.5}],
            "[0].probability",
            "0 to 1",
        ),
        (
            [{"fault_type": "error", "error_code": 503, "probability": "0.5"}],
            "[0].probability",
            "number",
        ),
        ([{"fault_type": "explode"}], "[0].fault_type", "latency"),
        ([{"fault_type": "timeout", "colour": "red"}], "[0].colour", "unknown key"),
        ({"faults": [{"fault_type": "latency"}]}, "faults[0].duration_ms", "required"),
        ({"faults": [], "ttl_seconds": -1}, "ttl_seconds", "more than 0"),
        ({"faults": [], "ttl": 5}, "ttl", "unknown key"),
        ({"ttl_seconds": 5}, "faults", "list of faults"),
        ("error", "", "list of faults"),
    ],
    ids=[
        "latency-without-duration",
        "error-code-out-of-range",
        "probability-above-1",
        "probability-as-text",
        "unknown-fault-type",
        "unknown-field",
        "object-form-path",
        "negative-ttl",
        "unknown-body-key",
        "object-without-faults",
        "not-a-list",
    ],
)
async def test_put_faults_rejects_bad_bodies_with_field_errors(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    body: object,
    path: str,
    words: str,
) -> None:
    """A bad body answers 422 naming the field's path, and changes nothing."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    async with client.put(f"{proxy.admin_url}/routes/pay/faults", json=body) as resp:
        doc = await resp.json()

    assert resp.status == 422
    assert doc["error"] == "invalid"
    messages = {e["path"]: e["message"] for e in doc["errors"]}
    assert words in messages[path]
    assert proxy.route_fault_overrides() == {}


async def test_put_faults_reports_every_problem_at_once(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Two bad faults in one body: both are reported in one 422."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    body = [{"fault_type": "latency"}, {"fault_type": "error"}]
    async with client.put(f"{proxy.admin_url}/routes/pay/faults", json=body) as resp:
        doc = await resp.json()

    assert resp.status == 422
    assert {e["path"] for e in doc["errors"]} == {"[0].duration_ms", "[1].error_code"}


async def test_malformed_json_answers_400(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A body that is not JSON answers 400 with where the parse failed."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    url = f"{proxy.admin_url}/routes/pay/faults"
    async with client.put(url, data=b'[{"fault_type": ') as resp:
        doc = await resp.json()

    assert resp.status == 400
    assert doc["error"] == "malformed_json"
    assert "line 1" in doc["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/routes/nope/faults"),
        ("DELETE", "/routes/nope/faults"),
        ("GET", "/routes/nope"),
        ("POST", "/reset?route=nope"),
        ("GET", "/experiments/nope"),
        ("POST", "/experiments/nope/abort"),
        ("GET", "/no/such/endpoint"),
    ],
    ids=["put", "delete", "get-route", "reset-route", "experiment", "abort", "path"],
)
async def test_unknown_names_answer_404_in_json(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    method: str,
    path: str,
) -> None:
    """An unknown route, experiment or endpoint answers 404 with a JSON error."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    async with client.request(method, f"{proxy.admin_url}{path}", json=[]) as resp:
        doc = await resp.json()

    assert resp.status == 404
    assert doc["error"] == "not_found"


async def test_wrong_method_answers_405_in_json(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A known path with the wrong method answers 405 with a JSON error."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    async with client.delete(f"{proxy.admin_url}/healthz") as resp:
        doc = await resp.json()
    assert (resp.status, doc["error"]) == (405, "method_not_allowed")


async def test_unknown_route_error_suggests_the_closest_name(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """A misspelt route name is answered with the name it was probably meant to be."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    with pytest.raises(AdminError) as caught:
        await call(admin.set_faults, "payy", [ERROR_503])
    assert caught.value.status == 404
    assert "'pay'" in str(caught.value)


async def test_delete_faults_silences_the_file_faults_of_a_route(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """DELETE clears a route's own faults, file faults included, until reset."""
    body = """
routes:
  - name: pay
    match: {path: "/api/pay/**"}
    faults: [{fault_type: error, error_code: 500}]
"""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url, body)
    assert await send(client, proxy.url + "/api/pay/x") == (500, "error")

    await call(admin.clear_faults, "pay")
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")
    await call(admin.reset)
    assert await send(client, proxy.url + "/api/pay/x") == (500, "error")


async def test_delete_faults_with_a_ttl_silences_them_for_a_while(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``DELETE ...?ttl_seconds=N``: the file's faults come back after N seconds."""
    body = """
routes:
  - name: pay
    faults: [{fault_type: error, error_code: 500}]
"""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url, body)
    await call(admin.clear_faults, "pay", 0.4)
    assert await send(client, proxy.url + "/x") == (200, "")
    await asyncio.sleep(0.7)
    assert await send(client, proxy.url + "/x") == (500, "error")


async def test_reset_of_one_route_leaves_the_others(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``POST /reset?route=pay`` reverts pay only; search keeps its run-time faults."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.set_faults, "pay", [ERROR_503])
    await call(admin.set_faults, "search", [ERROR_503])

    assert (await call(admin.reset, "pay"))["reset"] == ["pay"]
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")
    assert await send(client, proxy.url + "/api/search/x") == (503, "error")


async def test_default_route_takes_faults_for_unmatched_requests(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """The route named ``default`` reaches requests that match no route."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.set_faults, "default", [ERROR_503])
    assert await send(client, proxy.url + "/elsewhere") == (503, "error")
    assert await send(client, proxy.url + "/api/pay/x") == (200, "")


async def test_routes_lists_every_route_with_its_faults(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """``GET /routes`` lists the configured routes and ``default``, with faults."""
    _, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.set_faults, "search", [ERROR_503], 30)
    routes = {r["name"]: r for r in await call(admin.routes)}

    assert list(routes) == ["pay", "search", "default"]
    assert routes["search"]["component"] == "search"
    assert routes["search"]["faults"][0]["error_code"] == 503
    assert 0 < routes["search"]["expires_in_seconds"] <= 30
    assert routes["pay"]["faults"] == []


async def test_put_under_load_never_shows_a_mixed_rule_set(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """Swapping one pair of faults for another under load: never half of each."""
    body = """
routes:
  - name: all
    match: {path: "/**"}
"""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url, body)
    first = [
        {"fault_type": "latency", "duration_ms": 0},
        {"fault_type": "error", "error_code": 501},
    ]
    second = [
        {"fault_type": "latency", "duration_ms": 0},
        {"fault_type": "resource_exhaustion"},
    ]
    allowed = {(501, "latency,error"), (429, "latency,resource_exhaustion")}
    url = f"{proxy.admin_url}/routes/all/faults"
    async with client.put(url, json=first):
        pass

    seen: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            seen.append(await send(client, proxy.url + "/echo"))

    workers = [asyncio.create_task(load(), name=f"load-{n}") for n in range(16)]
    for flip in range(40):
        async with client.put(url, json=second if flip % 2 == 0 else first) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.gather(*workers)

    assert len(seen) > 100
    assert set(seen) <= allowed
    assert set(seen) == allowed
