"""The background runner: per-panel serialisation, the global ceiling, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter

import pytest
from pydantic import SecretStr

from brainycp.config.panels import PanelConfig, StatusPatterns
from brainycp.panel.client import ActionResult, QueueListing
from brainycp.panel.errors import PanelTimeout
from remediator import actions
from remediator import runner as runner_module
from remediator.actions import MessageRecord
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.rules import Rule

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

    async def fake_run(client: object, rule: Rule, *confirmed: object) -> actions.Outcome:
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
    async def slow(client: object, rule: Rule, *confirmed: object) -> actions.Outcome:
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

    async def fake_run(client: object, rule: Rule, *confirmed: object) -> actions.Outcome:
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


def test_a_full_disk_that_clears_lets_the_pending_action_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []

    async def fake_run(client: object, rule: Rule, *confirmed: object) -> actions.Outcome:
        ran.append(client.panel.name)  # type: ignore[attr-defined]
        return actions.Outcome("succeeded", "ok")

    monkeypatch.setattr(actions, "run", fake_run)

    async def scenario() -> tuple[Journal, int, list[str]]:
        journal = Journal(":memory:")
        action_id = pending(journal, "a", 1)
        real_claim, real_finish = journal.claim, journal.finish
        refusals = {"claim": 3, "finish": 2}
        seen: list[str] = []

        def full(name: str, real: object) -> object:
            def write(*args: object, **kwargs: object) -> object:
                if refusals[name]:
                    refusals[name] -= 1
                    seen.append(name)
                    raise sqlite3.OperationalError("database or disk is full")
                return real(*args, **kwargs)  # type: ignore[operator]

            return write

        monkeypatch.setattr(journal, "claim", full("claim", real_claim))
        monkeypatch.setattr(journal, "finish", full("finish", real_finish))
        runner = Runner(journal, {"a": panel("a")}, {}, Stats(), max_concurrent=1, action_timeout=5)
        runner.journal_retry = 0.001
        runner.submit(action_id, RULE, "a", "X")
        await runner.idle()
        await runner.close()
        return journal, action_id, seen

    journal, action_id, seen = asyncio.run(scenario())
    # Refused three times, then the disk cleared: the action ran once and its outcome stuck.
    assert seen == ["claim"] * 3 + ["finish"] * 2
    assert ran == ["a"]
    row = journal.get(action_id)
    assert row is not None and row.outcome == "succeeded" and row.started_at is not None


def test_drain_keeps_queued_actions_pending_and_lets_running_ones_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = asyncio.Event()

    async def fake_run(client: object, rule: Rule, *confirmed: object) -> actions.Outcome:
        started.set()
        await asyncio.sleep(0.05)
        return actions.Outcome("succeeded", "ok")

    monkeypatch.setattr(actions, "run", fake_run)

    async def scenario() -> tuple[Journal, list[int], tuple[int, int]]:
        journal = Journal(":memory:")
        ids = [pending(journal, "a", n) for n in range(3)]
        runner = Runner(journal, {"a": panel("a")}, {}, Stats(), max_concurrent=1, action_timeout=5)
        for action_id in ids:
            runner.submit(action_id, RULE, "a", "X")
        await started.wait()  # the first action is on its panel
        return journal, ids, await runner.drain(10)

    journal, ids, counts = asyncio.run(scenario())
    assert counts == (1, 0)
    assert [journal.get(i).outcome for i in ids] == ["succeeded", "pending", "pending"]  # type: ignore[union-attr]


def _delete_row(journal: Journal) -> int:
    return journal.insert(
        rule="r", panel="a", action="delete_messages", outcome="pending", reason="",
        received_at=1.0, alertname="X", fingerprint="f", starts_at="s", alert_status="firing",
        labels={}, dedupe_key="k",
    )  # fmt: skip


DELETE = Rule.model_validate(
    {"name": "r", "matchers": ['alertname="X"'], "action": "delete_messages",
     "select": {"bounce": True}}
)  # fmt: skip


def test_deleted_messages_are_in_the_journal_before_the_read_back_and_after_a_failed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each deletion is journaled as the panel confirms it: when the verifying listing is
    asked, the journal already lists every deleted message; that listing fails, and the
    row ends ``unverified`` with the three messages, not ``failed`` with none."""
    queue = [f"1xW6VZ-00000{n}-1S" for n in range(3)]
    in_journal_at_read_back: list[dict[str, object]] = []
    journal = Journal(":memory:")
    action_id = _delete_row(journal)

    class Panel:
        listed = 0
        panel = panel("a")

        async def list_msg(self) -> QueueListing:
            self.listed += 1
            if self.listed == 2:
                in_journal_at_read_back.append(journal.detail(action_id))
                raise PanelTimeout("a", "list_msg", "no answer in 10s")
            text = "".join(f"5m 900 {i} <>\n  bob@example.net\n\n" for i in queue)
            return QueueListing(text, not queue, 0)

        async def list_msg_body(self) -> bytes:  # what the actions read (in a worker)
            return json.dumps({"error": 0, "detail": (await self.list_msg()).detail}).encode()

        async def controll_msg(self, message_id: str, command: str) -> ActionResult:
            queue.remove(message_id)
            return ActionResult(True, f"Message {message_id} has been removed", "")

        async def aclose(self) -> None:
            pass

    monkeypatch.setattr(runner_module, "PanelClient", lambda config: Panel())

    async def scenario() -> None:
        runner = Runner(journal, {"a": panel("a")}, {}, Stats(), max_concurrent=1, action_timeout=5)
        runner.submit(action_id, DELETE, "a", "X")
        await runner.idle()
        await runner.close()

    asyncio.run(scenario())
    (seen,) = in_journal_at_read_back
    deleted = [f"1xW6VZ-00000{n}-1S" for n in range(3)]
    assert [m["id"] for m in seen["messages"]] == deleted  # type: ignore[attr-defined]
    assert seen["messages_total"] == 3
    row, detail = journal.get(action_id), journal.detail(action_id)
    assert row is not None and row.outcome == "unverified", row
    assert [m["id"] for m in detail["messages"]] == deleted and detail["messages_total"] == 3
    assert all(m["answer"].endswith("has been removed") for m in detail["messages"])


def test_an_action_cut_off_after_deleting_is_unverified_with_what_it_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def two_then_hang(
        client: object, rule: Rule, confirmed: actions.Confirmed
    ) -> actions.Outcome:
        await confirmed([MessageRecord("m1", answer="removed")], None)
        await confirmed([MessageRecord("m2", answer="removed")], None)
        await asyncio.sleep(10)
        return actions.Outcome("succeeded", "")

    monkeypatch.setattr(actions, "run", two_then_hang)

    async def scenario() -> tuple[Journal, int]:
        journal = Journal(":memory:")
        action_id = _delete_row(journal)
        runner = Runner(journal, {"a": panel("a")}, {}, Stats(), max_concurrent=1,
                        action_timeout=0.2)  # fmt: skip
        runner.submit(action_id, DELETE, "a", "X")
        await runner.idle()
        await runner.close()
        return journal, action_id

    journal, action_id = asyncio.run(scenario())
    row, detail = journal.get(action_id), journal.detail(action_id)
    assert row is not None and row.outcome == "unverified" and "timeout" in row.reason
    assert [m["id"] for m in detail["messages"]] == ["m1", "m2"]
