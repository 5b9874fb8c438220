"""Tests for aumai_chaos.decorators: chaos_monkey and resilience_test."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from pydantic import ValidationError

from aumai_chaos.decorators import chaos_monkey, resilience_test
from aumai_chaos.errors import ChaosError, ChaosTimeoutError, DataCorruptionError
from aumai_chaos.injector import FaultInjector
from aumai_chaos.models import FaultConfig, FaultType


class RecordingInjector(FaultInjector):
    """Notes every config it is asked to decide on, then decides normally."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.decided: list[FaultConfig] = []

    def decide(self, config: FaultConfig) -> bool:
        self.decided.append(config)
        return super().decide(config)


def always_error(code: int = 503) -> FaultConfig:
    """An error fault that always fires."""
    return FaultConfig(fault_type=FaultType.error, error_code=code)


def test_chaos_monkey_defaults_match_the_reference() -> None:
    """chaos_monkey's parameters and defaults are the reference's, plus injector."""
    parameters = inspect.signature(chaos_monkey).parameters

    assert {name: p.default for name, p in parameters.items()} == {
        "fault_type": FaultType.latency,
        "probability": 0.1,
        "duration_ms": 500,
        "error_code": 500,
        "error_message": "Chaos monkey error",
        "affected_components": None,
        "injector": None,
    }
    assert parameters["injector"].kind is inspect.Parameter.KEYWORD_ONLY


def test_sync_wrapper_keeps_the_function_metadata() -> None:
    """A decorated function keeps its name, docstring and a link to the original."""

    def fetch(item: str) -> str:
        """Fetch an item."""
        return item

    wrapped = chaos_monkey(probability=0.0)(fetch)

    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch an item."
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(wrapped)


def test_async_wrapper_stays_a_coroutine_function() -> None:
    """A decorated async function is still a coroutine function with its metadata."""

    async def fetch(item: str) -> str:
        """Fetch an item, asynchronously."""
        return item

    wrapped = resilience_test([always_error()])(fetch)

    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch an item, asynchronously."
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]


def test_quiet_monkey_passes_arguments_and_result_through() -> None:
    """With probability 0 the function is called normally, arguments and all."""

    @chaos_monkey(fault_type=FaultType.error, probability=0.0)
    def add(a: int, b: int = 0) -> int:
        return a + b

    assert add(2, b=3) == 5


def test_firing_monkey_raises_before_the_function_runs() -> None:
    """A fault that fires raises its exception and the function is not called."""
    calls: list[int] = []

    @chaos_monkey(fault_type=FaultType.error, probability=1.0, error_code=429)
    def call_tool(value: int) -> int:
        calls.append(value)
        return value

    with pytest.raises(ChaosError) as caught:
        call_tool(1)

    assert str(caught.value) == "[429] Chaos monkey error"
    assert calls == []


def test_monkey_latency_delays_a_sync_call() -> None:
    """A latency monkey with probability 1 delays the call by its duration."""

    @chaos_monkey(probability=1.0, duration_ms=100)
    def quick() -> str:
        return "done"

    started = time.monotonic()
    assert quick() == "done"
    assert 0.1 <= time.monotonic() - started < 0.6


async def test_monkey_latency_on_async_function_does_not_block_the_loop() -> None:
    """On an async function the latency is awaited, so other tasks keep running."""

    @chaos_monkey(probability=1.0, duration_ms=150)
    async def quick() -> str:
        return "done"

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick(), name="test-loop-ticker")
    result = await quick()
    ticks_during_call = ticks
    ticker.cancel()

    assert result == "done"
    assert ticks_during_call >= 5


async def test_async_wrapper_raises_the_injected_fault() -> None:
    """A firing fault on an async function raises when the call is awaited."""
    calls: list[str] = []

    @resilience_test([FaultConfig(fault_type=FaultType.timeout)])
    async def load() -> str:
        calls.append("load")
        return "data"

    with pytest.raises(ChaosTimeoutError):
        await load()

    assert calls == []


def test_resilience_test_decides_faults_in_order() -> None:
    """Every call decides each fault, in the order given."""
    injector = RecordingInjector()
    faults = [
        FaultConfig(fault_type=FaultType.latency, probability=0.0, duration_ms=1),
        FaultConfig(fault_type=FaultType.timeout, probability=0.0),
        FaultConfig(fault_type=FaultType.data_corruption, probability=0.0),
    ]

    @resilience_test(faults, injector=injector)
    def work() -> int:
        return 1

    work()
    work()

    assert [c.fault_type for c in injector.decided] == [
        f.fault_type for f in faults
    ] * 2


def test_resilience_test_stops_at_the_first_raising_fault() -> None:
    """Faults after one that raised are not decided, and the function is not called."""
    injector = RecordingInjector()
    faults = [
        FaultConfig(fault_type=FaultType.data_corruption),
        FaultConfig(fault_type=FaultType.timeout),
    ]

    @resilience_test(faults, injector=injector)
    def work() -> int:
        return 1

    with pytest.raises(DataCorruptionError):
        work()

    assert len(injector.decided) == 1


def test_each_fault_uses_its_own_probability() -> None:
    """A never-firing fault before an always-firing one does not stop it."""

    @resilience_test(
        [
            FaultConfig(fault_type=FaultType.timeout, probability=0.0),
            always_error(418),
        ]
    )
    def work() -> int:
        return 1

    for _ in range(20):
        with pytest.raises(ChaosError, match=r"^\[418\]"):
            work()


def test_configs_are_built_once_and_shared_by_calls() -> None:
    """Every call sees the very same FaultConfig object, made at decoration."""
    injector = RecordingInjector()

    @chaos_monkey(probability=0.0, injector=injector)
    def work() -> None:
        return None

    for _ in range(5):
        work()

    assert len({id(config) for config in injector.decided}) == 1


def test_resilience_test_copies_the_fault_list() -> None:
    """Adding to the list after decoration does not change the decorated function."""
    faults = [FaultConfig(fault_type=FaultType.timeout, probability=0.0)]

    @resilience_test(faults)
    def work() -> str:
        return "ok"

    faults.append(always_error())

    assert work() == "ok"


def test_seeded_injectors_make_decorated_calls_repeatable() -> None:
    """Two functions decorated with equally seeded injectors fail on the same calls."""

    def outcomes(seed: int) -> list[bool]:
        @chaos_monkey(
            fault_type=FaultType.error,
            probability=0.5,
            injector=FaultInjector(seed=seed),
        )
        def work() -> None:
            return None

        failed = []
        for _ in range(50):
            try:
                work()
            except ChaosError:
                failed.append(True)
            else:
                failed.append(False)
        return failed

    assert outcomes(1234) == outcomes(1234)
    assert 0 < sum(outcomes(1234)) < 50


def test_bad_values_fail_at_decoration_time() -> None:
    """An out-of-range probability is rejected when decorating, not when calling."""
    with pytest.raises(ValidationError):
        chaos_monkey(probability=1.5)


def test_incomplete_fault_fails_at_decoration_time() -> None:
    """A latency fault without a duration is rejected by resilience_test at once."""
    with pytest.raises(ValueError, match="duration_ms: required"):
        resilience_test([FaultConfig(fault_type=FaultType.latency)])
