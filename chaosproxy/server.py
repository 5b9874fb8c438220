"""A running proxy: its listening socket, upstream pool, rules and observations.

:class:`ChaosProxy` is the one object the command line, the pytest plugin and a
user's own code start and stop. It owns every resource it opens and closes all of
them in :meth:`ChaosProxy.stop`, in-flight requests first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from aumai_chaos import FaultConfig, FaultInjector
from chaosproxy.config import ProxyConfig
from chaosproxy.observations import ObservationSink
from chaosproxy.proxy import ProxyHandler, ProxyState
from chaosproxy.routing import DEFAULT_ROUTE, ExtraFault, build_router
from chaosproxy.upstream import Upstream

__all__ = ["BLOCKING_INJECT_WORKERS", "ChaosProxy", "parse_address"]

logger = logging.getLogger("chaosproxy.server")

#: Threads for a user's FaultInjector subclass whose hooks block; created only as
#: needed, and as many as concurrent held requests could want, so a blocking hold
#: never queues behind another the way it would on the loop's default executor.
BLOCKING_INJECT_WORKERS = 1024


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into host and port."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class ChaosProxy:
    """The fault-injecting reverse proxy for one upstream."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        injector: FaultInjector | None = None,
        observations_file: str | os.PathLike[str] | None = None,
        shutdown_grace: float = 10.0,
    ) -> None:
        """Prepare a proxy for ``config``; nothing is opened until :meth:`start`.

        ``injector`` replaces the default ``FaultInjector(seed=config.seed)``, for a
        subclass with decisions of its own. ``shutdown_grace`` is how long
        :meth:`stop` lets in-flight requests finish.
        """
        self.config = config
        self.injector = injector or FaultInjector(seed=config.seed)
        self._executor: ThreadPoolExecutor | None = None
        if self.injector.executor is None:
            self._executor = ThreadPoolExecutor(
                BLOCKING_INJECT_WORKERS, thread_name_prefix="chaosproxy-inject"
            )
            self.injector.executor = self._executor
        self.sink = ObservationSink(config.observations_window, observations_file)
        self.upstream = Upstream(config.upstream, config.upstream_timeout_ms)
        self.state = ProxyState(
            config=config,
            router=build_router(config),
            injector=self.injector,
            upstream=self.upstream,
            sink=self.sink,
        )
        self.shutdown_grace = shutdown_grace
        self._route_faults: dict[str, list[FaultConfig]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._extra: list[ExtraFault] = []
        self._runner: web.ServerRunner | None = None
        self.address: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL, once started (``http://host:port``)."""
        assert self.address is not None, "the proxy is not started"
        host, port = self.address
        host = f"[{host}]" if ":" in host else host

        return f"http://{host}:{port}"

    async def start(self, sock: socket.socket | None = None) -> None:
        """Open the upstream pool and start listening on ``config.listen``.

        ``sock``, when given, is an already bound listening socket to serve on
        instead (used by ``--workers``). Raises :class:`OSError` when the address
        cannot be bound.
        """
        await self.upstream.start()
        server = web.Server(
            ProxyHandler(self.state), handler_cancellation=True, access_log=None
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=self.shutdown_grace)
        await self._runner.setup()
        try:
            site: web.BaseSite
            if sock is not None:
                site = web.SockSite(self._runner, sock)
            else:
                host, port = parse_address(self.config.listen)
                site = web.TCPSite(self._runner, host, port, backlog=2048)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        bound = self._runner.addresses[0]
        self.address = (str(bound[0]), int(bound[1]))

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (up to the grace), close."""
        for route in list(self._expiry):
            self._cancel_expiry(route)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.upstream.close()
        await asyncio.get_running_loop().run_in_executor(None, self.sink.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # Run-time rules. Each change compiles a whole new Router and swaps it in with
    # one assignment, so a request in flight keeps the rules it started with.

    def _rebuild(self) -> None:
        """Compile the file's rules plus every run-time change into a new router."""
        self.state.router = build_router(self.config, self._route_faults, self._extra)

    def route_names(self) -> list[str]:
        """Return the names of the configured routes, and ``"default"``."""
        return [*(route.name for route in self.config.routes), DEFAULT_ROUTE]

    def set_route_faults(
        self,
        route: str,
        faults: Sequence[FaultConfig],
        ttl_seconds: float | None = None,
    ) -> None:
        """Replace ``route``'s own faults; after ``ttl_seconds`` they revert.

        Raises :class:`KeyError` for a route the configuration does not have.
        """
        if route not in self.route_names():
            raise KeyError(route)
        self._cancel_expiry(route)
        self._route_faults[route] = list(faults)
        if ttl_seconds is not None:
            loop = asyncio.get_running_loop()
            self._expiry[route] = loop.call_later(
                ttl_seconds, self._expire_route_faults, route
            )
        self._rebuild()

    def clear_route_faults(self, route: str, ttl_seconds: float | None = None) -> None:
        """Remove every own fault of ``route`` (until ``ttl_seconds`` pass)."""
        self.set_route_faults(route, [], ttl_seconds)

    def reset_route_faults(self, route: str | None = None) -> None:
        """Put the file's faults back on ``route``, or on every route."""
        names = [route] if route is not None else list(self._route_faults)
        for name in names:
            self._cancel_expiry(name)
            self._route_faults.pop(name, None)
        self._rebuild()

    def route_fault_overrides(self) -> dict[str, list[FaultConfig]]:
        """Return the routes whose faults were changed at run time, and their faults."""
        return {name: list(faults) for name, faults in self._route_faults.items()}

    def _expire_route_faults(self, route: str) -> None:
        """Revert ``route`` to its file faults when its time to live has passed."""
        self._expiry.pop(route, None)
        self._route_faults.pop(route, None)
        self._rebuild()
        logger.info("route faults expired", extra={"route": route})

    def _cancel_expiry(self, route: str) -> None:
        """Forget a pending revert of ``route``."""
        handle = self._expiry.pop(route, None)
        if handle is not None:
            handle.cancel()

    def add_extra_faults(self, faults: Sequence[ExtraFault]) -> None:
        """Add run-time faults aimed at components (an experiment's)."""
        self._extra.extend(faults)
        self._rebuild()

    def remove_extra_faults(self, origin: str) -> None:
        """Remove every run-time fault added under ``origin``."""
        self._extra = [item for item in self._extra if item.origin != origin]
        self._rebuild()

    def apply_config(self, config: ProxyConfig) -> None:
        """Put ``config`` in force for the next request (a reload).

        Run-time changes survive a reload: route faults set through the admin API
        stay on routes that still exist (and are dropped, with a log line, from
        routes that do not), and experiments keep running.
        """
        self.config = config
        self.state.config = config
        names = set(self.route_names())
        for route in [r for r in self._route_faults if r not in names]:
            self._cancel_expiry(route)
            del self._route_faults[route]
            logger.warning("route gone after reload", extra={"route": route})
        self._rebuild()

    async def __aenter__(self) -> ChaosProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
