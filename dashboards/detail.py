"""The panel dashboard: one panel (or a few) in detail."""

from __future__ import annotations

from grafana import (
    ACTIONS,
    DAEMON_MAPPINGS,
    DATASOURCE,
    PANEL,
    QUEUE_COUNTS,
    REMEDIATOR_PANEL,
    Json,
    Layout,
    dashboard,
    increases,
    layout,
    panel,
    series_table,
    state_timeline,
    target,
    timeseries,
    value_map,
    variables,
)


def panel_detail() -> Json:
    """The panel dashboard."""
    return dashboard(
        "brainycp-mail-panel",
        "BrainyCP mail / Panel",
        "One panel (or a few) in detail: queue over time, message ages, senders, recipient "
        "domains and deferral reasons, daemons, polls, and the remediator's actions as "
        "annotations.",
        layout(queue, senders_and_reasons, daemons_and_polls),
        variables(),
        annotations=[actions_annotation()],
    )


def queue(L: Layout) -> None:
    """The queue's size and ages."""
    L.row("Queue")
    L.add(
        timeseries(
            "Queued, frozen, bounce and held messages",
            "The mail queue of each selected panel, from the exporter's last polls. Frozen, "
            "bounce and held counts come from list_msg (every list_interval).",
            [
                target(f"brainycp_mail_queue_{count}{{{PANEL}}}", f"{{{{panel}}}} {legend}")
                for count, legend in QUEUE_COUNTS
            ],
            "short",
        ),
        16,
        9,
    )
    L.add(
        timeseries(
            "Queue size",
            "Total size of the queued messages.",
            [target(f"brainycp_mail_queue_size_bytes{{{PANEL}}}", "{{panel}}")],
            "bytes",
        ),
        8,
        9,
    )
    L.add(
        panel(
            "heatmap",
            "Message age",
            "How many queued messages fall in each age bucket (gauge histogram "
            "brainycp_mail_queue_message_age_seconds; buckets 5m to 7d). Warm cells high up "
            "mean old mail stuck in the queue.",
            [
                target(
                    f"sum by (le) (brainycp_mail_queue_message_age_seconds_bucket{{{PANEL}}})",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            "short",
            options={
                "calculate": False,
                "yAxis": {"axisPlacement": "left", "unit": "s", "reverse": False},
                "rowsFrame": {"layout": "auto"},
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "cellGap": 1,
                "tooltip": {"show": True, "yHistogram": False},
                "legend": {"show": True},
            },
            extra={"interval": "1m"},
        ),
        16,
        9,
    )
    L.add(
        timeseries(
            "Oldest message age",
            "Age of the oldest queued message (0 when the queue is empty).",
            [target(f"brainycp_mail_queue_oldest_message_age_seconds{{{PANEL}}}", "{{panel}}")],
            "s",
        ),
        8,
        9,
    )


def senders_and_reasons(L: Layout) -> None:
    """Who fills the queue and why mail stays, and what the remediator did about it."""
    L.row("Senders, domains and reasons")
    L.add(
        series_table(
            "Top senders",
            "Senders with the most queued messages (needs exporter.top_senders > 0; "
            "<> is the bounce sender).",
            f"topk(20, brainycp_mail_queue_sender_messages{{{PANEL}}})",
        ),
        8,
        9,
    )
    L.add(
        series_table(
            "Top recipient domains",
            "Recipient domains with the most queued messages (needs "
            "exporter.top_recipient_domains > 0; a message counts once per domain it has a "
            "pending recipient in).",
            f"topk(20, brainycp_mail_queue_recipient_domain_messages{{{PANEL}}})",
        ),
        8,
        9,
    )
    L.add(
        timeseries(
            "Deferral reasons",
            "Queued messages with a deferred recipient, by class of reason (Postfix panels; "
            "Exim listings show no reasons).",
            [
                target(
                    f"brainycp_mail_queue_deferral_reason_messages{{{PANEL}}}",
                    "{{panel}} {{reason}}",
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        timeseries(
            "Unparsed listing lines",
            "Lines (or objects) of the last listing the parser could not read: the counts "
            "are short by what they held. Not 0 for long: see the runbook of "
            "BrainyCPMailQueueUnparsedLines.",
            [target(f"brainycp_mail_queue_unparsed_lines{{{PANEL}}}", "{{panel}}")],
            "short",
        ),
        12,
        9,
    )
    L.add(
        increases(
            "Remediation actions",
            "Actions the remediator ran on the selected panels, by action and outcome.",
            "panel, action, outcome",
            f"{ACTIONS}{{{REMEDIATOR_PANEL}}}",
            "{{panel}} {{action}} {{outcome}}",
        ),
        12,
        9,
    )


def daemons_and_polls(L: Layout) -> None:
    """The daemons' status and the exporter's polls."""
    L.row("Daemons and polls")
    L.add(
        state_timeline(
            "Daemon status",
            "ClamAV and SpamAssassin over time: running (green), stopped (red); gaps mean the "
            "status could not be read or classified.",
            [target(f"brainycp_mail_daemon_up{{{PANEL}}}", "{{panel}} {{daemon}}")],
            "none",
            mappings=DAEMON_MAPPINGS,
        ),
        24,
        7,
    )
    L.add(
        state_timeline(
            "Poll success",
            "The last poll of each operation over time: ok (green), failed (red; Poll errors "
            "below says why).",
            [target(f"brainycp_poll_success{{{PANEL}}}", "{{panel}} {{operation}}")],
            "none",
            mappings=[value_map({"0": ("failed", "red"), "1": ("ok", "green")})],
        ),
        24,
        7,
    )
    L.add(
        timeseries(
            "Poll duration",
            "How long the last poll of each operation took (list_msg includes parsing).",
            [target(f"brainycp_poll_duration_seconds{{{PANEL}}}", "{{panel}} {{operation}}")],
            "s",
        ),
        8,
        8,
    )
    L.add(
        increases(
            "Poll errors",
            "Failed polls by operation and reason (timeout, connect, auth, permission, ...).",
            "panel, operation, reason",
            f"brainycp_poll_errors_total{{{PANEL}}}",
            "{{panel}} {{operation}} {{reason}}",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Time since last successful poll",
            "Age of the values each operation feeds; it grows while a poll keeps failing.",
            [
                target(
                    f"time() - brainycp_poll_last_success_timestamp_seconds{{{PANEL}}}",
                    "{{panel}} {{operation}}",
                )
            ],
            "s",
        ),
        8,
        8,
    )


def actions_annotation() -> Json:
    """The remediator's actions as annotations on every time panel."""
    actions = f"{ACTIONS}{{{REMEDIATOR_PANEL}}}"
    return {
        "name": "Remediation actions",
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "orange",
        # Skips appear with their first count, which increase() misses; the
        # `unless ... offset` part catches such a new series (not those born at 0).
        "expr": f"(increase({actions}[$__interval]) > 0) or "
        f"(({actions} unless {actions} offset $__interval) > 0)",
        "step": "1m",
        "titleFormat": "{{action}} {{outcome}}",
        "textFormat": "{{panel}}",
        "tagKeys": "panel,action,outcome",
        "useValueForTime": False,
    }
