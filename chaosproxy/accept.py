"""Listening sockets, and an acceptor that takes every waiting connection at once.

Why not the loop's own ``create_server``: under uvloop it listens through libuv,
which since libuv 1.45 accepts one connection per turn of the event loop. Under
load a turn runs hundreds of requests' callbacks and lasts tens of milliseconds,
so a burst of new connections drains at a few dozen a second; measured with 1000 clients
and a 100 ms latency fault, the last connections' first requests waited over
5 seconds in the kernel's accept queue while the proxy answered others in 400 ms.
:class:`Acceptor` takes every connection waiting (up to a batch) each time the
listening socket is readable, then connects each to a new protocol.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

__all__ = ["Acceptor", "listening_sockets"]

logger = logging.getLogger("chaosproxy.server")

#: Connections taken per readiness of the listening socket, so that a flood of
#: them cannot keep the loop from the requests already accepted.
ACCEPT_BATCH = 256
_BACKLOG = 2048
# Out of file descriptors: accepting pauses this long instead of spinning.
_EMFILE_PAUSE_SECONDS = 0.1


def listening_sockets(
    host: str, port: int, *, reuse_port: bool = False
) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to (as asyncio would).

    ``reuse_port`` lets other processes bind the same port (``--workers``).
    Raises OSError when an address cannot be bound; nothing stays open then.
    """
    found = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    seen: set[tuple[int, object]] = set()
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in found:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio binds them.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise

    return sockets


class Acceptor(asyncio.AbstractServer):
    """Accepts on listening sockets and connects each client to a protocol."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self._loop = loop
        self._sockets = sockets
        self._protocol_factory = protocol_factory
        self._connecting: set[asyncio.Task[object]] = set()
        self._serving = False
        self._closed = asyncio.Event()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """Return the loop the server runs on."""
        return self._loop

    def is_serving(self) -> bool:
        """Return whether connections are being accepted."""
        return self._serving

    async def start_serving(self) -> None:
        """Start accepting connections."""
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    async def serve_forever(self) -> None:
        """Accept until closed."""
        await self.start_serving()
        await self._closed.wait()

    def close(self) -> None:
        """Stop accepting and close the listening sockets; open connections stay."""
        if self._serving:
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())
        self._serving = False
        for sock in self._sockets:
            sock.close()
        for task in self._connecting:
            task.cancel()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has been called."""
        await self._closed.wait()

    def _accept(self, sock: socket.socket) -> None:
        """Take the waiting connections (up to a batch) and connect each."""
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (
                    errno.EMFILE,
                    errno.ENFILE,
                    errno.ENOBUFS,
                    errno.ENOMEM,
                ):
                    self._pause(sock, exc)
                    return
                raise
            client.setblocking(False)
            if client.family in (socket.AF_INET, socket.AF_INET6):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(
                self._connect(client), name="chaosproxy-accept"
            )
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, client: socket.socket) -> None:
        """Wrap an accepted socket in a transport and the server's protocol."""
        try:
            await self._loop.connect_accepted_socket(self._protocol_factory, client)
        except asyncio.CancelledError:
            client.close()
            raise
        except OSError:
            # The client left before its transport existed; nothing to answer.
            client.close()
        except Exception:
            logger.exception("accepting a connection failed")
            client.close()

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        """Stop accepting for a moment when the process runs out of resources."""
        logger.warning("accept paused", extra={"error": str(exc)})
        self._loop.remove_reader(sock.fileno())
        self._loop.call_later(_EMFILE_PAUSE_SECONDS, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        """Accept again after a pause, unless the server closed meanwhile."""
        if self._serving:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
