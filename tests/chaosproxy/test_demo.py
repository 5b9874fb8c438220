"""``chaosproxy demo``: its shop, its statistics, and the command as a user runs it."""

from __future__ import annotations

import contextlib
import math
import os
import pty
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import aiohttp
import pytest

from aumai_chaos import ObservationPoint
from chaosproxy import demo_upstream
from chaosproxy.demo import (
    COLUMNS,
    DEMO_CONFIG,
    DemoStats,
    load_demo_config,
    percentile,
)

ROOT = Path(__file__).resolve().parents[2]


def _chaosproxy_command() -> list[str]:
    """The installed ``chaosproxy`` script beside this Python, else ``-m``."""
    script = Path(sys.executable).with_name("chaosproxy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chaosproxy"]


def test_packaged_demo_config_is_identical_to_configs_demo_yaml() -> None:
    """The copy inside the package and the one users read in configs/ never drift."""
    packaged = ROOT / "chaosproxy" / DEMO_CONFIG
    assert packaged.read_bytes() == (ROOT / "configs" / "demo.yaml").read_bytes()


def test_packaged_demo_config_is_declared_as_package_data() -> None:
    """pyproject.toml ships the demo config in the wheel, so pip install . finds it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["chaosproxy"]
    assert any(fnmatch(DEMO_CONFIG, glob) for glob in globs)


def test_demo_config_loads_with_a_route_for_each_shop_endpoint() -> None:
    """The demo config is valid and names the four routes the shop serves."""
    config = load_demo_config()

    assert [route.name for route in config.routes] == [
        "order-list",
        "order-detail",
        "search",
        "payments",
    ]
    assert config.seed == 7


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([float(n) for n in range(1, 101)], 0.99, 99.0),
        ([float(n) for n in range(1, 101)], 1.0, 100.0),
        ([3.0, 1.0, 2.0], 0.5, 2.0),
    ],
    ids=["one-value", "even-count-median", "p99-of-100", "p100-is-max", "unsorted"],
)
def test_percentile_uses_the_nearest_rank(
    values: list[float], fraction: float, expected: float
) -> None:
    """Percentiles are nearest-rank: always one of the measured values."""
    assert percentile(values, fraction) == expected


def test_percentile_of_nothing_is_nan() -> None:
    """A route with no measured requests has no latency, not a latency of zero."""
    assert math.isnan(percentile([], 0.5))


def test_demo_stats_count_statuses_faults_and_durations_per_route() -> None:
    """Each observation lands on its route's counters; unknown routes are added."""
    stats = DemoStats(["search"])

    def observe(route: str, status: int, faults: list[str], ms: float) -> None:
        details: dict[str, object] = {
            "route": route,
            "status": status,
            "faults": faults,
            "duration_ms": ms,
        }
        stats.record(
            ObservationPoint(
                timestamp=datetime.now(UTC),
                component=route,
                event="fault_injected" if faults else "proxied",
                details=details,
            )
        )

    observe("search", 200, ["latency"], 310.0)
    observe("search", 504, ["latency", "timeout"], 1300.0)
    observe("default", 200, [], 2.0)

    search = stats.routes["search"]
    assert (search.requests, dict(search.statuses)) == (2, {200: 1, 504: 1})
    assert dict(search.faults) == {"latency": 2, "timeout": 1}
    assert search.durations_ms == [310.0, 1300.0]
    assert list(stats.routes) == ["search", "default"]
    assert (stats.requests, stats.faults) == (3, 3)


async def test_demo_upstream_serves_orders_search_and_payments() -> None:
    """The shop answers each route the demo config names, with JSON."""
    runner, url = await demo_upstream.serve()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/orders") as reply:
                assert reply.status == 200
                assert len((await reply.json())["orders"]) == 20
            async with session.get(f"{url}/orders/42") as reply:
                assert (await reply.json())["id"] == 42
            async with session.get(f"{url}/orders/100000") as reply:
                assert reply.status == 404
            async with session.get(f"{url}/search", params={"q": "boots"}) as reply:
                assert (await reply.json())["results"] == ["walking boots"]
            payment = {"order_id": 42, "amount": 1999}
            async with session.post(f"{url}/payments", json=payment) as reply:
                assert reply.status == 201
                assert (await reply.json())["status"] == "captured"
            async with session.post(f"{url}/payments", data=b"nope") as reply:
                assert reply.status == 422
    finally:
        await runner.cleanup()


@pytest.mark.timeout(60)
def test_demo_command_ends_with_a_summary_row_per_route() -> None:
    """``chaosproxy demo --seconds 2`` exits 0, shows progress and a full table."""
    result = subprocess.run(
        [*_chaosproxy_command(), "demo", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=45,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    # Not a terminal: plain progress lines, then an ASCII table.
    assert re.search(r"^demo +1/2 s: \d+ requests, \d+ faults fired$", out, re.M)
    header = next(line for line in out.splitlines() if line.startswith("| route"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == list(COLUMNS)
    for route in ("order-list", "order-detail", "search", "payments"):
        row = re.search(rf"^\| {route} +\| +(\d+) \| +(\d+): \d+", out, re.M)
        assert row is not None, f"no row for {route}:\n{out}"
        assert int(row[1]) > 0
    assert "What the clients saw:" in out


@pytest.mark.timeout(60)
def test_demo_on_a_terminal_draws_a_live_view_then_the_table() -> None:
    """On a terminal the demo redraws a live view, then prints the table."""
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [*_chaosproxy_command(), "demo", "--seconds", "1"],
        stdout=secondary,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm", "COLUMNS": "80"},
    ) as process:
        os.close(secondary)
        output = b""
        with contextlib.suppress(OSError):  # EIO once the demo has closed the pty
            while chunk := os.read(primary, 65536):
                output += chunk
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        assert process.stderr.read() == b""
    os.close(primary)

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8"))
    assert "chaosproxy demo" in text  # the live view's heading
    assert re.search(r"route +requests +statuses +faults fired +p50 ms +p99 ms", text)
    assert "What the clients saw:" in text
