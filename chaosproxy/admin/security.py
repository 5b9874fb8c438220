"""Who may use the admin API: loopback by default, a bearer token otherwise.

The admin API can switch faults on for every request a service makes, so it is
never exposed by accident: bound to any address that is not loopback it needs
``admin_token``, and with a token set every endpoint but ``/healthz`` demands
``Authorization: Bearer <token>``. The token is compared in constant time and
neither it nor the header is ever logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from chaosproxy.admin.inputs import RequestProblem
from chaosproxy.config import ProxyConfig, parse_host_port

if TYPE_CHECKING:
    from chaosproxy.server import ChaosProxy

__all__ = [
    "OPEN_PATHS",
    "AdminExposedError",
    "check_admin_exposure",
    "is_loopback",
    "token_middleware",
]

#: Paths answered without a token: liveness probes carry no credentials.
OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminExposedError(ValueError):
    """The admin API would listen beyond loopback without a token."""


def is_loopback(host: str) -> bool:
    """Return whether ``host`` can only be reached from this machine.

    ``localhost`` and loopback addresses are; any other name is not, since it may
    resolve to anything.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def check_admin_exposure(config: ProxyConfig) -> None:
    """Raise :class:`AdminExposedError` if ``config`` exposes the admin API.

    That is: ``admin`` names an address that is not loopback and no
    ``admin_token`` is set.
    """
    if config.admin is None or config.admin_token is not None:
        return
    host, _ = parse_host_port(config.admin)
    if not is_loopback(host):
        raise AdminExposedError(
            f"admin: the admin API on {config.admin} would be reachable from other "
            "machines without a token; set admin_token, or bind it to 127.0.0.1"
        )


def _has_token(request: web.Request, token: str) -> bool:
    """Return whether the request carries ``Authorization: Bearer <token>``."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False

    # compare_digest takes as long whatever prefix matches: no timing oracle.
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def token_middleware(proxy: ChaosProxy) -> Middleware:
    """Build the middleware that answers 401 without the right bearer token.

    The token is read from the configuration in force at each request, so a
    reload that changes it takes effect at once.
    """

    @web.middleware
    async def require_token(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Let the request through, or answer 401."""
        token = proxy.config.admin_token
        if token is None or request.path in OPEN_PATHS or _has_token(request, token):
            return await handler(request)
        raise RequestProblem(
            401,
            "unauthorized",
            "this endpoint needs the header Authorization: Bearer <admin_token>",
            headers={"WWW-Authenticate": 'Bearer realm="chaosproxy-admin"'},
        )

    return require_token
