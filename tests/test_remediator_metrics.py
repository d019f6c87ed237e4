"""The remediator's metrics in process: which series exist before their first event, how a
reload changes them, and the approval gauges. No sockets: the app over an ASGI transport."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from remediator.app import Remediator
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import Config, parse_config
from tests.remediator_support import am_alert, notification

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

RULES: list[dict[str, Any]] = [
    {"name": "clean-frozen", "matchers": ['alertname="Frozen"'], "action": "delete_frozen"},
    {
        "name": "restart-clamav",
        "matchers": ['alertname="ClamAVDown"'],
        "action": "restart_service",
        "daemon": "clamav",
    },
    {
        "name": "contain-sender",
        "matchers": ['alertname="Surge"'],
        "action": "delete_messages",
        "select": {"sender": "{{ labels.sender }}"},
        "approval": "required",
    },
    {
        "name": "preview-bounces",
        "matchers": ['alertname="Bounces"'],
        "action": "reship_messages",
        "select": {"sender": "<>"},
        "dry_run": True,
    },
]


def config(tmp_path: Path, panels: tuple[str, ...], rules: list[dict[str, Any]]) -> Config:
    return parse_config(
        {
            "panels": {
                name: {"url": "http://127.0.0.1:9", "username": "a", "password_env": "HOME"}
                for name in panels
            },
            "remediator": {
                "insecure_no_auth": True,
                "state_file": str(tmp_path / "journal.sqlite"),
                "approval_timeout": "30m",
                "rules": rules,
            },
        }
    )


def remediator(cfg: Config) -> Remediator:
    journal = Journal(cfg.remediator.state_file)
    stats = Stats()
    runner = Runner(journal, cfg.panels, {}, stats, max_concurrent=1, action_timeout=5)
    return Remediator(cfg, journal, runner, stats)


def scrape(rem: Remediator) -> Samples:
    text = generate_latest(rem.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def actions(samples: Samples) -> dict[tuple[str, str, str], float]:
    return {
        (d["panel"], d["action"], d["outcome"]): v
        for (name, labels), v in samples.items()
        if name == "brainycp_remediator_actions_total"
        for d in [dict(labels)]
    }


def test_the_outcomes_of_configured_rules_exist_at_zero_for_every_panel(tmp_path: Path) -> None:
    samples = scrape(remediator(config(tmp_path, ("web01", "web02"), RULES)))
    runs = ("succeeded", "failed", "unverified")
    expected = {
        # Idempotent actions resume after a restart: never interrupted.
        *((p, "delete_frozen", o) for p in ("web01", "web02") for o in runs),
        *((p, "restart_service", o) for p in ("web01", "web02") for o in runs),
        *(
            (p, "delete_messages", o)
            for p in ("web01", "web02")
            for o in (*runs, "interrupted", "denied", "expired")
        ),
        # A dry-run rule only ever previews.
        *((p, "reship_messages", "dry_run") for p in ("web01", "web02")),
        # An alert for a panel that is not configured is counted with panel="".
        *(("", a, "rejected") for a in ("delete_frozen", "restart_service", "delete_messages")),
        ("", "reship_messages", "rejected"),
    }
    assert actions(samples) == dict.fromkeys(expected, 0.0)
    durations = {
        dict(labels)["action"]
        for (name, labels), v in samples.items()
        if name == "brainycp_remediator_action_duration_seconds_count" and v == 0
    }
    # Every action that runs has its histogram at 0, so a first action has a rate().
    assert durations == {"delete_frozen", "restart_service", "delete_messages"}
    assert samples[("brainycp_remediator_approval_timeout_seconds", ())] == 1800


def test_a_reload_drops_a_removed_panels_and_rules_series_and_adds_new_ones_at_zero(
    tmp_path: Path,
) -> None:
    rem = remediator(config(tmp_path, ("web01", "web02"), RULES))
    rem.stats.outcome("web01", "delete_frozen", "succeeded")
    rem.stats.outcome("web02", "delete_frozen", "succeeded")
    rem.stats.outcome("web01", "delete_frozen", "skipped_cooldown")
    # web02 leaves, web03 comes; the restart rule goes, a stop rule comes.
    rules = [r for r in RULES if r["name"] != "restart-clamav"]
    stop = {"name": "stop-spamd", "matchers": ['alertname="S"'], "action": "stop_service"}
    rules.append({**stop, "daemon": "spamassassin"})
    rem.reconfigure(config(tmp_path, ("web01", "web03"), rules))
    after = actions(scrape(rem))
    assert not any(panel == "web02" for panel, _, _ in after), "a removed panel's series stay"
    assert not any(action == "restart_service" for _, action, _ in after)
    # Counts already made for a configured panel stay: they are facts about the panel.
    assert after[("web01", "delete_frozen", "succeeded")] == 1
    assert after[("web01", "delete_frozen", "skipped_cooldown")] == 1
    assert after[("web03", "delete_frozen", "succeeded")] == 0
    assert after[("web03", "stop_service", "failed")] == 0
    assert after[("", "stop_service", "rejected")] == 0
    assert ("", "restart_service", "rejected") not in after


def test_an_approval_request_shows_when_it_was_made(tmp_path: Path) -> None:
    rem = remediator(config(tmp_path, ("web01",), RULES))

    async def exchange() -> tuple[str, httpx.Response, str]:
        # Through the app: its /metrics reads the journal's gauges before the collector runs.
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = (await client.get("/metrics")).text
            body = notification(am_alert("Surge", "web01", sender="spam@example.org"))
            answer = await client.post("/webhook", json=body)
            return before, answer, (await client.get("/metrics")).text

    before, answer, after = asyncio.run(exchange())
    assert "brainycp_remediator_oldest_approval_request_timestamp_seconds" not in before
    assert answer.json()["results"][0]["outcome"] == "awaiting_approval"
    row = rem.journal.list(outcome="awaiting_approval")[0]
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(after)
        for s in family.samples
        if not s.labels
    }
    assert samples["brainycp_remediator_actions_awaiting_approval"] == 1
    assert samples["brainycp_remediator_oldest_approval_request_timestamp_seconds"] == (
        row.received_at
    )
