"""Connections are accepted in batches, even while the event loop is busy."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from chaosproxy.accept import Acceptor, listening_sockets

CLIENTS = 300


class _Counted(asyncio.Protocol):
    """A protocol that only counts the connections made to it."""

    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _Counted.made += 1


def _connect_many(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections (the kernel completes them before any accept)."""
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


async def _accepted_while_busy() -> int:
    """Serve, keep the loop busy, open a burst of connections; count those taken."""
    loop = asyncio.get_running_loop()
    sockets = listening_sockets("127.0.0.1", 0)
    _Counted.made = 0
    acceptor = Acceptor(loop, sockets, _Counted)
    await acceptor.start_serving()
    port = sockets[0].getsockname()[1]

    busy = True

    def spin() -> None:
        # Each turn of the loop now takes about 40 ms, as under real load.
        if busy:
            time.sleep(0.001)
            loop.call_soon(spin)

    for _ in range(40):
        loop.call_soon(spin)
    clients = await loop.run_in_executor(None, _connect_many, port, CLIENTS)
    await asyncio.sleep(1.0)
    accepted = _Counted.made

    busy = False
    for client in clients:
        client.close()
    acceptor.close()

    return accepted


def test_burst_is_accepted_within_a_second_on_a_busy_uvloop() -> None:
    """300 connections reach the server in a second though each loop turn is slow.

    uvloop's own accept takes one connection per turn: about 25 a second here.
    """
    uvloop = pytest.importorskip("uvloop")
    assert uvloop.run(_accepted_while_busy()) == CLIENTS


async def test_port_in_use_is_an_oserror_and_leaves_nothing_open() -> None:
    """Binding a taken port raises OSError; no socket is left behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", port)
