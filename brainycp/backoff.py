"""Waits between attempts at something that failed: exponential, capped, jittered, bounded.

Every retry loop of the project waits through :class:`Backoff`: the panel client's one
retry of a read, the remediator's journal writes and its wait for a database that is not
up yet, and the notifier's deliveries. Each loop keeps its own logging and its own
reason to give up; what they share is how long to wait next.

Kept by hand rather than taken from tenacity or stamina: on the panel client's read path
(three reads per panel and poll) a call that succeeds at once cost 0.2 us with the plain
``try``, 16 us through ``tenacity.AsyncRetrying`` (9.2.1) and 22 us through
``stamina.retry_context`` (26.1.0), and importing them added 24 and 28 ms to each
daemon's start (CPython 3.11, ``python -X importtime``); this module is 50 lines with no
dependency, and the loops' bodies (log once, count, re-read a reloaded target) stay
plain code either way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field


@dataclass
class Backoff:
    """The waits of one retry loop: ``first`` seconds, doubling up to ``cap``.

    Each wait is a random point between ``delay * low`` and ``delay * high`` (``jitter``),
    so replicas and targets that failed together do not retry together. With a
    ``deadline`` (a :func:`time.monotonic` time) :meth:`allows` says whether the next
    wait still ends before it.
    """

    first: float
    cap: float
    _: KW_ONLY
    jitter: tuple[float, float] = (1.0, 1.0)
    deadline: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    delay: float = field(init=False)
    """The base of the next wait, in seconds (before jitter)."""
    waits: int = field(init=False, default=0)
    """How many waits there were: 0 until the first failure."""

    def __post_init__(self) -> None:
        self.delay = self.first

    @classmethod
    def between(cls, low: float, high: float) -> Backoff:
        """One wait of a random length from ``low`` to ``high`` seconds."""
        return cls(1.0, 1.0, jitter=(low, high))

    def allows(self) -> bool:
        """True when the next wait (without jitter) ends before the deadline, if any."""
        return self.deadline is None or self.clock() + self.delay <= self.deadline

    async def wait(self) -> None:
        """Sleep the next wait (a retry interval, not synchronisation), then double it."""
        low, high = self.jitter
        await self.sleep(random.uniform(self.delay * low, self.delay * high))
        self.delay = min(self.delay * 2, self.cap)
        self.waits += 1
