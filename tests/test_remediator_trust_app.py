"""Approval expiry, the notifier's failure modes, and the brakes against a big notification,
in process (ASGI transport; real loopback HTTP receivers for the notifier)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator import actions, notify
from remediator.app import Remediator
from remediator.journal import Journal
from remediator.manual import rule_for_row
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import Config, parse_config
from remediator.settings.rules import Rule
from tests.remediator_support import am_alert, notification
from tests.trust_support import Receiver


def remediator(tmp_path: Path, **extra: Any) -> Remediator:
    config = parse_config(
        {
            "panels": {
                f"web{i:03d}": {"url": "http://127.0.0.1:9", "username": "a",
                                "password_env": "HOME"}
                for i in range(300)
            },
            "remediator": {
                "insecure_no_auth": True,
                "state_file": str(tmp_path / "s.sqlite"),
                "rate_limit": {"max_actions": 10000, "per": "1h"},
                "rules": [
                    {"name": "ask", "matchers": ['alertname="Ask"'], "action": "delete_frozen",
                     "approval": "required", "cooldown": "0s"},
                    {"name": "preview", "matchers": ['alertname="X"'],
                     "action": "delete_frozen", "dry_run": True, "cooldown": "0s"},
                ],
                **extra,
            },
        }
    )  # fmt: skip
    journal = Journal(config.remediator.state_file)
    stats = Stats()
    runner = Runner(journal, config.panels, {}, stats, max_concurrent=1, action_timeout=5)
    return Remediator(config, journal, runner, stats)


def test_an_undecided_request_expires_and_can_no_longer_be_approved(tmp_path: Path) -> None:
    rem = remediator(tmp_path, approval_timeout="1s")

    async def scenario() -> tuple[list[int], int, str, dict[str, Any]]:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/webhook", json=notification(am_alert("Ask", "web001")))
            (result,) = answer.json()["results"]
            action_id = result["action_id"]
            assert await rem.expire(time.time()) == []  # not yet
            expired = await rem.expire(time.time() + 2)
            approve = await client.post(f"/actions/{action_id}/approve", json={"by": "late"})
            row = (await client.get(f"/actions/{action_id}")).json()
            again = await client.post("/webhook", json=notification(am_alert("Ask", "web001")))
            return expired, approve.status_code, row["outcome"], again.json()["results"][0]

    expired, status, outcome, again = asyncio.run(scenario())
    assert len(expired) == 1 and status == 409 and outcome == "expired"
    # The episode stays closed: Alertmanager's repeat of the same alert asks nobody again.
    assert again["outcome"] == "skipped_duplicate"
    rem.journal.close()


def test_approval_and_pause_wait_for_a_big_notification_instead_of_failing(
    tmp_path: Path,
) -> None:
    """A 2,400-alert notification is journaled on the journal's thread; approve/deny,
    pause, /metrics and /actions/ID sent while its transaction is open wait for it
    (they run after it, on the same thread) instead of failing."""
    rem = remediator(tmp_path)
    storm = notification(
        *[am_alert("X", f"web{i:03d}", starts_at=f"s{j}") for j in range(8) for i in range(300)]
    )

    async def scenario() -> tuple[list[int], bool]:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = await client.post("/webhook", json=notification(am_alert("Ask", "web001")))
            action_id = first.json()["results"][0]["action_id"]
            big = asyncio.create_task(client.post("/webhook", json=storm))
            deadline = time.monotonic() + 30
            while not rem.journal.busy and not big.done():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.001)
            overlapped = rem.journal.busy and not big.done()
            answers = await asyncio.gather(
                client.post(f"/actions/{action_id}/deny", json={"by": "ops"}),
                client.post("/pause", json={"by": "ops"}),
                client.get("/metrics"),
                client.get(f"/actions/{action_id}"),
                client.get("/control"),
                big,
            )
            return [a.status_code for a in answers], overlapped

    statuses, overlapped = asyncio.run(scenario())
    assert overlapped, "the big notification's transaction was never seen open"
    assert statuses == [200] * 6
    assert rem.journal.paused()
    rem.journal.close()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "FIRST_RETRY", 0.01)


def targets(url: str, **kw: Any) -> list[dict[str, Any]]:
    return [{"name": "hook", "type": "webhook", "url": url, "outcomes": ["paused"], **kw}]


def test_a_4xx_is_not_retried_and_a_dead_receiver_is_given_up_after_retry_for(
    tmp_path: Path, fast_retries: None
) -> None:
    refusing = Receiver(fail=0).start()
    # A receiver that always answers 400: one attempt, counted failed.
    refusing.server.RequestHandlerClass.do_POST = (  # type: ignore[union-attr,method-assign]
        lambda self: (self.rfile.read(int(self.headers["content-length"])),
                      self.send_response(400), self.end_headers())
    )  # fmt: skip
    dead = f"http://127.0.0.1:{_closed_port()}/hook"

    async def scenario(url: str, **kw: Any) -> dict[tuple[str, str], int]:
        rem = remediator(tmp_path / url.split(":")[-1].replace("/", "_"),
                         notify=targets(url, retry_for="0.3s", **kw))  # fmt: skip
        rem.notifier.start()
        rem.notifier.submit(notify.control_event("paused", "test", "ops", "http://x"))
        await rem.notifier.idle()
        await rem.notifier.close()
        rem.journal.close()
        return dict(rem.notifier.counts)

    counts = asyncio.run(scenario(f"{refusing.url}/hook"))
    assert counts[("hook", "failed")] == 1 and counts[("hook", "retried")] == 0
    counts = asyncio.run(scenario(dead))
    assert counts[("hook", "failed")] == 1 and counts[("hook", "retried")] >= 2
    assert counts[("hook", "sent")] == 0
    refusing.stop()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    rem = remediator(tmp_path, notify=targets("http://127.0.0.1:9/hook"))
    # Not started: nothing drains the queue.
    for _ in range(notify.QUEUE_SIZE + 25):
        rem.notifier.submit(notify.control_event("paused", "x", "ops", "http://x"))
    assert rem.notifier.counts[("hook", "dropped")] == 25
    rem.journal.close()


def test_telegram_token_is_only_in_the_request_path(tmp_path: Path) -> None:
    token = tmp_path / "bot"
    token.write_text("42:ABC-def_ghi\n")
    rem = remediator(
        tmp_path,
        notify=[{"name": "tg", "type": "telegram", "bot_token_file": str(token),
                 "chat_id": "@ops", "api_url": "http://127.0.0.1:1"}],
    )  # fmt: skip
    (target,) = rem.notifier.targets.values()
    url, body, headers = notify.payload(target, notify.control_event("paused", "r", "", "u"))
    assert url == "http://127.0.0.1:1/bot42:ABC-def_ghi/sendMessage"
    assert "42:ABC" not in repr(target) and "42:ABC" not in str(body) + str(headers)
    assert body["chat_id"] == "@ops"
    rem.journal.close()


def test_the_status_page_shows_the_brakes_and_what_awaits_approval(tmp_path: Path) -> None:
    rem = remediator(tmp_path)

    async def scenario() -> tuple[str, str]:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = (await client.get("/")).text
            await client.post("/webhook", json=notification(am_alert("Ask", "web007")))
            await client.post("/pause", json={"by": "<b>eve</b>", "comment": "maintenance"})
            return before, (await client.get("/")).text

    before, after = asyncio.run(scenario())
    assert "PAUSED" not in before and "Awaiting approval" not in before
    assert "PAUSED" in after and "&lt;b&gt;eve&lt;/b&gt;" in after and "maintenance" in after
    assert "Awaiting approval" in after and "/actions/1/approve" in after and "web007" in after
    rem.journal.close()


def test_check_config_says_which_rules_need_approval() -> None:
    from remediator.checkcmd import describe_rule
    from remediator.settings.rules import Rule

    rule = Rule.model_validate(
        {"name": "contain-spam-sender", "matchers": ['alertname="BrainyCPMailSenderSurge"'],
         "action": "delete_messages", "select": {"sender": "{{ labels.sender }}"},
         "approval": "required", "notify": ["ops-chat"], "max_runs_per_episode": 2}
    )  # fmt: skip
    line = describe_rule(rule)
    assert "where sender={{ labels.sender }}" in line
    assert "NEEDS APPROVAL" in line and "notify ops-chat" in line
    assert "at most 2 runs per episode" in line


def test_an_approval_runs_the_selection_journaled_at_request_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule with a static select is edited (reload) while its request waits: the
    approval, and a restart that resumes the approved row, run what was asked for,
    never the new selection (which here names another sender)."""
    ran: list[Rule] = []

    async def fake_run(client: object, rule: Rule, *confirmed: object) -> actions.Outcome:
        ran.append(rule)
        return actions.Outcome("succeeded", "ok")

    monkeypatch.setattr(actions, "run", fake_run)

    def config(sender: str, max_messages: int) -> Config:
        return parse_config(
            {
                "panels": {"web001": {"url": "http://127.0.0.1:9", "username": "a",
                                      "password_env": "HOME"}},
                "remediator": {
                    "insecure_no_auth": True,
                    "state_file": str(tmp_path / "s.sqlite"),
                    "rules": [
                        {"name": "contain", "matchers": ['alertname="Spam"'],
                         "action": "delete_messages", "approval": "required",
                         "select": {"sender": sender}, "max_messages": max_messages,
                         "limit": "first"},
                    ],
                },
            }
        )  # fmt: skip

    asked = config("spammer@example.org", 5)
    journal = Journal(asked.remediator.state_file)
    runner = Runner(journal, asked.panels, {}, Stats(), max_concurrent=1, action_timeout=5)
    rem = Remediator(asked, journal, runner, Stats())

    async def scenario() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/webhook", json=notification(am_alert("Spam", "web001")))
            action_id = answer.json()["results"][0]["action_id"]
            rem.reconfigure(config("customer@example.org", 500))  # edited while it waits
            approved = await client.post(f"/actions/{action_id}/approve", json={"by": "ops"})
            assert approved.status_code == 200, approved.text
            await runner.idle()
            return dict((await client.get(f"/actions/{action_id}")).json())

    row = asyncio.run(scenario())
    (run,) = ran
    assert run.select is not None and run.select.sender == "spammer@example.org"
    assert (run.max_messages, run.limit) == (5, "first")
    assert row["params"]["select"]["sender"] == "spammer@example.org"
    # After a restart, a resumed row is rebuilt from the same journaled params.
    later = config("customer@example.org", 500).remediator.rules
    rebuilt = rule_for_row("contain", "delete_messages", row["params"], {r.name: r for r in later})
    assert rebuilt is not None and rebuilt.select is not None
    assert (rebuilt.select.sender, rebuilt.max_messages) == ("spammer@example.org", 5)
    journal.close()
