"""Shared test helpers moved out of test_exporter_golden.py, so that no test imports another."""

from __future__ import annotations

from typing import Any

from brainycp.queue import ReadOptions, read_listing
from exporter.collector import render_bytes
from exporter.state import ExporterState, PanelState
from tests.support import FIXTURES

# 2026-11-25 06:45:00 UTC, a few minutes after the fixtures were captured.
NOW = 1_795_675_500.0
# When the panels entered the config (their counters' OpenMetrics _created).
CONFIGURED = NOW - 3600


def render_text(state: ExporterState, now: float, **options: Any) -> str:
    """What ``/metrics`` serves for ``state`` (:func:`exporter.collector.render_bytes`), as text."""
    return render_bytes(state, now, **options).decode("utf-8")


def _listed(name: str, fixture: str, daemons: dict[str, str], top: int) -> PanelState:
    detail = (FIXTURES / fixture).read_text()
    panel = PanelState(name=name, daemons=tuple(daemons), created=CONFIGURED)
    reading = read_listing(detail, NOW, options=ReadOptions(top, top))
    panel.record_success("count_msg", NOW - 20, 0.031)
    panel.queue_messages = reading.summary.messages
    panel.record_success("list_msg", NOW - 20, 0.112)
    panel.summary = reading.summary
    panel.top_senders, panel.top_recipient_domains = (
        reading.top_senders,
        reading.top_recipient_domains,
    )
    for daemon, state in daemons.items():
        panel.record_success(daemon, NOW - 20, 0.029)
        panel.daemon_states[daemon] = state
    return panel


def exim_and_postfix(top: int = 0) -> ExporterState:
    exim = _listed("exim01", "exim-bp.txt", {"clamav": "running", "spamassassin": "unknown"}, top)
    postfix = _listed("mx01", "postfix-mailq.txt", {"clamav": "stopped"}, top)
    return ExporterState.for_panels(
        [exim, postfix], max_staleness=600, top_senders=top, top_recipient_domains=top
    )
