"""The remediator's own metrics: plain counters kept in :class:`Stats`, exposed by a Collector.

``actions_total`` counts outcomes as they become known (skips, rejections and
dry runs at receipt, the rest when the action ends); ``pending``/``running``
are not counted there, ``actions_in_progress`` shows what is running now.
The outcomes a configured rule can end in exist at 0 for every configured panel
(:meth:`Stats.expect`), so that ``increase()`` counts the first action.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from brainycp import __version__
from remediator.actions import IDEMPOTENT

if TYPE_CHECKING:
    from remediator.notify import Notifier
    from remediator.settings.config import Config
    from remediator.settings.rules import Rule

NOTIFICATION_RESULTS = ("accepted", "unauthorized", "invalid", "journal_error")
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"))
RUN_OUTCOMES = ("succeeded", "failed", "unverified")
"""How an action that changed something on its panel ends."""


def rule_outcomes(rule: Rule, dry_run: bool) -> tuple[str, ...]:
    """The outcomes of ``rule`` whose counters exist at 0: how its actions end.

    Skips (cooldown, duplicates, rate limit, brakes, nothing to do) appear at their first
    count: they are decisions that nothing be done, not work on a panel.
    """
    if dry_run or rule.dry_run:
        return ("dry_run",)
    outcomes: tuple[str, ...] = RUN_OUTCOMES
    if rule.action not in IDEMPOTENT:
        outcomes += ("interrupted",)
    if rule.approval == "required":
        outcomes += ("denied", "expired")
    return outcomes


class Stats:
    """Mutable counters, touched only from the event loop."""

    def __init__(self) -> None:
        self.notifications = dict.fromkeys(NOTIFICATION_RESULTS, 0)
        self.truncated_alerts = 0
        self.actions: dict[tuple[str, str, str], int] = defaultdict(int)
        self.duration_buckets: dict[str, list[int]] = {}
        self.duration_sum: dict[str, float] = defaultdict(float)
        self.in_progress = 0
        # Read at scrape time: the notifier's counters, the journal's brakes and queue.
        self.notifier: Notifier | None = None
        self.controls: Callable[[], dict[str, dict[str, Any]]] | None = None
        self.awaiting: Callable[[], int | None] | None = None
        self.oldest_awaiting: Callable[[], float | None] | None = None
        """When the oldest request still awaiting approval was received (None: none, or
        the journal cannot say)."""
        self.approval_timeout = 3600.0
        self.journal_up = 1
        """0 while the journal cannot be read or written (its health says why)."""
        self.journal_failures: Callable[[], dict[str, int]] | None = None
        """The journal's failures so far, by kind (read at scrape time)."""

    def expect(self, config: Config) -> None:
        """Create at 0 the series ``config`` makes possible; drop the ones it no longer does.

        Per configured panel, each rule's action with the outcomes :func:`rule_outcomes`
        gives (``rejected`` with ``panel=""``, as it is counted); per action that runs,
        its duration histogram. Called at start and at every reload: a removed panel's
        series go, counts or not; a removed rule's series go while they are 0 (counts
        already made stay until restart, they are facts about the panel).
        """
        rconfig = config.remediator
        self.approval_timeout = rconfig.approval_timeout
        self._expect_actions(config.panels, rconfig.rules, dry_run=rconfig.dry_run)

    def _expect_actions(
        self, panels: Iterable[str], rules: Iterable[Rule], *, dry_run: bool
    ) -> None:
        names = set(panels)
        expected: set[tuple[str, str, str]] = set()
        timed: set[str] = set()
        for rule in rules:
            outcomes = rule_outcomes(rule, dry_run)
            expected.add(("", rule.action, "rejected"))
            expected.update((p, rule.action, o) for p in names for o in outcomes)
            if outcomes != ("dry_run",):
                timed.add(rule.action)
        for key, count in list(self.actions.items()):
            if (key[0] and key[0] not in names) or (count == 0 and key not in expected):
                del self.actions[key]
        for key in expected:
            self.actions.setdefault(key, 0)
        for action in list(self.duration_buckets):
            if action not in timed and not any(self.duration_buckets[action]):
                del self.duration_buckets[action]
                self.duration_sum.pop(action, None)
        for action in timed:
            self.duration_buckets.setdefault(action, [0] * len(DURATION_BUCKETS))
            self.duration_sum.setdefault(action, 0.0)

    def outcome(self, panel: str, action: str, outcome: str) -> None:
        self.actions[(panel, action, outcome)] += 1

    def duration(self, action: str, seconds: float) -> None:
        buckets = self.duration_buckets.setdefault(action, [0] * len(DURATION_BUCKETS))
        buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum[action] += seconds


def work_families(s: Stats) -> Iterator[Metric]:
    """Notifications received and actions by outcome, duration and in progress."""
    notes = CounterMetricFamily(
        "brainycp_remediator_notifications",
        "Webhook notifications received, by result.",
        labels=["result"],
    )
    for result, count in s.notifications.items():
        notes.add_metric([result], count)
    yield notes
    yield CounterMetricFamily(
        "brainycp_remediator_truncated_alerts",
        "Alerts Alertmanager left out of notifications (truncatedAlerts).",
        value=s.truncated_alerts,
    )
    actions = CounterMetricFamily(
        "brainycp_remediator_actions",
        "Actions by panel, action and outcome (counted when the outcome is known).",
        labels=["panel", "action", "outcome"],
    )
    for (panel, action, outcome), count in sorted(s.actions.items()):
        actions.add_metric([panel, action, outcome], count)
    yield actions
    hist = HistogramMetricFamily(
        "brainycp_remediator_action_duration_seconds",
        "Time an action took on the panel, from start to verified outcome.",
        labels=["action"],
    )
    for action, buckets in sorted(s.duration_buckets.items()):
        cumulative, running = [], 0
        for bound, count in zip(DURATION_BUCKETS, buckets, strict=True):
            running += count
            label = "+Inf" if bound == float("inf") else repr(bound)
            cumulative.append((label, running))
        hist.add_metric([action], cumulative, s.duration_sum[action])
    yield hist
    yield GaugeMetricFamily(
        "brainycp_remediator_actions_in_progress",
        "Actions running on panels right now.",
        value=s.in_progress,
    )


def journal_families(s: Stats) -> Iterator[Metric]:
    """The journal's health and what it holds: the brakes and approvals waiting."""
    yield GaugeMetricFamily(
        "brainycp_remediator_journal_up",
        "1 when the last journal read or write succeeded, 0 when the journal "
        "(SQLite file or PostgreSQL) could not be used; /healthz says why.",
        value=s.journal_up,
    )
    failures = CounterMetricFamily(
        "brainycp_remediator_journal_failures",
        "Journal reads and writes the database refused, and calls cut off because the "
        "database stopped answering, by kind (write, read, cut_off).",
        labels=["kind"],
    )
    for kind, count in (s.journal_failures() if s.journal_failures else {}).items():
        failures.add_metric([kind], count)
    yield failures
    # Read from the journal at scrape time; left out (not 0) when it cannot be read.
    controls = s.controls() if s.controls is not None else {}
    if controls:
        yield GaugeMetricFamily(
            "brainycp_remediator_paused",
            "1 while the remediator is paused (POST /pause), else 0.",
            value=int(bool(controls.get("paused", {}).get("value"))),
        )
        yield GaugeMetricFamily(
            "brainycp_remediator_circuit_open",
            "1 while the circuit breaker is open (until POST /resume), else 0.",
            value=int(bool(controls.get("circuit_open", {}).get("value"))),
        )
    awaiting = s.awaiting() if s.awaiting is not None else None
    if awaiting is not None:
        yield GaugeMetricFamily(
            "brainycp_remediator_actions_awaiting_approval",
            "Actions waiting for POST /actions/ID/approve or /deny.",
            value=awaiting,
        )
    oldest = s.oldest_awaiting() if s.oldest_awaiting is not None else None
    if oldest is not None:
        yield GaugeMetricFamily(
            "brainycp_remediator_oldest_approval_request_timestamp_seconds",
            "Unix time the oldest action still awaiting approval was requested; absent "
            "while none waits.",
            value=oldest,
        )
    yield GaugeMetricFamily(
        "brainycp_remediator_approval_timeout_seconds",
        "remediator.approval_timeout: an approval request older than this expires.",
        value=s.approval_timeout,
    )


def people_families(s: Stats) -> Iterator[Metric]:
    """Notifications sent to people, and the build."""
    sent = CounterMetricFamily(
        "brainycp_remediator_outbound_notifications",
        "Notifications to people (notify targets) by target and result: sent, retried "
        "(one per retry), failed (gave up), dropped (queue full).",
        labels=["target", "result"],
    )
    if s.notifier is not None:
        for (target, result), count in sorted(s.notifier.counts.items()):
            sent.add_metric([target, result], count)
    yield sent
    info = GaugeMetricFamily(
        "brainycp_remediator_build_info", "Remediator version.", labels=["version"]
    )
    info.add_metric([__version__], 1)
    yield info


class RemediatorCollector(Collector):
    """The remediator's series at each scrape, built by the plain functions above."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield from work_families(self.stats)
        yield from journal_families(self.stats)
        yield from people_families(self.stats)


def registry(stats: Stats) -> CollectorRegistry:
    """A registry holding only the remediator's collector (no process or GC metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RemediatorCollector(stats))
    return reg
