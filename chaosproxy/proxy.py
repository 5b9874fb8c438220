"""The request path through the proxy.

::

    client ──> ProxyHandler.__call__
                 │ route = router.match(method, path, headers)      routing.py
                 │ decision = decide(injector, route.faults)        faults/__init__.py
                 │   latency is held here, in Holds                 faults/latency.py
                 │   a terminating fault answers now ─────────────> client
                 │ upstream.open(...) streams the request body      upstream.py
                 │   502 / 504 on failure ────────────────────────> client
                 │ response streamed back, through the body filters
                 │   (partial_failure cuts it, data_corruption alters it)
                 │ one observation + one access-log line            observations.py
                 ▼
               client

Bodies stream chunk by chunk in both directions; neither is ever held whole. The
router is read once per request, so a rule change lands between requests, not
inside one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from aumai_chaos import FaultInjector, FaultType
from chaosproxy.config import ProxyConfig
from chaosproxy.downstream import Reply, Request, Response
from chaosproxy.faults import FAULT_HEADER, BodyFilter, Decision, decide
from chaosproxy.faults import error as error_fault
from chaosproxy.faults import resource_exhaustion as exhaustion_fault
from chaosproxy.faults import timeout as timeout_fault
from chaosproxy.faults.data_corruption import Corruptor
from chaosproxy.faults.latency import Holds
from chaosproxy.faults.partial_failure import Truncator
from chaosproxy.headers import downstream_headers, upstream_headers
from chaosproxy.observations import ObservationSink
from chaosproxy.routing import Route, Router
from chaosproxy.upstream import Upstream, UpstreamError, UpstreamResponse

__all__ = ["CLIENT_CLOSED", "ProxyHandler", "ProxyState"]

access_log = logging.getLogger("chaosproxy.access")
upstream_log = logging.getLogger("chaosproxy.upstream")

#: Status recorded for a request whose client went away before its answer
#: (nginx's convention; never sent on the wire).
CLIENT_CLOSED = 499

_NO_FAULTS = Decision()

# Fault origins that are the configuration's own; any other is an experiment's id.
_FILE_ORIGINS = frozenset({"route", "global"})


@dataclass(slots=True)
class ProxyState:
    """What the handler reads per request; the admin API swaps ``router``."""

    config: ProxyConfig
    router: Router
    injector: FaultInjector
    upstream: Upstream
    sink: ObservationSink


class _Exchange:
    """What one request came to, for its observation and access-log line."""

    __slots__ = ("decision", "route", "status", "upstream_error")

    def __init__(self, route: Route) -> None:
        """Start with no fault fired; the shared empty decision is never mutated."""
        self.route = route
        self.decision = _NO_FAULTS
        self.status = CLIENT_CLOSED
        self.upstream_error: str | None = None


class ProxyHandler:
    """The request handler for proxied traffic (see :mod:`chaosproxy.downstream`)."""

    def __init__(self, state: ProxyState) -> None:
        """Serve requests with the rules and clients in ``state``."""
        self.state = state
        self._loop_time = asyncio.get_running_loop().time
        self._holds = Holds()

    def close(self) -> None:
        """Cancel every request still held by a latency or timeout fault."""
        self._holds.close()

    async def __call__(self, request: Request, response: Response) -> None:
        """Route, decide faults, forward or answer, and record the exchange."""
        started = self._loop_time()
        route = self.state.router.match(request.method, request.path, request.lookup)
        exchange = _Exchange(route)
        try:
            if route.faults:
                exchange.decision = await decide(
                    self.state.injector, route.faults, sleep=self._holds.hold
                )
            if exchange.decision.terminal is None:
                await self._forward(request, response, exchange)
            else:
                response.reply(*await self._answer_fault(exchange))
                exchange.status = response.status
        finally:
            duration_ms = round((self._loop_time() - started) * 1000, 3)
            self._record(request, exchange, duration_ms)

    async def _answer_fault(self, exchange: _Exchange) -> Reply:
        """Answer with the terminating fault that fired, in place of the upstream."""
        decision = exchange.decision
        assert decision.terminal is not None
        fault = decision.terminal.config
        fired = decision.header_value
        if decision.terminal_type is FaultType.timeout:
            default_ms = self.state.config.upstream_timeout_ms
            return await timeout_fault.respond(fault, default_ms, fired, self._holds)
        if decision.terminal_type is FaultType.resource_exhaustion:
            return exhaustion_fault.respond(fault, fired)
        assert decision.terminal_error is not None

        return error_fault.respond(fault, decision.terminal_error, fired)

    async def _forward(
        self, request: Request, response: Response, exchange: _Exchange
    ) -> None:
        """Send the request upstream and stream its response back."""
        headers = upstream_headers(
            request.headers, client_ip=request.remote, scheme=request.scheme
        )
        try:
            upstream = await self.state.upstream.open(
                request.method, request.target, headers, request.body
            )
        except UpstreamError as exc:
            exchange.upstream_error = exc.kind
            upstream_log.warning(
                "upstream failed", extra={"upstream_error": exc.kind, "error": str(exc)}
            )
            response.reply(*exc.to_reply())
            exchange.status = response.status
            return

        try:
            await self._relay(response, upstream, exchange)
        finally:
            upstream.release()

    async def _relay(
        self,
        response: Response,
        upstream: UpstreamResponse,
        exchange: _Exchange,
    ) -> None:
        """Stream the upstream's status, headers and body to the client."""
        headers = downstream_headers(upstream.headers)
        decision = exchange.decision
        if decision.fired:
            headers.append((FAULT_HEADER, decision.header_value))
        filters = self._body_filters(decision, upstream.content_length)
        exchange.status = upstream.status
        response.start(
            upstream.status, upstream.reason, headers, upstream.content_length
        )
        if not upstream.body_ready:
            # A stream's first bytes may be minutes away (server-sent events, long
            # polls): the client gets the head now, as the upstream sent it.
            response.flush()

        try:
            if filters:
                await self._relay_filtered(response, upstream, filters)
            else:
                while chunk := await upstream.read():
                    await response.write(chunk)
        except UpstreamError as error:
            # Headers are gone already: all a client can still be told is that the
            # body broke off, by closing its connection.
            exchange.upstream_error = error.kind
            upstream_log.warning(
                "upstream body failed",
                extra={"upstream_error": error.kind, "error": str(error)},
            )
            response.abort()
            return

        if any(isinstance(f, Truncator) for f in filters):
            # Cut short, or had no body to cut: either way the connection closes.
            upstream.close()
            response.abort()
            return
        response.end()

    @staticmethod
    async def _relay_filtered(
        response: Response,
        upstream: UpstreamResponse,
        filters: list[BodyFilter],
    ) -> None:
        """Stream the body through the response faults' filters until one stops it."""
        while chunk := await upstream.read():
            for body_filter in filters:
                chunk = body_filter.feed(chunk)
            if chunk:
                await response.write(chunk)
            if any(f.finished for f in filters):
                return

    def _body_filters(
        self, decision: Decision, content_length: int | None
    ) -> list[BodyFilter]:
        """Build the body filters for the response faults that fired."""
        filters: list[BodyFilter] = []
        for _, fault_type in decision.response:
            if fault_type is FaultType.data_corruption:
                seed = self.state.injector.rng.getrandbits(64)
                filters.insert(0, Corruptor(random.Random(seed)))
            elif fault_type is FaultType.partial_failure:
                filters.append(Truncator(content_length))

        return filters

    def _record(
        self, request: Request, exchange: _Exchange, duration_ms: float
    ) -> None:
        """Record the exchange as an observation and an access-log line."""
        decision = exchange.decision
        fired = decision.fired
        details: dict[str, object] = {
            "method": request.method,
            "path": request.path,
            "route": exchange.route.name,
            "status": exchange.status,
            "duration_ms": duration_ms,
            "faults": [t.value for t in decision.fired_types] if fired else [],
        }
        if exchange.upstream_error is not None:
            details["upstream_error"] = exchange.upstream_error
        if fired:
            origins = sorted({f.origin for f in fired} - _FILE_ORIGINS)
            if origins:
                details["experiments"] = origins
                # Parallel to "faults": which experiment (or "route", "global")
                # each fired fault came from, so an experiment counts only its own.
                details["fault_origins"] = [f.origin for f in fired]
        event = "fault_injected" if fired else "proxied"
        self.state.sink.record(exchange.route.component, event, details)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={**details, "component": exchange.route.component},
            )
