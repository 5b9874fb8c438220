"""Addresses in a configuration: ``host:port`` to listen on, the upstream's URL.

Both are checked for shape only; whether a name resolves or a port is free is found
out when the proxy starts, and reported then.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["UpstreamURL", "parse_host_port", "parse_upstream"]

# Addresses are checked for shape only; whether they resolve is the OS's business.
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(%[\w.-]+)?")
_HOSTNAME = re.compile(
    r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*"
)


class UpstreamURL(NamedTuple):
    """The parts of the upstream URL the proxy connects to."""

    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def origin(self) -> str:
        """``scheme://host:port``, with an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8080`` for IPv6) into its host and port.

    Raises ValueError, with a message in the house format, when either is invalid.
    """
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = ":" in host and _IPV6.fullmatch(host) is not None
    else:
        valid_host = _HOSTNAME.fullmatch(host) is not None
    if not valid_host:
        raise ValueError(
            "expected host:port (an IPv6 host in brackets, as [::1]:8080), "
            f"got {text!r}"
        )
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port with a port 0 to 65535, got {text!r}")

    return host, int(port)


def parse_upstream(text: str) -> UpstreamURL:
    """Parse ``http(s)://host[:port][/base-path]``; the port defaults by scheme.

    Raises ValueError when the URL cannot name an upstream: another scheme, no host,
    a bad port, credentials, a query or a fragment (requests bring their own).
    """
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL with a host, got {text!r}"
        )
    if parts.username is not None or parts.password is not None:
        # The value is not echoed: it holds a secret.
        raise ValueError("expected no user:password in the upstream URL")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"expected no query or fragment in the URL, got {text!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"expected a port 1 to 65535 in the URL, got {text!r}")

    return UpstreamURL(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))
