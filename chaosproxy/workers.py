"""``chaosproxy run --workers N``: N proxy processes sharing one port.

One Python process proxies on one core. To use more, the supervisor (the process
the user started) forks N workers; each opens its own listening socket on the same
address with ``SO_REUSEPORT``, and the kernel spreads new connections across them::

    supervisor ── reserves the port (SO_REUSEPORT, bound, not listening)
      ├─ worker 0 ── own socket, own event loop, own upstream pool and rules
      ├─ worker 1 ── ...
      └─ ...        each says "ready" through a pipe; then one "ready" line

    SIGTERM / SIGINT to the supervisor -> SIGTERM to every worker, each lets its
    in-flight requests finish (the grace period), the supervisor exits 0.
    SIGHUP -> passed on: every worker reloads the file.
    A worker that dies on its own -> the others are stopped, exit 1.

Everything a worker holds is its own: observations, metrics and the rules set at
run time. So ``--workers`` refuses the admin API (a change would reach one worker
in N, and its figures would describe one worker's traffic) and the observations
file (N writers would interleave in one file). Linux only: elsewhere
``SO_REUSEPORT`` does not balance connections.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from types import FrameType

__all__ = ["WorkerStart", "listening_socket", "refusal", "serve_workers"]

logger = logging.getLogger("chaosproxy.server")

#: What a worker runs: serve on the socket, call the function once ready, return
#: the exit code. It runs in the forked child.
WorkerStart = Callable[[socket.socket, Callable[[], None]], int]

# How long the supervisor waits for every worker to be ready, and then for each
# to stop after its grace period.
_READY_SECONDS = 30.0
_STOP_MARGIN_SECONDS = 5.0


def refusal(
    workers: int, admin: str | None, observations_file: str | None
) -> str | None:
    """Return why ``--workers`` cannot run with these settings, or None if it can."""
    if workers <= 1:
        return None
    if not sys.platform.startswith("linux"):
        return f"--workers: more than 1 needs Linux, got {workers} on {sys.platform}"
    if admin is not None:
        return (
            "--workers: the admin API would steer one worker of "
            f"{workers}; run with --workers 1 to use admin ({admin})"
        )
    if observations_file is not None:
        return (
            "--workers: the workers would interleave their lines in one "
            "--observations-file; run with --workers 1 to write one"
        )

    return None


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """Open a TCP socket on ``host:port`` that other processes may bind too.

    Raises OSError when the address cannot be bound.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
            sock.setblocking(False)
    except BaseException:
        sock.close()
        raise

    return sock


def _worker_main(start: WorkerStart, host: str, port: int, ready: Connection) -> None:
    """The child's life: its own socket, then the proxy until told to stop."""
    # The supervisor's handlers came along with the fork; the worker's event loop
    # installs its own once it runs. Until then a stop ends the worker at once (it
    # holds no request yet), and a reload is ignored (there is nothing to reload).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sock = listening_socket(host, port)

    def notify_ready() -> None:
        """Tell the supervisor this worker serves."""
        ready.send(True)
        ready.close()

    sys.exit(start(sock, notify_ready))


class _Supervisor:
    """Starts the workers, passes signals on, and reports how they ended."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.stopping = False
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: stop every worker."""
        self.stopping = True
        self.signal_all(signal.SIGTERM)

    def on_reload(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: every worker reloads its file."""
        self.signal_all(signal.SIGHUP)

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every worker still running."""
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def wait_ready(self, pipes: list[Connection]) -> bool:
        """Wait until every worker says it is ready; False if one died first."""
        pending: list[Connection | int] = list(pipes)
        sentinels: list[Connection | int] = [p.sentinel for p in self.processes]
        while pending and not self.stopping:
            done = wait([*pending, *sentinels], timeout=_READY_SECONDS)
            if not done or any(item in sentinels for item in done):
                return False
            pending = [item for item in pending if item not in done]

        return not pending

    def wait_stopped(self) -> int:
        """Wait until the workers end; 0 when each stopped cleanly because told to."""
        failed = False
        running = {p.sentinel: p for p in self.processes}
        while running:
            timeout = self.grace + _STOP_MARGIN_SECONDS if self.stopping else None
            done = wait(list(running), timeout=timeout)
            if not done:
                # Past its grace period and still there: no more waiting.
                for process in running.values():
                    process.kill()
                failed = True
                continue
            for sentinel in done:
                assert isinstance(sentinel, int)
                process = running.pop(sentinel)
                process.join()
                if not self.stopping:
                    logger.error("worker died", extra={"error": process.name})
                    failed = self.stopping = True
                    self.signal_all(signal.SIGTERM)
                # Ended by the SIGTERM it was sent before its loop ran: a clean stop.
                clean = process.exitcode in (0, -signal.SIGTERM)
                failed = failed or not clean

        return 1 if failed else 0


def serve_workers(
    count: int, host: str, port: int, grace: float, start: WorkerStart
) -> int:
    """Run ``count`` workers on ``host:port`` until SIGTERM or SIGINT.

    Returns the exit code: 0 when every worker stopped cleanly on request. Raises
    OSError when the address cannot be bound, before any worker starts.
    """
    reserve = listening_socket(host, port, listen=False)
    port = int(reserve.getsockname()[1])
    context = multiprocessing.get_context("fork")
    supervisor = _Supervisor(grace)
    # Installed before the first fork, so that no signal finds the supervisor
    # without them while workers exist.
    signal.signal(signal.SIGTERM, supervisor.on_stop)
    signal.signal(signal.SIGINT, supervisor.on_stop)
    signal.signal(signal.SIGHUP, supervisor.on_reload)
    pipes: list[Connection] = []
    for number in range(count):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main,
            args=(start, host, port, sender),
            name=f"chaosproxy-worker-{number}",
        )
        process.start()
        sender.close()
        supervisor.processes.append(process)
        pipes.append(receiver)

    ready = supervisor.wait_ready(pipes)
    for pipe in pipes:
        pipe.close()
    reserve.close()
    if ready:
        shown = f"[{host}]" if ":" in host else host
        logger.info(
            "ready", extra={"listen": f"http://{shown}:{port}", "workers": count}
        )
    elif not supervisor.stopping:
        logger.error("workers failed to start", extra={"workers": count})
        supervisor.stopping = True
        supervisor.signal_all(signal.SIGTERM)
        supervisor.wait_stopped()
        return 1

    return supervisor.wait_stopped()
