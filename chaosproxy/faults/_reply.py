"""The JSON answer that every terminating fault sends instead of the upstream's."""

from __future__ import annotations

import json

from aiohttp import web

from chaosproxy.faults.base import FAULT_HEADER


def fault_reply(
    status: int,
    fault: str,
    message: str,
    fired: str,
    extra_headers: dict[str, str] | None = None,
) -> web.Response:
    """Build an injected response: ``status``, a JSON body and ``X-Chaos-Fault``."""
    headers = {FAULT_HEADER: fired}
    if extra_headers:
        headers.update(extra_headers)
    body = json.dumps({"fault": fault, "message": message})

    return web.Response(
        status=status,
        text=body,
        content_type="application/json",
        headers=headers,
    )
