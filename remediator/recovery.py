"""The journal at start and in the background: open and migrate it, apply the restart
rules to unfinished rows this replica takes over, renew leases, prune old rows."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from brainycp.backoff import Backoff
from brainycp.daemon import startup
from remediator.journal import JOURNAL_ERRORS, SCHEMA_VERSION, Journal, JournalError
from remediator.manual import rule_for_row
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import Config, RemediatorConfig

log = logging.getLogger("remediator")


async def open_journal(rconfig: RemediatorConfig) -> Journal | int:
    """The configured journal, schema migrated; else the exit code (the reason logged):
    2 when it is unfit (corrupt, empty, not a journal, or from a newer version).

    PostgreSQL that cannot be reached yet is retried until it answers: replicas
    started before the database wait for it instead of exiting.
    """
    if rconfig.journal is None:
        try:
            return Journal(rconfig.state_file)
        except (JournalError, OSError) as exc:
            # Corrupt, empty, foreign or newer journal: refuse it untouched, with the fix.
            log.error("%s", exc)
        except JOURNAL_ERRORS as exc:
            log.error("journal %s: %s", rconfig.state_file, exc)
        return startup.EXIT_CONFIG
    settings = rconfig.journal
    password = settings.password.get_secret_value() if settings.password else None
    journal = Journal.postgres(settings.url, password, lease=settings.lease)
    where = _safe_url(settings.url)
    backoff = Backoff(1.0, 10.0)
    while True:
        try:
            before = await journal.call_patient(journal.migrate)
        except JournalError as exc:
            log.error("cannot use the journal %s: %s", where, exc)
            journal.close()
            return startup.EXIT_CONFIG
        except JOURNAL_ERRORS as exc:
            log.error("journal %s not reachable yet (retrying): %s", where, _first_line(exc))
            await backoff.wait()
            continue
        log.info(
            "journal: PostgreSQL %s, schema version %d%s; this replica is %s",
            where,
            SCHEMA_VERSION,
            f" (migrated from {before})" if before != SCHEMA_VERSION else "",
            journal.owner,
        )
        return journal


def _safe_url(url: str) -> str:
    """The journal URL for logs: the config refuses passwords in it; drop any query too."""
    return url.split("?", 1)[0]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


class Adopter:
    """Apply the restart rules to unfinished rows this replica took over (at start, or
    from a replica whose lease expired): log and count the interrupted ones, run the
    resumed ones again."""

    def __init__(self, config: Config, journal: Journal, runner: Runner, stats: Stats) -> None:
        self.config = config
        self.journal = journal
        self.runner = runner
        self.stats = stats
        self.rules = {rule.name: rule for rule in config.remediator.rules}

    async def interrupted(self, ids: Sequence[int]) -> None:
        for action_id in ids:
            row = await self.journal.call(self.journal.get, action_id)
            if row is not None:
                self.stats.outcome(row.panel, row.action, "interrupted")
                log.warning(
                    "action %d (%s on %s) was interrupted by a restart; not re-run",
                    action_id,
                    row.action,
                    row.panel,
                    extra={"rule": row.rule, "panel": row.panel, "alertname": row.alertname},
                )

    async def resumed(self, ids: Sequence[int]) -> None:
        for action_id in ids:
            row = await self.journal.call(self.journal.get, action_id)
            if row is None:
                continue
            params = await self.journal.call(self.journal.params, action_id)
            rule = rule_for_row(row.rule, row.action, params, self.rules)
            if rule is None or row.panel not in self.config.panels:
                await self.journal.call(
                    self.journal.finish,
                    action_id,
                    "cancelled",
                    "its rule or panel left the config; not run after the restart",
                    time.time(),
                )
                self.stats.outcome(row.panel, row.action, "cancelled")
                continue
            log.info("action %d (%s on %s) runs after a restart", action_id, row.action, row.panel)
            self.runner.submit(action_id, rule, row.panel, row.alertname)


async def keep_leases(journal: Journal, adopt: Adopter) -> None:
    """Shared journal: renew this replica's leases and take over expired ones, every
    third of the lease. A failure is logged and retried at the next turn."""
    while True:
        await asyncio.sleep(journal.lease / 3)  # a period, not synchronisation
        now = time.time()
        try:
            await journal.call(journal.renew, sorted(adopt.runner.active), now)
            resumed, interrupted = await journal.call(journal.take_over, now)
        except JOURNAL_ERRORS as exc:  # the journal's health says it too
            log.error("journal: cannot renew leases: %s", _first_line(exc))
            continue
        if resumed or interrupted:
            log.warning(
                "journal: took over %d unfinished actions whose replica stopped renewing them",
                len(resumed) + len(interrupted),
            )
        await adopt.interrupted(interrupted)
        await adopt.resumed(resumed)


PRUNE_EVERY = 3600.0


async def prune_forever(journal: Journal, retention: float) -> None:
    """Prune the journal at start and then every hour; a failure is logged and retried."""
    while True:
        try:
            removed = await journal.call(journal.prune, time.time() - retention)
        except JOURNAL_ERRORS as exc:
            log.error("cannot prune the journal: %s", exc)
        else:
            if removed:
                log.info("journal: pruned %d rows older than %gd", removed, retention / 86400)
        await asyncio.sleep(PRUNE_EVERY)
