"""Header handling at the proxy's two boundaries.

A proxy forwards end-to-end headers and consumes hop-by-hop ones (RFC 9110 section
7.6.1): ``Connection`` and every field it names, ``Keep-Alive``, ``Proxy-Connection``,
``TE``, ``Trailer``, ``Transfer-Encoding`` and ``Upgrade`` describe one connection and
must not travel to the next. ``Proxy-*`` fields are addressed to a proxy and stop
here too. Framing (``Transfer-Encoding``, chunking) is redone on each side.

Repeated fields (``Set-Cookie``, ``Via``, ``Cache-Control`` lists) are kept as
repeated fields, in order: every function here works on lists of (name, value)
pairs, never on plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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

# Fields upstream_headers rewrites rather than copies.
_FORWARDING = frozenset(
    {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
)


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Return the field names listed in every ``Connection`` header, lower case."""
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(token.strip().lower() for token in value.split(","))

    return frozenset(tokens)


# Whether a field name (as spelled on the wire) is hop-by-hop, remembered per
# spelling: peers send the same few names on every message, and one dict look-up
# is cheaper than lower-casing and testing each name again. Bounded, since the
# names come from the network.
_HOP_BY_NAME: dict[str, bool] = {}
_HOP_BY_NAME_MAX = 4096

# Connection values that name only fields dropped anyway (the usual ones).
_PLAIN_CONNECTION = frozenset({"keep-alive", "close", "upgrade"})


def _is_hop_by_hop(name: str) -> bool:
    """Return whether ``name`` is a hop-by-hop or ``Proxy-*`` field."""
    known = _HOP_BY_NAME.get(name)
    if known is None:
        lower = name.lower()
        known = lower in HOP_BY_HOP or lower.startswith("proxy-")
        if len(_HOP_BY_NAME) < _HOP_BY_NAME_MAX:
            _HOP_BY_NAME[name] = known

    return known


def _end_to_end(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return the fields of ``headers`` that are not hop-by-hop, in order."""
    kept: list[tuple[str, str]] = []
    extra = False
    for name, value in headers:
        if not _is_hop_by_hop(name):
            kept.append((name, value))
        elif not extra and value.lower() not in _PLAIN_CONNECTION:
            extra = name.lower() == "connection"
    if extra:
        # Rare: Connection named other fields; they describe this hop only too.
        named = _connection_tokens(headers)
        kept = [(name, value) for name, value in kept if name.lower() not in named]

    return kept


def upstream_headers(
    headers: Sequence[tuple[str, str]],
    *,
    client_ip: str | None,
    scheme: str,
) -> list[tuple[str, str]]:
    """Build the headers sent upstream from the client's request headers.

    ``Host`` is left out: the upstream client sets it to the upstream's host:port.
    ``X-Forwarded-For`` gets the client's address appended to any the client sent;
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are set only when absent, since
    a value already present was set by an earlier hop that saw the original request.
    """
    out: list[tuple[str, str]] = []
    forwarded: list[str] = []
    has_proto = has_host = False
    host: str | None = None
    for name, value in _end_to_end(headers):
        lower = name.lower()
        if lower in _FORWARDING:
            if lower == "host":
                host = value
                continue
            if lower == "x-forwarded-for":
                forwarded.append(value)
                continue
            has_proto = has_proto or lower == "x-forwarded-proto"
            has_host = has_host or lower == "x-forwarded-host"
        out.append((name, value))

    if client_ip:
        forwarded.append(client_ip)
    if forwarded:
        out.append(("X-Forwarded-For", ", ".join(forwarded)))
    if not has_proto:
        out.append(("X-Forwarded-Proto", scheme))
    if host and not has_host:
        out.append(("X-Forwarded-Host", host))

    return out


def downstream_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Build the headers sent to the client from the upstream's response headers."""
    return _end_to_end(headers)
