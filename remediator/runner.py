"""Run accepted actions in the background: one at a time per panel, a global ceiling,
a deadline each, cancellable.

An action waits for its panel's lock first and only then for a global slot, so
a busy panel never holds slots that other panels could use. Right before it
starts, the journal row is claimed (``pending`` -> ``running``); a row that a
resolved notification cancelled meanwhile is dropped there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from brainycp.client import PanelClient
from brainycp.config import PanelConfig, Rule
from remediator import actions
from remediator.journal import Journal
from remediator.metrics import Stats

log = logging.getLogger("remediator.runner")


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
        self.journal = journal
        self.panels = panels
        self.rules = rules
        self.stats = stats
        self.action_timeout = action_timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self._panel_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._clients: dict[str, PanelClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _client(self, panel: str) -> PanelClient:
        client = self._clients.get(panel)
        if client is None:
            client = self._clients[panel] = PanelClient(self.panels[panel])
        return client

    def submit(self, action_id: int, rule: Rule, panel: str, alertname: str) -> None:
        """Queue a journaled ``pending`` action; returns at once."""
        task = asyncio.get_running_loop().create_task(
            self._run(action_id, rule, panel, alertname), name=f"action-{action_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, action_id: int, rule: Rule, panel: str, alertname: str) -> None:
        async with self._panel_locks[panel], self._slots:
            if not self.journal.claim(action_id, time.time()):
                log.info("action %d no longer pending; not run", action_id)
                return
            self.stats.in_progress += 1
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.action_timeout):
                    result = await actions.run(self._client(panel), rule)
            except TimeoutError:
                result = actions.Outcome(
                    "failed", f"timeout: not finished within {self.action_timeout:g}s"
                )
            except asyncio.CancelledError:
                # Shutdown: the row stays ``running``; recovery decides at the next start.
                self.stats.in_progress -= 1
                raise
            except Exception as exc:  # a bug must not kill the daemon or leave the row open
                log.exception("action %d crashed", action_id)
                result = actions.Outcome("failed", f"internal error: {type(exc).__name__}")
            elapsed = time.monotonic() - started
            self.stats.in_progress -= 1
            try:
                self.journal.finish(action_id, result.outcome, result.reason, time.time())
            except Exception:
                log.exception("action %d: cannot record its outcome", action_id)
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

    async def idle(self) -> None:
        """Wait until every submitted action has ended (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is still queued or running and close the panel clients."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for client in self._clients.values():
            await client.aclose()
