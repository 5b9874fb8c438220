"""A proxy for one test: started in front of an upstream, steered, then asked.

:class:`ProxyFixture` is what the pytest fixture ``chaosproxy`` yields, and works as
well without pytest (it is a context manager). The proxy runs on an event loop of
its own, in a background thread, so a test can use it from plain functions with a
blocking client as from ``async def`` tests with an async one::

    test thread                         thread "chaosproxy-fixture"
    ───────────                         ───────────────────────────
    ProxyFixture.start(upstream) ─────> ChaosProxy(config).start()
    with fixture.faults(route, [...]) ─> proxy.set_route_faults(...)
      client ── HTTP ──────────────────> proxy ──> upstream
    fixture.calls(route) <──────────── observations (thread-safe window)
    fixture.stop() ───────────────────> proxy.stop(); loop ends

Every call into the proxy is handed to its loop and waited for, so a change of
faults is in force when the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from pydantic import ValidationError

from aumai_chaos import FaultConfig, ObservationPoint
from chaosproxy.config import ProxyConfig, check_proxy_fault, load_config
from chaosproxy.server import ChaosProxy

__all__ = ["Attempt", "ProxyFixture"]

T = TypeVar("T")
FaultLike = FaultConfig | Mapping[str, Any]

# How long a call into the proxy's loop may take before the test is told.
_CALL_TIMEOUT = 30.0
# In-flight requests get this long to finish when a test ends; a test that left a
# request hanging (a timeout fault, say) should not hold up the whole suite.
_SHUTDOWN_GRACE = 1.0
# Loop turns to let a handler that has written its answer record it.
_SETTLE_TURNS = 5


@dataclass(frozen=True)
class Attempt:
    """One request the proxy saw: when it started and ended, and what it got."""

    method: str
    path: str
    route: str
    status: int
    faults: tuple[str, ...]
    started: datetime
    ended: datetime

    @classmethod
    def from_observation(cls, point: ObservationPoint) -> Attempt:
        """Read an attempt out of the proxy's observation of a request."""
        details = point.details
        duration, status = details.get("duration_ms"), details.get("status")
        held = duration if isinstance(duration, int | float) else 0.0
        faults = details.get("faults")

        return cls(
            method=str(details.get("method", "")),
            path=str(details.get("path", "")),
            route=str(details.get("route", "")),
            status=status if isinstance(status, int) else 0,
            faults=tuple(str(f) for f in faults) if isinstance(faults, list) else (),
            started=point.timestamp - timedelta(milliseconds=held),
            ended=point.timestamp,
        )


def _load(config: ProxyConfig | str | os.PathLike[str] | None, upstream: str) -> Any:
    """Return the configuration as data: from a model, a file, or a bare default."""
    if config is None:
        return {"version": 1, "upstream": upstream}
    if isinstance(config, ProxyConfig):
        return config.model_dump(mode="json", exclude_unset=True)

    return load_config(config).model_dump(mode="json", exclude_unset=True)


def _fault_configs(faults: Sequence[FaultLike]) -> list[FaultConfig]:
    """Validate faults given as models or dicts, with the proxy's own rules.

    Raises ValueError naming every problem, as ``[1].duration_ms: ...``.
    """
    configs: list[FaultConfig] = []
    problems: list[str] = []
    for index, fault in enumerate(faults):
        try:
            config = FaultConfig.model_validate(fault)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = ".".join(str(part) for part in error["loc"])
                problems.append(f"[{index}].{where}: {error['msg']}")
            continue
        problems += [f"[{index}].{f}: {m}" for f, m in check_proxy_fault(config)]
        configs.append(config)
    if problems:
        raise ValueError("invalid faults: " + "; ".join(problems))

    return configs


class ProxyFixture:
    """A :class:`~chaosproxy.ChaosProxy` on loopback, run in a thread for a test."""

    def __init__(self, config: ProxyConfig) -> None:
        """Prepare to run ``config``; :meth:`start` is the usual way in."""
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaosproxy-fixture", daemon=True
        )
        self._proxy: ChaosProxy | None = None

    @classmethod
    def start(
        cls,
        upstream: str,
        config: ProxyConfig | str | os.PathLike[str] | None = None,
        *,
        seed: int | None = None,
    ) -> ProxyFixture:
        """Start a proxy in front of ``upstream`` and return it, running.

        ``config`` is a configuration (a file's path or a model) whose routes and
        faults are used; its ``listen`` becomes a free loopback port, its
        ``upstream`` becomes ``upstream``, and the admin API is left off (steer the
        proxy through this object instead). Without ``config`` there are no routes:
        every request is on the route ``"default"``, fault-free until told.
        ``seed``, when given, replaces the file's. Raises
        :class:`~chaosproxy.config.ConfigError` for a bad file.
        """
        data = _load(config, upstream)
        data.update(listen="127.0.0.1:0", upstream=upstream, admin=None)
        if seed is not None:
            data["seed"] = seed
        fixture = cls(ProxyConfig.model_validate(data))
        fixture._open()

        return fixture

    def _open(self) -> None:
        """Start the loop thread and the proxy on it."""
        self._thread.start()

        async def create() -> ChaosProxy:
            proxy = ChaosProxy(self.config, shutdown_grace=_SHUTDOWN_GRACE)
            await proxy.start()
            return proxy

        try:
            self._proxy = self._run(create())
        except BaseException:
            self._close_loop()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the proxy's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(_CALL_TIMEOUT)

    def _close_loop(self) -> None:
        """Stop the loop, wait for its thread, and close it."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CALL_TIMEOUT)
        self._loop.close()

    def stop(self) -> None:
        """Stop the proxy (in-flight requests get a second) and its thread."""
        proxy, self._proxy = self._proxy, None
        if proxy is None:
            return
        try:
            self._run(proxy.stop())
        finally:
            self._close_loop()

    def __enter__(self) -> ProxyFixture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def proxy(self) -> ChaosProxy:
        """The running :class:`~chaosproxy.ChaosProxy` (touch it on its loop only)."""
        if self._proxy is None:
            raise RuntimeError("the proxy is not running")
        return self._proxy

    @property
    def url(self) -> str:
        """The proxy's base URL: point the client under test here."""
        return self.proxy.url

    # Steering.

    def set_faults(self, route: str, faults: Sequence[FaultLike]) -> None:
        """Give ``route`` these faults (models or dicts) until changed again.

        Raises ValueError for an unknown route or an invalid fault; nothing is
        changed then.
        """
        configs = _fault_configs(faults)
        names = self.proxy.route_names()
        if route not in names:
            known = ", ".join(names)
            raise ValueError(f"no route named {route!r}; the routes are: {known}")

        async def apply() -> None:
            self.proxy.set_route_faults(route, configs)

        self._run(apply())

    def reset_faults(self, route: str | None = None) -> None:
        """Put the configuration's own faults back on ``route`` (or every route)."""

        async def apply() -> None:
            self.proxy.reset_route_faults(route)

        self._run(apply())

    @contextlib.contextmanager
    def faults(self, route: str, faults: Sequence[FaultLike]) -> Iterator[None]:
        """Give ``route`` these faults inside the ``with`` block only.

        On leaving, however the block ends, the route gets back exactly the faults
        it had on entering (an enclosing block's, or the configuration's).
        """
        before = self._run(self._overrides()).get(route)
        self.set_faults(route, faults)
        try:
            yield
        finally:
            if before is None:
                self.reset_faults(route)
            else:
                self.set_faults(route, before)

    async def _overrides(self) -> dict[str, list[FaultConfig]]:
        """The routes whose faults were changed at run time (read on the loop)."""
        return self.proxy.route_fault_overrides()

    # Asking what happened.

    async def _settled_observations(self) -> list[ObservationPoint]:
        """Read the observations once answers already sent have been recorded.

        A streamed answer is recorded just after its last bytes are written, so a
        client can hold the whole body a moment before the observation exists; a
        few turns of the proxy's loop close that gap.
        """
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        return self.proxy.sink.observer.get_observations()

    def observations(self, route: str | None = None) -> list[ObservationPoint]:
        """Return the observations recorded so far, oldest first, maybe of one route.

        One observation is recorded per request, once it is answered; ``details``
        holds ``method``, ``path``, ``route``, ``status``, ``duration_ms`` and
        ``faults``.
        """
        points = self._run(self._settled_observations())
        if route is None:
            return points

        return [p for p in points if p.details.get("route") == route]

    def clear_observations(self) -> None:
        """Forget what was observed so far (to count from a fresh start)."""
        self.proxy.sink.observer.clear()

    def attempts(
        self,
        route: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> list[Attempt]:
        """Return the requests seen, in the order they started, filtered as asked."""
        found = [Attempt.from_observation(p) for p in self.observations(route)]
        if method is not None:
            found = [a for a in found if a.method == method.upper()]
        if path is not None:
            found = [a for a in found if a.path == path]

        return sorted(found, key=lambda attempt: attempt.started)

    def calls(
        self,
        route: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> int:
        """Return how many requests the proxy answered, filtered as in attempts."""
        return len(self.attempts(route, method=method, path=path))

    def retried(
        self,
        route: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> bool:
        """Whether the same request was sent more than once (the client retried)."""
        return self.calls(route, method=method, path=path) > 1

    def waits(
        self,
        route: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> list[float]:
        """Return the seconds between each answer and the next attempt's start.

        This is the client's backoff as the wire saw it: for attempts a, b, c the
        list is [b.started - a.ended, c.started - b.ended]. It is empty for fewer
        than two attempts.
        """
        found = self.attempts(route, method=method, path=path)
        return [
            (later.started - earlier.ended).total_seconds()
            for earlier, later in itertools.pairwise(found)
        ]
