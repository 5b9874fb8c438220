"""What is refused before routing: the request target, the head, the body framing.

llhttp parses; these checks, run from its callbacks once a head is whole, settle
what it lets through but the proxy will not serve. A failed check raises
:class:`_BadRequest`, whose status the connection answers with; a target that
cannot be settled is refused with the status :func:`_why_refused` gives.
"""

from __future__ import annotations

import re

__all__ = ["to_origin_form"]

# RFC 9112 section 3.2.2: absolute-form is scheme "://" authority, then the
# path and query. Only http and https name something this proxy could serve.
_ABSOLUTE_FORM = re.compile(r"(?i:https?)://([^/?#]+)(.*)", re.DOTALL)


class _BadRequest(Exception):
    """A request the proxy refuses before routing: ``status`` and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        """Record the status to answer with and a one-line reason."""
        super().__init__(reason)
        self.status = status
        self.reason = reason


def to_origin_form(
    target: str, headers: list[tuple[str, str]]
) -> tuple[str, list[tuple[str, str]]] | None:
    """Rewrite an absolute-form target as origin-form, its authority as ``Host``.

    RFC 9112 section 3.2.2: a server that receives an absolute-form target uses its
    authority and ignores the ``Host`` field sent. Returns the new target and
    headers, or None for a target that is not http(s) absolute-form or whose
    authority carries userinfo (which RFC 9110 section 4.2.4 asks a recipient to
    treat as an error), for the caller to refuse.
    """
    found = _ABSOLUTE_FORM.fullmatch(target)
    if found is None or "@" in found[1]:
        return None
    authority, rest = found[1], found[2]
    origin_target = rest if rest.startswith("/") else "/" + rest
    kept = [(name, value) for name, value in headers if name.lower() != "host"]

    return origin_target, [("Host", authority), *kept]


def _settle_target(
    method: str, url: bytes, headers: list[tuple[str, str]]
) -> tuple[str, list[tuple[str, str]]] | None:
    """The target in origin-form, and the headers; None for one to refuse."""
    if not url.isascii():
        raise _BadRequest(400, "the request target is not ASCII")
    target = url.decode("ascii")
    if target[:1] == "/":
        return target, headers
    if target == "*" and method == "OPTIONS":
        # RFC 9112 section 3.2.4: asterisk-form, for a server-wide OPTIONS.
        return target, headers
    if method == "CONNECT":
        return None

    return to_origin_form(target, headers)


def _why_refused(method: str) -> tuple[int, str]:
    """The status and reason for a request target the proxy will not forward."""
    if method == "CONNECT":
        return 501, "CONNECT is not supported: this proxy opens no tunnels"

    return 400, "expected a path, or an http(s) URL without userinfo"


def _check_head(version: str, headers: list[tuple[str, str]]) -> None:
    """Refuse what llhttp lets through but RFC 9112 forbids a server to take."""
    if version not in ("1.1", "1.0"):
        # llhttp takes a request line without a version as HTTP/0.9, which has
        # no headers: nothing to route or forward on.
        raise _BadRequest(505, "expected HTTP/1.0 or HTTP/1.1")
    hosts = 0
    for name, value in headers:
        if len(name) == 4 and name.lower() == "host":
            hosts += 1
        elif len(name) == 17 and name.lower() == "transfer-encoding":
            codings = [c.strip().lower() for c in value.split(",")]
            if codings != ["chunked"]:
                # RFC 9112 section 6.1: chunked must be last and only once, and
                # no other coding is understood here (501 would also do; a 400
                # closes a connection whose framing nobody can know).
                raise _BadRequest(400, f"unsupported Transfer-Encoding: {value}")
    # RFC 9112 section 3.2: exactly one Host in an HTTP/1.1 request.
    if hosts > 1:
        raise _BadRequest(400, "more than one Host header")
    if hosts == 0 and version == "1.1":
        raise _BadRequest(400, "missing Host header")


def _body_framing(headers: list[tuple[str, str]]) -> bool:
    """Return whether the request has a body (chunked, or a length above 0)."""
    for name, value in headers:
        size = len(name)
        if size == 17 and name.lower() == "transfer-encoding":
            return True
        if size == 14 and name.lower() == "content-length":
            return value.strip() not in ("", "0")

    return False
