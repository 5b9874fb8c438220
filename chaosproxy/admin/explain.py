"""``GET /explain``: which route a request would meet, and what could happen to it.

A fault's ``probability`` is the chance it fires when it is decided, but not every
fault is decided on every request: decisions stop at the first terminating fault
(error, timeout, resource exhaustion), and a response fault is dropped when a
terminating one fires after it, since no upstream response then exists. So each
fault is reported with both numbers::

    probability  as configured
    chance       how often it really acts on a request like this one
                   latency      probability
                   terminating  probability x (1 - p) of each terminating fault
                                before it
                   response     probability x (1 - p) of every terminating fault

These assume the library's own decisions; a custom injector may decide otherwise.
"""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from aumai_chaos import FaultType
from chaosproxy.faults import RESPONSE_FAULTS, TERMINATING_FAULTS
from chaosproxy.routing import Router

__all__ = ["explain", "parse_header_params"]


def parse_header_params(values: list[str]) -> tuple[CIMultiDictProxy[str], list[str]]:
    """Parse ``header=Name: Value`` query parameters; return headers and problems."""
    headers: CIMultiDict[str] = CIMultiDict()
    problems: list[str] = []
    for text in values:
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            problems.append(f"expected 'Name: value', got {text!r}")
            continue
        headers.add(name.strip(), value.strip())

    return CIMultiDictProxy(headers), problems


def _effect(fault_type: FaultType) -> str:
    """Say in a few words what a fault type does to a request."""
    if fault_type is FaultType.latency:
        return "holds the request, then forwards it"
    if fault_type in TERMINATING_FAULTS:
        return "answers in place of the upstream"
    assert fault_type in RESPONSE_FAULTS

    return "alters the upstream's response"


def explain(
    router: Router, method: str, path: str, headers: CIMultiDictProxy[str]
) -> dict[str, object]:
    """Describe what the router in force would do with one request.

    ``path`` may carry a query string; as for real requests, it plays no part in
    matching.
    """
    path = path.partition("?")[0]
    route = router.match(method.upper(), path, headers)
    terminating = [
        f.config.probability
        for f in route.faults
        if f.config.fault_type in TERMINATING_FAULTS
    ]

    faults: list[dict[str, object]] = []
    none_fire = 1.0
    before = 1.0  # chance that no terminating fault decided so far has fired
    for fault in route.faults:
        config = fault.config
        chance = config.probability
        if config.fault_type in TERMINATING_FAULTS:
            chance *= before
            before *= 1 - config.probability
        elif config.fault_type in RESPONSE_FAULTS:
            for probability in terminating:
                chance *= 1 - probability
        none_fire *= 1 - config.probability
        faults.append(
            {
                "fault": config.model_dump(mode="json"),
                "origin": fault.origin,
                "effect": _effect(config.fault_type),
                "probability": config.probability,
                "chance": round(chance, 6),
            }
        )

    return {
        "request": {"method": method.upper(), "path": path, "headers": dict(headers)},
        "route": route.name,
        "component": route.component,
        "matched": route is not router.default,
        "faults": faults,
        "chance_of_any_fault": round(1 - none_fire, 6),
    }
