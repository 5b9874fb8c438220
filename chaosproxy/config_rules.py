"""The configuration's rules across fields, checked on the raw loaded document.

pydantic checks each field on its own; these rules relate fields to each other:
latency faults need ``duration_ms``, error faults an ``error_code`` from 400 to 599,
route names are unique, and every component a top-level fault names is carried by
some route (``"default"``, the component of unmatched requests, always is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aumai_chaos.models import FaultConfig, FaultType
from chaosproxy.yamlmarks import Loc, did_you_mean, show_value

__all__ = ["DEFAULT_COMPONENT", "Finding", "check_proxy_fault", "find_rule_problems"]

#: The component of a request that matches no route.
DEFAULT_COMPONENT = "default"


def check_proxy_fault(fault: FaultConfig) -> list[tuple[str, str]]:
    """Check the rules the proxy adds to one fault; return (field, message) pairs.

    A latency fault needs ``duration_ms``; an error fault needs an ``error_code``
    from 400 to 599, since the proxy answers with it as an HTTP status. A timeout's
    ``duration_ms`` may be left out (the proxy then waits ``upstream_timeout_ms``).
    An empty list means the fault is fine.
    """
    problems: list[tuple[str, str]] = []
    if fault.fault_type is FaultType.latency and fault.duration_ms is None:
        problems.append(("duration_ms", "required when fault_type is latency"))
    if fault.fault_type is FaultType.error:
        code = fault.error_code
        if code is None:
            problems.append(("error_code", "required when fault_type is error"))
        elif not 400 <= code <= 599:
            problems.append(("error_code", f"expected 400 to 599, got {code}"))

    return problems


@dataclass(frozen=True)
class Finding:
    """A broken cross-field rule; ``first`` points at the earlier of two clashes."""

    loc: Loc
    message: str
    first: Loc | None = None

    def text(self, where: Callable[[Loc], str]) -> str:
        """The message, naming the earlier clash (if any) through ``where``."""
        if self.first is None:
            return self.message
        return f"{self.message} (first at {where(self.first)})"


def find_rule_problems(doc: Mapping[str, Any]) -> list[Finding]:
    """Check the cross-field rules on a loaded document.

    Works on the raw data, so the rules are checked even where pydantic found field
    errors elsewhere; parts that pydantic rejects are left to its report.
    """
    findings: list[Finding] = []
    loc: Loc
    routes = _list_at(doc, "routes")
    components = _route_components(routes, findings)
    for index, route in enumerate(routes or ()):
        if isinstance(route, dict):
            for number, raw in enumerate(_list_at(route, "faults") or ()):
                loc = ("routes", index, "faults", number)
                findings.extend(_check_fault_entry(raw, loc)[1])

    for number, raw in enumerate(_list_at(doc, "faults") or ()):
        loc = ("faults", number)
        fault, found = _check_fault_entry(raw, loc)
        findings.extend(found)
        if fault is not None:
            findings.extend(_check_targets(fault, loc, components))

    return findings


def _list_at(mapping: Mapping[Any, Any], key: str) -> list[Any] | None:
    """The list under ``key``: empty when absent, None when it is not a list."""
    value = mapping.get(key, [])
    return value if isinstance(value, list) else None


def _route_components(
    routes: list[Any] | None, findings: list[Finding]
) -> set[str] | None:
    """Collect the routes' components and report repeated route names.

    Returns None when some route's component cannot be known, so that no fault is
    wrongly said to aim at a missing component.
    """
    components = {DEFAULT_COMPONENT}
    known = routes is not None
    first: dict[str, Loc] = {}
    for index, route in enumerate(routes or ()):
        fields = route if isinstance(route, dict) else {}
        name, component = fields.get("name"), fields.get("component")
        label = name if component is None else component
        if isinstance(label, str) and label:
            components.add(label)
        else:
            known = False
        if isinstance(name, str) and name:
            loc = ("routes", index, "name")
            if name in first:
                message = f"duplicate route name {name!r}"
                findings.append(Finding(loc, message, first[name]))
            else:
                first[name] = loc

    return components if known else None


def _check_fault_entry(raw: Any, loc: Loc) -> tuple[FaultConfig | None, list[Finding]]:
    """Validate one fault of the document and check the proxy's rules on it."""
    try:
        fault = FaultConfig.model_validate(raw)
    except ValidationError:
        return None, []  # pydantic's own errors report it

    # Lax validation reads `probability: yes` as 1.0; YAML makes that too easy.
    fields = raw if isinstance(raw, dict) else {}
    findings = [
        Finding((*loc, key), f"expected a number, got {show_value(fields[key])}")
        for key in ("probability", "duration_ms", "error_code")
        if isinstance(fields.get(key), bool | str)
    ]
    if not findings:
        findings = [
            Finding((*loc, key), message) for key, message in check_proxy_fault(fault)
        ]

    return fault, findings


def _check_targets(
    fault: FaultConfig, loc: Loc, components: set[str] | None
) -> list[Finding]:
    """Check that a top-level fault names components that some route carries."""
    where = (*loc, "affected_components")
    if not fault.affected_components:
        return [
            Finding(
                where,
                "top-level faults need affected_components; put route-specific "
                "faults under the route",
            )
        ]
    if components is None:
        return []

    findings = []
    for index, name in enumerate(fault.affected_components):
        if name not in components:
            hint = did_you_mean(name, components) or (
                "; known: " + ", ".join(sorted(components))
            )
            message = f"no route has the component {name!r}{hint}"
            findings.append(Finding((*where, index), message))

    return findings
