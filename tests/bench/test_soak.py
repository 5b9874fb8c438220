"""The soak's 60-second variant: the proxy stays flat under a minute of mixed load.

The full run is ``python -m bench.soak`` (5 minutes); see bench/soak.py.
"""

from __future__ import annotations

import pytest

from bench.soak import WINDOW, soak


@pytest.mark.timeout(180)
async def test_a_minute_of_faults_and_admin_changes_leaves_the_proxy_flat() -> None:
    """Memory and descriptors grow under 5% after warm-up; window, metrics bounded."""
    report = await soak(seconds=60, concurrency=32)

    assert report.problems() == [], report.render()
    assert report.requests > 5_000
    assert 0 < report.observations_seen_max <= WINDOW
    assert set(report.outcomes) == {
        "small", "upload", "big", "stream", "slow", "limited", "rare", "abandoned"
    }  # fmt: skip
    assert report.admin_steps
