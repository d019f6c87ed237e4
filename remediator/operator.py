"""What people ask of the journal (approve, deny, pause, resume, a manual action) and approval
expiry: each is one journal transaction, run on the journal's thread.

One transaction each, so the checks and the change are one step: on a shared
(PostgreSQL) journal no other replica decides in between, and nothing here ever
runs on the event loop. The HTTP side (:mod:`remediator.routes.operator`) turns the results
into answers, log lines, metrics and notifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator.journal import ActionRow, Journal
from remediator.manual import rule_for_row
from remediator.planner import Settings, breaker_verdict
from remediator.settings.rules import RateLimit, Rule


@dataclass
class Decided:
    """How an approve or deny ended: ``status`` 200 with ``row`` (and, approved, the
    ``rule`` to run), or an error status and its reason."""

    status: int
    error: str = ""
    row: ActionRow | None = None
    rule: Rule | None = None
    opened_circuit: str = ""
    """The breaker opened on this approval: why."""
    expired: list[ActionRow] = field(default_factory=list)
    """Requests that expired on the way (the one asked about among them)."""


def decide(
    journal: Journal,
    action_id: int,
    approve: bool,
    *,
    by: str,
    comment: str,
    now: float,
    settings: Settings,
    rules: Mapping[str, Rule],
    approval_timeout: float,
) -> Decided:
    """Approve or deny the request ``action_id``, if it still awaits a decision."""
    with journal.transaction():
        row = journal.get(action_id)
        if row is None:
            return Decided(404, f"no action {action_id}")
        if row.outcome != "awaiting_approval":
            return Decided(409, f"action {action_id} is {row.outcome}, not awaiting_approval")
        if now - row.received_at > approval_timeout:
            expired = expire(journal, now - approval_timeout, now)
            return Decided(409, f"action {action_id} expired (approval_timeout)", expired=expired)
        rule: Rule | None = None
        if approve:
            if journal.paused():
                return Decided(409, "the remediator is paused; POST /resume first")
            verdict = breaker_verdict(settings, journal, row.panel, now)
            if verdict is not None:
                reason, opens = verdict
                if opens:
                    journal.set_control("circuit_open", True, "circuit_breaker", reason, now)
                return Decided(409, reason, opened_circuit=reason if opens else "")
            rule = rule_for_row(row.rule, row.action, journal.params(action_id), rules)
            if rule is None or row.panel not in settings.panels:
                return Decided(409, "its rule or panel left the config; it cannot run")
        if not journal.decide(action_id, approve, by, comment, now):
            return Decided(409, f"action {action_id} is no longer awaiting_approval")
        return Decided(200, row=row, rule=rule)


def expire(journal: Journal, received_before: float, now: float) -> list[ActionRow]:
    """Approval requests received before ``received_before`` become ``expired``; their rows."""
    with journal.transaction():
        ids = journal.expire(received_before, now)
        return [row for row in map(journal.get, ids) if row is not None]


def set_brake(
    journal: Journal, pause: bool, by: str, comment: str, now: float
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Pause, or resume (which also closes the breaker): ``(changed, controls)``."""
    with journal.transaction():
        changed = journal.set_control("paused", pause, by, comment, now)
        if not pause and journal.set_control("circuit_open", False, by, comment, now):
            changed = True
        return changed, journal.controls()


def accept_manual(
    journal: Journal, row: dict[str, Any], rate_limit: RateLimit, now: float
) -> tuple[int, str]:
    """Journal a manual request: ``(action id, outcome)``, ``pending`` unless the rate limit
    is reached (``skipped_rate_limit``, with the reason in the row)."""
    with journal.transaction():
        if journal.accepted_since(now - rate_limit.per) >= rate_limit.max_actions:
            reason = (
                f"{rate_limit.max_actions} actions already accepted in the last {rate_limit.per:g}s"
            )
            outcome = "skipped_rate_limit"
        else:
            reason = row.pop("reason")
            outcome = "pending"
        row.pop("reason", None)
        action_id = journal.insert(
            outcome=outcome, reason=reason, dedupe_key=f"manual\x1f{now}", **row
        )
        return action_id, outcome
