"""Tests that the library quick-start shown to users runs and prints what it says."""

from __future__ import annotations

from typing import Any

import pytest

QUICKSTART = """\
import asyncio

from aumai_chaos import (
    ChaosError,
    ChaosExperiment,
    ExperimentScheduler,
    FaultConfig,
    FaultInjector,
    FaultType,
    chaos_monkey,
    resilience_test,
)

# A seeded injector makes every fire-or-not decision repeatable.
injector = FaultInjector(seed=42)


# Fail every call with a 503 before the function body runs.
@chaos_monkey(
    fault_type=FaultType.error,
    probability=1.0,
    error_code=503,
    error_message="upstream unavailable",
    injector=injector,
)
def fetch_price(item: str) -> float:
    return 9.99


try:
    fetch_price("book")
except ChaosError as exc:
    print(exc)  # [503] upstream unavailable


# On async functions latency is awaited, so the event loop keeps running.
@resilience_test(
    faults=[
        FaultConfig(fault_type=FaultType.latency, probability=1.0, duration_ms=50),
        FaultConfig(fault_type=FaultType.timeout, probability=0.0),
    ]
)
async def load_profile(user_id: int) -> dict[str, int]:
    return {"id": user_id}


print(asyncio.run(load_profile(7)))  # {'id': 7}, 50 ms later

# An experiment injects its faults on every tick until its duration ends.
scheduler = ExperimentScheduler(injector=FaultInjector(seed=7), tick_seconds=0.1)
experiment_id = scheduler.schedule(
    ChaosExperiment(
        experiment_id="checkout-errors",
        name="checkout under errors",
        duration_seconds=1,
        faults=[
            FaultConfig(fault_type=FaultType.error, probability=0.5, error_code=500)
        ],
        target_components=["payments"],
    )
)
result = scheduler.run(experiment_id)
print(result.status.value)  # completed
print(sorted(result.summary))
# ['duration_seconds', 'errors_by_type', 'faults_by_type', 'total_faults_fired']
"""


def test_quickstart_runs_and_prints_what_its_comments_promise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The quick-start code runs as written and prints the lines its comments show."""
    namespace: dict[str, Any] = {"__name__": "quickstart"}

    exec(compile(QUICKSTART, "quickstart", "exec"), namespace)

    assert capsys.readouterr().out.splitlines() == [
        "[503] upstream unavailable",
        "{'id': 7}",
        "completed",
        str(
            [
                "duration_seconds",
                "errors_by_type",
                "faults_by_type",
                "total_faults_fired",
            ]
        ),
    ]


def test_quickstart_lines_fit_the_house_width() -> None:
    """Every quick-start line fits in 88 columns, so it reads well in the README."""
    assert max(len(line) for line in QUICKSTART.splitlines()) <= 88
