"""Routing: globs, regexes, methods, headers, order, and where shared faults land."""

from __future__ import annotations

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from aumai_chaos import FaultType
from chaosproxy.config import parse_config
from chaosproxy.routing import build_router, compile_glob
from tests.conftest import ProxyFactory, Upstream, proxy_yaml


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/api/checkout/*", "/api/checkout/42", True),
        ("/api/checkout/*", "/api/checkout/42/items", False),
        ("/api/checkout/*", "/api/checkout", False),
        ("/api/**", "/api/a/b/c", True),
        ("/api/**", "/api", True),
        ("/api/**", "/apix", False),
        ("/a/**/z", "/a/b/c/z", True),
        ("/files/*.json", "/files/x.json", True),
        ("/files/*.json", "/files/xjson", False),
        ("/exact", "/exact", True),
        ("/exact", "/exact/", False),
        ("/q?x", "/q?x", True),
    ],
    ids=lambda v: str(v),
)
def test_glob_semantics(glob: str, path: str, matches: bool) -> None:
    """``*`` stays in one segment, ``**`` crosses them, all else is literal."""
    assert (compile_glob(glob).match(path) is not None) is matches


def _headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(values))


ROUTES = """
routes:
  - name: beta-checkout
    match: {path: "/api/checkout/*", methods: [post], headers: {X-Tenant: beta}}
    component: payments
  - name: checkout
    match: {path: "/api/checkout/*"}
  - name: reports
    match: {path_regex: "^/reports/[0-9]+$"}
faults:
  - {fault_type: error, error_code: 503, affected_components: [payments, default]}
"""


@pytest.mark.parametrize(
    ("method", "path", "headers", "route"),
    [
        ("POST", "/api/checkout/1", {"x-tenant": "beta"}, "beta-checkout"),
        ("POST", "/api/checkout/1", {"x-tenant": "alpha"}, "checkout"),
        ("GET", "/api/checkout/1", {"x-tenant": "beta"}, "checkout"),
        ("GET", "/reports/12", {}, "reports"),
        ("GET", "/reports/12x", {}, "default"),
        ("GET", "/elsewhere", {}, "default"),
    ],
    ids=[
        "all-conditions",
        "header-differs",
        "method-differs",
        "regex",
        "regex-no",
        "unmatched",
    ],
)
def test_first_matching_route_wins(
    method: str, path: str, headers: dict[str, str], route: str
) -> None:
    """Routes are tried in order and every given condition must hold."""
    router = build_router(parse_config(proxy_yaml("http://127.0.0.1:1", ROUTES)))
    assert router.match(method, path, _headers(**headers)).name == route


def test_top_level_faults_reach_routes_through_their_component() -> None:
    """A top-level fault lands on routes whose component it names, and on default."""
    router = build_router(parse_config(proxy_yaml("http://127.0.0.1:1", ROUTES)))
    by_name = router.by_name

    assert [f.origin for f in by_name["beta-checkout"].faults] == ["global"]
    assert by_name["checkout"].faults == ()
    assert by_name["checkout"].component == "checkout"
    assert [f.config.error_code for f in router.default.faults] == [503]
    assert router.default.component == "default"


def test_latency_faults_are_decided_first() -> None:
    """Latency moves ahead of other faults; the rest keep their order."""
    body = """
routes:
  - name: r
    faults:
      - {fault_type: error, error_code: 500}
      - {fault_type: latency, duration_ms: 5}
      - {fault_type: resource_exhaustion}
      - {fault_type: latency, duration_ms: 6}
"""
    router = build_router(parse_config(proxy_yaml("http://127.0.0.1:1", body)))
    kinds = [
        (f.config.fault_type, f.config.duration_ms) for f in router.by_name["r"].faults
    ]
    assert kinds == [
        (FaultType.latency, 5),
        (FaultType.latency, 6),
        (FaultType.error, None),
        (FaultType.resource_exhaustion, None),
    ]


async def test_fault_applies_only_to_matching_route_on_the_wire(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """A fault on one route leaves other routes and unmatched paths untouched."""
    body = """
routes:
  - name: broken
    match: {path: "/api/broken/**"}
    faults: [{fault_type: error, error_code: 502}]
  - name: fine
    match: {path: "/api/fine/**"}
"""
    proxy = await start_proxy(proxy_yaml(upstream.url, body))
    async with client.get(proxy.url + "/api/broken/1") as resp:
        assert resp.status == 502
    async with client.get(proxy.url + "/api/fine/1") as resp:
        assert resp.status == 200
    async with client.get(proxy.url + "/echo") as resp:
        assert resp.status == 200

    points = proxy.sink.observer.get_observations()
    assert [(p.component, p.event, p.details["route"]) for p in points] == [
        ("broken", "fault_injected", "broken"),
        ("fine", "proxied", "fine"),
        ("default", "proxied", "default"),
    ]


async def test_route_matching_ignores_the_query_string(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """The query is not part of the path routes match."""
    body = """
routes:
  - name: exact
    match: {path: "/api/item"}
    faults: [{fault_type: error, error_code: 418}]
"""
    proxy = await start_proxy(proxy_yaml(upstream.url, body))
    async with client.get(proxy.url + "/api/item?id=7&x=/y") as resp:
        assert resp.status == 418
