"""Decide, for one alert, which rule applies and what happens: pure, no I/O, no clock.

The journal's current state comes in through :class:`JournalView` and the time
through ``now``, so every safety rule here is tested with plain objects.

Order of checks for one alert (the first that applies decides):

1. the first rule whose matchers all match the labels wins; none -> ``ignored``;
2. a ``resolved`` alert cancels the still-pending (or still-awaiting-approval)
   actions of its episode; if the rule does not run ``on`` resolved, that is all
   (``cancelled``/``ignored``);
3. the panel label is missing or names no configured panel -> ``rejected``; a
   selection that takes a value from an alert label (``{{ labels.sender }}``)
   whose label is missing, empty or malformed -> ``rejected``;
4. the episode (rule, fingerprint, startsAt, status) already has an action ->
   ``skipped_duplicate``, unless ``rerun_after`` has passed since that action;
5. the episode already ran ``max_runs_per_episode`` times -> ``skipped_exhausted``;
6. an action for (rule, panel) was accepted less than ``cooldown`` ago -> ``skipped_cooldown``;
7. ``rate_limit.max_actions`` actions were accepted in the last ``rate_limit.per`` ->
   ``skipped_rate_limit``;
8. dry run (global or rule) -> ``dry_run`` (a preview touches no panel, so the
   brakes below do not stop it);
9. the remediator is paused (``POST /pause``) -> ``skipped_paused``;
10. the circuit breaker is open, or this action would start actions on more
    panels within ``circuit_breaker.window`` than allowed -> ``skipped_circuit_open``
    (the second case opens it: ``Decision.open_circuit``);
11. the rule needs approval -> ``awaiting_approval`` (nothing runs until
    ``POST /actions/ID/approve``);
12. otherwise ``pending`` (to be run).

The brakes (9, 10) come after the limits so that a skipped duplicate or cooldown
reads as such while paused, and before approval so that nobody is asked to
approve what could not run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from remediator.payload import Alert
from remediator.settings.rules import CircuitBreaker, RateLimit, Rule, Selection

# An action accepted to run (or previewed), from its acceptance to its end.
_ACCEPTED = ("pending", "running", "succeeded", "failed", "unverified", "dry_run")
OUTCOMES = (
    *_ACCEPTED,
    "skipped_duplicate",
    "skipped_cooldown",
    "skipped_rate_limit",
    "skipped_nothing_to_do",
    "cancelled",
    "rejected",
    "interrupted",
    "awaiting_approval",
    "denied",
    "expired",
    "skipped_paused",
    "skipped_circuit_open",
    "skipped_exhausted",
)
# Rows that stand for an action accepted to run (or previewed): they hold cooldown and
# rate limit. ``cancelled`` only closes the episode (it never reached the panel).
COUNTING_OUTCOMES = (*_ACCEPTED, "skipped_nothing_to_do", "interrupted", "awaiting_approval")
# A denied or expired request closes its episode (nobody is asked twice for one
# episode) but, having never reached the panel, holds no cooldown or rate limit.
EPISODE_OUTCOMES = (*COUNTING_OUTCOMES, "cancelled", "denied", "expired")
# Rows that started (or will start) work on a panel: what the circuit breaker counts.
STARTED_OUTCOMES = tuple(o for o in COUNTING_OUTCOMES if o not in ("dry_run", "awaiting_approval"))


@dataclass(frozen=True)
class EpisodeRun:
    """The newest journal row that handled an episode."""

    action_id: int
    outcome: str
    received_at: float


class JournalView(Protocol):
    """What the planner needs to know about earlier decisions."""

    def episode_last(self, dedupe_key: str) -> EpisodeRun | None:
        """Newest row with this dedupe key and an outcome in :data:`EPISODE_OUTCOMES`."""

    def last_accepted(self, rule: str, panel: str) -> float | None:
        """``received_at`` of the newest counting row for (rule, panel)."""

    def accepted_since(self, since: float) -> int:
        """Number of counting rows received after ``since`` (all rules, all panels)."""

    def pending_ids(self, rule: str, fingerprint: str, starts_at: str) -> list[int]:
        """Ids of ``pending`` or ``awaiting_approval`` firing rows of this episode."""

    def episode_runs(self, dedupe_key: str) -> int:
        """Number of counting rows (runs, dry runs, approval requests) of this episode."""

    def paused(self) -> bool:
        """True between ``POST /pause`` and ``POST /resume``."""

    def circuit_open(self) -> bool:
        """True once the circuit breaker opened, until ``POST /resume``."""

    def panels_started_since(self, since: float) -> set[str]:
        """Panels with an alert-driven action started (or accepted to start) after ``since``."""


@dataclass(frozen=True)
class Settings:
    """The parts of the remediator config the planner reads."""

    rules: Sequence[Rule]
    panels: Collection[str]
    panel_label: str = "panel"
    dry_run: bool = False
    rate_limit: RateLimit = field(default_factory=RateLimit)
    circuit_breaker: CircuitBreaker | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with one alert.

    ``record`` says whether a journal row is written; ``cancel_ids`` are pending
    rows to mark ``cancelled``.
    """

    alert: Alert
    rule: Rule | None
    panel: str
    outcome: str
    reason: str
    dedupe_key: str = ""
    record: bool = True
    cancel_ids: tuple[int, ...] = ()
    select: Selection | None = None
    """The rule's selection with label templates filled in from the alert."""
    open_circuit: bool = False
    """This decision opens the circuit breaker (it was closed until now)."""


def dedupe_key(rule: str, alert: Alert) -> str:
    """One firing (or resolved) episode of one alert for one rule."""
    return f"{rule}\x1f{alert.fingerprint}\x1f{alert.starts_at}\x1f{alert.status}"


def first_matching_rule(rules: Sequence[Rule], labels: Mapping[str, str]) -> Rule | None:
    """The first rule, in config order, whose matchers all match; None when none does."""
    for rule in rules:
        if all(m.matches(labels) for m in rule.matchers):
            return rule
    return None


def _ago(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds:.0f}s"


def breaker_verdict(
    settings: Settings, view: JournalView, panel: str, now: float
) -> tuple[str, bool] | None:
    """Why the circuit breaker stops an action on ``panel`` now, or None when it does not.

    Returns ``(reason, opens)``; ``opens`` is True when this action is what trips it.
    """
    if view.circuit_open():
        return "the circuit breaker is open; POST /resume to close it", False
    breaker = settings.circuit_breaker
    if breaker is None:
        return None
    started = view.panels_started_since(now - breaker.window)
    limit = breaker.limit(len(settings.panels))
    if panel not in started and len(started) + 1 > limit:
        return (
            f"circuit breaker opened: actions would start on {len(started) + 1} panels "
            f"within {_ago(breaker.window)} (limit {limit}); POST /resume to close it",
            True,
        )
    return None


def plan(alert: Alert, settings: Settings, view: JournalView, now: float) -> Decision:
    """Decide the rule and outcome for ``alert`` at time ``now`` (seconds since the epoch)."""
    panel = alert.labels.get(settings.panel_label, "")
    rule = first_matching_rule(settings.rules, alert.labels)
    if rule is None:
        return Decision(alert, None, panel, "ignored", "no rule matches", record=False)

    cancel: tuple[int, ...] = ()
    if alert.status == "resolved":
        cancel = tuple(view.pending_ids(rule.name, alert.fingerprint, alert.starts_at))
        if "resolved" not in rule.on:
            if cancel:
                return Decision(
                    alert, rule, panel, "cancelled",
                    "the alert resolved before its action started",
                    record=False, cancel_ids=cancel,
                )  # fmt: skip
            return Decision(
                alert, rule, panel, "ignored",
                "rule runs on firing only; nothing pending to cancel", record=False,
            )  # fmt: skip
    elif "firing" not in rule.on:
        return Decision(alert, rule, panel, "ignored", "rule runs on resolved only", record=False)

    key = dedupe_key(rule.name, alert)

    select = rule.select

    def decide(outcome: str, reason: str, opens: bool = False) -> Decision:
        return Decision(
            alert, rule, panel, outcome, reason, key,
            cancel_ids=cancel, select=select, open_circuit=opens,
        )  # fmt: skip

    if not panel:
        return decide("rejected", f"the alert has no {settings.panel_label!r} label")
    if panel not in settings.panels:
        return decide("rejected", f"panel {panel!r} is not configured")
    if select is not None and select.templates():
        try:
            select = select.resolve(alert.labels)
        except ValueError as exc:
            select = rule.select
            return decide("rejected", str(exc))

    last = view.episode_last(key)
    if last is not None:
        if rule.rerun_after is None:
            return decide(
                "skipped_duplicate",
                f"episode already handled by action {last.action_id} ({last.outcome})",
            )
        if last.outcome in ("pending", "running", "awaiting_approval"):
            return decide("skipped_duplicate", f"action {last.action_id} is still {last.outcome}")
        since = now - last.received_at
        if since < rule.rerun_after:
            return decide(
                "skipped_duplicate",
                f"action {last.action_id} ran {_ago(since)} ago; "
                f"rerun_after is {_ago(rule.rerun_after)}",
            )

    if rule.max_runs_per_episode is not None:
        runs = view.episode_runs(key)
        if runs >= rule.max_runs_per_episode:
            return decide(
                "skipped_exhausted",
                f"this episode already ran {runs} times (max_runs_per_episode); left to people",
            )

    previous = view.last_accepted(rule.name, panel)
    if previous is not None and now - previous < rule.cooldown:
        return decide(
            "skipped_cooldown",
            f"last action of this rule on {panel} {_ago(now - previous)} ago; "
            f"cooldown is {_ago(rule.cooldown)}",
        )

    limit = settings.rate_limit
    if view.accepted_since(now - limit.per) >= limit.max_actions:
        return decide(
            "skipped_rate_limit",
            f"{limit.max_actions} actions already accepted in the last {_ago(limit.per)}",
        )

    if settings.dry_run or rule.dry_run:
        where = "globally" if settings.dry_run else "for this rule"
        return decide("dry_run", f"dry run {where}: would run {rule.action}")
    if view.paused():
        return decide("skipped_paused", "the remediator is paused; POST /resume to act again")
    verdict = breaker_verdict(settings, view, panel, now)
    if verdict is not None:
        return decide("skipped_circuit_open", verdict[0], verdict[1])
    if rule.approval == "required":
        return decide("awaiting_approval", f"waiting for approval: {rule.action}")
    return decide("pending", f"accepted: {rule.action}")
