"""The ``limits`` section: validated like the rest of the file, applied on the wire."""

from __future__ import annotations

import textwrap
from pathlib import Path

import aiohttp
import pytest

from chaosproxy.config import ConfigError, ProxyConfig, config_schema, parse_config
from chaosproxy.limits import Limits
from tests.chaosproxy.rawkit import exchange
from tests.conftest import ProxyFactory, Upstream, proxy_yaml

HEAD = 'version: 1\nupstream: "http://127.0.0.1:9000"\nlimits:\n'


def problems_in(body: str) -> list[str]:
    """Parse a file whose limits section is ``body``; return its problems."""
    with pytest.raises(ConfigError) as caught:
        parse_config(HEAD + textwrap.indent(body, "  "), "proxy.yaml")
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "max_headers: 0\n",
            "proxy.yaml:4: limits.max_headers: expected 1 to 10000, got 0",
            id="no-headers-allowed",
        ),
        pytest.param(
            "max_request_line_bytes: 100\n",
            "proxy.yaml:4: limits.max_request_line_bytes: expected 256 to 1048576, "
            "got 100",
            id="request-line-too-small",
        ),
        pytest.param(
            "max_header_line_bytes: 2000000\n",
            "proxy.yaml:4: limits.max_header_line_bytes: expected 256 to 1048576, "
            "got 2000000",
            id="header-line-too-large",
        ),
        pytest.param(
            "header_read_timeout_ms: 10s\n",
            "proxy.yaml:4: limits.header_read_timeout_ms: expected an integer, "
            "got '10s'",
            id="timeout-with-unit",
        ),
        pytest.param(
            "keepalive_timeout_ms: 1.5\n",
            "proxy.yaml:4: limits.keepalive_timeout_ms: expected an integer, got 1.5",
            id="timeout-fractional",
        ),
        pytest.param(
            "keepalive_timeout_ms: 0\n",
            "proxy.yaml:4: limits.keepalive_timeout_ms: expected 1 to 86400000, got 0",
            id="timeout-zero",
        ),
        pytest.param(
            "header_read_timeout_ms: true\n",
            "proxy.yaml:4: limits.header_read_timeout_ms: expected an integer, "
            "got true",
            id="timeout-boolean",
        ),
        pytest.param(
            "max_header_bytes: 8190\n",
            "proxy.yaml:4: limits.max_header_bytes: unknown key 'max_header_bytes'; "
            "did you mean 'max_header_line_bytes'?",
            id="misspelt-key",
        ),
    ],
)
def test_bad_limit_is_reported_with_line_path_and_bounds(
    body: str, expected: str
) -> None:
    """Each bad limit names the file, the line, the field's path and its bounds."""
    assert problems_in(body) == [expected]


def test_limits_default_to_values_a_user_would_choose() -> None:
    """Without a limits section the documented defaults are in force."""
    config = parse_config('version: 1\nupstream: "http://127.0.0.1:9000"\n')

    assert config.limits == Limits(
        max_request_line_bytes=8190,
        max_header_line_bytes=8190,
        max_headers=128,
        header_read_timeout_ms=20_000,
        keepalive_timeout_ms=3_630_000,
    )


def test_schema_describes_every_limit() -> None:
    """Editors see each limit with its bounds and a description."""
    limits = config_schema()["$defs"]["Limits"]["properties"]

    assert set(limits) == set(Limits.model_fields)
    assert all(field.get("description") for field in limits.values())
    assert limits["max_headers"]["minimum"] == 1


async def test_tighter_limits_are_applied_to_requests(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Lowered limits refuse what exceeds them and pass what does not."""
    limits = (
        "limits:\n  max_request_line_bytes: 512\n  max_header_line_bytes: 300\n"
        "  max_headers: 10\n"
    )
    proxy = await start_proxy(proxy_yaml(upstream.url, limits))
    assert proxy.address is not None

    def request(path_bytes: int, header_bytes: int, headers: int) -> bytes:
        lines = [b"GET /echo/" + b"p" * path_bytes + b" HTTP/1.1", b"Host: p"]
        lines += [b"X-Big: " + b"v" * header_bytes] if header_bytes else []
        lines += [b"X-N%d: v" % n for n in range(headers)]
        return b"\r\n".join([*lines, b"Connection: close", b"", b""])

    statuses = [
        (await exchange(proxy.address, request(*shape))).status
        for shape in [(400, 0, 0), (600, 0, 0), (0, 250, 0), (0, 400, 0), (0, 0, 7),
                      (0, 0, 12)]
    ]  # fmt: skip

    assert statuses == [200, 414, 200, 431, 200, 431]


async def test_reloaded_limits_apply_to_new_connections(
    upstream: Upstream, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    """After a reload lowers max_headers, a new connection is held to it."""
    path = tmp_path / "proxy.yaml"
    path.write_text(proxy_yaml(upstream.url))
    proxy = await start_proxy(path.read_text(), config_path=path)
    headers = {f"X-N{n}": "v" for n in range(20)}
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/echo/a", headers=headers) as resp:
            assert resp.status == 200

        path.write_text(proxy_yaml(upstream.url, "limits:\n  max_headers: 10\n"))
        await proxy.reload()
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as fresh,
            fresh.get(proxy.url + "/echo/a", headers=headers) as resp,
        ):
            assert resp.status == 431
    assert isinstance(proxy.config, ProxyConfig)
    assert proxy.config.limits.max_headers == 10
