"""The fleet dashboard: every panel at a glance, the outbreak views, the remediator."""

from __future__ import annotations

from grafana import (
    ACTIONS,
    DAEMON_MAPPINGS,
    EXPORTER,
    GREEN_RED,
    PANEL,
    REMEDIATOR,
    REMEDIATOR_PANEL,
    Json,
    Layout,
    bargauge,
    dashboard,
    stat,
    table,
    target,
    timeseries,
    variables,
)


def fleet() -> Json:
    L = Layout()
    L.row("Fleet")
    L.add(
        stat(
            "Panels up",
            "Panels whose last count_msg poll succeeded (brainycp_up = 1).",
            [target(f"sum(brainycp_up{{{EXPORTER}}})", "up")],
            "none",
            thresholds=[{"color": "green", "value": None}],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Panels down",
            "Panels whose last count_msg poll failed: their queue values are unknown.",
            [target(f"count(brainycp_up{{{EXPORTER}}} == 0) or vector(0)", "down")],
            "none",
            thresholds=GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Queued messages",
            "Messages in the mail queues of all selected panels (last poll of each).",
            [target(f"sum(brainycp_mail_queue_messages{{{PANEL}}})", "queued")],
            "short",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Frozen messages",
            "Frozen messages in the Exim queues of all selected panels.",
            [target(f"sum(brainycp_mail_queue_frozen_messages{{{PANEL}}})", "frozen")],
            "short",
            thresholds=GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Queued bounces",
            "Bounces (sender <>) in the queues of all selected panels.",
            [target(f"sum(brainycp_mail_queue_bounce_messages{{{PANEL}}})", "bounces")],
            "short",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Daemons stopped",
            "ClamAV and SpamAssassin instances whose status reads stopped.",
            [target(f"count(brainycp_mail_daemon_up{{{PANEL}}} == 0) or vector(0)", "stopped")],
            "none",
            thresholds=GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        timeseries(
            "Fleet queue",
            "Queued, frozen, bounce and held messages summed over the selected panels.",
            [
                target(f"sum(brainycp_mail_queue_messages{{{PANEL}}})", "queued"),
                target(f"sum(brainycp_mail_queue_frozen_messages{{{PANEL}}})", "frozen"),
                target(f"sum(brainycp_mail_queue_bounce_messages{{{PANEL}}})", "bounces"),
                target(f"sum(brainycp_mail_queue_held_messages{{{PANEL}}})", "held"),
            ],
            "short",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Panels up over time",
            "Panels answering the exporter, against all configured panels.",
            [
                target(f"sum(brainycp_up{{{EXPORTER}}})", "up"),
                target(f"count(brainycp_up{{{EXPORTER}}})", "configured"),
            ],
            "none",
        ),
        12,
        8,
    )
    L.row("Top panels")
    L.add(
        bargauge(
            "Top panels by queued messages",
            "The 10 selected panels with the largest mail queue right now.",
            [
                target(
                    f"topk(10, brainycp_mail_queue_messages{{{PANEL}}})", "{{panel}}", instant=True
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        bargauge(
            "Top panels by frozen messages",
            "The 10 selected panels with the most frozen messages right now.",
            [
                target(
                    f"topk(10, brainycp_mail_queue_frozen_messages{{{PANEL}}} > 0)",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        bargauge(
            "Top panels by queue growth",
            "Queue growth per hour over the last hour (recording rule "
            "panel:brainycp_mail_queue_messages:deriv_per_hour), 10 fastest-growing panels.",
            [
                target(
                    f"topk(10, panel:brainycp_mail_queue_messages:deriv_per_hour{{{PANEL}}} > 0)",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "short",
        ),
        8,
        9,
    )
    L.add(
        table(
            "Daemon status",
            "ClamAV and SpamAssassin per panel: running, stopped, or unknown (the status text "
            "matched neither pattern), and whether the panel answers at all.",
            [
                target(f"brainycp_mail_daemon_up{{{PANEL}}}", instant=True, fmt="table"),
                target(
                    f"brainycp_mail_daemon_status_unknown{{{PANEL}}}", instant=True, fmt="table"
                ),
            ],
            "none",
            mappings=DAEMON_MAPPINGS,
            transformations=[
                {
                    "id": "joinByField",
                    "options": {"byField": "daemon", "mode": "outer"},
                },
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "__name__": True},
                        "renameByName": {"Value #A": "running", "Value #B": "unknown"},
                    },
                },
            ],
        ),
        12,
        9,
    )
    L.add(
        table(
            "Poll errors by reason",
            "Failed polls over the selected time range, by panel, operation and reason.",
            [
                target(
                    "sum by (panel, operation, reason) (increase(brainycp_poll_errors_total"
                    f"{{{PANEL}}}[$__range])) > 0",
                    instant=True,
                    fmt="table",
                )
            ],
            "short",
        ),
        12,
        9,
    )
    L.row("Remediation")
    L.add(
        timeseries(
            "Remediation actions by outcome",
            "Actions the remediator finished (or skipped), by outcome.",
            [
                target(
                    f"sum by (outcome) (increase({ACTIONS}{{{REMEDIATOR_PANEL}}}"
                    "[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            "short",
            extra={"interval": "1m"},
        ),
        12,
        8,
    )
    L.add(
        table(
            "Remediation actions in range",
            "Actions per panel, action and outcome over the selected time range.",
            [
                target(
                    f"sum by (panel, action, outcome) (increase({ACTIONS}{{{REMEDIATOR_PANEL}}}"
                    "[$__range])) > 0",
                    instant=True,
                    fmt="table",
                )
            ],
            "short",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Webhook notifications",
            "Alertmanager notifications the remediator received, by result "
            "(accepted, unauthorized, invalid, journal_error).",
            [
                target(
                    "sum by (result) (rate(brainycp_remediator_notifications_total"
                    f"{{{REMEDIATOR}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            "reqps",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Actions in progress",
            "Actions running on panels right now.",
            [target(f"sum(brainycp_remediator_actions_in_progress{{{REMEDIATOR}}})", "running")],
            "none",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Action duration (p90)",
            "90th percentile of the time an action took, start to verified outcome.",
            [
                target(
                    "histogram_quantile(0.9, sum by (action, le) (rate("
                    f"brainycp_remediator_action_duration_seconds_bucket{{{REMEDIATOR}}}"
                    "[$__rate_interval])))",
                    "{{action}}",
                )
            ],
            "s",
        ),
        8,
        8,
    )
    return dashboard(
        "brainycp-mail-fleet",
        "BrainyCP mail / Fleet",
        "All BrainyCP panels: which answer, how full their mail queues are, which daemons "
        "are stopped, and what the remediator did.",
        L,
        variables(),
    )
