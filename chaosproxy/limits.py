"""The ``limits`` section: how much a client may send in a request head, and how slowly.

The defaults are chosen so that the proxy is never the component that refuses a
request its upstream would take, while a hostile client still cannot make it hold
unbounded state:

- ``max_request_line_bytes`` and ``max_header_line_bytes`` are 8190, as in Apache,
  gunicorn and aiohttp (nginx allows 8 KiB); together with ``max_headers`` (128, as
  aiohttp; Envoy allows 100) they bound a request head to about 1 MiB.
- ``header_read_timeout_ms`` (20 s, Apache's initial allowance; nginx and Node.js
  allow 60 s) bounds how long a request head may take from its first byte, or from
  the opening of the connection for the first request. The wait between requests
  on a kept-alive connection does not count against it, nor does a slow body.
- ``keepalive_timeout_ms`` (3630 s, aiohttp's) is deliberately longer than the idle
  timeout of the load balancers likely to sit in front (AWS ALB 60 s by default,
  Google Cloud 600 s, Envoy 3600 s): a proxy that closed an idle connection just as
  a balancer reused it would produce a 502 that nobody injected.

There is no body-size limit: bodies stream through without being held, so a large
one costs the proxy no memory, and the upstream enforces its own.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Limits"]

#: The largest line limit accepted; a request head is held in memory while parsed.
MAX_LINE_LIMIT = 1 << 20

#: The longest timeout accepted, one day: anything longer is a mistake of units.
MAX_TIMEOUT_MS = 86_400_000


class Limits(BaseModel):
    """Bounds on what a client may send the proxy before its request is handled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_request_line_bytes: int = Field(
        8190,
        ge=256,
        le=MAX_LINE_LIMIT,
        strict=True,
        description="Longest request line (in practice, its URL); longer gets 414.",
    )
    max_header_line_bytes: int = Field(
        8190,
        ge=256,
        le=MAX_LINE_LIMIT,
        strict=True,
        description="Longest header field, name and value; longer gets 431.",
    )
    max_headers: int = Field(
        128,
        ge=1,
        le=10_000,
        strict=True,
        description="Most header fields in one request; more gets 431.",
    )
    header_read_timeout_ms: int = Field(
        20_000,
        ge=1,
        le=MAX_TIMEOUT_MS,
        strict=True,
        description="A request head slower than this gets 408 and a closed connection.",
    )
    keepalive_timeout_ms: int = Field(
        3_630_000,
        ge=1,
        le=MAX_TIMEOUT_MS,
        strict=True,
        description="An idle kept-alive client connection is closed after this.",
    )
