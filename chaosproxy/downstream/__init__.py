"""The client-facing side: an HTTP/1.1 server of the proxy's own, on llhttp.

Why not aiohttp's server: measured with a 100 ms latency fault on every request,
aiohttp's request handling (its request and response objects, its writer, its
per-request bookkeeping) cost more CPU than the rest of the proxy together, and a
proxy holding hundreds of requests answers each wave of them one after another, so
that cost is what the slowest client waits. This server does only what a proxy
needs: parse a head with llhttp (through ``httptools``), hand the proxy a
:class:`Request` and a :class:`Response`, frame what the proxy writes.

What it adds that a bare parser lacks:

- bounds on a request head (:class:`~chaosproxy.limits.Limits`), and a deadline on
  it (slowloris), counted from the head's first byte, or from the opening of the
  connection for the first request. The wait between requests on a kept-alive
  connection is the keep-alive timeout's business, and a slow body is the
  upstream's: neither counts;
- a malformed request is answered in the proxy's own words, a JSON body naming the
  problem and a closed connection, and logged as one WARNING line on
  ``chaosproxy.downstream``, never as a traceback;
- the request target is settled before routing. An absolute-form target
  (``GET http://elsewhere/x``) becomes origin-form, its authority the ``Host``
  (RFC 9112 section 3.2.2): the proxy forwards it to its own upstream, never to
  the authority named. CONNECT is refused: the proxy opens no tunnels;
- when the client goes away, the handler of its request is cancelled, so a held
  fault stops holding.

What a client gets::

    malformed head or framing (RFC 9112 sections 2-6)      400, connection closed
    request line over max_request_line_bytes               414 (RFC 9112 section 3)
    header line over max_header_line_bytes, too many       431 (RFC 6585 section 5)
    head not complete within header_read_timeout_ms        408, connection closed
    absolute-form target: other scheme, or userinfo        400 (RFC 9110 4.2.4)
    malformed body framing once the request is under way  connection closed
    CONNECT                                                501 (RFC 9110 9.1)
    HTTP/0.9 (a request line without a version)           505
    a failure of the proxy's own                           500, logged with traceback

Requests refused here never reach the router: they are not observations, only log
lines.

The parts, in the order a request meets them::

    server.py      DownstreamServer: a connection per client, the deadline sweep,
                   graceful shutdown
    connection.py  _Connection: llhttp's callbacks, the head's bounds and clocks,
                   one handler at a time, refusals
    checks.py      what is refused before routing: target, head, body framing
    request.py     Request and RequestBody: a head as sent, a body as it arrives
    response.py    Response: frames what the handler writes; json_reply, refusals
"""

from __future__ import annotations

from chaosproxy.downstream.checks import to_origin_form
from chaosproxy.downstream.request import Request, RequestBody
from chaosproxy.downstream.response import Reply, Response, json_reply
from chaosproxy.downstream.server import DownstreamServer

__all__ = [
    "DownstreamServer",
    "Reply",
    "Request",
    "RequestBody",
    "Response",
    "json_reply",
    "to_origin_form",
]
