"""The HTTP side: the Alertmanager webhook, the action list, metrics, health, a status page.

``POST /webhook`` does, in order: auth (401), content type (415), body read with
a 1 MiB cap (413), JSON (400), Alertmanager v4 shape (422), then plans every
alert and writes all rows in ONE journal transaction (503 if that fails, so
Alertmanager retries) before answering 200; accepted actions start afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import html
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from brainycp.daemon.asgiguard import QueryGuard
from brainycp.daemon.reload import AUTHENTICATED
from brainycp.panel.errors import BrainyCPError
from remediator import actions as panel_actions
from remediator import operator
from remediator.journal import JOURNAL_ERRORS, ActionRow, Batch, Journal, first_line
from remediator.manual import (
    MANUAL_RULE,
    ManualError,
    parse_request,
    rule_for_row,
    selection_params,
)
from remediator.metrics import Stats, registry
from remediator.notify import (
    Notifier,
    action_event,
    control_event,
    matching_now,
    operator_login,
    selection_of,
)
from remediator.payload import Notification, PayloadError, parse_notification_sliced
from remediator.planner import (
    OUTCOMES,
    Settings,
    dedupe_key,
    first_matching_rule,
    plan,
)
from remediator.runner import Runner
from remediator.settings.config import Config
from remediator.settings.rules import Rule
from remediator.settings.webhook import WebhookAuth

MAX_BODY_BYTES = 1024 * 1024
MAX_LIMIT = 10000
SLICE = 200
"""Alerts handled between two yields to the event loop, for big notifications."""
_LOGGED = ("rule", "panel", "alertname", "outcome", "reason", "action_id", "fingerprint")
_ACTIONS_PARAMS = ("panel", "rule", "outcome", "limit")
_MAX_PARAM = 256
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() also takes "²" and "٣"
MAX_REQUEST_BYTES = 64 * 1024
MAX_ACTION_ID = 2**63 - 1  # SQLite's INTEGER; a larger path id would overflow the binding
HEALTH_TIMEOUT = 3.0
"""/healthz and /metrics answer within this, whatever the journal does."""
HEALTH_WAIT = 2.5
"""How long of that they wait for the journal (the rest is for answering)."""
PREVIEW_TIMEOUT = 10.0
"""How long an approval request's notification waits for the panel to count the matches."""
PREVIEWS_AT_ONCE = 4
log = logging.getLogger("remediator.webhook")
# What each scrape reads from the journal: brakes, approvals waiting, the oldest one's time.
_Gauges = tuple[dict[str, dict[str, Any]], int | None, float | None]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def authorized(header: str | None, auth: WebhookAuth | None) -> bool:
    """Check an ``Authorization`` header in constant time; ``auth`` None means no auth."""
    if auth is None:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if auth.bearer_token is not None:
        expected = auth.bearer_token.get_secret_value().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), expected)
    if scheme.lower() != "basic" or auth.basic_password is None or auth.basic_username is None:
        return False
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        # ValueError also covers non-ASCII header text and undecodable UTF-8.
        return False
    user_ok = hmac.compare_digest(user.encode(), auth.basic_username.encode())
    password_ok = hmac.compare_digest(
        password.encode(), auth.basic_password.get_secret_value().encode()
    )
    return bool(sep) and user_ok and password_ok


@dataclass
class _Planned:
    """One notification's planning: the answer, what to run, what to count."""

    results: list[dict[str, Any]] = field(default_factory=list)
    to_run: list[tuple[int, Rule, str, str]] = field(default_factory=list)
    counted: list[tuple[str, str, str]] = field(default_factory=list)
    opened_circuit: str = ""


class Remediator:
    """Wires config, journal, runner and metrics into the request handlers."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        runner: Runner,
        stats: Stats,
        notifier: Notifier | None = None,
    ) -> None:
        self.journal = journal
        self.runner = runner
        self.stats = stats
        self.web_users = False
        """True while a web config's ``basic_auth_users`` guard the operator routes."""
        self.preview_timeout = PREVIEW_TIMEOUT
        self._previews = asyncio.Semaphore(PREVIEWS_AT_ONCE)
        self._use_config(config)
        self.notifier = notifier or Notifier(self.rconfig.notify, self.external_url)
        stats.notifier = self.notifier
        # Read from the journal by each scrape before the collector runs (see metrics()).
        self._gauges: _Gauges = ({}, None, None)
        stats.controls = lambda: self._gauges[0]
        stats.awaiting = lambda: self._gauges[1]
        stats.oldest_awaiting = lambda: self._gauges[2]
        stats.journal_failures = lambda: dict(self.journal.health.failures)
        runner.on_finish = self.notify_action
        self.registry = registry(stats)
        self._batch: list[tuple[Notification, asyncio.Future[_Planned | int]]] = []
        self._flush_scheduled = False
        self._flush_lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()

    def _use_config(self, config: Config) -> None:
        """Derive settings, rules, external URL and auth challenge from ``config``.

        Shared by ``__init__`` and ``reconfigure`` so both read the config the same way.
        """
        self.config = config
        self.rconfig = config.remediator
        self.stats.expect(config)  # counters of the configured panels and rules, at 0
        self.settings = Settings(
            rules=self.rconfig.rules,
            panels=frozenset(config.panels),
            panel_label=self.rconfig.panel_label,
            dry_run=self.rconfig.dry_run,
            rate_limit=self.rconfig.rate_limit,
            circuit_breaker=self.rconfig.circuit_breaker,
        )
        self.rules = {rule.name: rule for rule in self.rconfig.rules}
        self.external_url = self.rconfig.external_url or f"http://{self.rconfig.listen}"
        auth = self.rconfig.auth
        scheme = "Bearer" if auth is None or auth.bearer_token is not None else "Basic"
        self._challenge = {"WWW-Authenticate": f'{scheme} realm="brainycp-mail-remediator"'}

    def reconfigure(self, config: Config) -> None:
        """Use ``config`` from the next notification on (reload); the journal stays as it is.

        Rules, panels, auth and limits change; running actions, cooldowns and dedupe
        live in the journal and the runner, so they carry over.
        """
        self._use_config(config)
        self.notifier.reconfigure(self.rconfig.notify, self.external_url)
        self.runner.reconfigure(
            config.panels,
            {rule.name: rule for rule in self.rconfig.rules},
            max_concurrent=self.rconfig.max_concurrent_actions,
            action_timeout=self.rconfig.action_timeout,
        )

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401 (the webhook's own scheme)."""
        return self._challenge["WWW-Authenticate"]

    # ------------------------------------------------------------------ webhook

    async def webhook(self, request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), self.rconfig.auth):
            self.stats.notifications["unauthorized"] += 1
            log.warning("webhook: unauthorized request from %s", _client(request))
            return _error(401, "missing or wrong credentials", self._challenge)
        problem = await self._read(request)
        if isinstance(problem, Response):
            self.stats.notifications["invalid"] += 1
            return problem
        notification = problem
        if notification.truncated_alerts:
            self.stats.truncated_alerts += notification.truncated_alerts
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
            return _error(415, "content type must be application/json")
        declared = request.headers.get("content-length", "")
        significant = declared.lstrip("0")
        # ASCII digits only, and no int() of thousands of digits; anything else is left to
        # the server (which refuses a malformed Content-Length) and to the counted read below.
        if (declared.isascii() and declared.isdigit()) and (
            len(significant) > 9 or int(significant or "0") > MAX_BODY_BYTES
        ):
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return _error(413, f"body over {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            return _disconnected(request)
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            # RecursionError: nesting deeper than the decoder's stack ("[[[[..."), under 1 MiB.
            return _error(400, "body is not valid JSON")
        try:
            return await parse_notification_sliced(data, SLICE)
        except PayloadError as exc:
            return _error(422, str(exc))

    async def _accept(self, notification: Notification) -> Response:
        """Queue the notification for the next group commit; answer once it is durable."""
        future: asyncio.Future[_Planned | int] = self._loop().create_future()
        self._batch.append((notification, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Runs after the requests already readable this loop turn have queued theirs.
            self._loop().call_soon(self._start_flush)
        done = await future
        if done == 503:
            return _error(503, "the action journal cannot be written; retry later")
        if isinstance(done, int):
            return _error(500, "internal error; see the remediator's log")
        return JSONResponse({"results": done.results})

    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def _start_flush(self) -> None:
        task = self._loop().create_task(self._flush())
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
        try:
            planned = await self.journal.call(self._journal_batch, notifications, time.time())
        except JOURNAL_ERRORS as exc:  # not run: the journal is closed or did not answer
            log.error("webhook: cannot write the journal: %s", first_line(exc))
            planned = [503] * len(batch)
        except Exception:  # never leave a request hanging
            log.exception("webhook: journaling a batch failed")
            planned = [500] * len(batch)
        self._health()
        for (_, future), done in zip(batch, planned, strict=True):
            if isinstance(done, int):
                self.stats.notifications["journal_error"] += done == 503
            else:
                self.stats.notifications["accepted"] += 1
                try:
                    await self._after_commit(done)
                except Exception:  # committed already: answer 200 whatever happens here
                    log.exception("webhook: after-commit step failed")
            if not future.done():
                future.set_result(done)

    def _journal_batch(self, batch: list[Notification], now: float) -> list[_Planned | int]:
        """The transaction of one batch, on the journal's thread: each notification's
        planning, or the HTTP status that answers it. Touches nothing but the journal."""
        planned: list[_Planned | int] = []
        settings = self.settings  # one batch, one config, even if a reload lands meanwhile
        try:
            with self.journal.transaction():
                unit = self._unit(batch, now, settings)
                for notification in batch:
                    if unit is not self.journal and any(
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
        if not self.journal.shared:
            return self.journal
        keys, rule_panels, alerts = [], set(), 0
        for notification in batch:
            for alert in notification.alerts:
                alerts += 1
                rule = first_matching_rule(settings.rules, alert.labels)
                if rule is not None:
                    keys.append(dedupe_key(rule.name, alert))
                    rule_panels.add((rule.name, alert.labels.get(settings.panel_label, "")))
        limit = settings.rate_limit
        return self.journal.batch(
            keys, sorted(rule_panels), alerts, now - limit.per, limit.max_actions
        )

    def _plan(
        self, notification: Notification, now: float, unit: Journal | Batch, settings: Settings
    ) -> _Planned:
        out = _Planned()
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

    async def _after_commit(self, done: _Planned) -> None:
        for key in done.counted:
            self.stats.outcome(*key)
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
            self.runner.submit(action_id, rule, panel, alertname)
        if done.opened_circuit:
            log.warning("circuit breaker open: %s", done.opened_circuit)
            self.notifier.submit(
                control_event(
                    "circuit_open", done.opened_circuit, "circuit_breaker", self.external_url
                )
            )
        for result in done.results:
            if result["action_id"] is not None and result["outcome"] != "ignored":
                self.notify_action(result["action_id"], result["outcome"])

    # ------------------------------------------------------------------ notifications

    def use_web_users(self, web_users: bool) -> None:
        """Say whether web-config users guard the operator routes (start and reload): the
        approve/deny lines in notifications then log in as one (``curl -u``)."""
        self.web_users = web_users

    def notify_action(self, action_id: int, outcome: str) -> None:
        """Queue the notification for a journaled outcome; its row is read (and, for an
        approval request, the matching messages counted) in a task of its own."""
        if not self.notifier.wanted(outcome, None):
            return  # no target wants it: do not even read the row
        self.notifier.prepare(self._notify_action(action_id, outcome))

    async def _notify_action(self, action_id: int, outcome: str) -> None:
        try:
            row = await self.journal.call(self.journal.get, action_id)
            if row is None:
                return
            rule = self.rules.get(row.rule)
            names = rule.notify if rule is not None else None
            if not self.notifier.wanted(outcome, names):
                return
            detail = await self.journal.call(self.journal.detail, action_id, max_messages=0)
        except JOURNAL_ERRORS as exc:
            log.error("action %d: cannot read it to notify %s: %s", action_id, outcome,
                      first_line(exc))  # fmt: skip
            return
        params = detail.get("params") or {}
        runs = rule_for_row(row.rule, row.action, params, self.rules)
        event = action_event(
            row.as_json(), detail, self.external_url, outcome=outcome,
            login=operator_login(self.rconfig.auth, self.web_users),
            selection=selection_of(runs, params),
            expires_at=row.received_at + self.rconfig.approval_timeout,
        )  # fmt: skip
        if outcome == "awaiting_approval":
            event.update(await self._count_matching(row.panel, runs))
        self.notifier.submit(event, names)

    async def _count_matching(self, panel: str, rule: Rule | None) -> dict[str, Any]:
        """How many messages the request would act on now (see :func:`matching_now`)."""
        known = rule is not None and panel in self.config.panels
        async with self._previews:
            client = self.runner.client(panel) if known else None
            return await matching_now(client, rule, self.preview_timeout)

    # ------------------------------------------------------------------ people

    def _auth(self, request: Request) -> Response | None:
        # The gate in front of the app (remediator/cli.py) marks a request it authenticated:
        # with --web.config.file its users' basic auth is not the webhook's credentials.
        if request.scope.get(AUTHENTICATED) or authorized(
            request.headers.get("authorization"), self.rconfig.auth
        ):
            return None
        log.warning("%s %s: unauthorized request from %s", request.method, request.url.path,
                    _client(request))  # fmt: skip
        return _error(401, "missing or wrong credentials", self._challenge)

    async def _json_body(self, request: Request, *, optional: bool) -> dict[str, Any] | Response:
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_REQUEST_BYTES:
                    return _error(413, f"body over {MAX_REQUEST_BYTES} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            return _disconnected(request)
        raw = b"".join(chunks)
        if not raw.strip() and optional:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "body is not valid JSON")
        if not isinstance(data, dict):
            return _error(422, "the body must be a JSON object")
        return data

    @staticmethod
    def _who(data: dict[str, Any]) -> tuple[str, str] | Response:
        by, comment = data.get("by", ""), data.get("comment", "")
        for key, value, limit in (("by", by, 200), ("comment", comment, 2000)):
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > limit:
                return _error(422, f"{key} must be a string of at most {limit} characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return _error(422, f"{key} is not valid Unicode")
        return by or "", comment or ""

    async def _operator(self, request: Request) -> tuple[str, str] | Response:
        """An operator's POST: credentials, then ``by`` and ``comment`` from the optional
        JSON body; the error response when any of that fails."""
        if (denied := self._auth(request)) is not None:
            return denied
        data = await self._json_body(request, optional=True)
        if isinstance(data, Response):
            return data
        return self._who(data)

    async def decide(self, request: Request) -> Response:
        """``POST /actions/ID/approve`` and ``/deny``."""
        who = await self._operator(request)
        if isinstance(who, Response):
            return who
        by, comment = who
        approve = request.url.path.endswith("/approve")
        raw_id = request.path_params["action_id"]
        if raw_id > MAX_ACTION_ID:
            return _error(404, f"no action {raw_id}")
        done = await self.journal.call(
            operator.decide, self.journal, raw_id, approve, by=by, comment=comment,
            now=time.time(), settings=self.settings, rules=self.rules,
            approval_timeout=self.rconfig.approval_timeout,
        )  # fmt: skip
        self._expired(done.expired)
        if done.opened_circuit:
            log.warning("circuit breaker open: %s", done.opened_circuit)
            self.notifier.submit(
                control_event(
                    "circuit_open", done.opened_circuit, "circuit_breaker", self.external_url
                )
            )
        if done.row is None:
            return _error(done.status, done.error)
        row, outcome = done.row, "approved" if approve else "denied"
        log.info(
            "action %d %s by %s", raw_id, outcome, by or "someone",
            extra={"action_id": raw_id, "rule": row.rule, "panel": row.panel,
                   "outcome": outcome, "reason": comment},
        )  # fmt: skip
        if done.rule is not None:
            self.runner.submit(raw_id, done.rule, row.panel, row.alertname)
        else:
            self.stats.outcome(row.panel, row.action, "denied")
        self.notify_action(raw_id, outcome)
        return JSONResponse(
            {
                "action_id": raw_id,
                "outcome": "pending" if approve else "denied",
                "url": f"{self.external_url}/actions/{raw_id}",
            }
        )

    async def expire(self, now: float) -> list[int]:
        """Approval requests older than ``approval_timeout`` become ``expired``."""
        before = now - self.rconfig.approval_timeout
        return self._expired(await self.journal.call(operator.expire, self.journal, before, now))

    def _expired(self, rows: list[ActionRow]) -> list[int]:
        for row in rows:
            self.stats.outcome(row.panel, row.action, "expired")
            log.warning("action %d expired: nobody approved or denied it", row.id,
                        extra={"action_id": row.id, "rule": row.rule,
                               "panel": row.panel, "outcome": "expired"})  # fmt: skip
            self.notify_action(row.id, "expired")
        return [row.id for row in rows]

    async def expire_forever(self) -> None:
        """Expire stale approval requests, checking every 5s (or a quarter of the timeout)."""
        every = max(0.2, min(5.0, self.rconfig.approval_timeout / 4))
        while True:
            try:
                await self.expire(time.time())
            except JOURNAL_ERRORS as exc:
                log.error("cannot expire approval requests: %s", first_line(exc))
            await asyncio.sleep(every)

    async def brake(self, request: Request) -> Response:
        """``POST /pause`` and ``POST /resume`` (resume also closes the circuit breaker)."""
        who = await self._operator(request)
        if isinstance(who, Response):
            return who
        by, comment = who
        pause = request.url.path == "/pause"
        changed, controls = await self.journal.call(
            operator.set_brake, self.journal, pause, by, comment, time.time()
        )
        if changed:
            what = "paused" if pause else "resumed"
            log.warning("remediator %s by %s%s", what, by or "someone",
                        f": {comment}" if comment else "")  # fmt: skip
            self.notifier.submit(
                control_event(what, f"{what} by {by or 'someone'}"
                              + (f": {comment}" if comment else ""), by, self.external_url)
            )  # fmt: skip
        return JSONResponse(controls)

    async def control(self, request: Request) -> Response:
        return JSONResponse(await self.journal.call(self.journal.controls))

    async def manual(self, request: Request) -> Response:
        """``POST /actions``: run (or preview) one action by hand."""
        if (denied := self._auth(request)) is not None:
            return denied
        data = await self._json_body(request, optional=False)
        if isinstance(data, Response):
            return data
        status, body = await self.run_manual(data)
        return JSONResponse(body, status_code=status)

    async def run_manual(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A manual request: ``(HTTP status, answer)``; the CLI's ``run`` alone calls it too."""
        try:
            req = parse_request(data, self.rconfig.manual, self.config.panels)
        except ManualError as exc:
            return exc.status, {"error": str(exc)}
        now = time.time()
        common: dict[str, Any] = {
            "rule": MANUAL_RULE, "panel": req.panel, "action": req.rule.action,
            "received_at": now, "alertname": "", "fingerprint": "", "starts_at": "",
            "alert_status": "", "labels": {}, "params": req.params(), "origin": "manual",
            "requested_by": req.by,
        }  # fmt: skip
        if req.dry_run:
            try:
                preview = await panel_actions.preview(self.runner.client(req.panel), req.rule)
            except BrainyCPError as exc:
                return 502, {"error": f"{exc.reason}: {exc.operation}: {exc.detail}"[:300]}
            action_id = await self.journal.call(
                self.journal.insert, outcome="dry_run",
                reason=f"manual preview: {preview['verdict']}",
                dedupe_key=f"manual\x1fpreview\x1f{now}", counts=False, **common,
            )  # fmt: skip
            return 200, {"action_id": action_id, "outcome": "dry_run", **preview}
        common["reason"] = f"manual: {req.rule.action} by {req.by or 'someone'}"
        action_id, outcome = await self.journal.call(
            operator.accept_manual, self.journal, common, self.rconfig.rate_limit, now
        )
        if outcome != "pending":
            limit = self.rconfig.rate_limit
            reason = f"{limit.max_actions} actions already accepted in the last {limit.per:g}s"
            self.stats.outcome(req.panel, req.rule.action, outcome)
            self.notify_action(action_id, outcome)
            return 429, {"action_id": action_id, "outcome": outcome, "error": reason}
        log.info(
            "manual action %d: %s on %s by %s", action_id, req.rule.action, req.panel,
            req.by or "someone",
            extra={"action_id": action_id, "rule": MANUAL_RULE, "panel": req.panel,
                   "outcome": "pending"},
        )  # fmt: skip
        self.runner.submit(action_id, req.rule, req.panel, "")
        return 202, {
            "action_id": action_id,
            "outcome": "pending",
            "url": f"{self.external_url}/actions/{action_id}",
        }

    # ------------------------------------------------------------------ read side

    async def actions(self, request: Request) -> Response:
        query = request.query_params
        for key in query:
            if key not in _ACTIONS_PARAMS:
                return _error(
                    400, f"unknown parameter {key[:40]!r}; use {', '.join(_ACTIONS_PARAMS)}"
                )
            if len(query.getlist(key)) > 1:
                return _error(400, f"parameter {key!r} given more than once")
            if len(query[key]) > _MAX_PARAM:
                return _error(400, f"parameter {key!r} is longer than {_MAX_PARAM} characters")
        outcome = query.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            return _error(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        raw_limit = query.get("limit", "100")
        if _DIGITS.fullmatch(raw_limit) is None or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return _error(400, f"limit must be a number from 1 to {MAX_LIMIT}")
        try:
            rows = await self.journal.call(
                self.journal.list,
                panel=query.get("panel"),
                rule=query.get("rule"),
                outcome=outcome,
                limit=int(raw_limit),
            )
        except JOURNAL_ERRORS as exc:
            log.error("actions: cannot read the journal: %s", first_line(exc))
            return _error(503, "the action journal cannot be read; see the remediator's log")
        return JSONResponse({"actions": [row.as_json() for row in rows]})

    async def action(self, request: Request) -> Response:
        """``GET /actions/ID``: the summary plus labels, params, approval and messages."""
        action_id = request.path_params["action_id"]
        found = None
        if action_id <= MAX_ACTION_ID:
            found = await self.journal.call(_row_and_detail, self.journal, action_id)
        if found is None:
            return _error(404, f"no action {action_id}")
        return JSONResponse(found)

    async def metrics(self, request: Request) -> Response:
        # Check the journal (bounded) so brainycp_remediator_journal_up is fresh at every
        # scrape, then read the brake gauges off the loop; the collector only reads them.
        # Both within HEALTH_WAIT together.
        started = time.monotonic()
        if not await self.journal_problem():
            left = max(0.1, HEALTH_WAIT - (time.monotonic() - started))
            try:
                self._gauges = await self.journal.call_within(left, _gauges, self.journal)
            except JOURNAL_ERRORS as exc:  # a scrape must not fail: the gauges are left out
                log.error("metrics: cannot read the brakes and the approvals: %s",
                          first_line(exc))  # fmt: skip
                self._gauges = ({}, None, None)
        else:
            self._gauges = ({}, None, None)
        self._health()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        """200 ``ok``; 503 with the reason when the journal cannot be read or written."""
        problem = await self.journal_problem()
        if problem:
            return PlainTextResponse(f"journal ({self.journal.engine}): {problem}\n", 503)
        return PlainTextResponse("ok\n")

    async def journal_problem(self) -> str:
        """How the journal is, learnt within :data:`HEALTH_WAIT`: ``""`` when it works,
        else why not (a write it refused counts until a write works again)."""
        problem = await self.journal.check(HEALTH_WAIT)
        self._health()
        return problem

    def _health(self) -> None:
        """The journal's own health, into the metrics."""
        reason = self.journal.health.reason
        if reason:
            self.stats.journal_down(reason)
        else:
            self.stats.journal_ok()

    async def index(self, request: Request) -> Response:
        esc = html.escape
        rules = "".join(
            f"<tr><td>{esc(r.name)}</td><td>{esc(', '.join(str(m) for m in r.matchers))}</td>"
            f"<td>{esc(r.action)}{' ' + esc(r.daemon) if r.daemon else ''}</td>"
            f"<td>{r.cooldown:g}s</td><td>{'yes' if r.dry_run or self.rconfig.dry_run else ''}"
            "</td></tr>"
            for r in self.rconfig.rules
        )
        try:
            latest = await self.journal.call(self.journal.list, limit=20)
            controls = await self.journal.call(self.journal.controls)
            waiting = await self.journal.call(
                self.journal.list, outcome="awaiting_approval", limit=50
            )
        except JOURNAL_ERRORS as exc:
            log.error("status page: cannot read the journal: %s", first_line(exc))
            return _error(503, "the action journal cannot be read; see the remediator's log")
        brakes = "".join(
            f"<p><strong>{label}</strong> since {_when(c['changed_at'] or 0)} UTC by "
            f"{esc(c['changed_by'] or '-')}: {esc(c['reason'])}. <code>POST /resume</code> "
            "to act again.</p>"
            for label, c in (
                ("PAUSED", controls["paused"]),
                ("CIRCUIT BREAKER OPEN", controls["circuit_open"]),
            )
            if c["value"]
        )
        asks = "".join(
            f"<li><a href='/actions/{a.id}'>#{a.id}</a> {esc(a.rule)} on {esc(a.panel)} "
            f"({esc(a.action)}), since {_when(a.received_at)} UTC: "
            f"<code>POST /actions/{a.id}/approve</code> or <code>/deny</code></li>"
            for a in waiting
        )
        if asks:
            brakes += f"<h2>Awaiting approval</h2><ul>{asks}</ul>"
        recent = "".join(
            f"<tr><td>{a.id}</td><td>{_when(a.received_at)}</td><td>{esc(a.rule)}</td><td>{esc(a.panel)}</td><td>{esc(a.action)}</td>"
            f"<td>{esc(a.outcome)}</td><td>{esc(a.reason)}</td></tr>"
            for a in latest
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<title>brainycp-mail remediator</title></head><body>"
            "<h1>brainycp-mail remediator</h1>"
            f"<p>{len(self.config.panels)} panels; webhook at <code>POST /webhook</code>; "
            "<a href='/actions'>actions</a>, <a href='/control'>control</a>, "
            f"<a href='/metrics'>metrics</a>.</p>{brakes}"
            "<h2>Rules (first match wins)</h2><table border=1><tr><th>name</th><th>matchers</th>"
            f"<th>action</th><th>cooldown</th><th>dry run</th></tr>{rules}</table>"
            "<h2>Recent actions (UTC)</h2><table border=1><tr><th>id</th><th>received</th>"
            "<th>rule</th><th>panel</th><th>action</th><th>outcome</th><th>reason</th></tr>"
            f"{recent}</table></body></html>"
        )
        return HTMLResponse(page)

    def app(self) -> Starlette:
        journal_errors = dict.fromkeys(JOURNAL_ERRORS, _journal_error)
        return Starlette(
            exception_handlers={HTTPException: _http_error, **journal_errors},
            middleware=[Middleware(QueryGuard)],
            routes=[
                Route("/webhook", self.webhook, methods=["POST"]),
                Route("/actions", self.actions, methods=["GET"]),
                Route("/actions", self.manual, methods=["POST"]),
                Route("/actions/{action_id:int}", self.action, methods=["GET"]),
                Route("/actions/{action_id:int}/approve", self.decide, methods=["POST"]),
                Route("/actions/{action_id:int}/deny", self.decide, methods=["POST"]),
                Route("/pause", self.brake, methods=["POST"]),
                Route("/resume", self.brake, methods=["POST"]),
                Route("/control", self.control, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/", self.index, methods=["GET"]),
            ],
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, as JSON like every other error here."""
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, dict(exc.headers or {}))


async def _journal_error(request: Request, exc: Exception) -> Response:
    """Any route the journal failed under: a JSON 503 and a log line, never a traceback."""
    log.error("%s %s: the journal failed: %s", request.method, request.url.path,
              first_line(exc))  # fmt: skip
    return _error(503, "the action journal cannot be used right now; see the remediator's log")


def _row_and_detail(journal: Journal, action_id: int) -> dict[str, Any] | None:
    """``GET /actions/ID``'s answer, read in one journal call; None when there is no row."""
    row = journal.get(action_id)
    return None if row is None else {**row.as_json(), **journal.detail(action_id)}


def _gauges(journal: Journal) -> _Gauges:
    """What the metrics read from the journal: the brakes, the approvals waiting and when
    the oldest of them was requested."""
    waiting = "awaiting_approval"
    return journal.controls(), journal.count(waiting), journal.oldest_received(waiting)


def _disconnected(request: Request) -> Response:
    """The client left before its whole body came: one quiet line, an answer nobody reads."""
    log.debug(
        "%s %s: the client from %s disconnected before sending its whole body",
        request.method,
        request.url.path,
        _client(request),
    )
    return _error(400, "the client disconnected before sending its whole body")


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
