"""The admin API: steer a running proxy over HTTP, in JSON.

It starts with the proxy when the configuration sets ``admin`` (SPEC section 5)::

    GET    /healthz                      {"status": "ok"}; never needs a token
    GET    /config                       the configuration in force
    GET    /routes, /routes/{name}       routes and the faults in force on them
    PUT    /routes/{name}/faults         replace a route's faults (list, or
                                         {"faults": [...], "ttl_seconds": N})
    DELETE /routes/{name}/faults         clear them (?ttl_seconds=N)
    POST   /reset                        the file's faults only (?route=name)
    POST   /reload                       re-read the file, as SIGHUP does
    GET    /observations                 ?limit=N&component=C
    GET    /summary                      counts since start
    GET    /metrics                      Prometheus text format
    GET    /explain                      ?method=&path=&header=Name:value
    GET    /experiments                  every kept result
    POST   /experiments                  start a ChaosExperiment
    GET    /experiments/{id}             its result so far
    POST   /experiments/{id}/abort       stop it now
    GET    /openapi.json                 all of the above, machine-readable

Modules: ``handlers`` (the endpoints), ``inputs`` (bodies and error responses),
``security`` (loopback rule, bearer token), ``explain``, ``openapi``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from chaosproxy.admin.handlers import AdminAPI
from chaosproxy.admin.inputs import error_middleware
from chaosproxy.admin.security import (
    AdminExposedError,
    check_admin_exposure,
    token_middleware,
)

if TYPE_CHECKING:
    from chaosproxy.server import ChaosProxy

__all__ = ["AdminExposedError", "build_admin_app", "check_admin_exposure"]

# Admin bodies are a few faults or one experiment; anything bigger is a mistake.
_MAX_BODY = 1 << 20


def build_admin_app(proxy: ChaosProxy) -> web.Application:
    """Build the admin application of ``proxy``.

    Errors are answered as JSON by the outer middleware, so the token check's 401
    is too.
    """
    app = web.Application(
        middlewares=[error_middleware, token_middleware(proxy)],
        client_max_size=_MAX_BODY,
    )
    app.add_routes(AdminAPI(proxy).routes())

    return app
