"""The journal's worker: one thread that runs every journal call for the event loop, each
with a deadline, and a watchdog that cuts a statement the database never answers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from remediator.journal.base import JournalTimeout, JournalUnavailable

log = logging.getLogger("remediator.journal")
T = TypeVar("T")
CLOSE_WAIT = 5.0
"""How long closing waits for the call in progress and the connection to end."""


class Worker:
    """Runs journal calls one at a time, in order, on its own thread.

    The event loop never touches the database: it hands a call over and waits for it
    without blocking (so ``/healthz`` and every other request keep being answered).
    Two bounds apply while it waits:

    - the caller's ``deadline`` (``/healthz``, ``/metrics``): past it the caller gets
      :class:`~remediator.journal.JournalTimeout`; a call that had not started yet is
      dropped, one that had keeps running;
    - the call's ``stall`` bound: a call whose database has not answered a single
      statement for that long (a paused server, a frozen backend, a file system that
      hangs) is aborted through ``abort`` (the connection is cut, or SQLite interrupted),
      so the worker is free again and the call fails with the database's error. A
      call that keeps getting answers is never cut, however long it runs (a big
      notification's group commit).

    ``progress`` is called by the dialect after each answered statement.
    """

    def __init__(self, abort: Callable[[], None]) -> None:
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, thread_name_prefix="journal"
        )
        self._abort = abort
        self._running = False
        self._running_stall: float | None = None
        self._answered = time.monotonic()
        self._started = 0
        self._aborted = 0

    def progress(self) -> None:
        """The database answered a statement (called from whatever thread made it)."""
        self._answered = time.monotonic()

    @property
    def busy(self) -> bool:
        return self._running

    def silent_for(self) -> float:
        """Seconds the running call has been waiting for the database (0 when idle)."""
        return time.monotonic() - self._answered if self._running else 0.0

    def answering(self, within: float) -> bool:
        """True when a call runs and the database answered it in the last ``within`` s."""
        return self._running and self.silent_for() < within

    def _run(self, fn: Callable[[], T], stall: float | None) -> T:
        self._running_stall = stall
        self._answered = time.monotonic()
        self._started += 1
        self._running = True
        try:
            return fn()
        finally:
            self._running = False

    async def run(
        self, fn: Callable[[], T], *, deadline: float | None = None, stall: float | None = None
    ) -> T:
        """``fn()`` on the worker thread; see the class for the bounds."""
        executor = self._executor
        if executor is None:
            raise JournalUnavailable("the journal is closed")
        try:
            future: Future[T] = executor.submit(self._run, fn, stall)
        except RuntimeError:  # shut down meanwhile
            raise JournalUnavailable("the journal is closed") from None
        waiter = asyncio.wrap_future(future)
        loop = asyncio.get_running_loop()
        give_up = None if deadline is None else loop.time() + deadline
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=self._next_check(loop, give_up))
                if done:
                    return waiter.result()
                if give_up is not None and loop.time() >= give_up:
                    future.cancel()  # only takes effect if it has not started
                    raise JournalTimeout(f"the journal did not answer within {deadline:g}s")
                self._cut_if_stalled()
        finally:
            if not waiter.done():
                waiter.add_done_callback(_consume)

    def _next_check(self, loop: asyncio.AbstractEventLoop, give_up: float | None) -> float:
        """Seconds until a waiter looks again: its deadline, the running call's stall
        bound, and at least every half second (another call may have started)."""
        waits = [0.5]
        if give_up is not None:
            waits.append(give_up - loop.time())
        stall = self._running_stall
        if self._running and stall is not None and self._aborted != self._started:
            waits.append(stall - self.silent_for())
        return max(0.01, min(waits))

    def _cut_if_stalled(self) -> None:
        stall = self._running_stall
        if not self._running or stall is None or self._aborted == self._started:
            return
        silent = self.silent_for()
        if silent < stall:
            return
        self._aborted = self._started
        log.error("journal: the database has not answered for %.1fs; cutting the call off", silent)
        try:
            self._abort()
        except Exception:  # the call then ends at the database's own timeout
            log.exception("journal: cannot cut the stalled call off")

    def close(self, final: Callable[[], None]) -> None:
        """Run ``final`` (close the connection) after the call in progress, then stop;
        a call that does not end within :data:`CLOSE_WAIT` (even cut off) is left behind."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if self._running:
            self._aborted = self._started
            try:
                self._abort()
            except Exception:
                log.exception("journal: cannot cut the call in progress off")
        closing = executor.submit(final)
        try:
            closing.result(timeout=CLOSE_WAIT)
        except Exception as exc:  # closing is best effort: the process is about to end
            log.warning("journal: did not close cleanly: %s", type(exc).__name__)
        executor.shutdown(wait=False)


def _consume(future: asyncio.Future[Any]) -> None:
    """Read the result of a call nobody waits for any more (no "never retrieved" warning)."""
    if not future.cancelled():
        future.exception()
