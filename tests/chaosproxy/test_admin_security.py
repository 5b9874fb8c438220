"""Who may use the admin API: loopback by default, a bearer token otherwise."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import aiohttp
import pytest

from chaosproxy.admin import AdminExposedError
from chaosproxy.admin.openapi import openapi_document
from chaosproxy.admin.security import is_loopback
from chaosproxy.client import AdminClient, AdminError
from chaosproxy.config import parse_config
from chaosproxy.server import ChaosProxy
from tests.chaosproxy.adminkit import call, send, start_admin_proxy
from tests.chaosproxy.test_cli import chaosproxy, free_port, write_config
from tests.conftest import ProxyFactory, Upstream, proxy_yaml

TOKEN = "tok-8c1e5f0a2b"


def write(path: Path, text: str) -> None:
    """Write a small configuration file."""
    path.write_text(text, encoding="utf-8")


def every_operation() -> list[tuple[str, str]]:
    """Every (method, path) of the admin API, path parameters filled in."""
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "pay", path))
        for path, item in openapi_document()["paths"].items()
        for method in item
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
    ids=["none", "wrong-token", "wrong-scheme", "longer-token", "no-scheme"],
)
async def test_every_endpoint_but_healthz_demands_the_token(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    authorization: str | None,
) -> None:
    """Without the right bearer token every endpoint answers 401; /healthz 200."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url, admin_token=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in every_operation():
        url = f"{proxy.admin_url}{path}"
        async with client.request(method, url, headers=headers, json=[]) as resp:
            doc = await resp.json()
        if path == "/healthz":
            assert resp.status == 200
            continue
        assert (resp.status, doc["error"]) == (401, "unauthorized"), path
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert proxy.route_fault_overrides() == {}


async def test_the_right_token_is_let_in_and_the_scheme_is_case_blind(
    upstream: Upstream, start_proxy: ProxyFactory, client: aiohttp.ClientSession
) -> None:
    """``Authorization: bearer <token>`` (any case) opens every endpoint."""
    proxy, _ = await start_admin_proxy(start_proxy, upstream.url, admin_token=TOKEN)
    headers = {"Authorization": f"bearer {TOKEN}"}
    async with client.get(f"{proxy.admin_url}/summary", headers=headers) as resp:
        assert resp.status == 200


async def test_token_and_authorization_header_never_reach_the_logs(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused and accepted admin requests log nothing that holds the token."""
    caplog.set_level(logging.DEBUG)
    proxy, admin = await start_admin_proxy(start_proxy, upstream.url, admin_token=TOKEN)
    await call(admin.set_faults, "pay", [{"fault_type": "error", "error_code": 503}])
    await call(admin.reset)
    await send(client, proxy.url + "/api/pay/x")
    for value in (TOKEN, f"Bearer {TOKEN}", "Bearer nope"):
        async with client.get(
            f"{proxy.admin_url}/config", headers={"Authorization": value}
        ) as resp:
            await resp.read()

    assert caplog.records, "expected some log lines to check"
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert TOKEN not in text
        assert "nope" not in text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.internal", False),
    ],
    ids=["v4", "v4-net", "v6", "name", "any-v4", "any-v6", "private", "other-name"],
)
def test_loopback_is_recognised(host: str, loopback: bool) -> None:
    """Only loopback addresses and ``localhost`` count as loopback."""
    assert is_loopback(host) is loopback


async def test_proxy_refuses_to_expose_the_admin_api_without_a_token(
    upstream: Upstream,
) -> None:
    """An admin API on 0.0.0.0 without a token: start raises, nothing is bound."""
    port = free_port()
    config = parse_config(
        proxy_yaml(upstream.url, admin=f"0.0.0.0:{port}").replace(
            "127.0.0.1:0", f"127.0.0.1:{free_port()}"
        )
    )
    proxy = ChaosProxy(config)
    with pytest.raises(AdminExposedError, match="admin_token"):
        await proxy.start()

    assert proxy.address is None
    assert proxy.admin_address is None


async def test_exposed_admin_api_with_a_token_starts(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """With a token, the admin API may listen on every interface."""
    text = proxy_yaml(upstream.url, admin="0.0.0.0:0", admin_token=TOKEN)
    proxy = await start_proxy(text)
    assert proxy.admin_address is not None
    admin = AdminClient(f"http://127.0.0.1:{proxy.admin_address[1]}", token=TOKEN)
    assert (await call(admin.summary))["requests"] == 0


def test_cli_refuses_an_exposed_admin_api_with_exit_2(tmp_path: Path) -> None:
    """``run --admin 0.0.0.0:PORT`` without a token exits 2 with one clear line."""
    path = write_config(tmp_path, "http://127.0.0.1:9", f"127.0.0.1:{free_port()}")
    result = chaosproxy("run", "-c", str(path), "--admin", f"0.0.0.0:{free_port()}")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "admin_token" in result.stderr.strip().splitlines()[-1]


async def test_reload_that_drops_the_token_of_an_exposed_api_is_refused(
    upstream: Upstream, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    """A new file without the token, for an API on 0.0.0.0, answers 422."""
    path = tmp_path / "proxy.yaml"
    text = proxy_yaml(upstream.url, admin="0.0.0.0:0", admin_token=TOKEN)
    write(path, text.replace(f'admin_token: "{TOKEN}"\n', ""))
    proxy = await start_proxy(text, config_path=path)
    assert proxy.admin_address is not None
    admin = AdminClient(f"http://127.0.0.1:{proxy.admin_address[1]}", token=TOKEN)

    with pytest.raises(AdminError) as caught:
        await call(admin.reload)
    assert caught.value.status == 422
    assert caught.value.errors[0]["path"] == "admin_token"
    assert proxy.config.admin_token == TOKEN


async def test_reload_rotates_the_token(
    upstream: Upstream, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    """A reloaded token takes effect at once; the old one is refused."""
    path = tmp_path / "proxy.yaml"
    text = proxy_yaml(upstream.url, admin="127.0.0.1:0", admin_token=TOKEN)
    write(path, text.replace(TOKEN, "rotated-token"))
    proxy = await start_proxy(text, config_path=path)
    old = AdminClient(proxy.admin_url or "", token=TOKEN)
    new = AdminClient(proxy.admin_url or "", token="rotated-token")

    await call(old.reload)
    assert (await call(new.summary))["requests"] == 0
    with pytest.raises(AdminError) as caught:
        await call(old.summary)
    assert caught.value.status == 401
