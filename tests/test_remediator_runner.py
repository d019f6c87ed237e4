"""The background runner: per-panel serialisation, the global ceiling, timeouts, cancellation."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from pydantic import SecretStr

from brainycp.config import PanelConfig, Rule, StatusPatterns
from remediator import actions
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner

RULE = Rule.model_validate({"name": "r", "matchers": ['alertname="X"'], "action": "delete_frozen"})


def panel(name: str) -> PanelConfig:
    return PanelConfig(
        name, "http://127.0.0.1:9/api/api.php", "a", SecretStr("p"), True, 1.0, 1000,
        ("clamav",), StatusPatterns(), None, None,
    )  # fmt: skip


def pending(journal: Journal, panel_name: str, n: int) -> int:
    return journal.insert(
        rule="r", panel=panel_name, action="delete_frozen", outcome="pending", reason="",
        received_at=float(n), alertname="X", fingerprint="f", starts_at=str(n),
        alert_status="firing", labels={}, dedupe_key=str(n),
    )  # fmt: skip


def test_one_action_per_panel_at_a_time_and_a_global_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running: Counter[str] = Counter()
    peak_per_panel: Counter[str] = Counter()
    peak_total = 0

    async def fake_run(client: object, rule: Rule) -> actions.Outcome:
        nonlocal peak_total
        name = client.panel.name  # type: ignore[attr-defined]
        running[name] += 1
        peak_per_panel[name] = max(peak_per_panel[name], running[name])
        peak_total = max(peak_total, sum(running.values()))
        await asyncio.sleep(0.01)
        running[name] -= 1
        return actions.Outcome("succeeded", "ok")

    monkeypatch.setattr(actions, "run", fake_run)

    async def scenario() -> Journal:
        journal = Journal(":memory:")
        names = ["a", "b", "c", "d"]
        runner = Runner(
            journal, {n: panel(n) for n in names}, {}, Stats(), max_concurrent=2, action_timeout=5
        )
        for i in range(12):
            name = names[i % 4]
            runner.submit(pending(journal, name, i), RULE, name, "X")
        await runner.idle()
        await runner.close()
        return journal

    journal = asyncio.run(scenario())
    assert max(peak_per_panel.values()) == 1
    assert peak_total == 2
    assert {r.outcome for r in journal.list()} == {"succeeded"}


def test_action_timeout_fails_the_action(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(client: object, rule: Rule) -> actions.Outcome:
        await asyncio.sleep(10)
        return actions.Outcome("succeeded", "")

    monkeypatch.setattr(actions, "run", slow)

    async def scenario() -> Journal:
        journal = Journal(":memory:")
        stats = Stats()
        runner = Runner(
            journal, {"a": panel("a")}, {}, stats, max_concurrent=1, action_timeout=0.05
        )
        runner.submit(pending(journal, "a", 1), RULE, "a", "X")
        await runner.idle()
        await runner.close()
        assert stats.actions[("a", "delete_frozen", "failed")] == 1
        assert stats.in_progress == 0
        return journal

    (row,) = asyncio.run(scenario()).list()
    assert row.outcome == "failed" and row.reason.startswith("timeout")


def test_a_cancelled_row_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    async def fake_run(client: object, rule: Rule) -> actions.Outcome:
        calls.append(rule.name)
        return actions.Outcome("succeeded", "")

    monkeypatch.setattr(actions, "run", fake_run)

    async def scenario() -> None:
        journal = Journal(":memory:")
        runner = Runner(journal, {"a": panel("a")}, {}, Stats(), max_concurrent=1, action_timeout=1)
        action_id = pending(journal, "a", 1)
        journal.cancel([action_id], "resolved", 2.0)
        runner.submit(action_id, RULE, "a", "X")
        await runner.idle()
        await runner.close()

    asyncio.run(scenario())
    assert calls == []
