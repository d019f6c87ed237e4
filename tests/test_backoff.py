"""The retry loops' waits: doubling to a cap, jitter within its bounds, a deadline that
stops a wait which would outlast it."""

from __future__ import annotations

import asyncio

from brainycp.backoff import Backoff


def waits_of(backoff: Backoff, count: int) -> list[float]:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    backoff.sleep = record

    async def run() -> None:
        for _ in range(count):
            await backoff.wait()

    asyncio.run(run())
    return slept


def test_waits_double_from_first_up_to_the_cap() -> None:
    backoff = Backoff(0.25, 5.0)
    assert waits_of(backoff, 8) == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff.waits == 8


def test_jitter_stretches_each_wait_within_its_bounds() -> None:
    waits = waits_of(Backoff(1.0, 60.0, jitter=(0.8, 1.2)), 7)
    for index, wait in enumerate(waits):
        base = min(2.0**index, 60.0)
        assert base * 0.8 <= wait <= base * 1.2


def test_between_is_one_wait_from_low_to_high() -> None:
    waits = [wait for _ in range(50) for wait in waits_of(Backoff.between(0.05, 0.5), 1)]
    assert all(0.05 <= wait <= 0.5 for wait in waits)
    assert waits_of(Backoff.between(0.0, 0.0), 1) == [0.0]


def test_a_deadline_refuses_a_wait_that_would_end_after_it() -> None:
    now = [100.0]
    backoff = Backoff(1.0, 60.0, deadline=103.5, clock=lambda: now[0])
    assert backoff.allows()  # 100 + 1 <= 103.5
    waits_of(backoff, 1)
    now[0] = 101.0
    assert backoff.allows()  # 101 + 2 <= 103.5
    waits_of(backoff, 1)
    now[0] = 103.0
    assert not backoff.allows()  # 103 + 4 > 103.5
    assert Backoff(1.0, 60.0).allows()  # no deadline: always
