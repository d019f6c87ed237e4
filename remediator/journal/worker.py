"""The journal's worker: one thread that runs every journal call for the event loop, each
with a deadline, and a watchdog that cuts a statement the database never answers."""

from __future__ import annotations

import asyncio
import logging
import threading
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

    The event loop never touches the database: it hands a call over and awaits it
    without blocking (so ``/healthz`` and every other request keep being answered).
    Two bounds apply:

    - the caller's ``deadline`` (``/healthz``, ``/metrics``): past it the caller gets
      :class:`~remediator.journal.JournalTimeout`; a call that had not started yet is
      dropped, one that had keeps running;
    - the call's ``stall`` bound, kept by a watchdog thread: a call whose database has
      not answered a single statement for that long (a paused server, a frozen
      backend, a file system that hangs) is aborted through ``abort`` (the connection
      is cut, or SQLite interrupted), so it fails with the database's error and the
      worker is free again. A call that keeps getting answers is never cut, however
      long it runs (a big notification's group commit).

    ``progress`` is called by the dialect after each answered statement.
    """

    def __init__(self, abort: Callable[[], None]) -> None:
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, thread_name_prefix="journal"
        )
        self._abort = abort
        self._running = False
        self._stall: float | None = None
        self._answered = time.monotonic()
        self._cut = False
        self._wake = threading.Condition()
        self._watchdog: threading.Thread | None = None

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
        with self._wake:
            self._stall, self._cut = stall, False
            self._answered = time.monotonic()
            self._running = True
            self._wake.notify()
        try:
            return fn()
        finally:
            with self._wake:
                self._running = False

    def _watch(self) -> None:
        """The watchdog thread: cut off the running call once it has been silent for its
        stall bound (once per call)."""
        while True:
            with self._wake:
                if self._executor is None:
                    return
                stall = self._stall
                if not self._running or stall is None or self._cut:
                    self._wake.wait()
                    continue
                left = stall - self.silent_for()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._cut = True
                silent = self.silent_for()
            log.error(
                "journal: the database has not answered for %.1fs; cutting the call off", silent
            )
            try:
                self._abort()
            except Exception:  # the call then ends at the database's own timeout
                log.exception("journal: cannot cut the stalled call off")

    async def run(
        self, fn: Callable[[], T], *, deadline: float | None = None, stall: float | None = None
    ) -> T:
        """``fn()`` on the worker thread; see the class for the bounds."""
        executor = self._executor
        if executor is None:
            raise JournalUnavailable("the journal is closed")
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="journal-watchdog", daemon=True
            )
            self._watchdog.start()
        try:
            future: Future[T] = executor.submit(self._run, fn, stall)
        except RuntimeError:  # shut down meanwhile
            raise JournalUnavailable("the journal is closed") from None
        waiter = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({waiter}, timeout=deadline)
        finally:
            if not waiter.done():
                waiter.add_done_callback(_consume)
        if not done:
            future.cancel()  # only takes effect if it has not started
            raise JournalTimeout(f"the journal did not answer within {deadline:g}s")
        return waiter.result()

    def close(self, final: Callable[[], None]) -> None:
        """Run ``final`` (close the connection) after the call in progress, then stop. A
        call still running after half of :data:`CLOSE_WAIT` is cut off; one that does not
        end even then is left behind (the process is about to end)."""
        with self._wake:
            executor, self._executor = self._executor, None
            self._wake.notify()
        if executor is None:
            return
        closing = executor.submit(final)
        try:
            closing.result(timeout=CLOSE_WAIT / 2)
        except TimeoutError:
            if self._running:
                try:
                    self._abort()
                except Exception:
                    log.exception("journal: cannot cut the call in progress off")
            try:
                closing.result(timeout=CLOSE_WAIT / 2)
            except Exception as exc:
                log.warning("journal: did not close cleanly: %s", type(exc).__name__)
        except Exception as exc:
            log.warning("journal: did not close cleanly: %s", type(exc).__name__)
        executor.shutdown(wait=False)


def _consume(future: asyncio.Future[Any]) -> None:
    """Read the result of a call nobody waits for any more (no "never retrieved" warning)."""
    if not future.cancelled():
        future.exception()
