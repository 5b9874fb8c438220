"""A running proxy: its listening socket, upstream pool, rules and observations.

:class:`ChaosProxy` is the one object the command line, the pytest plugin and a
user's own code start and stop. It owns every resource it opens (the admin API,
when the configuration sets ``admin``, included) and closes all of them in
:meth:`ChaosProxy.stop`, in-flight requests first.

Run-time changes (route faults set through the admin API, running experiments)
survive a reload: a ConfigMap rollout must not silently end a game day or switch off
the fault a test is relying on, and time-to-live bounds whatever was set. Settings
that need a new socket or a new observation window (``listen``, ``admin``,
``seed``, ``observations_window``) keep their running values until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from aumai_chaos import FaultConfig, FaultInjector, ObservationPoint
from chaosproxy.accept import Acceptor, listening_sockets
from chaosproxy.admin import build_admin_app, check_admin_exposure
from chaosproxy.config import ProxyConfig, parse_host_port
from chaosproxy.downstream import DownstreamServer
from chaosproxy.experiments import Experiments
from chaosproxy.metrics import ProxyMetrics, TrafficSummary
from chaosproxy.observations import ObservationSink
from chaosproxy.proxy import ProxyHandler, ProxyState
from chaosproxy.reloading import prepare_reload
from chaosproxy.routing import DEFAULT_ROUTE, ExtraFault, build_router
from chaosproxy.upstream import Upstream

__all__ = ["BLOCKING_INJECT_WORKERS", "ChaosProxy"]

logger = logging.getLogger("chaosproxy.server")

#: Threads for a user's FaultInjector subclass whose hooks block; created only as
#: needed, and as many as concurrent held requests could want, so a blocking hold
#: never queues behind another the way it would on the loop's default executor.
BLOCKING_INJECT_WORKERS = 1024

Listener = Callable[[ObservationPoint], None]


class ChaosProxy:
    """The fault-injecting reverse proxy for one upstream."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        injector: FaultInjector | None = None,
        observations_file: str | os.PathLike[str] | None = None,
        shutdown_grace: float = 10.0,
        config_path: str | os.PathLike[str] | None = None,
        config_overrides: Mapping[str, object] | None = None,
    ) -> None:
        """Prepare a proxy for ``config``; nothing is opened until :meth:`start`.

        ``injector`` replaces the default ``FaultInjector(seed=config.seed)``, for a
        subclass with decisions of its own. ``shutdown_grace`` is how long
        :meth:`stop` lets in-flight requests finish. ``config_path`` is the file
        :meth:`reload` re-reads; ``config_overrides`` are settings (command-line
        flags, say) that win over that file on every reload.
        """
        self.config = config
        self.config_path = None if config_path is None else os.fspath(config_path)
        self.config_overrides = dict(config_overrides or {})
        self.injector = injector or FaultInjector(seed=config.seed)
        self._executor: ThreadPoolExecutor | None = None
        if self.injector.executor is None:
            self._executor = ThreadPoolExecutor(
                BLOCKING_INJECT_WORKERS, thread_name_prefix="chaosproxy-inject"
            )
            self.injector.executor = self._executor
        self.sink = ObservationSink(config.observations_window, observations_file)
        self.upstream = Upstream(config.upstream, config.upstream_timeout_ms)
        self._upstream_settings = (config.upstream, config.upstream_timeout_ms)
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
        self._server: DownstreamServer | None = None
        self._handler: ProxyHandler | None = None
        self._acceptor: Acceptor | None = None
        self.address: tuple[str, int] | None = None
        self._admin_runner: web.AppRunner | None = None
        self.admin_address: tuple[str, int] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._count_observations()

    def _count_observations(self) -> None:
        """Create the experiments, metrics and summary that every request feeds."""
        self.experiments = Experiments(self)
        self.metrics = ProxyMetrics(lambda: len(self.experiments.running_ids()))
        self.summary = TrafficSummary()
        for listener in (
            self.metrics.observe,
            self.summary.observe,
            self.experiments.observe,
        ):
            self.sink.listeners.append(_guarded(listener))

    @property
    def url(self) -> str:
        """The proxy's base URL, once started (``http://host:port``)."""
        assert self.address is not None, "the proxy is not started"
        return _http_url(self.address)

    @property
    def admin_url(self) -> str | None:
        """The admin API's base URL once started, or None when it is off."""
        if self.admin_address is None:
            return None
        return _http_url(self.admin_address)

    async def start(self, sock: socket.socket | None = None) -> None:
        """Open the upstream pool and start listening on ``config.listen``.

        ``sock``, when given, is an already bound listening socket to serve on
        instead (used by ``--workers``). The admin API starts too when
        ``config.admin`` is set.

        Raises:
            OSError: An address cannot be bound.
            chaosproxy.admin.AdminExposedError: The admin API would listen beyond
                loopback without ``admin_token``; nothing is opened.
        """
        check_admin_exposure(self.config)
        await self.upstream.start()
        # Limits are read per connection, so a reload's apply to new connections.
        self._handler = ProxyHandler(self.state)
        self._server = DownstreamServer(self._handler, lambda: self.config.limits)
        try:
            if sock is not None:
                sockets = [sock]
            else:
                sockets = listening_sockets(*self.config.listen_address)
            # Not the loop's create_server: see chaosproxy.accept for why.
            loop = asyncio.get_running_loop()
            self._acceptor = Acceptor(loop, sockets, self._server)
            await self._acceptor.start_serving()
            bound = sockets[0].getsockname()
            self.address = (str(bound[0]), int(bound[1]))
            if self.config.admin is not None:
                await self._start_admin(self.config.admin)
        except BaseException:
            await self.stop()
            raise

    async def _start_admin(self, address: str) -> None:
        """Serve the admin API on ``address``."""
        self._admin_runner = web.AppRunner(
            build_admin_app(self), access_log=None, shutdown_timeout=1.0
        )
        await self._admin_runner.setup()
        host, port = parse_host_port(address)
        await web.TCPSite(self._admin_runner, host, port).start()
        bound = self._admin_runner.addresses[0]
        self.admin_address = (str(bound[0]), int(bound[1]))

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (up to the grace), close."""
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
            self._admin_runner = None
        await self.experiments.close()
        for route in list(self._expiry):
            self._cancel_expiry(route)
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
        if self._server is not None:
            await self._server.shutdown(self.shutdown_grace)
            self._server = None
        if self._handler is not None:
            self._handler.close()
            self._handler = None
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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

    def route_fault_expiry(self, route: str) -> float | None:
        """Return the seconds until ``route``'s run-time faults revert, or None."""
        handle = self._expiry.get(route)
        if handle is None:
            return None

        return round(max(0.0, handle.when() - asyncio.get_running_loop().time()), 3)

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
        """Put ``config``'s rules in force for the next request.

        Run-time changes survive: route faults set through the admin API stay on
        routes that still exist (and are dropped, with a log line, from routes
        that do not), and experiments keep running. A changed upstream is
        switched to a moment later, by a task; :meth:`reload` switches it in the
        same step as the rules.
        """
        if self._upstream_changed(config):
            task = asyncio.create_task(
                self._switch_upstream_soon(config), name="chaosproxy-upstream-switch"
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self.config = config
        self.state.config = config
        names = set(self.route_names())
        for route in [r for r in self._route_faults if r not in names]:
            self._cancel_expiry(route)
            del self._route_faults[route]
            logger.warning("route gone after reload", extra={"route": route})
        self._rebuild()

    async def reload(self, config: ProxyConfig | None = None) -> list[str]:
        """Put a new configuration in force: ``config``, or the file re-read.

        Rules and upstream change in one step between two requests. Returns the
        names of changed settings that only a restart applies (see
        :data:`~chaosproxy.reloading.RESTART_SETTINGS`); they keep their running
        values.

        Raises:
            ConfigError: The file is unreadable or invalid, or would expose the
                admin API; it is logged, and the configuration in force is kept.
            RuntimeError: No ``config`` was given and the proxy has no file.
        """
        config, pinned = await prepare_reload(
            self.config,
            config=config,
            path=self.config_path,
            overrides=self.config_overrides,
        )
        upstream = None
        if self._upstream_changed(config):
            upstream = Upstream(config.upstream, config.upstream_timeout_ms)
            await upstream.start()

        # No await from here on: the rules and the upstream change together.
        if upstream is not None:
            self._replace_upstream(upstream, config)
        self.apply_config(config)
        logger.info("reloaded", extra={"file": self.config_path or "<reload>"})
        if pinned:
            logger.warning("restart needed", extra={"problems": ", ".join(pinned)})

        return pinned

    def _upstream_changed(self, config: ProxyConfig) -> bool:
        """Return whether ``config`` needs another upstream client."""
        return (config.upstream, config.upstream_timeout_ms) != self._upstream_settings

    async def _switch_upstream_soon(self, config: ProxyConfig) -> None:
        """Open a client for ``config``'s upstream and put it in force."""
        upstream = Upstream(config.upstream, config.upstream_timeout_ms)
        await upstream.start()
        self._replace_upstream(upstream, config)

    def _replace_upstream(self, upstream: Upstream, config: ProxyConfig) -> None:
        """Send new requests to ``upstream`` (built for ``config``); retire the old.

        Requests in flight keep streaming through the old pool, so it is closed
        only once they have had ``shutdown_grace`` to finish.
        """
        old, self.upstream = self.upstream, upstream
        self._upstream_settings = (config.upstream, config.upstream_timeout_ms)
        self.state.upstream = upstream
        task = asyncio.create_task(
            self._close_later(old), name="chaosproxy-upstream-retire"
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_later(self, upstream: Upstream) -> None:
        """Close a replaced upstream pool once the grace has passed (or at stop)."""
        try:
            await asyncio.sleep(self.shutdown_grace)
        finally:
            await upstream.close()

    async def __aenter__(self) -> ChaosProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _http_url(address: tuple[str, int]) -> str:
    """``http://host:port`` for a bound address, an IPv6 host in brackets."""
    host, port = address
    host = f"[{host}]" if ":" in host else host

    return f"http://{host}:{port}"


def _guarded(listener: Listener) -> Listener:
    """Wrap an observation listener so that its failure never fails a request."""

    def call(point: ObservationPoint) -> None:
        """Pass ``point`` on; log, never raise, what the listener raises."""
        try:
            listener(point)
        except Exception:
            logger.exception("observation listener failed")

    return call
