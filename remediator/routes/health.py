"""``/healthz`` and ``/metrics``: the journal's health, learnt within a bound, and the scrape."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from remediator.journal import JOURNAL_ERRORS, Journal, first_line
from remediator.routes.common import log

if TYPE_CHECKING:
    from remediator.app import Remediator

HEALTH_TIMEOUT = 3.0
"""/healthz and /metrics answer within this, whatever the journal does."""
HEALTH_WAIT = 2.5
"""How long of that they wait for the journal (the rest is for answering)."""
# What each scrape reads from the journal: brakes, approvals waiting, the oldest one's time.
_Gauges = tuple[dict[str, dict[str, Any]], int | None, float | None]


class Health:
    """The probes of one :class:`~remediator.app.Remediator`; also keeps the journal's
    health and the journal's gauges (brakes, approvals waiting) in its metrics."""

    def __init__(self, remediator: Remediator) -> None:
        self.rem = remediator
        stats = remediator.stats
        # Read from the journal by each scrape before the collector runs (see metrics()).
        self._gauges: _Gauges = ({}, None, None)
        stats.controls = lambda: self._gauges[0]
        stats.awaiting = lambda: self._gauges[1]
        stats.oldest_awaiting = lambda: self._gauges[2]
        stats.journal_failures = lambda: dict(remediator.journal.health.failures)

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: never fails, whatever the journal does."""
        # Check the journal (bounded) so brainycp_remediator_journal_up is fresh at every
        # scrape, then read the brake gauges off the loop; the collector only reads them.
        # Both within HEALTH_WAIT together.
        started = time.monotonic()
        journal = self.rem.journal
        if not await self.journal_problem():
            left = max(0.1, HEALTH_WAIT - (time.monotonic() - started))
            try:
                self._gauges = await journal.call_within(left, _gauges, journal)
            except JOURNAL_ERRORS as exc:  # a scrape must not fail: the gauges are left out
                log.error("metrics: cannot read the brakes and the approvals: %s",
                          first_line(exc))  # fmt: skip
                self._gauges = ({}, None, None)
        else:
            self._gauges = ({}, None, None)
        self.update()
        return Response(generate_latest(self.rem.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        """200 ``ok``; 503 with the reason when the journal cannot be read or written."""
        problem = await self.journal_problem()
        if problem:
            return PlainTextResponse(f"journal ({self.rem.journal.engine}): {problem}\n", 503)
        return PlainTextResponse("ok\n")

    async def journal_problem(self) -> str:
        """How the journal is, learnt within :data:`HEALTH_WAIT`: ``""`` when it works,
        else why not (a write it refused counts until a write works again)."""
        problem = await self.rem.journal.check(HEALTH_WAIT)
        self.update()
        return problem

    def update(self) -> None:
        """The journal's own health, into the metrics."""
        self.rem.stats.journal_up = 0 if self.rem.journal.health.reason else 1


def _gauges(journal: Journal) -> _Gauges:
    """What the metrics read from the journal: the brakes, the approvals waiting and when
    the oldest of them was requested."""
    waiting = "awaiting_approval"
    return journal.controls(), journal.count(waiting), journal.oldest_received(waiting)
