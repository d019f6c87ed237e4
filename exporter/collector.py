"""Metric families built from the last poll results; a scrape never calls a panel.

:func:`build_families` is a pure function of an :class:`~exporter.state.ExporterState` and
the current time. Values read from a panel are exported while their operation's last
success is at most ``max_staleness`` old; after that their series disappear, while
``brainycp_up``, ``brainycp_poll_*`` and the error counters stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from brainycp import __version__
from brainycp.queue import AGE_BUCKETS
from exporter.state import ExporterState, PanelState

_FROM_POLL = (
    ", as of the last successful {op} poll"
    " (its time is in brainycp_poll_last_success_timestamp_seconds)."
)


def _help(text: str, operation: str) -> str:
    return text + _FROM_POLL.format(op=operation)


_LE = tuple(floatToGoString(bound) for bound in AGE_BUCKETS)  # type: ignore[no-untyped-call]


def _fresh_list(panel: PanelState, now: float, max_staleness: float) -> bool:
    op = panel.operations.get("list_msg")
    return panel.summary is not None and op is not None and op.is_fresh(now, max_staleness)


def build_families(state: ExporterState, now: float, version: str = __version__) -> list[Metric]:
    """Every ``brainycp_*`` family for ``state`` at unix time ``now``; empty ones left out."""
    panels = [state.panels[name] for name in sorted(state.panels)]
    stale_after = state.max_staleness

    up = GaugeMetricFamily(
        "brainycp_up",
        "1 when the last count_msg poll of the panel succeeded, else 0.",
        labels=["panel"],
    )
    messages = GaugeMetricFamily(
        "brainycp_mail_queue_messages",
        _help("Messages in the mail queue", "count_msg"),
        labels=["panel"],
    )
    frozen = GaugeMetricFamily(
        "brainycp_mail_queue_frozen_messages",
        _help("Frozen messages in the mail queue (always 0 on Postfix)", "list_msg"),
        labels=["panel"],
    )
    bounces = GaugeMetricFamily(
        "brainycp_mail_queue_bounce_messages",
        _help("Queued bounces (null sender <>)", "list_msg"),
        labels=["panel"],
    )
    held = GaugeMetricFamily(
        "brainycp_mail_queue_held_messages",
        _help("Held messages in the mail queue (Postfix)", "list_msg"),
        labels=["panel"],
    )
    size = GaugeMetricFamily(
        "brainycp_mail_queue_size_bytes",
        _help("Total size of the queued messages in bytes", "list_msg"),
        labels=["panel"],
    )
    oldest = GaugeMetricFamily(
        "brainycp_mail_queue_oldest_message_age_seconds",
        _help(
            "Age of the oldest queued message in seconds (0 when the queue is empty)", "list_msg"
        ),
        labels=["panel"],
    )
    ages = GaugeHistogramMetricFamily(
        "brainycp_mail_queue_message_age_seconds",
        _help("Ages of the queued messages in seconds", "list_msg"),
        labels=["panel"],
    )
    senders = GaugeMetricFamily(
        "brainycp_mail_queue_sender_messages",
        _help(f"Queued messages of the {state.top_senders} senders with most of them", "list_msg"),
        labels=["panel", "sender"],
    )
    daemon_up = GaugeMetricFamily(
        "brainycp_mail_daemon_up",
        _help("1 when the daemon is running, 0 when it is stopped", "status"),
        labels=["panel", "daemon"],
    )
    daemon_unknown = GaugeMetricFamily(
        "brainycp_mail_daemon_status_unknown",
        _help(
            "1 when the status text matched neither the running nor the stopped patterns", "status"
        ),
        labels=["panel", "daemon"],
    )
    success = GaugeMetricFamily(
        "brainycp_poll_success",
        "1 when the last poll of this operation succeeded, else 0.",
        labels=["panel", "operation"],
    )
    duration = GaugeMetricFamily(
        "brainycp_poll_duration_seconds",
        "Duration of the last poll of this operation in seconds.",
        labels=["panel", "operation"],
    )
    last_success = GaugeMetricFamily(
        "brainycp_poll_last_success_timestamp_seconds",
        "Unix time of the last successful poll of this operation.",
        labels=["panel", "operation"],
    )
    errors = CounterMetricFamily(
        "brainycp_poll_errors",
        "Failed polls since the exporter started, by operation and reason.",
        labels=["panel", "operation", "reason"],
    )
    build = GaugeMetricFamily(
        "brainycp_exporter_build_info",
        "Always 1; the version label is the exporter's version.",
        labels=["version"],
    )
    build.add_metric([version], 1)

    for panel in panels:
        name = panel.name
        count_op = panel.operations.get("count_msg")
        if count_op is not None and count_op.attempted:
            up.add_metric([name], 1 if count_op.success else 0)
            if panel.queue_messages is not None and count_op.is_fresh(now, stale_after):
                messages.add_metric([name], panel.queue_messages)

        summary = panel.summary
        if summary is not None and _fresh_list(panel, now, stale_after):
            frozen.add_metric([name], summary.frozen)
            bounces.add_metric([name], summary.bounces)
            held.add_metric([name], summary.held)
            size.add_metric([name], summary.bytes)
            oldest.add_metric([name], summary.oldest_age_seconds or 0.0)
            ages.add_metric(
                [name],
                list(zip(_LE, (float(c) for c in summary.cumulative_buckets()), strict=True)),
                summary.age_sum_seconds,
            )
            if state.top_senders > 0:
                for sender, count in panel.top_senders:
                    senders.add_metric([name, sender], count)

        for daemon in panel.daemons:
            op = panel.operations.get(daemon)
            daemon_state = panel.daemon_states.get(daemon)
            if op is None or daemon_state is None or not op.is_fresh(now, stale_after):
                continue
            if daemon_state in ("running", "stopped"):
                daemon_up.add_metric([name, daemon], 1 if daemon_state == "running" else 0)
            daemon_unknown.add_metric([name, daemon], 1 if daemon_state == "unknown" else 0)

        for operation in panel.operation_names():
            op = panel.operations.get(operation)
            if op is None or not op.attempted:
                continue
            success.add_metric([name, operation], 1 if op.success else 0)
            duration.add_metric([name, operation], op.duration_seconds)
            if op.last_success is not None:
                last_success.add_metric([name, operation], op.last_success)
            for reason in sorted(op.errors):
                errors.add_metric([name, operation, reason], op.errors[reason])

    families: list[Metric] = [
        up,
        messages,
        frozen,
        bounces,
        held,
        size,
        oldest,
        ages,
        senders,
        daemon_up,
        daemon_unknown,
        success,
        duration,
        last_success,
        errors,
        build,
    ]
    return [family for family in families if family.samples]


class ExporterCollector(Collector):
    """A prometheus-client collector over the shared state; ``clock`` gives unix time."""

    def __init__(self, state: ExporterState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from build_families(self.state, self.clock())
