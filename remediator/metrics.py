"""The remediator's own metrics: plain counters kept in :class:`Stats`, exposed by a Collector.

``actions_total`` counts outcomes as they become known (skips, rejections and
dry runs at receipt, the rest when the action ends); ``pending``/``running``
are not counted there, ``actions_in_progress`` shows what is running now.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator
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

if TYPE_CHECKING:
    from remediator.notify import Notifier

NOTIFICATION_RESULTS = ("accepted", "unauthorized", "invalid", "journal_error")
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"))


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
        self.journal_up = 1
        self.journal_reason = ""
        """Why the journal is down (``""`` while it is up)."""
        self.journal_failures: Callable[[], dict[str, int]] | None = None
        """The journal's failures so far, by kind (read at scrape time)."""

    def journal_ok(self) -> None:
        self.journal_up, self.journal_reason = 1, ""

    def journal_down(self, reason: str) -> None:
        self.journal_up, self.journal_reason = 0, reason or "unreachable"

    def outcome(self, panel: str, action: str, outcome: str) -> None:
        self.actions[(panel, action, outcome)] += 1

    def duration(self, action: str, seconds: float) -> None:
        buckets = self.duration_buckets.setdefault(action, [0] * len(DURATION_BUCKETS))
        buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum[action] += seconds


class RemediatorCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
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


def registry(stats: Stats) -> CollectorRegistry:
    """A registry holding only the remediator's collector (no process or GC metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RemediatorCollector(stats))
    return reg
