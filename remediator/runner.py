"""Run accepted actions in the background: one at a time per panel, a global ceiling,
a deadline each, cancellable.

An action waits for its panel's lock first and only then for a global slot, so
a busy panel never holds slots that other panels could use. Right before its
first panel call, the journal row is claimed (``pending`` -> ``running``,
fsynced); a row that a resolved notification cancelled meanwhile is dropped
there. A claim or a finish that the journal refuses (full disk, I/O error) is
retried until the journal takes it again, so a full disk that clears does not
leave an accepted action ``pending`` until the next restart.

Stopping (:meth:`Runner.drain`): actions not yet claimed stay ``pending`` for
the next start; claimed ones get ``shutdown_grace`` seconds to finish; what is
still running then is cancelled and left ``running`` for recovery to judge.

The messages a deletion touched are recorded as the panel confirms them
(:class:`MessageLog`), before the action verifies: a failed read-back, a
timeout or a crash never leaves deleted mail out of the journal. Journal calls
go through :meth:`Journal.call` (on the journal's thread). :attr:`Runner.active`
holds the ids this replica is queueing or running, whose leases it renews
(shared journal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from brainycp.backoff import Backoff
from brainycp.config.panels import PanelConfig
from brainycp.panel.client import PanelClient
from remediator import actions
from remediator.actions import MessageRecord
from remediator.journal import JOURNAL_ERRORS, Journal, first_line
from remediator.metrics import Stats
from remediator.settings.rules import Rule

log = logging.getLogger("remediator.runner")
T = TypeVar("T")
JOURNAL_RETRY_MAX = 5.0
"""Longest wait between two attempts at a journal write the journal refused."""
# Shared journal: how often an action re-tries a panel another replica is acting on.
PANEL_BUSY_RETRY, PANEL_BUSY_RETRY_MAX = 0.2, 2.0


class MessageLog:
    """The messages one running action touched, written to the journal as the panel
    confirms them (:data:`remediator.actions.Confirmed`), before the action verifies.

    A write the journal refuses is not retried here (the action goes on; the panel
    has already acted): what is not written yet goes with the outcome, which is.
    """

    def __init__(self, journal: Journal, action_id: int) -> None:
        self.journal = journal
        self.action_id = action_id
        self.records: list[MessageRecord] = []
        self.written = 0
        """How many of :attr:`records` the journal holds."""
        self._total: int | None = None
        self._failing = False

    async def add(self, records: Sequence[MessageRecord], total: int | None) -> None:
        self.records.extend(records)
        self._total = total if total is not None else self._total
        count = max(len(self.records), self._total or 0)
        try:
            await self.journal.call(
                self.journal.record_messages,
                self.action_id,
                self.written,
                self.records[self.written :],
                count,
            )
        except JOURNAL_ERRORS as exc:
            if not self._failing:
                log.error("journal: cannot record the messages of action %d yet: %s",
                          self.action_id, first_line(exc))  # fmt: skip
                self._failing = True
            return
        self.written, self._failing = len(self.records), False


class Runner:
    def __init__(
        self,
        journal: Journal,
        panels: dict[str, PanelConfig],
        rules: dict[str, Rule],
        stats: Stats,
        *,
        max_concurrent: int,
        action_timeout: float,
    ) -> None:
        self.journal, self.stats = journal, stats
        self.panels, self.rules, self.action_timeout = panels, rules, action_timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._retired: list[PanelClient] = []
        self._panel_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._clients: dict[str, PanelClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claimed: set[asyncio.Task[Any]] = set()
        self._claiming: set[asyncio.Task[Any]] = set()
        self.active: set[int] = set()
        """Ids submitted here and not finished: this replica holds (and renews) their lease."""
        self._stopping = False
        self.journal_retry = 0.25
        """First wait before retrying a refused journal write; doubles up to 5 s."""
        # Called with (action id, outcome) once an outcome is journaled (notifications).
        self.on_finish: Callable[[int, str], None] | None = None

    def client(self, panel: str) -> PanelClient:
        """The (shared, cached) API client of ``panel``."""
        return self._client(panel)

    def _client(self, panel: str) -> PanelClient:
        client = self._clients.get(panel)
        if client is None:
            client = self._clients[panel] = PanelClient(self.panels[panel])
        return client

    def reconfigure(
        self,
        panels: dict[str, PanelConfig],
        rules: dict[str, Rule],
        *,
        max_concurrent: int,
        action_timeout: float,
    ) -> None:
        """New panels, rules and limits (reload); queued and running actions carry on.

        A panel whose settings changed gets a new client for its next action; the old
        one is closed at shutdown, as an action may still be using it. A new
        ``max_concurrent`` applies to actions that start waiting after the reload.
        """
        for name in list(self._clients):
            if panels.get(name) != self.panels.get(name):
                self._retired.append(self._clients.pop(name))
        self.panels = panels
        self.rules = rules
        self.action_timeout = action_timeout
        if max_concurrent != self._max_concurrent:
            self._slots = asyncio.Semaphore(max_concurrent)
            self._max_concurrent = max_concurrent

    def submit(self, action_id: int, rule: Rule, panel: str, alertname: str) -> None:
        """Queue a journaled ``pending`` action; returns at once."""
        task = asyncio.get_running_loop().create_task(
            self._run(action_id, rule, panel, alertname), name=f"action-{action_id}"
        )
        self._tasks.add(task)
        self.active.add(action_id)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self.active.discard(action_id))
        task.add_done_callback(self._claimed.discard)

    async def _journal(self, write: Callable[[], T], what: str) -> T:
        """``write()``, retried with backoff while the journal refuses it (disk full...)."""
        backoff = Backoff(self.journal_retry, JOURNAL_RETRY_MAX)
        while True:
            try:
                result = await self.journal.call(write)
            except JOURNAL_ERRORS as exc:
                if not backoff.waits:
                    log.error("journal: cannot %s: %s; retrying until it can", what, exc)
                await backoff.wait()
                continue
            if backoff.waits:
                log.info("journal: writable again; %s done", what)
            return result

    async def _run(self, action_id: int, rule: Rule, panel: str, alertname: str) -> None:
        async with self._panel_locks[panel], self._slots:
            if self._stopping:
                return  # stays pending: the next start runs it
            current = asyncio.current_task()
            assert current is not None
            self._claiming.add(current)
            try:
                if not await self._claim(action_id):
                    return
            finally:
                self._claiming.discard(current)
            self._claimed.add(current)
            self.stats.in_progress += 1
            started = time.monotonic()
            recorded = MessageLog(self.journal, action_id)
            try:
                result = await self._act(action_id, rule, panel, recorded)
            except asyncio.CancelledError:
                # Shutdown: the row stays ``running``; recovery decides at the next start.
                self.stats.in_progress -= 1
                raise
            elapsed = time.monotonic() - started
            self.stats.in_progress -= 1
            self.stats.outcome(panel, rule.action, result.outcome)
            self.stats.duration(rule.action, elapsed)
            log.log(
                logging.WARNING if result.outcome in ("failed", "unverified") else logging.INFO,
                "action %s on %s: %s",
                rule.action,
                panel,
                result.outcome,
                extra={
                    "action_id": action_id,
                    "rule": rule.name,
                    "panel": panel,
                    "alertname": alertname,
                    "outcome": result.outcome,
                    "reason": result.reason,
                    "seconds": round(elapsed, 3),
                },
            )
            await self._finish(action_id, result, recorded)

    async def _claim(self, action_id: int) -> bool:
        """``pending`` -> ``running``, retried while the journal refuses it; False when the
        action must not run here (cancelled, taken over, or stopping)."""
        claimed = await self._journal(
            lambda: self.journal.claim(action_id, time.time()), f"start action {action_id}"
        )
        busy = Backoff(PANEL_BUSY_RETRY, PANEL_BUSY_RETRY_MAX)
        while (
            not claimed
            and self.journal.shared
            and not self._stopping
            and await self._journal(
                lambda: self.journal.waits_for_panel(action_id), f"check action {action_id}"
            )
        ):
            # Another replica runs an action on this panel: wait for it (its lease
            # bounds the wait if it dies), then claim again.
            await busy.wait()
            claimed = await self._journal(
                lambda: self.journal.claim(action_id, time.time()),
                f"start action {action_id}",
            )
        if self._stopping and not claimed:
            return False  # stays pending: the next start (or another replica) runs it
        if not claimed:
            # Cancelled meanwhile, or (shared journal) taken over by another replica
            # after this one's lease on it expired.
            log.info("action %d no longer pending (or no longer ours); not run", action_id)
            return False
        if self._stopping:
            # Stopped while the claim was being retried: nothing was sent yet.
            await self._journal(
                lambda: self.journal.unclaim(action_id), f"re-queue action {action_id}"
            )
            return False
        return True

    async def _act(
        self, action_id: int, rule: Rule, panel: str, recorded: MessageLog
    ) -> actions.Outcome:
        """The action on the panel, bounded by ``action_timeout``; never raises but for
        cancellation. Cut off after it touched messages: ``unverified``, not ``failed``."""
        try:
            async with asyncio.timeout(self.action_timeout):
                return await actions.run(self._client(panel), rule, recorded.add)
        except TimeoutError:
            why = f"timeout: not finished within {self.action_timeout:g}s"
        except Exception as exc:  # a bug must not kill the daemon or leave the row open
            log.exception("action %d crashed", action_id)
            why = f"internal error: {type(exc).__name__}"
        if recorded.records:
            why += f" after acting on {len(recorded.records)} messages"
            return actions.Outcome("unverified", why)
        return actions.Outcome("failed", why)

    async def _finish(self, action_id: int, result: actions.Outcome, recorded: MessageLog) -> None:
        """Record the outcome (retried while the journal refuses it), then tell people."""
        messages, first, total = result.messages, 0, result.messages_total
        if recorded.records:  # recorded as they came: only what is not in the journal yet
            messages, first = recorded.records[recorded.written :], recorded.written
            total = max(total or 0, len(recorded.records))
        ours = await self._journal(
            lambda: self.journal.finish(
                action_id,
                result.outcome,
                result.reason,
                time.time(),
                state=result.state or None,
                messages=messages,
                messages_total=total,
                first_seq=first,
            ),
            f"record the outcome of action {action_id}",
        )
        if not ours:
            log.warning(
                "action %d: its lease expired and another replica took it over; "
                "this outcome (%s) is not recorded",
                action_id,
                result.outcome,
            )
        if self.on_finish is not None:
            try:
                self.on_finish(action_id, result.outcome)
            except Exception:  # telling people must never break acting
                log.exception("action %d: cannot queue its notification", action_id)

    async def idle(self) -> None:
        """Wait until every submitted action has ended (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stop_starting(self) -> None:
        """From now on no queued action starts; they stay ``pending`` for the next start."""
        self._stopping = True

    async def drain(self, grace: float) -> tuple[int, int]:
        """Stop: let running actions finish for up to ``grace`` seconds, cancel the rest.

        Actions not yet started are cancelled at once and stay ``pending``; one whose
        claim is in the journal's hands is let finish it (it then sees the stop and
        puts the row back to ``pending``), so no row is left ``running`` by a claim
        nobody acts on. Returns ``(finished, cut_off)``: running actions that ended
        within the grace and those still running at its end (left ``running`` for
        recovery).
        """
        self._stopping = True
        running, claiming = set(self._claimed), set(self._claiming)
        for task in self._tasks - running - claiming:
            task.cancel()
        finished, cut_off = 0, 0
        if running or claiming:
            done, pending = await asyncio.wait(running | claiming, timeout=grace)
            finished, cut_off = len(done & running), len(pending & running)
            for task in pending:
                task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for client in [*self._clients.values(), *self._retired]:
            await client.aclose()
        return finished, cut_off

    async def close(self) -> None:
        """Cancel what is still queued or running and close the panel clients."""
        await self.drain(0)
