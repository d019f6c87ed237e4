"""The demo's spam scene on real processes: a compromised mailbox, approval, deletion, record.

Prometheus and Alertmanager are left out (``with_prometheus=False``): the alert is
posted to the remediator exactly as Alertmanager sends it, so this test does not
depend on the exporter-side alert rule; tests/test_full_loop.py covers that chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brainycp.queue import iter_messages
from tests.demo import COMPROMISED_SENDER, SPAM_BURST, SPAM_PANEL, Ports, SpamScene, Stack
from tests.remediator_support import am_alert, notification
from tests.support import free_port, wait_until

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    ports = Ports(
        simulator=free_port(), exporter=free_port(), remediator=free_port(),
        prometheus=free_port(), alertmanager=free_port(),
    )  # fmt: skip
    stack = Stack(tmp_path, ports=ports, with_prometheus=False)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def senders(stack: Stack) -> list[str]:
    form = {"username": "admin", "password": "demo-panel-password", "mailserver": "1",
            "list_msg": "1"}  # fmt: skip
    answer = httpx.post(f"{stack.panel_url(SPAM_PANEL)}/api/api.php", data=form, timeout=10)
    return [m.sender for m in iter_messages(answer.json().get("detail") or "")]


def test_spam_scene_asks_then_deletes_exactly_the_surging_sender(stack: Stack) -> None:
    httpx.post(f"{stack.panel_url(SPAM_PANEL)}/_sim/pause", json={"paused": True})
    stack.spam_burst()
    others = [s for s in senders(stack) if s != COMPROMISED_SENDER]
    assert senders(stack).count(COMPROMISED_SENDER) == SPAM_BURST
    alert = am_alert("BrainyCPMailSenderSurge", SPAM_PANEL, sender=COMPROMISED_SENDER)
    answer = httpx.post(
        f"{stack.url('remediator')}/webhook", json=notification(alert),
        headers={"Authorization": "Bearer demo-webhook-token"}, timeout=10,
    )  # fmt: skip
    (result,) = answer.json()["results"]
    assert result["rule"] == "contain-spam-sender"
    assert result["outcome"] == "awaiting_approval"
    scene = SpamScene(stack, approve_after=0.01, flood_rate=0)
    printed = scene.step()
    assert any("approval requested" in line and COMPROMISED_SENDER in line for line in printed)
    assert senders(stack).count(COMPROMISED_SENDER) == SPAM_BURST  # nothing touched yet
    printed = wait_until(
        lambda: [line for line in scene.step() if "approved" in line], what="the approval"
    )
    assert "HTTP 200" in printed[0]
    report = wait_until(
        lambda: [line for line in scene.step() if "messages recorded" in line],
        what="the record",
    )
    assert f"{SPAM_BURST} messages recorded" in report[0] and "succeeded" in report[0]
    record = stack.action(result["action_id"])
    assert record["decision"]["by"] == "make demo"
    assert {m["sender"] for m in record["messages"]} == {COMPROMISED_SENDER}
    left = senders(stack)
    assert COMPROMISED_SENDER not in left
    assert sorted(left) == sorted(others)  # nobody else's mail was touched
