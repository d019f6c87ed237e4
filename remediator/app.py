"""The remediator's hub: the config in force, the parts it wires, and its HTTP routes.

:class:`Remediator` holds what every route and background job shares (config,
journal, runner, metrics, notifier), applies a reload to all of them at once, tells
people about journaled outcomes and expires approval requests nobody decided. The
routes live by concern in :mod:`remediator.routes`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from brainycp.daemon.asgiguard import QueryGuard
from remediator import operator
from remediator.journal import JOURNAL_ERRORS, ActionRow, Journal, first_line
from remediator.manual import rule_for_row
from remediator.metrics import Stats, registry
from remediator.notify import (
    Notifier,
    action_event,
    control_event,
    matching_now,
    operator_login,
    selection_of,
)
from remediator.planner import Settings
from remediator.routes.common import http_error, journal_error, log
from remediator.routes.health import Health
from remediator.routes.operator import OperatorRoutes
from remediator.routes.status_page import StatusPage
from remediator.routes.webhook import Webhook
from remediator.runner import Runner
from remediator.settings.config import Config
from remediator.settings.rules import Rule

PREVIEW_TIMEOUT = 10.0
"""How long an approval request's notification waits for the panel to count the matches."""
PREVIEWS_AT_ONCE = 4


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
        self.journal, self.runner, self.stats = journal, runner, stats
        self.web_users = False
        """True while a web config's ``basic_auth_users`` guard the operator routes."""
        self.client_cert = False
        """True while the listener requires a verified client certificate."""
        self.preview_timeout = PREVIEW_TIMEOUT
        self._previews = asyncio.Semaphore(PREVIEWS_AT_ONCE)
        self._use_config(config)
        self.notifier = notifier or Notifier(self.rconfig.notify, self.external_url)
        stats.notifier = self.notifier
        runner.on_finish = self.notify_action
        self.health = Health(self)
        self.registry = registry(stats)
        self.webhook = Webhook(self)
        self.operator = OperatorRoutes(self)
        self.status_page = StatusPage(self)

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
        self.challenge_header = {"WWW-Authenticate": f'{scheme} realm="brainycp-mail-remediator"'}
        """The header of a 401 (the webhook's own scheme)."""

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
        return self.challenge_header["WWW-Authenticate"]

    # ------------------------------------------------------------------ notifications

    def use_web_login(self, web_users: bool, client_cert: bool) -> None:
        """Say how the web config guards the operator routes (start and reload): with
        users, the approve/deny lines in notifications log in as one (``curl -u``); with a
        required client certificate, they present one (``curl --cert``)."""
        self.web_users, self.client_cert = web_users, client_cert

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
            login=operator_login(self.rconfig.auth, self.web_users, self.client_cert),
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

    def circuit_opened(self, reason: str) -> None:
        """The circuit breaker just opened (planning or an approval): log it, tell people."""
        log.warning("circuit breaker open: %s", reason)
        self.notifier.submit(
            control_event("circuit_open", reason, "circuit_breaker", self.external_url)
        )

    # ------------------------------------------------------------------ approvals

    async def expire(self, now: float) -> list[int]:
        """Approval requests older than ``approval_timeout`` become ``expired``."""
        before = now - self.rconfig.approval_timeout
        return self.expired(await self.journal.call(operator.expire, self.journal, before, now))

    def expired(self, rows: list[ActionRow]) -> list[int]:
        """Count, log and tell people about approval requests that just expired."""
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

    # ------------------------------------------------------------------ routes

    def app(self) -> Starlette:
        """The JSON API, the webhook, the probes and the status page as one Starlette app."""
        journal_errors = dict.fromkeys(JOURNAL_ERRORS, journal_error)
        people = self.operator
        return Starlette(
            exception_handlers={HTTPException: http_error, **journal_errors},
            middleware=[Middleware(QueryGuard)],
            routes=[
                Route("/webhook", self.webhook.receive, methods=["POST"]),
                Route("/actions", people.actions, methods=["GET"]),
                Route("/actions", people.manual, methods=["POST"]),
                Route("/actions/{action_id:int}", people.action, methods=["GET"]),
                Route("/actions/{action_id:int}/approve", people.decide, methods=["POST"]),
                Route("/actions/{action_id:int}/deny", people.decide, methods=["POST"]),
                Route("/pause", people.brake, methods=["POST"]),
                Route("/resume", people.brake, methods=["POST"]),
                Route("/control", people.control, methods=["GET"]),
                Route("/metrics", self.health.metrics, methods=["GET"]),
                Route("/healthz", self.health.healthz, methods=["GET"]),
                Route("/", self.status_page.index, methods=["GET"]),
            ],
        )
