"""``chaosproxy demo``: a shop, the proxy in front of it, and clients, for N seconds.

Everything runs in this process, on loopback ports the system picks, so the demo
never collides with a service already running::

    clients (4) ──> ChaosProxy (configs/demo.yaml) ──> demo_upstream (the shop)
        │                 │ every request is an observation
        │                 ▼
        │           DemoStats: per route, statuses, faults, latencies
        ▼
    ClientTally: what the clients noticed (bad statuses, cut or garbled bodies)

The configuration ships inside the package (``chaosproxy/data/demo.yaml``, a copy
of ``configs/demo.yaml`` that a test keeps identical), so ``pip install .`` is all
the demo needs. Its listen, upstream and admin addresses are replaced by
ephemeral loopback ones; its routes, faults and seed are used as written.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aumai_chaos import ObservationPoint
from chaosproxy import demo_upstream
from chaosproxy.config import ProxyConfig, parse_config
from chaosproxy.faults import FAULT_HEADER
from chaosproxy.server import ChaosProxy

__all__ = [
    "CLIENTS",
    "DEMO_CONFIG",
    "ClientTally",
    "DemoStats",
    "RouteStats",
    "load_demo_config",
    "percentile",
    "run_demo",
    "summary_table",
]

#: The demo configuration's resource name inside the ``chaosproxy`` package.
DEMO_CONFIG = "data/demo.yaml"
#: How many clients send requests at once.
CLIENTS = 4
#: The summary table's columns, in order.
COLUMNS = ("route", "requests", "statuses", "faults fired", "p50 ms", "p99 ms")

# Clients wait a little between requests, as people and services do; it also keeps
# a 10-second run to about a thousand requests, a summary a reader can take in.
_THINK_SECONDS = (0.01, 0.05)
_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=10)
_QUERIES = ("boots", "jacket", "socks", "torch", "hat", "poles", "umbrella")


def load_demo_config() -> ProxyConfig:
    """Read the demo configuration shipped in the package."""
    text = resources.files("chaosproxy").joinpath(DEMO_CONFIG).read_text("utf-8")
    return parse_config(text, source="demo.yaml")


def _on_loopback(config: ProxyConfig, upstream_url: str) -> ProxyConfig:
    """Return ``config`` listening on free loopback ports, in front of the shop."""
    data = config.model_dump(mode="json", exclude_unset=True)
    data.update(listen="127.0.0.1:0", upstream=upstream_url, admin="127.0.0.1:0")

    return ProxyConfig.model_validate(data)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (``fraction`` 0 to 1)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))

    return ordered[rank - 1]


@dataclass
class RouteStats:
    """What the proxy saw on one route."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    durations_ms: list[float] = field(default_factory=list)


class DemoStats:
    """Folds the proxy's observations into per-route counts, as they are recorded."""

    def __init__(self, routes: Sequence[str]) -> None:
        """Keep the routes in the order given (the file's); others are appended."""
        self.routes: dict[str, RouteStats] = {name: RouteStats() for name in routes}

    def record(self, point: ObservationPoint) -> None:
        """Count one observation (an :class:`ObservationSink` listener)."""
        details = point.details
        route = str(details.get("route", "default"))
        stats = self.routes.setdefault(route, RouteStats())
        stats.requests += 1
        status = details.get("status")
        if isinstance(status, int):
            stats.statuses[status] += 1
        faults = details.get("faults")
        if isinstance(faults, list):
            stats.faults.update(str(fault) for fault in faults)
        duration = details.get("duration_ms")
        if isinstance(duration, int | float):
            stats.durations_ms.append(float(duration))

    @property
    def requests(self) -> int:
        """Requests seen on every route."""
        return sum(stats.requests for stats in self.routes.values())

    @property
    def faults(self) -> int:
        """Faults fired on every route."""
        return sum(sum(stats.faults.values()) for stats in self.routes.values())


@dataclass
class ClientTally:
    """What the clients themselves noticed, whatever the proxy says it did."""

    outcomes: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """Say in one sentence what the clients saw."""
        counts = self.outcomes
        parts = [
            f"{counts['ok']} fine",
            _count(counts["error_status"], "error status", "error statuses"),
            _count(counts["cut_short"], "body cut short", "bodies cut short"),
            _count(
                counts["bad_json"],
                "body that failed to parse",
                "bodies that failed to parse",
            ),
        ]
        if counts["failed"]:
            parts.append(_count(counts["failed"], "request failed", "requests failed"))
        sentence = "What the clients saw: " + ", ".join(parts)
        if counts["corrupt_unnoticed"]:
            unnoticed = counts["corrupt_unnoticed"]
            sentence += (
                f"; {_count(unnoticed, 'corrupted body', 'corrupted bodies')} parsed "
                f"anyway, noticed only through the {FAULT_HEADER} header"
            )

        return sentence + "."


def _count(number: int, one: str, many: str) -> str:
    """Say ``number`` with the singular or plural noun phrase."""
    return f"{number} {one if number == 1 else many}"


def _next_request(rng: random.Random) -> tuple[str, str, dict[str, object] | None]:
    """Pick the next request of the mix: method, path with query, JSON body."""
    kind = rng.choices(("list", "detail", "search", "pay"), weights=(3, 3, 3, 1))[0]
    if kind == "list":
        return "GET", "/orders", None
    if kind == "detail":
        # A few ids past the last order, so the shop's own 404s show up too.
        return "GET", f"/orders/{rng.randint(1, demo_upstream.ORDER_COUNT + 20)}", None
    if kind == "search":
        return "GET", f"/search?q={rng.choice(_QUERIES)}", None
    payment: dict[str, object] = {
        "order_id": rng.randint(1, 500),
        "amount": rng.randint(500, 40000),
    }

    return "POST", "/payments", payment


async def _one_request(
    session: aiohttp.ClientSession,
    base_url: str,
    rng: random.Random,
    tally: ClientTally,
) -> None:
    """Send one request of the mix and record what the client made of it."""
    method, target, payload = _next_request(rng)
    try:
        async with session.request(method, base_url + target, json=payload) as reply:
            body = await reply.read()
            fired = reply.headers.get(FAULT_HEADER, "")
            status = reply.status
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        tally.outcomes["cut_short"] += 1
        return

    try:
        json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        tally.outcomes["bad_json"] += 1
        return
    if status >= 400:
        tally.outcomes["error_status"] += 1
    elif "data_corruption" in fired:
        tally.outcomes["corrupt_unnoticed"] += 1
    else:
        tally.outcomes["ok"] += 1


async def _client(
    number: int, base_url: str, deadline: float, tally: ClientTally
) -> None:
    """Send requests until ``deadline`` (loop time), pausing between them."""
    rng = random.Random(number)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as session:
        while loop.time() < deadline:
            try:
                await _one_request(session, base_url, rng, tally)
            except (aiohttp.ClientError, TimeoutError):
                tally.outcomes["failed"] += 1
            await asyncio.sleep(rng.uniform(*_THINK_SECONDS))


def _progress_line(stats: DemoStats, elapsed: float, seconds: int) -> str:
    """One line of plain progress, for output that is not a terminal."""
    shown = min(seconds, int(elapsed))
    return (
        f"demo {shown:>3}/{seconds} s: {stats.requests} requests, "
        f"{stats.faults} faults fired"
    )


def _live_view(stats: DemoStats, elapsed: float, seconds: int) -> Group:
    """The terminal view while traffic runs: a bar and running counts per route."""
    done = min(1.0, elapsed / seconds)
    width = 20
    bar = "█" * round(done * width) + "░" * (width - round(done * width))
    head = Text.assemble(
        ("chaosproxy demo ", "bold"),
        f"{bar} {min(elapsed, seconds):4.1f}/{seconds} s  ",
        f"{stats.requests} requests, {stats.faults} faults fired",
    )
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    table.add_column("route")
    table.add_column("requests", justify="right")
    table.add_column("faults fired", justify="right")
    for route, route_stats in stats.routes.items():
        fired = sum(route_stats.faults.values())
        table.add_row(route, str(route_stats.requests), str(fired))

    return Group(head, table)


async def _show_progress(
    stats: DemoStats, seconds: int, traffic: asyncio.Future[Any], console: Console
) -> None:
    """Show progress until ``traffic`` is done: live on a terminal, else lines."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if console.is_terminal:
        view = _live_view(stats, 0.0, seconds)
        with Live(view, console=console, refresh_per_second=8, transient=True) as live:
            while not traffic.done():
                await asyncio.wait([traffic], timeout=0.125)
                live.update(_live_view(stats, loop.time() - started, seconds))
        return

    while not traffic.done():
        await asyncio.wait([traffic], timeout=1.0)
        if not traffic.done():
            line = _progress_line(stats, loop.time() - started, seconds)
            console.print(line, soft_wrap=True)


def _format_ms(value: float) -> str:
    """Format a latency for the table; a dash when there was nothing to measure."""
    return "-" if math.isnan(value) else f"{value:.1f}"


def summary_table(stats: DemoStats, *, ascii_only: bool = False) -> Table:
    """Build the end-of-run table: one row per route that saw requests."""
    table = Table(
        title="Per-route summary (as the proxy observed it)",
        # No vertical rules on a terminal, so the table fits in 80 columns.
        box=box.ASCII if ascii_only else box.SIMPLE_HEAD,
        title_justify="left",
        show_edge=ascii_only,
    )
    for name in COLUMNS:
        numeric = name in ("requests", "p50 ms", "p99 ms")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for route, route_stats in stats.routes.items():
        if not route_stats.requests:
            continue
        statuses = "\n".join(
            f"{status}: {count}"
            for status, count in sorted(route_stats.statuses.items())
        )
        faults = "\n".join(
            f"{fault}: {count}" for fault, count in sorted(route_stats.faults.items())
        )
        table.add_row(
            route,
            str(route_stats.requests),
            statuses or "-",
            faults or "-",
            _format_ms(percentile(route_stats.durations_ms, 0.50)),
            _format_ms(percentile(route_stats.durations_ms, 0.99)),
        )

    return table


async def _demo(seconds: int, clients: int, console: Console) -> int:
    """Start the shop and the proxy, run the clients, then print the summary."""
    config = load_demo_config()
    stats = DemoStats([route.name for route in config.routes])
    tally = ClientTally()
    shop, shop_url = await demo_upstream.serve()
    try:
        proxy = ChaosProxy(_on_loopback(config, shop_url))
        proxy.sink.listeners.append(stats.record)
        await proxy.start()
        try:
            console.print(
                f"shop on {shop_url}, chaosproxy on {proxy.url} with demo.yaml "
                f"(seed {config.seed}), {clients} clients for {seconds} s; "
                f"admin API on {proxy.admin_url} (try GET /summary)",
                soft_wrap=True,
            )
            deadline = asyncio.get_running_loop().time() + seconds
            traffic = asyncio.gather(
                *(_client(n, proxy.url, deadline, tally) for n in range(clients))
            )
            await _show_progress(stats, seconds, traffic, console)
            await traffic
        finally:
            await proxy.stop()
    finally:
        await shop.cleanup()

    console.print(summary_table(stats, ascii_only=not console.is_terminal))
    console.print(tally.describe())
    console.print(
        "Next: chaosproxy run -c configs/demo.yaml puts the same rules in front of "
        "a service of your own (see the README).",
    )

    return 0


def run_demo(seconds: int = 10, *, clients: int = CLIENTS) -> int:
    """Run the demo for ``seconds`` with ``clients`` clients; return the exit code.

    Output goes to standard output: a live view on a terminal, plain progress lines
    otherwise, then the summary table. Returns 1, with a one-line message on
    standard error, if a server cannot be started.
    """
    console = Console(highlight=False)
    if not console.is_terminal:
        # A pipe or a CI log has no width to fit; wide enough keeps rows whole.
        console = Console(highlight=False, width=110)
    try:
        return asyncio.run(_demo(seconds, clients, console))
    except OSError as exc:
        print(f"chaosproxy: the demo could not start: {exc}", file=sys.stderr)
        return 1
