"""What the admin API shows: observations, summary, explain and its own description."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chaosproxy.admin import build_admin_app
from chaosproxy.admin.openapi import openapi_document
from tests.chaosproxy.adminkit import call, send, start_admin_proxy
from tests.conftest import ProxyFactory, Upstream

ERROR_503 = {"fault_type": "error", "error_code": 503}


async def test_observations_are_the_newest_points_filtered_by_component(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``/observations?limit&component`` returns the newest matching points."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    for n in range(5):
        await send(client, f"{proxy.url}/api/pay/{n}")
    await send(client, proxy.url + "/api/search/x")

    points = await call(admin.observations, 3, "payments")
    assert [p.details["path"] for p in points] == [f"/api/pay/{n}" for n in (2, 3, 4)]
    assert {p.component for p in points} == {"payments"}
    assert len(await call(admin.observations)) == 6


async def test_observations_limit_must_be_a_positive_number(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``limit=0`` answers 422 naming the parameter."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    async with client.get(f"{proxy.admin_url}/observations?limit=0") as resp:
        doc = await resp.json()
    assert resp.status == 422
    assert doc["errors"][0]["path"] == "limit"


async def test_summary_counts_requests_statuses_and_faults(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``/summary`` counts requests by status and fault, overall and per component."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    await call(admin.set_faults, "pay", [ERROR_503])
    for _ in range(3):
        await send(client, proxy.url + "/api/pay/x")
    await send(client, proxy.url + "/api/search/x")
    summary = await call(admin.summary)

    assert summary["requests"] == 4
    assert summary["by_status"] == {"200": 1, "503": 3}
    assert summary["faults_by_type"] == {"error": 3}
    assert summary["components"]["payments"]["by_status"] == {"503": 3}
    assert summary["components"]["search"]["requests"] == 1


async def test_explain_names_the_route_and_each_fault_with_its_chance(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """``/explain`` says which route matches, and how often each fault really acts."""
    body = """
routes:
  - name: pay
    match: {path: "/api/pay/**", methods: [POST], headers: {x-tenant: beta}}
    component: payments
    faults:
      - {fault_type: data_corruption, probability: 0.5}
      - {fault_type: error, probability: 0.5, error_code: 503}
      - {fault_type: timeout, probability: 0.5}
      - {fault_type: latency, probability: 0.25, duration_ms: 10}
"""
    _, admin = await start_admin_proxy(start_proxy, upstream.url, body)
    found = await call(admin.explain, "/api/pay/1?x=y", "post", {"X-Tenant": "beta"})

    assert (found["route"], found["component"], found["matched"]) == (
        "pay",
        "payments",
        True,
    )
    chances = [(f["fault"]["fault_type"], f["chance"]) for f in found["faults"]]
    assert chances == [
        ("latency", 0.25),
        ("data_corruption", 0.125),
        ("error", 0.5),
        ("timeout", 0.25),
    ]
    assert found["chance_of_any_fault"] == pytest.approx(1 - 0.75 * 0.5**3)


@pytest.mark.parametrize(
    ("method", "headers", "route"),
    [
        ("POST", {"X-Tenant": "beta"}, "pay"),
        ("GET", {"X-Tenant": "beta"}, "default"),
        ("POST", {"X-Tenant": "alpha"}, "default"),
        ("POST", {}, "default"),
    ],
    ids=["all-conditions", "wrong-method", "wrong-header", "missing-header"],
)
async def test_explain_applies_every_condition_of_a_route(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    method: str,
    headers: dict[str, str],
    route: str,
) -> None:
    """``/explain`` matches method and headers as the proxy does."""
    body = """
routes:
  - name: pay
    match: {path: "/api/pay/**", methods: [POST], headers: {x-tenant: beta}}
"""
    _, admin = await start_admin_proxy(start_proxy, upstream.url, body)
    found = await call(admin.explain, "/api/pay/1", method, headers)
    assert found["route"] == route
    assert found["matched"] is (route != "default")


async def test_explain_needs_a_path(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``/explain`` without a path, or with a bad header, answers 422."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url)
    async with client.get(f"{proxy.admin_url}/explain?header=nocolon") as resp:
        doc = await resp.json()
    assert resp.status == 422
    assert {e["path"] for e in doc["errors"]} == {"path", "header"}


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (method, path) pair an OpenAPI document describes."""
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }


async def test_openapi_describes_every_route_of_the_app(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Every route the admin app serves appears in /openapi.json, and no other."""
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url)
    served = {
        (route.method, route.resource.canonical)
        for route in build_admin_app(proxy).router.routes()
        if route.resource is not None
    }
    assert _operations(await call(admin.openapi)) == served


def test_openapi_document_is_well_formed() -> None:
    """The document is OpenAPI 3.1, and every $ref points at a schema it defines."""
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    text = json.dumps(doc)
    refs = {
        part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]
    }

    assert doc["openapi"].startswith("3.1")
    assert refs <= set(schemas)
    assert {"FaultConfig", "ChaosExperiment", "ExperimentResult"} <= set(schemas)
    for path, item in doc["paths"].items():
        params = {p["name"] for op in item.values() for p in op.get("parameters", [])}
        for name in path.replace("}", "{").split("{")[1::2]:
            assert name in params, f"{path}: no parameter {name}"
        for operation in item.values():
            assert operation["responses"], path


@pytest.mark.skipif(
    shutil.which("openapi-spec-validator") is None,
    reason="openapi-spec-validator is not installed",
)
def test_openapi_document_passes_the_reference_validator(tmp_path: Path) -> None:
    """openapi-spec-validator, where installed, accepts the document."""
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(openapi_document()), encoding="utf-8")
    result = subprocess.run(
        ["openapi-spec-validator", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
