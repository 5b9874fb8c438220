"""The JSON answer that every terminating fault sends instead of the upstream's."""

from __future__ import annotations

from chaosproxy.downstream import Reply, json_reply
from chaosproxy.faults.base import FAULT_HEADER


def fault_reply(
    status: int,
    fault: str,
    message: str,
    fired: str,
    extra_headers: dict[str, str] | None = None,
) -> Reply:
    """Build an injected response: ``status``, a JSON body and ``X-Chaos-Fault``."""
    headers = [(FAULT_HEADER, fired)]
    if extra_headers:
        headers.extend(extra_headers.items())

    return json_reply(status, {"fault": fault, "message": message}, headers)
