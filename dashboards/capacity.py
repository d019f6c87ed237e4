"""The capacity dashboard: queue trends and forecasts from the recording rules."""

from __future__ import annotations

from grafana import (
    EXPORTER,
    PANEL,
    Json,
    Layout,
    bargauge,
    dashboard,
    target,
    timeseries,
    variables,
)


def capacity() -> Json:
    L = Layout()
    L.add(
        timeseries(
            "Queue growth per hour",
            "Change of each panel's queue per hour, fitted over the last hour (recording rule "
            "panel:brainycp_mail_queue_messages:deriv_per_hour). Above 0: growing.",
            [target(f"panel:brainycp_mail_queue_messages:deriv_per_hour{{{PANEL}}}", "{{panel}}")],
            "short",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Queue now and forecast",
            "Queue size now, its linear forecast 6 h and 24 h ahead (predict_linear over the "
            "recent trend), and the BrainyCPMailQueueHigh threshold.",
            [
                target(f"brainycp_mail_queue_messages{{{PANEL}}}", "{{panel}} now"),
                target(
                    f"panel:brainycp_mail_queue_messages:predict_linear_6h{{{PANEL}}}",
                    "{{panel}} in 6h",
                ),
                target(
                    f"panel:brainycp_mail_queue_messages:predict_linear_24h{{{PANEL}}}",
                    "{{panel}} in 24h",
                ),
                target(
                    f"max(job:brainycp_mail_queue_high_threshold:value{{{EXPORTER}}})", "threshold"
                ),
            ],
            "short",
        ),
        12,
        9,
    )
    L.add(
        bargauge(
            "Time until the queue-high threshold",
            "For each panel whose queue grows: how long until it crosses the "
            "BrainyCPMailQueueHigh threshold at the growth of the last hour "
            "(panel:brainycp_mail_queue_messages:seconds_to_high). Panels not growing are absent.",
            [
                target(
                    f"bottomk(20, panel:brainycp_mail_queue_messages:seconds_to_high{{{PANEL}}})",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "s",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 14400},
                {"color": "green", "value": 86400},
            ],
        ),
        12,
        10,
    )
    L.add(
        bargauge(
            "Share of the fleet queue",
            "Each panel's part of all queued messages of its exporter job "
            "(panel:brainycp_mail_queue_messages:fleet_ratio).",
            [
                target(
                    f"topk(15, panel:brainycp_mail_queue_messages:fleet_ratio{{{PANEL}}})",
                    "{{panel}}",
                    instant=True,
                )
            ],
            "percentunit",
        ),
        12,
        10,
    )
    L.add(
        timeseries(
            "Fleet queue and 24 h forecast",
            "All queued messages of the exporter job and the sum of the per-panel 24 h forecasts.",
            [
                target(f"sum(job:brainycp_mail_queue_messages:sum{{{EXPORTER}}})", "queued"),
                target(
                    f"sum(panel:brainycp_mail_queue_messages:predict_linear_24h{{{EXPORTER}}})",
                    "forecast in 24h",
                ),
                target(f"sum(job:brainycp_mail_queue_frozen_messages:sum{{{EXPORTER}}})", "frozen"),
            ],
            "short",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Queue bytes growth per hour",
            "Change of the queued bytes per hour over the last hour: disk the queue will need.",
            [target(f"deriv(brainycp_mail_queue_size_bytes{{{PANEL}}}[1h]) * 3600", "{{panel}}")],
            "bytes",
        ),
        12,
        9,
    )
    return dashboard(
        "brainycp-mail-capacity",
        "BrainyCP mail / Capacity",
        "Queue trends and forecasts from the brainycp-mail recording rules "
        "(alerts/brainycp-mail.rules.yml must be loaded): growth, forecast, time until the "
        "queue-high threshold.",
        L,
        variables(remediator=False),
        time_from="now-24h",
    )
