"""A small shop backend for ``chaosproxy demo`` and the deployment examples.

It serves the four routes that ``configs/demo.yaml`` names, with bodies and
timings shaped like a real service's, so the faults have something to act on::

    GET  /orders          a page of 20 orders (a few KiB of JSON)
    GET  /orders/{id}     one order; 404 for an id that does not exist
    GET  /search?q=...    matching products, after 5 to 25 ms of "index" work
    POST /payments        {"order_id": ..., "amount": ...} -> 201, or 422

Run on its own (as the docker-compose and Kubernetes examples do)::

    python -m chaosproxy.demo_upstream --listen 0.0.0.0:9000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
from collections.abc import Sequence

from aiohttp import web

__all__ = ["ORDER_COUNT", "build_app", "main", "serve"]

#: Orders 1 to ORDER_COUNT exist; any other id is answered 404.
ORDER_COUNT = 500

_PRODUCTS = (
    "walking boots",
    "rain jacket",
    "wool socks",
    "trail shoes",
    "water bottle",
    "head torch",
    "day pack",
    "trekking poles",
    "sun hat",
    "map case",
)


def _order(order_id: int) -> dict[str, object]:
    """Describe one order; the same id always gives the same order."""
    rng = random.Random(order_id)
    lines = [
        {"product": rng.choice(_PRODUCTS), "quantity": rng.randint(1, 3)}
        for _ in range(rng.randint(1, 4))
    ]
    return {
        "id": order_id,
        "status": rng.choice(("paid", "packed", "shipped", "delivered")),
        "lines": lines,
        "total_cents": rng.randint(500, 40000),
    }


async def _list_orders(request: web.Request) -> web.Response:
    """Answer a page of orders, newest first."""
    newest = ORDER_COUNT
    orders = [_order(order_id) for order_id in range(newest, newest - 20, -1)]
    return web.json_response({"orders": orders, "next": "/orders?page=2"})


async def _get_order(request: web.Request) -> web.Response:
    """Answer one order, or 404 for an id the shop never issued."""
    text = request.match_info["order_id"]
    if not text.isdigit() or not 1 <= int(text) <= ORDER_COUNT:
        return web.json_response({"error": "no such order", "id": text}, status=404)

    return web.json_response(_order(int(text)))


async def _search(request: web.Request) -> web.Response:
    """Answer the products whose names contain ``q``, after a little work."""
    query = request.query.get("q", "").strip().lower()
    # A real index takes a moment; without it, latency faults would be the only
    # thing on the latency columns of the demo's summary.
    await asyncio.sleep(random.uniform(0.005, 0.025))
    hits = [name for name in _PRODUCTS if query in name]

    return web.json_response({"query": query, "results": hits, "count": len(hits)})


async def _pay(request: web.Request) -> web.Response:
    """Take a payment for an order; 422 when the body is not a payment."""
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return web.json_response({"error": "expected a JSON body"}, status=422)
    if not isinstance(body, dict) or not isinstance(body.get("amount"), int):
        return web.json_response(
            {"error": "expected {'order_id': ..., 'amount': <cents>}"}, status=422
        )
    payment = {
        "payment_id": f"pay_{random.getrandbits(48):012x}",
        "order_id": body.get("order_id"),
        "amount": body["amount"],
        "status": "captured",
    }

    return web.json_response(payment, status=201)


def build_app() -> web.Application:
    """Build the shop's aiohttp application."""
    app = web.Application()
    app.router.add_get("/orders", _list_orders)
    app.router.add_get("/orders/{order_id}", _get_order)
    app.router.add_get("/search", _search)
    app.router.add_post("/payments", _pay)

    return app


async def serve(host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start the shop on ``host:port`` (0: any free port); return it and its URL."""
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]

    return runner, f"http://{bound_host}:{bound_port}"


async def _serve_until_stopped(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner, url = await serve(host, port)
    print(f"demo upstream serving on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the shop from the command line; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosproxy.demo_upstream",
        description="The built-in shop backend that chaosproxy demo runs against.",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:9000", help="host:port to serve on"
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen: expected host:port, got {args.listen!r}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(host.strip("[]"), int(port)))

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
