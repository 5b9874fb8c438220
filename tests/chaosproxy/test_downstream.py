"""The client-facing server itself: what a failure of the proxy's own looks like."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from chaosproxy.accept import Acceptor, listening_sockets
from chaosproxy.downstream import DownstreamServer, Request, Response
from chaosproxy.limits import Limits


async def test_failure_of_the_proxys_own_is_a_json_500_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises: the client gets JSON 500, the log the traceback."""

    async def broken(request: Request, response: Response) -> None:
        raise RuntimeError("handler bug")

    server = DownstreamServer(broken, Limits)
    sockets = listening_sockets("127.0.0.1", 0)
    acceptor = Acceptor(asyncio.get_running_loop(), sockets, server)
    await acceptor.start_serving()
    host, port = sockets[0].getsockname()[:2]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/x") as resp,
        ):
            assert resp.status == 500
            assert (await resp.json())["error"] == "proxy_failure"
    finally:
        acceptor.close()
        await server.shutdown(1.0)

    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (record.name, record.getMessage()) == (
        "chaosproxy.downstream",
        "request failed",
    )
    assert record.exc_info is not None
    assert "handler bug" in str(record.exc_info[1])
