"""``POST /webhook``: receive an Alertmanager notification, plan it, journal it, answer.

In order: auth (401), content type (415), body read with a 1 MiB cap (413), JSON
(400), Alertmanager v4 shape (422), then every alert is planned and all rows are
written in ONE journal transaction with the other notifications of this loop turn
(503 if that fails, so Alertmanager retries) before answering 200; accepted actions
start afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remediator.journal import JOURNAL_ERRORS, Batch, Journal, first_line
from remediator.manual import rule_for_row, selection_params
from remediator.payload import Notification, PayloadError, parse_notification_sliced
from remediator.planner import Settings, dedupe_key, first_matching_rule, plan
from remediator.routes.common import authorized, client_address, error, log, read_body
from remediator.settings.rules import Rule

if TYPE_CHECKING:
    from remediator.app import Remediator

MAX_BODY_BYTES = 1024 * 1024
SLICE = 200
"""Alerts handled between two yields to the event loop, for big notifications."""
_LOGGED = ("rule", "panel", "alertname", "outcome", "reason", "action_id", "fingerprint")


@dataclass
class Planned:
    """One notification's planning: the answer, what to run, what to count."""

    results: list[dict[str, Any]] = field(default_factory=list)
    to_run: list[tuple[int, Rule, str, str]] = field(default_factory=list)
    counted: list[tuple[str, str, str]] = field(default_factory=list)
    opened_circuit: str = ""


class Webhook:
    """The webhook of one :class:`~remediator.app.Remediator`, with its group commit."""

    def __init__(self, remediator: Remediator) -> None:
        self.rem = remediator
        self._batch: list[tuple[Notification, asyncio.Future[Planned | int]]] = []
        self._flush_scheduled = False
        self._flush_lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()

    async def receive(self, request: Request) -> Response:
        """``POST /webhook``."""
        stats = self.rem.stats
        if not authorized(request.headers.get("authorization"), self.rem.rconfig.auth):
            stats.notifications["unauthorized"] += 1
            log.warning("webhook: unauthorized request from %s", client_address(request))
            return error(401, "missing or wrong credentials", self.rem.challenge_header)
        notification = await self._read(request)
        if isinstance(notification, Response):
            stats.notifications["invalid"] += 1
            return notification
        if notification.truncated_alerts:
            stats.truncated_alerts += notification.truncated_alerts
            log.warning(
                "webhook: Alertmanager left %d alerts out of this notification "
                "(max_alerts on the receiver); they are not acted on",
                notification.truncated_alerts,
                extra={"receiver": notification.receiver},
            )
        return await self._accept(notification)

    async def _read(self, request: Request) -> Notification | Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return error(415, "content type must be application/json")
        declared = request.headers.get("content-length", "")
        significant = declared.lstrip("0")
        # ASCII digits only, and no int() of thousands of digits; anything else is left to
        # the server (which refuses a malformed Content-Length) and to the counted read.
        if (declared.isascii() and declared.isdigit()) and (
            len(significant) > 9 or int(significant or "0") > MAX_BODY_BYTES
        ):
            return error(413, f"body over {MAX_BODY_BYTES} bytes")
        body = await read_body(request, MAX_BODY_BYTES)
        if isinstance(body, Response):
            return body
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            # RecursionError: nesting deeper than the decoder's stack ("[[[[..."), under 1 MiB.
            return error(400, "body is not valid JSON")
        try:
            return await parse_notification_sliced(data, SLICE)
        except PayloadError as exc:
            return error(422, str(exc))

    async def _accept(self, notification: Notification) -> Response:
        """Queue the notification for the next group commit; answer once it is durable."""
        future: asyncio.Future[Planned | int] = asyncio.get_running_loop().create_future()
        self._batch.append((notification, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Runs after the requests already readable this loop turn have queued theirs.
            asyncio.get_running_loop().call_soon(self._start_flush)
        done = await future
        if done == 503:
            return error(503, "the action journal cannot be written; retry later")
        if isinstance(done, int):
            return error(500, "internal error; see the remediator's log")
        return JSONResponse({"results": done.results})

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        """Plan and journal every queued notification in one transaction (one fsync).

        Each notification is its own savepoint: it is recorded whole or not at
        all, and a failure answers 503 for it alone; a failed COMMIT answers 503
        for the whole batch. Nothing is answered before the COMMIT returns.

        Batches are flushed one at a time, each whole on the journal's thread (the
        loop is never blocked, however big the batch); PostgreSQL plans it from a
        :class:`Batch`.
        """
        async with self._flush_lock:
            await self._flush_batch()

    async def _flush_batch(self) -> None:
        batch, self._batch = self._batch, []
        self._flush_scheduled = False
        if not batch:
            return
        notifications = [notification for notification, _ in batch]
        journal = self.rem.journal
        try:
            planned = await journal.call(self._journal_batch, notifications, time.time())
        except JOURNAL_ERRORS as exc:  # not run: the journal is closed or did not answer
            log.error("webhook: cannot write the journal: %s", first_line(exc))
            planned = [503] * len(batch)
        except Exception:  # never leave a request hanging
            log.exception("webhook: journaling a batch failed")
            planned = [500] * len(batch)
        self.rem.health.update()
        for (_, future), done in zip(batch, planned, strict=True):
            if isinstance(done, int):
                self.rem.stats.notifications["journal_error"] += done == 503
            else:
                self.rem.stats.notifications["accepted"] += 1
                try:
                    await self._after_commit(done)
                except Exception:  # committed already: answer 200 whatever happens here
                    log.exception("webhook: after-commit step failed")
            if not future.done():
                future.set_result(done)

    def _journal_batch(self, batch: list[Notification], now: float) -> list[Planned | int]:
        """The transaction of one batch, on the journal's thread: each notification's
        planning, or the HTTP status that answers it. Touches nothing but the journal."""
        planned: list[Planned | int] = []
        journal = self.rem.journal
        settings = self.rem.settings  # one batch, one config, even if a reload lands meanwhile
        try:
            with journal.transaction():
                unit = self._unit(batch, now, settings)
                for notification in batch:
                    if unit is not journal and any(
                        a.status == "resolved" for a in notification.alerts
                    ):
                        unit = unit.direct()  # cancels: the rest on the journal itself
                    try:
                        with unit.savepoint():
                            planned.append(self._plan(notification, now, unit, settings))
                    except JOURNAL_ERRORS as exc:
                        log.error("webhook: cannot write the journal: %s", first_line(exc))
                        planned.append(503)
                    except Exception:  # a bug must answer, not leave the request hanging
                        log.exception("webhook: planning a notification failed")
                        planned.append(500)
                unit.flush()
        except JOURNAL_ERRORS as exc:
            log.error("webhook: cannot commit the journal: %s", first_line(exc))
            return [503] * len(batch)
        return planned

    def _unit(self, batch: list[Notification], now: float, settings: Settings) -> Journal | Batch:
        """Where a batch is planned: the journal itself (SQLite: each call is a local
        lookup), or a :class:`Batch` that reads everything up front (PostgreSQL: each
        call is a network round trip, made under the fleet-wide lock)."""
        journal = self.rem.journal
        if not journal.shared:
            return journal
        keys, rule_panels, alerts = [], set(), 0
        for notification in batch:
            for alert in notification.alerts:
                alerts += 1
                rule = first_matching_rule(settings.rules, alert.labels)
                if rule is not None:
                    keys.append(dedupe_key(rule.name, alert))
                    rule_panels.add((rule.name, alert.labels.get(settings.panel_label, "")))
        limit = settings.rate_limit
        return journal.batch(keys, sorted(rule_panels), alerts, now - limit.per, limit.max_actions)

    def _plan(
        self, notification: Notification, now: float, unit: Journal | Batch, settings: Settings
    ) -> Planned:
        out = Planned()
        for alert in notification.alerts:
            decision = plan(alert, settings, unit, now)
            rule = decision.rule
            action_id: int | None = None
            if decision.cancel_ids:
                cancelled = unit.cancel(
                    decision.cancel_ids, "the alert resolved before it started", now
                )
                if rule is not None:
                    out.counted += [(decision.panel, rule.action, "cancelled")] * len(cancelled)
                action_id = cancelled[0] if cancelled else None
            if decision.open_circuit:
                unit.set_control("circuit_open", True, "circuit_breaker",
                                         decision.reason, now)  # fmt: skip
                out.opened_circuit = decision.reason
            if decision.record and rule is not None:
                # The exact selection of this request (labels filled in, the rule's limits
                # of the day): an approval or a restart runs this, whatever the config
                # says by then.
                params = selection_params(rule, decision.select)
                action_id = unit.insert(
                    rule=rule.name,
                    panel=decision.panel,
                    action=rule.action,
                    outcome=decision.outcome,
                    reason=decision.reason,
                    received_at=now,
                    alertname=alert.alertname,
                    fingerprint=alert.fingerprint,
                    starts_at=alert.starts_at,
                    alert_status=alert.status,
                    labels=dict(alert.labels),
                    dedupe_key=decision.dedupe_key,
                    params=params,
                )
                if decision.outcome == "pending":
                    run = rule_for_row(rule.name, rule.action, params, {rule.name: rule})
                    assert run is not None
                    out.to_run.append((action_id, run, decision.panel, alert.alertname))
                else:
                    # An unknown panel name comes from the alert: keep it out of metric labels.
                    known = decision.panel if decision.outcome != "rejected" else ""
                    out.counted.append((known, rule.action, decision.outcome))
            out.results.append(
                {
                    "fingerprint": alert.fingerprint,
                    "alertname": alert.alertname,
                    "panel": decision.panel,
                    "rule": rule.name if rule else None,
                    "outcome": decision.outcome,
                    "reason": decision.reason,
                    "action_id": action_id,
                }
            )
        return out

    async def _after_commit(self, done: Planned) -> None:
        for key in done.counted:
            self.rem.stats.outcome(*key)
        for index, result in enumerate(done.results):
            if index % SLICE == SLICE - 1:
                await asyncio.sleep(0)
            level = logging.DEBUG if result["outcome"] == "ignored" else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "alert %s on %s: %s",
                    result["alertname"],
                    result["panel"] or "-",
                    result["outcome"],
                    extra={k: result[k] for k in _LOGGED},
                )
        for action_id, rule, panel, alertname in done.to_run:
            self.rem.runner.submit(action_id, rule, panel, alertname)
        if done.opened_circuit:
            self.rem.circuit_opened(done.opened_circuit)
        for result in done.results:
            if result["action_id"] is not None and result["outcome"] != "ignored":
                self.rem.notify_action(result["action_id"], result["outcome"])
