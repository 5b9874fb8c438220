"""Raw-socket clients for tests that must send what no HTTP library would."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

#: A well-formed request that asks the proxy to close the connection after it.
GOOD_REQUEST = b"GET /echo/ok HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n"


@dataclass
class RawReply:
    """What came back on one raw connection."""

    data: bytes
    closed: bool
    reset: bool

    @property
    def status(self) -> int | None:
        """The status of the first response, or None when none arrived."""
        if not self.data.startswith(b"HTTP/"):
            return None
        return int(self.data.split(b" ", 2)[1])

    @property
    def body(self) -> bytes:
        """The bytes after the first response's head."""
        return self.data.partition(b"\r\n\r\n")[2]


async def read_reply(reader: asyncio.StreamReader, wait: float) -> RawReply:
    """Read until the peer closes, resets, or stays silent for ``wait`` seconds."""
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), wait)
            if not chunk:
                return RawReply(data, closed=True, reset=False)
            data += chunk
    except TimeoutError:
        return RawReply(data, closed=False, reset=False)
    except ConnectionResetError:
        return RawReply(data, closed=True, reset=True)


async def exchange(
    address: tuple[str, int],
    parts: bytes | Sequence[bytes],
    *,
    pause: float = 0.0,
    wait: float = 2.0,
) -> RawReply:
    """Send ``parts`` (``pause`` seconds apart) on a new connection; read the reply.

    A connection the proxy resets while the parts are still going out counts as
    closed, with whatever had arrived.
    """
    reader, writer = await asyncio.open_connection(*address)
    chunks = [parts] if isinstance(parts, bytes) else list(parts)
    try:
        for index, chunk in enumerate(chunks):
            if index and pause:
                await asyncio.sleep(pause)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        reply = await read_reply(reader, 0.2)
        return RawReply(reply.data, closed=True, reset=True)
    try:
        return await read_reply(reader, wait)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def abort(writer: asyncio.StreamWriter) -> None:
    """Vanish with a TCP reset rather than an orderly close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Fail if the proxy logged anything at ERROR or above, or with a traceback.

    ``aiohttp.server`` is left out: only the tests' own upstreams log there (the
    proxy's connections log on ``chaosproxy.downstream``), and an upstream whose
    client vanished mid-upload rightly complains.
    """
    bad = [
        f"{r.name} {r.levelname} {r.getMessage()}"
        for r in caplog.records
        if (r.levelno >= logging.ERROR or r.exc_info) and r.name != "aiohttp.server"
    ]
    assert not bad, "\n".join(bad)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one response (Content-Length or chunked) and return its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (
            line.partition(b":") for line in head.split(b"\r\n")[1:] if line
        )
    }
    if b"content-length" in fields:
        return status, await reader.readexactly(int(fields[b"content-length"]))
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")

    return status, body
