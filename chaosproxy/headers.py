"""Header handling at the proxy's two boundaries.

A proxy forwards end-to-end headers and consumes hop-by-hop ones (RFC 9110 section
7.6.1): ``Connection`` and every field it names, ``Keep-Alive``, ``Proxy-Connection``,
``TE``, ``Trailer``, ``Transfer-Encoding`` and ``Upgrade`` describe one connection and
must not travel to the next. ``Proxy-*`` fields are addressed to a proxy and stop
here too. Framing (``Transfer-Encoding``, chunking) is redone on each side by aiohttp.

Repeated fields (``Set-Cookie``, ``Via``, ``Cache-Control`` lists) are kept as
repeated fields, in order: every function here works on multidicts, never plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "HOP_BY_HOP",
    "downstream_headers",
    "upstream_headers",
]

#: Fields that describe one connection (RFC 9110 section 7.6.1), lower case.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Return the field names listed in every ``Connection`` header, lower case."""
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()

    return frozenset(
        token.strip().lower() for value in values for token in value.split(",")
    )


def _end_to_end(headers: CIMultiDictProxy[str]) -> Iterable[tuple[str, str]]:
    """Yield the fields of ``headers`` that are not hop-by-hop, in order."""
    named = _connection_tokens(headers)
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named or lower.startswith("proxy-"):
            continue
        yield name, value


def upstream_headers(
    headers: CIMultiDictProxy[str],
    *,
    client_ip: str | None,
    scheme: str,
) -> CIMultiDict[str]:
    """Build the headers sent upstream from the client's request headers.

    ``Host`` is left out: the upstream client sets it to the upstream's host:port.
    ``X-Forwarded-For`` gets the client's address appended to any the client sent;
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are set only when absent, since
    a value already present was set by an earlier hop that saw the original request.
    """
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in _end_to_end(headers):
        if name.lower() != "host":
            out.add(name, value)

    if client_ip:
        forwarded = ", ".join(out.popall("X-Forwarded-For", ()))
        out["X-Forwarded-For"] = f"{forwarded}, {client_ip}" if forwarded else client_ip
    if "X-Forwarded-Proto" not in out:
        out["X-Forwarded-Proto"] = scheme
    host = headers.get("Host")
    if host and "X-Forwarded-Host" not in out:
        out["X-Forwarded-Host"] = host

    return out


def downstream_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Build the headers sent to the client from the upstream's response headers."""
    return CIMultiDict(_end_to_end(headers))
