"""Tests for aumai_chaos.injector: decisions, fault effects and the async path."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aumai_chaos.errors import (
    ChaosError,
    ChaosTimeoutError,
    DataCorruptionError,
    PartialFailureError,
    ResourceExhaustedError,
)
from aumai_chaos.injector import FaultInjector
from aumai_chaos.models import FaultConfig, FaultType

# Generous: the assertion is that latency happened, not how precise the OS timer is.
SLACK_SECONDS = 0.5

RAISING_FAULTS = [
    pytest.param(
        FaultConfig(fault_type=FaultType.error, error_code=503, error_message="down"),
        ChaosError,
        "[503] down",
        id="error",
    ),
    pytest.param(
        FaultConfig(fault_type=FaultType.error, error_code=500),
        ChaosError,
        "[500] Injected error",
        id="error-default-message",
    ),
    pytest.param(
        FaultConfig(fault_type=FaultType.timeout),
        ChaosTimeoutError,
        "Injected timeout",
        id="timeout",
    ),
    pytest.param(
        FaultConfig(fault_type=FaultType.partial_failure),
        PartialFailureError,
        "[partial_failure] Partial failure",
        id="partial-failure",
    ),
    pytest.param(
        FaultConfig(fault_type=FaultType.partial_failure, error_message="3 of 5"),
        PartialFailureError,
        "[partial_failure] 3 of 5",
        id="partial-failure-message",
    ),
    pytest.param(
        FaultConfig(fault_type=FaultType.resource_exhaustion),
        ResourceExhaustedError,
        "Resource exhausted",
        id="resource-exhaustion",
    ),
    pytest.param(
        FaultConfig(fault_type=FaultType.data_corruption, error_message="bad crc"),
        DataCorruptionError,
        "bad crc",
        id="data-corruption-message",
    ),
]


class BlockingLatencyInjector(FaultInjector):
    """Overrides only inject_latency with a blocking sleep, noting its thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threads: list[int] = []

    def inject_latency(self, duration_ms: int) -> None:
        self.threads.append(threading.get_ident())
        time.sleep(duration_ms / 1000)


@pytest.fixture
def blocking_injector() -> Iterator[BlockingLatencyInjector]:
    """A blocking-override injector whose lazily made thread pool is shut down."""
    injector = BlockingLatencyInjector(seed=1)
    yield injector
    if injector.executor is not None:
        injector.executor.shutdown(wait=True)


async def count_loop_ticks(awaitable: Awaitable[object]) -> tuple[int, object]:
    """Await ``awaitable`` while a task counts 10 ms ticks of the event loop."""
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick(), name="test-loop-ticker")
    try:
        outcome = await awaitable
    finally:
        done.set()
        await ticker

    return ticks, outcome


# -- construction and decisions --------------------------------------------------------


def test_seed_and_rng_together_are_rejected() -> None:
    """Giving both a seed and a generator is ambiguous and raises ValueError."""
    with pytest.raises(ValueError, match="seed or rng, not both"):
        FaultInjector(seed=1, rng=random.Random(1))


@pytest.mark.parametrize(
    "probability",
    [-0.1, 1.1, float("nan")],
    ids=["below", "above", "nan"],
)
def test_should_inject_rejects_probability_outside_unit_range(
    probability: float,
) -> None:
    """A probability outside [0, 1] raises ValueError naming the range and value."""
    with pytest.raises(ValueError, match=r"expected 0\.0 to 1\.0, got") as caught:
        FaultInjector(seed=0).should_inject(probability)

    assert repr(probability) in str(caught.value)


def test_probability_zero_never_fires_and_one_always_fires() -> None:
    """0.0 never fires and 1.0 always fires, over many draws."""
    injector = FaultInjector(seed=11)

    assert not any(injector.should_inject(0.0) for _ in range(5_000))
    assert all(injector.should_inject(1.0) for _ in range(5_000))


def test_probability_is_honoured_statistically() -> None:
    """With a fixed seed, 0.3 fires in about 30% of 20,000 draws."""
    injector = FaultInjector(seed=2024)

    fired = sum(injector.should_inject(0.3) for _ in range(20_000))

    # Three standard deviations is under 0.01; 0.02 leaves room without losing meaning.
    assert abs(fired / 20_000 - 0.3) < 0.02


def test_same_seed_gives_same_decisions() -> None:
    """Two injectors seeded alike make the same decisions in the same order."""
    first = FaultInjector(seed=99)
    second = FaultInjector(seed=99)

    first_decisions = [first.should_inject(0.5) for _ in range(200)]
    second_decisions = [second.should_inject(0.5) for _ in range(200)]

    assert first_decisions == second_decisions
    assert 0 < sum(first_decisions) < 200


def test_rng_argument_is_the_source_of_decisions() -> None:
    """A given generator is used as is: its seed decides like the seed argument."""
    injector = FaultInjector(rng=random.Random(5))
    seeded = FaultInjector(seed=5)

    assert injector.rng.random() == seeded.rng.random()


def test_every_decision_consumes_exactly_one_draw() -> None:
    """Decisions at 0.0 and 1.0 still draw once, so later decisions stay in step."""
    injector = FaultInjector(seed=3)
    reference = random.Random(3)

    injector.should_inject(0.0)
    injector.should_inject(1.0)
    reference.random()
    reference.random()

    assert injector.rng.random() == reference.random()


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_extreme_probabilities_hold_for_any_seed(seed: int) -> None:
    """Whatever the seed, 0.0 never fires and 1.0 always does."""
    injector = FaultInjector(seed=seed)

    assert injector.should_inject(0.0) is False
    assert injector.should_inject(1.0) is True


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            FaultConfig(fault_type=FaultType.latency, probability=0.0),
            "duration_ms: required for fault_type 'latency', got None",
        ),
        (
            FaultConfig(fault_type=FaultType.error, probability=0.0),
            "error_code: required for fault_type 'error', got None",
        ),
    ],
    ids=["latency-without-duration", "error-without-code"],
)
def test_incomplete_config_is_rejected_even_when_it_would_not_fire(
    config: FaultConfig, message: str
) -> None:
    """A config missing a needed field raises ValueError before any draw."""
    injector = FaultInjector(seed=0)

    with pytest.raises(ValueError, match=message):
        injector.inject(config)
    with pytest.raises(ValueError, match=message):
        injector.apply(config)


# -- applying faults -------------------------------------------------------------------


@pytest.mark.parametrize(("config", "exception_type", "text"), RAISING_FAULTS)
def test_inject_raises_the_fault_exception_with_its_message(
    config: FaultConfig, exception_type: type[Exception], text: str
) -> None:
    """Each raising fault type raises its exception with the expected text."""
    with pytest.raises(exception_type) as caught:
        FaultInjector(seed=0).inject(config)

    assert type(caught.value) is exception_type
    assert str(caught.value) == text


@pytest.mark.parametrize(("config", "exception_type", "text"), RAISING_FAULTS)
def test_inject_does_nothing_when_probability_is_zero(
    config: FaultConfig, exception_type: type[Exception], text: str
) -> None:
    """A fault with probability 0.0 neither raises nor sleeps."""
    quiet = config.model_copy(update={"probability": 0.0})
    injector = FaultInjector(seed=0)

    injector.inject(quiet)  # raises if the fault fires

    assert injector.inject_and_report(quiet) is False


def test_apply_fires_regardless_of_probability() -> None:
    """apply() applies the fault even when its probability is 0.0."""
    config = FaultConfig(fault_type=FaultType.timeout, probability=0.0)

    with pytest.raises(ChaosTimeoutError):
        FaultInjector(seed=0).apply(config)


def test_partial_failure_is_caught_as_runtime_error() -> None:
    """Code written against the reference catches partial failure as RuntimeError."""
    config = FaultConfig(fault_type=FaultType.partial_failure)

    with pytest.raises(RuntimeError, match=r"^\[partial_failure\] Partial failure$"):
        FaultInjector(seed=0).inject(config)


def test_inject_error_hook_raises_chaos_error_directly() -> None:
    """The reference example: inject_error(429, ...) raises a ChaosError with 429."""
    with pytest.raises(ChaosError) as caught:
        FaultInjector().inject_error(error_code=429, message="Rate limit exceeded")

    assert caught.value.error_code == 429
    assert str(caught.value) == "[429] Rate limit exceeded"


def test_latency_sleeps_for_about_its_duration() -> None:
    """A latency fault blocks for at least duration_ms and not much longer."""
    config = FaultConfig(fault_type=FaultType.latency, duration_ms=120)

    started = time.monotonic()
    FaultInjector(seed=0).inject(config)
    elapsed = time.monotonic() - started

    assert 0.12 <= elapsed < 0.12 + SLACK_SECONDS


def test_negative_latency_is_rejected_by_the_hook() -> None:
    """inject_latency with a negative duration raises ValueError naming the value."""
    with pytest.raises(ValueError, match="duration_ms: expected 0 or more, got -5"):
        FaultInjector().inject_latency(-5)


def test_apply_dispatches_through_the_overridden_hook() -> None:
    """A subclass's inject_error receives the config's code and message."""
    calls: list[tuple[int, str]] = []

    class Recording(FaultInjector):
        def inject_error(self, error_code: int, message: str) -> None:
            calls.append((error_code, message))

    config = FaultConfig(fault_type=FaultType.error, error_code=418, error_message="t")
    Recording(seed=0).inject(config)

    assert calls == [(418, "t")]


@pytest.mark.parametrize(
    ("probability", "fired"), [(1.0, True), (0.0, False)], ids=["fires", "quiet"]
)
def test_inject_and_report_tells_whether_latency_fired(
    probability: float, fired: bool
) -> None:
    """inject_and_report returns True only when the latency fault fired."""
    config = FaultConfig(
        fault_type=FaultType.latency, probability=probability, duration_ms=1
    )

    assert FaultInjector(seed=0).inject_and_report(config) is fired


# -- the async path --------------------------------------------------------------------


async def test_async_latency_does_not_block_the_event_loop() -> None:
    """While inject_async waits out a latency, other tasks keep running."""
    injector = FaultInjector(seed=0)
    config = FaultConfig(fault_type=FaultType.latency, duration_ms=200)

    started = time.monotonic()
    ticks, fired = await count_loop_ticks(injector.inject_async(config))
    elapsed = time.monotonic() - started

    assert fired is True
    assert ticks >= 5
    assert 0.2 <= elapsed < 0.2 + SLACK_SECONDS
    assert injector.executor is None


async def test_async_returns_false_when_the_fault_does_not_fire() -> None:
    """inject_async reports False, without waiting, for a fault that did not fire."""
    config = FaultConfig(
        fault_type=FaultType.latency, probability=0.0, duration_ms=5_000
    )

    started = time.monotonic()
    fired = await FaultInjector(seed=0).inject_async(config)

    assert fired is False
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(("config", "exception_type", "text"), RAISING_FAULTS)
async def test_async_raises_the_same_exceptions(
    config: FaultConfig, exception_type: type[Exception], text: str
) -> None:
    """inject_async raises exactly what inject raises, with the same text."""
    with pytest.raises(exception_type) as caught:
        await FaultInjector(seed=0).inject_async(config)

    assert str(caught.value) == text


async def test_async_rejects_incomplete_config() -> None:
    """inject_async checks the config like inject does."""
    config = FaultConfig(fault_type=FaultType.error)

    with pytest.raises(ValueError, match="error_code: required"):
        await FaultInjector(seed=0).inject_async(config)


async def test_async_and_sync_make_the_same_decisions() -> None:
    """With equal seeds, inject_async fires exactly when inject would."""
    config = FaultConfig(fault_type=FaultType.latency, probability=0.5, duration_ms=0)
    sync_injector = FaultInjector(seed=8)
    async_injector = FaultInjector(seed=8)

    sync_fired = [sync_injector.inject_and_report(config) for _ in range(100)]
    async_fired = [await async_injector.inject_async(config) for _ in range(100)]

    assert sync_fired == async_fired
    assert 0 < sum(sync_fired) < 100


async def test_async_latency_can_be_cancelled() -> None:
    """Cancelling a task waiting out a latency cancels it promptly."""
    config = FaultConfig(fault_type=FaultType.latency, duration_ms=10_000)
    task = asyncio.create_task(FaultInjector(seed=0).inject_async(config))
    await asyncio.sleep(0.05)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


def test_async_latency_is_never_shorter_than_its_duration_on_uvloop() -> None:
    """On uvloop, whose timers can fire a millisecond early, no latency ends early."""
    uvloop = pytest.importorskip("uvloop")
    injector = FaultInjector(seed=0)
    durations = [random.Random(n).randint(1, 30) for n in range(200)]
    short: list[float] = []

    async def one(duration_ms: int) -> None:
        config = FaultConfig(fault_type=FaultType.latency, duration_ms=duration_ms)
        started = time.monotonic()
        await injector.inject_async(config)
        elapsed_ms = (time.monotonic() - started) * 1000
        if elapsed_ms < duration_ms:
            short.append(duration_ms - elapsed_ms)

    async def main() -> None:
        await asyncio.gather(*(one(d) for d in durations))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())

    assert short == []


async def test_async_latency_is_held_with_the_sleep_given() -> None:
    """inject_async(sleep=...) holds latency with that sleep, given seconds."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    latency = FaultConfig(fault_type=FaultType.latency, duration_ms=250)
    fired = await FaultInjector(seed=0).inject_async(latency, sleep=sleep)
    error = FaultConfig(fault_type=FaultType.error, error_code=503)
    with pytest.raises(ChaosError):
        await FaultInjector(seed=0).inject_async(error, sleep=sleep)

    assert fired is True
    assert slept == [0.25]


async def test_blocking_latency_override_runs_off_the_loop_thread(
    blocking_injector: BlockingLatencyInjector,
) -> None:
    """A subclass's blocking inject_latency runs on a worker, not the loop thread."""
    config = FaultConfig(fault_type=FaultType.latency, duration_ms=200)

    ticks, fired = await count_loop_ticks(blocking_injector.inject_async(config))

    assert fired is True
    assert ticks >= 5
    assert blocking_injector.threads
    assert blocking_injector.threads[0] != threading.get_ident()


async def test_lazily_made_executor_names_its_threads(
    blocking_injector: BlockingLatencyInjector,
) -> None:
    """The default executor is made on first need and its threads are recognisable."""
    names: list[str] = []
    assert blocking_injector.executor is None

    def note_thread(duration_ms: int) -> None:
        names.append(threading.current_thread().name)

    blocking_injector.inject_latency = note_thread  # type: ignore[method-assign]
    await blocking_injector.inject_async(
        FaultConfig(fault_type=FaultType.latency, duration_ms=1)
    )

    assert isinstance(blocking_injector.executor, ThreadPoolExecutor)
    assert names[0].startswith("aumai-chaos-inject")


async def test_given_executor_runs_the_overrides() -> None:
    """An executor passed in (or set later) is the one overridden hooks run on."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mine") as pool:
        injector = BlockingLatencyInjector(seed=0)
        injector.executor = pool
        names: list[str] = []

        def note_thread(duration_ms: int) -> None:
            names.append(threading.current_thread().name)

        injector.inject_latency = note_thread  # type: ignore[method-assign]
        await injector.inject_async(
            FaultConfig(fault_type=FaultType.latency, duration_ms=1)
        )

    assert names[0].startswith("mine")
    assert injector.executor is pool


async def test_overridden_raising_hook_propagates_from_the_executor() -> None:
    """An exception from an overridden inject_* hook reaches the awaiting caller."""

    class Custom(FaultInjector):
        def inject_timeout(self) -> None:
            raise ChaosTimeoutError(f"custom on {threading.get_ident()}")

    with ThreadPoolExecutor(max_workers=1) as pool:
        injector = Custom(seed=0, executor=pool)
        with pytest.raises(ChaosTimeoutError, match="custom on") as caught:
            await injector.inject_async(FaultConfig(fault_type=FaultType.timeout))

    assert str(threading.get_ident()) not in str(caught.value)


async def test_overridden_apply_runs_on_the_executor_after_a_local_decision() -> None:
    """An overridden apply runs on a worker; the decision is drawn on the loop."""
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    class Custom(FaultInjector):
        def decide(self, config: FaultConfig) -> bool:
            seen["decide"] = threading.get_ident()
            return super().decide(config)

        def apply(self, config: FaultConfig) -> None:
            seen["apply"] = threading.get_ident()

    with ThreadPoolExecutor(max_workers=1) as pool:
        fired = await Custom(seed=0, executor=pool).inject_async(
            FaultConfig(fault_type=FaultType.error, error_code=500)
        )

    assert fired is True
    assert seen["decide"] == loop_thread
    assert seen["apply"] != loop_thread


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (FaultConfig(fault_type=FaultType.latency, duration_ms=100), True),
        (
            FaultConfig(fault_type=FaultType.latency, probability=0.0, duration_ms=100),
            False,
        ),
        (FaultConfig(fault_type=FaultType.error, error_code=500), False),
    ],
    ids=["latency-fired", "latency-quiet", "error-swallowed"],
)
async def test_overridden_inject_runs_whole_on_the_executor(
    config: FaultConfig, expected: bool
) -> None:
    """An overridden inject runs on a worker; latency counts as fired by its time."""
    threads: list[int] = []

    class Custom(FaultInjector):
        def inject(self, config: FaultConfig) -> None:
            threads.append(threading.get_ident())
            # This subclass swallows errors, so nothing raises.
            with contextlib.suppress(ChaosError):
                super().inject(config)

    with ThreadPoolExecutor(max_workers=1) as pool:
        fired = await Custom(seed=0, executor=pool).inject_async(config)

    assert fired is expected
    assert threads[0] != threading.get_ident()


async def test_overridden_inject_exceptions_propagate() -> None:
    """An exception from an overridden inject reaches the awaiting caller."""

    class Custom(FaultInjector):
        def inject(self, config: FaultConfig) -> None:
            raise DataCorruptionError("from the override")

    with ThreadPoolExecutor(max_workers=1) as pool:
        injector = Custom(seed=0, executor=pool)
        with pytest.raises(DataCorruptionError, match="from the override"):
            await injector.inject_async(FaultConfig(fault_type=FaultType.timeout))
