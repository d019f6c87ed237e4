"""The fleet dashboard: every panel at a glance, the outbreak views, the remediator."""

from __future__ import annotations

from grafana import (
    ACTIONS,
    DAEMON_MAPPINGS,
    EXPORTER,
    GREEN_RED,
    PANEL,
    QUEUE_COUNTS,
    REMEDIATOR,
    REMEDIATOR_PANEL,
    Json,
    Layout,
    bargauge,
    dashboard,
    flag,
    increases,
    layout,
    queue_total,
    series_table,
    stat,
    table,
    target,
    timeseries,
    variables,
    zeros,
)


def fleet() -> Json:
    """The fleet dashboard."""
    return dashboard(
        "brainycp-mail-fleet",
        "BrainyCP mail / Fleet",
        "All BrainyCP panels: which answer, how full their mail queues are, who fills them "
        "and why mail stays, which daemons are stopped, and what the remediator did and "
        "whether its brakes are on.",
        layout(overview, brakes, outbreak, top_panels, polls, remediation),
        variables(),
    )


def overview(L: Layout) -> None:
    """Counts of the whole fleet."""
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
        zeros(
            "Panels down",
            "Panels whose last count_msg poll failed: their queue values are unknown.",
            f"brainycp_up{{{EXPORTER}}}",
            "down",
        ),
        4,
        4,
    )
    L.add(
        queue_total(
            "Queued messages",
            "Messages in the mail queues of all selected panels (last poll of each).",
            "messages",
            "queued",
        ),
        4,
        4,
    )
    L.add(
        queue_total(
            "Frozen messages",
            "Frozen messages in the Exim queues of all selected panels.",
            "frozen_messages",
            "frozen",
            GREEN_RED,
        ),
        4,
        4,
    )
    L.add(
        queue_total(
            "Queued bounces",
            "Bounces (sender <>) in the queues of all selected panels.",
            "bounce_messages",
            "bounces",
        ),
        4,
        4,
    )
    L.add(
        zeros(
            "Daemons stopped",
            "ClamAV and SpamAssassin instances whose status reads stopped.",
            f"brainycp_mail_daemon_up{{{PANEL}}}",
            "stopped",
        ),
        4,
        4,
    )
    L.add(
        timeseries(
            "Fleet queue",
            "Queued, frozen, bounce and held messages summed over the selected panels.",
            [
                target(f"sum(brainycp_mail_queue_{count}{{{PANEL}}})", legend)
                for count, legend in QUEUE_COUNTS
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


def top_panels(L: Layout) -> None:
    """The panels that stand out, and the daemons."""
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
        24,
        9,
    )


def remediation(L: Layout) -> None:
    """What the remediator did."""
    L.row("Remediation")
    L.add(
        increases(
            "Remediation actions by outcome",
            "Actions the remediator finished (or skipped), by outcome.",
            "outcome",
            f"{ACTIONS}{{{REMEDIATOR_PANEL}}}",
            "{{outcome}}",
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
            "90th percentile of the time an action took, start to verified outcome, for "
            "the actions that ran in the window.",
            [
                target(
                    "histogram_quantile(0.9, sum by (action, le) (rate("
                    f"brainycp_remediator_action_duration_seconds_bucket{{{REMEDIATOR}}}"
                    "[$__rate_interval]))\n"
                    # Actions that did not run in the window have no quantile (NaN).
                    "  and on(action) sum by (action) (rate("
                    f"brainycp_remediator_action_duration_seconds_count{{{REMEDIATOR}}}"
                    "[$__rate_interval])) > 0)",
                    "{{action}}",
                )
            ],
            "s",
        ),
        8,
        8,
    )
    L.add(
        increases(
            "Journal failures",
            "Journal reads and writes the database refused, and calls cut off because it "
            "stopped answering, by kind (BrainyCPRemediatorJournalDown fires while it is down).",
            "kind",
            f"brainycp_remediator_journal_failures_total{{{REMEDIATOR}}}",
            "{{kind}}",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Refused requests",
            "Requests to the exporters and remediators refused for wrong credentials (not "
            "/webhook: Webhook notifications has those) or sent by a browser from another "
            "site. Many: a client with an old password or token, or someone guessing.",
            [
                target(
                    "sum by (job) (increase({__name__=~"
                    '"brainycp_(exporter|remediator)_http_auth_failures_total",'
                    ' job=~"$job|$remediator_job"}[$__rate_interval]))',
                    "{{job}} wrong credentials",
                ),
                target(
                    "sum by (job) (increase(brainycp_http_cross_origin_refused_total"
                    '{job=~"$job|$remediator_job"}[$__rate_interval]))',
                    "{{job}} cross-site",
                ),
            ],
            "short",
            extra={"interval": "1m"},
        ),
        12,
        8,
    )
    L.add(
        increases(
            "Notifications to people",
            "Approval requests and action reports sent to the notify targets, by target and "
            "result: sent, retried (one per retry), failed (gave up), dropped (queue full).",
            "target, result",
            f"brainycp_remediator_outbound_notifications_total{{{REMEDIATOR}}}",
            "{{target}} {{result}}",
        ),
        24,
        8,
    )


def brakes(L: Layout) -> None:
    """The remediator's brakes and its own health: what stops remediation."""
    L.row("Remediation brakes")
    L.add(
        flag(
            "Remediator paused",
            "1 while someone paused the remediator (POST /pause): every remediated alert is "
            "skipped_paused until POST /resume.",
            f"max(brainycp_remediator_paused{{{REMEDIATOR}}})",
            "paused",
            ("running", "green"),
            ("paused", "orange"),
        ),
        4,
        4,
    )
    L.add(
        flag(
            "Circuit breaker",
            "Open when actions were about to start on too many panels at once: no action "
            "starts until someone checks the fleet and sends POST /resume.",
            f"max(brainycp_remediator_circuit_open{{{REMEDIATOR}}})",
            "open",
            ("closed", "green"),
            ("open", "red"),
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Awaiting approval",
            "Actions waiting for a person: POST /actions/ID/approve or /deny (or the console).",
            [
                target(
                    f"max(brainycp_remediator_actions_awaiting_approval{{{REMEDIATOR}}})",
                    "awaiting",
                )
            ],
            "none",
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Next approval expires in",
            "Time until the oldest request awaiting approval expires (approval_timeout); "
            "empty while none waits.",
            [
                target(
                    "min(brainycp_remediator_oldest_approval_request_timestamp_seconds"
                    f"{{{REMEDIATOR}}}\n  + brainycp_remediator_approval_timeout_seconds"
                    f"{{{REMEDIATOR}}}) - time()",
                    "expires in",
                )
            ],
            "s",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 600},
                {"color": "green", "value": 1800},
            ],
        ),
        4,
        4,
    )
    L.add(
        flag(
            "Journal",
            "Whether each remediator can read and write its journal; down, every webhook "
            "is answered 503 and no action starts.",
            f"min(brainycp_remediator_journal_up{{{REMEDIATOR}}})",
            "journal",
            ("down", "red"),
            ("up", "green"),
        ),
        4,
        4,
    )
    L.add(
        zeros(
            "Config reloads failing",
            "Exporters and remediators whose last config reload was refused: they run "
            "with their old config (their log names the problem).",
            'brainycp_config_last_reload_successful{job=~"$job|$remediator_job"}',
            "failing",
        ),
        4,
        4,
    )


def outbreak(L: Layout) -> None:
    """Who fills the queues and why mail stays: what an operator reads in an outbreak."""
    L.row("Outbreak")
    L.add(
        series_table(
            "Top senders",
            "The senders with most queued messages on any selected panel (needs "
            "exporter.top_senders > 0; <> is the bounce sender). One mailbox far ahead of "
            "the rest is a compromised account or script.",
            f"topk(20, brainycp_mail_queue_sender_messages{{{PANEL}}})",
        ),
        8,
        10,
    )
    L.add(
        bargauge(
            "Top recipient domains",
            "Queued messages per recipient domain, summed over the selected panels (needs "
            "exporter.top_recipient_domains > 0): a domain that refuses or delays mail.",
            [
                target(
                    "topk(15, sum by (domain) (brainycp_mail_queue_recipient_domain_messages"
                    f"{{{PANEL}}}))",
                    "{{domain}}",
                    instant=True,
                )
            ],
            "short",
        ),
        8,
        10,
    )
    L.add(
        timeseries(
            "Deferral reasons",
            "Queued messages with a deferred recipient, by class of reason, over the "
            "selected Postfix panels (Exim listings show no reasons). A rise of "
            "blocklisted means the fleet's address is on a blocklist.",
            [
                target(
                    f"sum by (reason) (brainycp_mail_queue_deferral_reason_messages{{{PANEL}}})",
                    "{{reason}}",
                )
            ],
            "short",
        ),
        8,
        10,
    )


def polls(L: Layout) -> None:
    """Whether the exporter can read the panels."""
    L.row("Polls")
    L.add(
        timeseries(
            "Poll success by operation",
            "Share of the selected panels whose last poll of each operation succeeded.",
            [
                target(
                    f"avg by (operation) (brainycp_poll_success{{{PANEL}}})",
                    "{{operation}}",
                )
            ],
            "percentunit",
        ),
        8,
        9,
    )
    L.add(
        bargauge(
            "Panels with unparsed listing lines",
            "Lines of the last listing the parser could not read, 10 panels with most; "
            "their counts are short by what those lines held (runbook "
            "BrainyCPMailQueueUnparsedLines).",
            [
                target(
                    f"topk(10, brainycp_mail_queue_unparsed_lines{{{PANEL}}} > 0)",
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
        8,
        9,
    )
