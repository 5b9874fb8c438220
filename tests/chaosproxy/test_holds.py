"""Tests for the proxy's holds (chaosproxy.faults.latency.Holds) on real loops.

What a held request must see: it is never released before its time, however the
loop keeps time; holds come due in order; and a crowd of holds that come due at
once is released a turn's worth at a time, so the loop reads its sockets between
them instead of forwarding the whole crowd first.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from chaosproxy.faults.latency import RELEASES_PER_TURN, Holds

LOOPS = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    main: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """Run ``main`` to its end on a new loop made by ``loop_factory``."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_no_hold_ends_before_its_time(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """300 holds of odd lengths all end at or after their due time by the clock.

    uvloop rounds delays to whole milliseconds; a plain ``asyncio.sleep`` on it
    ends early in about a third of such cases.
    """
    early: list[float] = []

    async def held(holds: Holds, seconds: float) -> None:
        due = time.monotonic() + seconds
        await holds.hold(seconds)
        if time.monotonic() < due:
            early.append(due - time.monotonic())

    async def main() -> None:
        holds = Holds()
        durations = [random.uniform(0.0005, 0.03) for _ in range(300)]
        await asyncio.gather(*(held(holds, d) for d in durations))
        assert len(holds) == 0

    run_on(loop_factory, main)

    assert early == []


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_holds_end_in_order_of_due_time(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Holds started in a mixed order end by due time: shortest first, then FIFO."""
    ended: list[int] = []

    async def held(holds: Holds, number: int, seconds: float) -> None:
        await holds.hold(seconds)
        ended.append(number)

    async def main() -> None:
        holds = Holds()
        # Started 0, 10, 20, 30, 1, 11, ...: the longer holds of a group start
        # before the shorter ones of the next, and equal ones in number order.
        plan = [(n, 0.005 * (1 + n // 10)) for n in range(40)]
        tasks = []
        for number, seconds in sorted(plan, key=lambda p: p[0] % 10):
            tasks.append(asyncio.create_task(held(holds, number, seconds)))
            await asyncio.sleep(0)  # a distinct start for each
        await asyncio.gather(*tasks)

    run_on(loop_factory, main)

    assert ended == list(range(40))


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_a_crowd_due_at_once_is_released_a_turn_at_a_time(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """200 holds due together wake over many turns, at most two turns' worth each."""
    turn = 0
    woken_in_turn: list[int] = []

    def count_turns(loop: asyncio.AbstractEventLoop, until: float) -> None:
        nonlocal turn
        turn += 1
        if time.monotonic() < until:
            loop.call_soon(count_turns, loop, until)

    async def held(holds: Holds) -> None:
        await holds.hold(0.02)
        woken_in_turn.append(turn)

    async def main() -> None:
        holds = Holds()
        loop = asyncio.get_running_loop()
        crowd = [asyncio.create_task(held(holds)) for _ in range(200)]
        await asyncio.sleep(0)  # every hold starts in this one turn
        # A loop busy past the due time: all 200 are due when it looks again.
        time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop is the point
        count_turns(loop, time.monotonic() + 1.0)
        await asyncio.gather(*crowd)

    run_on(loop_factory, main)

    per_turn = [woken_in_turn.count(t) for t in sorted(set(woken_in_turn))]
    assert sum(per_turn) == 200
    assert max(per_turn) <= 2 * RELEASES_PER_TURN
    # Not all in one turn, nor in two: the loop got to its sockets in between.
    assert len(per_turn) >= 5


async def test_cancelled_holds_leave_the_queue_and_the_rest_still_end() -> None:
    """Cancelling 150 of 200 long holds purges them; the other 50 end on time."""
    holds = Holds()
    tasks = [asyncio.create_task(holds.hold(0.3)) for _ in range(200)]
    await asyncio.sleep(0)
    for task in tasks[:150]:
        task.cancel()
    started = time.monotonic()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
    assert len(cancelled) == 150
    assert results[150:] == [None] * 50
    assert time.monotonic() - started >= 0.25
    assert len(holds) == 0


async def test_purge_keeps_the_queue_to_the_live_holds() -> None:
    """Once half the queue is cancelled holds, it is rebuilt with the live ones."""
    holds = Holds()
    tasks = [asyncio.create_task(holds.hold(30)) for _ in range(200)]
    await asyncio.sleep(0)
    for task in tasks[:100]:
        task.cancel()
    await asyncio.sleep(0)

    assert len(holds) == 100

    holds.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert len(holds) == 0
