"""Routes: which rule a request falls under, and which faults it may meet there.

Everything is compiled once, when a configuration (or a runtime change) is applied;
matching a request only runs prepared patterns and set look-ups. A :class:`Router` is
immutable: the proxy swaps a whole new one in when rules change, so a request in
flight keeps the rules it started with and never sees half of a change.

A route's faults come from three places and are kept in the order they are decided:
the route's own list, then every top-level fault whose ``affected_components`` names
the route's component, then faults added at run time (experiments). Latency faults
are moved to the front, stably, because a held request is held before anything else
happens to it (SPEC section 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aumai_chaos import FaultConfig, FaultType
from chaosproxy.config import ProxyConfig, RouteConfig
from chaosproxy.config_rules import DEFAULT_COMPONENT


class HeaderLookup(Protocol):
    """A request's headers as routing reads them: by name, in any case."""

    def get(self, name: str, /) -> str | None:
        """Return the first value of the field ``name``, or None."""


__all__ = [
    "DEFAULT_COMPONENT",
    "DEFAULT_ROUTE",
    "ExtraFault",
    "HeaderLookup",
    "Route",
    "RouteFault",
    "Router",
    "build_router",
    "compile_glob",
]

#: The route name of a request that matches no route (its component is
#: DEFAULT_COMPONENT, the same word).
DEFAULT_ROUTE = DEFAULT_COMPONENT


@dataclass(frozen=True, slots=True)
class RouteFault:
    """One fault a route may inject, and where it came from.

    ``origin`` is ``"route"``, ``"global"`` or the id of the experiment that added
    it; experiments count only the requests their own faults touched.
    """

    config: FaultConfig
    origin: str


@dataclass(frozen=True, slots=True)
class ExtraFault:
    """A fault added at run time, aimed at components rather than at a route."""

    config: FaultConfig
    origin: str
    components: frozenset[str]


def compile_glob(glob: str) -> re.Pattern[str]:
    """Compile a path glob: ``*`` stays within one segment, ``**`` crosses them.

    A trailing ``/**`` also matches the bare prefix, so ``/api/**`` matches ``/api``
    as well as everything below it. Every other character is literal.
    """
    suffix = ""
    if glob.endswith("/**"):
        glob, suffix = glob[:-3], "(?:/.*)?"
    parts: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            parts.append(".*")
            i += 2
        elif glob[i] == "*":
            parts.append("[^/]*")
            i += 1
        else:
            parts.append(re.escape(glob[i]))
            i += 1

    return re.compile("".join(parts) + suffix + r"\Z")


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route: its conditions and the faults that may fire on it."""

    name: str
    component: str
    faults: tuple[RouteFault, ...] = ()
    path: re.Pattern[str] | None = None
    path_regex: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def matches(self, method: str, path: str, headers: HeaderLookup) -> bool:
        """Return whether every condition of the route holds for this request."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.path is not None and self.path.match(path) is None:
            return False
        if self.path_regex is not None and self.path_regex.search(path) is None:
            return False

        return all(headers.get(name) == value for name, value in self.headers)


@dataclass(frozen=True, slots=True)
class Router:
    """An ordered list of routes; the first that matches a request wins."""

    routes: tuple[Route, ...]
    default: Route
    by_name: Mapping[str, Route] = field(default_factory=dict)

    def match(self, method: str, path: str, headers: HeaderLookup) -> Route:
        """Return the first route matching the request, or the default route."""
        for route in self.routes:
            if route.matches(method, path, headers):
                return route

        return self.default


def _ordered(faults: Iterable[RouteFault]) -> tuple[RouteFault, ...]:
    """Put latency faults first, keeping the relative order of both groups."""
    listed = list(faults)
    latency = [f for f in listed if f.config.fault_type is FaultType.latency]
    others = [f for f in listed if f.config.fault_type is not FaultType.latency]

    return tuple(latency + others)


def _compile_route(
    route: RouteConfig, own: Sequence[FaultConfig], shared: Sequence[RouteFault]
) -> Route:
    """Compile one configured route with its own and shared faults."""
    match = route.match
    faults = [RouteFault(fault, "route") for fault in own]
    faults.extend(shared)

    return Route(
        name=route.name,
        component=route.effective_component,
        faults=_ordered(faults),
        path=compile_glob(match.path) if match.path is not None else None,
        path_regex=re.compile(match.path_regex) if match.path_regex else None,
        methods=frozenset(m.upper() for m in match.methods) or None,
        headers=tuple((name.lower(), value) for name, value in match.headers.items()),
    )


def _shared_faults(
    component: str, config: ProxyConfig, extra: Sequence[ExtraFault]
) -> list[RouteFault]:
    """Collect the top-level and run-time faults aimed at ``component``."""
    shared = [
        RouteFault(fault, "global")
        for fault in config.faults
        if component in fault.affected_components
    ]
    shared.extend(
        RouteFault(item.config, item.origin)
        for item in extra
        if component in item.components
    )

    return shared


def build_router(
    config: ProxyConfig,
    route_faults: Mapping[str, Sequence[FaultConfig]] | None = None,
    extra: Sequence[ExtraFault] = (),
) -> Router:
    """Compile the routes of ``config`` into a :class:`Router`.

    ``route_faults`` replaces the own faults of the routes it names (the admin API's
    ``PUT /routes/{name}/faults``; the key ``"default"`` reaches unmatched requests);
    ``extra`` adds run-time faults aimed at components.
    """
    overrides = route_faults or {}
    routes = tuple(
        _compile_route(
            route,
            overrides.get(route.name, route.faults),
            _shared_faults(route.effective_component, config, extra),
        )
        for route in config.routes
    )
    default_faults = [RouteFault(f, "route") for f in overrides.get(DEFAULT_ROUTE, ())]
    default_faults.extend(_shared_faults(DEFAULT_COMPONENT, config, extra))
    default = Route(
        name=DEFAULT_ROUTE,
        component=DEFAULT_COMPONENT,
        faults=_ordered(default_faults),
    )
    by_name = {route.name: route for route in routes}
    by_name.setdefault(DEFAULT_ROUTE, default)

    return Router(routes=routes, default=default, by_name=by_name)
