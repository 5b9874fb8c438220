"""The client-facing server itself: what a failure of the proxy's own looks like."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from chaosproxy.downstream import DownstreamServer
from chaosproxy.limits import Limits


async def test_failure_of_the_proxys_own_is_a_json_500_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises: the client gets JSON 500, the log the traceback."""

    async def broken(request: web.BaseRequest) -> web.StreamResponse:
        raise RuntimeError("handler bug")

    runner = web.ServerRunner(DownstreamServer(broken, Limits))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/x") as resp,
        ):
            assert resp.status == 500
            assert (await resp.json())["error"] == "proxy_failure"
    finally:
        await runner.cleanup()

    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (record.name, record.getMessage()) == (
        "chaosproxy.downstream",
        "request failed",
    )
    assert record.exc_info is not None
    assert "handler bug" in str(record.exc_info[1])
