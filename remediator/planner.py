"""Decide, for one alert, which rule applies and what happens: pure, no I/O, no clock.

The journal's current state comes in through :class:`JournalView` and the time
through ``now``, so every safety rule here is tested with plain objects.

Order of checks for one alert (the first that applies decides):

1. the first rule whose matchers all match the labels wins; none -> ``ignored``;
2. a ``resolved`` alert cancels the still-pending actions of its episode;
   if the rule does not run ``on`` resolved, that is all (``cancelled``/``ignored``);
3. the panel label is missing or names no configured panel -> ``rejected``;
4. the episode (rule, fingerprint, startsAt, status) already has an action ->
   ``skipped_duplicate``, unless ``rerun_after`` has passed since that action;
5. an action for (rule, panel) was accepted less than ``cooldown`` ago -> ``skipped_cooldown``;
6. ``rate_limit.max_actions`` actions were accepted in the last ``rate_limit.per`` ->
   ``skipped_rate_limit``;
7. dry run (global or rule) -> ``dry_run``; otherwise ``pending`` (to be run).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from brainycp.config import RateLimit, Rule
from remediator.payload import Alert

OUTCOMES = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "unverified",
    "dry_run",
    "skipped_duplicate",
    "skipped_cooldown",
    "skipped_rate_limit",
    "skipped_nothing_to_do",
    "cancelled",
    "rejected",
    "interrupted",
)
FINAL_OUTCOMES = tuple(o for o in OUTCOMES if o not in ("pending", "running"))
# Rows that stand for an action accepted to run (or previewed): they hold cooldown and
# rate limit. ``cancelled`` only closes the episode (it never reached the panel).
COUNTING_OUTCOMES = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "unverified",
    "dry_run",
    "skipped_nothing_to_do",
    "interrupted",
)
EPISODE_OUTCOMES = (*COUNTING_OUTCOMES, "cancelled")


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
        """Ids of ``pending`` firing rows of this episode."""


@dataclass(frozen=True)
class Settings:
    """The parts of the remediator config the planner reads."""

    rules: Sequence[Rule]
    panels: Collection[str]
    panel_label: str = "panel"
    dry_run: bool = False
    rate_limit: RateLimit = field(default_factory=RateLimit)


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

    def decide(outcome: str, reason: str) -> Decision:
        return Decision(alert, rule, panel, outcome, reason, key, cancel_ids=cancel)

    if not panel:
        return decide("rejected", f"the alert has no {settings.panel_label!r} label")
    if panel not in settings.panels:
        return decide("rejected", f"panel {panel!r} is not configured")

    last = view.episode_last(key)
    if last is not None:
        if rule.rerun_after is None:
            return decide(
                "skipped_duplicate",
                f"episode already handled by action {last.action_id} ({last.outcome})",
            )
        if last.outcome in ("pending", "running"):
            return decide("skipped_duplicate", f"action {last.action_id} is still {last.outcome}")
        since = now - last.received_at
        if since < rule.rerun_after:
            return decide(
                "skipped_duplicate",
                f"action {last.action_id} ran {_ago(since)} ago; "
                f"rerun_after is {_ago(rule.rerun_after)}",
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
    return decide("pending", f"accepted: {rule.action}")
