"""The benchmark, briefly: passthrough is never grossly slower than Envoy's."""

from __future__ import annotations

import pytest

from bench.smoke import missing_tools, passthrough_rps

pytestmark = pytest.mark.bench


@pytest.mark.timeout(120)
def test_passthrough_is_at_most_three_times_slower_than_envoy() -> None:
    """1 KiB at 50 connections: our req/s is at least a third of Envoy's, same run.

    A smoke alarm for a gross regression only; the figures are bench/README.md's.
    """
    missing = missing_tools()
    if missing:
        pytest.skip(f"benchmark tools missing: {', '.join(missing)}")

    figures = passthrough_rps()

    ratio = figures["chaosproxy"] / figures["envoy"]
    assert ratio >= 1 / 3, f"passthrough at {ratio:.2f}x Envoy's req/s: {figures}"
