"""The notifier's delivery: every failed delivery is counted and logged (at most one
warning a minute per target, never the URL's secret), and targets changed by
:meth:`Notifier.reconfigure` (a reload) take effect at once. In process, with real
loopback receivers."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from remediator import notify
from remediator.app import Remediator
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import parse_config
from remediator.settings.targets import NotifyTarget
from tests.remediator_support import am_alert, notification
from tests.trust_support import Receiver


def hook(name: str, url: str, **kw: Any) -> NotifyTarget:
    settings: dict[str, Any] = {"outcomes": frozenset({"paused"}), "timeout": 2.0,
                                "retry_for": 0.2, **kw}  # fmt: skip
    return NotifyTarget(
        name, "webhook", SecretStr(url), None, None, "", "", settings["outcomes"],
        settings["timeout"], settings["retry_for"],
    )  # fmt: skip


def paused(reason: str = "maintenance") -> dict[str, Any]:
    return notify.control_event("paused", reason, "ops", "http://remediator")


@pytest.fixture
def receiver() -> Any:
    server = Receiver().start()
    yield server
    server.stop()


def test_a_delivery_httpx_cannot_even_start_is_counted_and_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture, receiver: Receiver
) -> None:
    """A URL httpx refuses (port 99999 bypassing the config check) and a body it cannot
    encode (NaN) raise outside httpx.HTTPError: each is counted failed, not retried, and
    warned about at most once a minute per target, without the URL."""
    bad_port = hook("bad-port", "http://127.0.0.1:99999/services/SECRET-PATH")
    good = hook("good", f"{receiver.url}/hook")

    async def scenario() -> dict[tuple[str, str], int]:
        notifier = notify.Notifier([bad_port, good], "http://remediator")
        notifier.start()
        for _ in range(5):
            notifier.submit(paused())
        notifier.submit({**paused(), "at": float("nan")})
        await notifier.idle()
        await notifier.close()
        return dict(notifier.counts)

    with caplog.at_level(logging.DEBUG, logger="remediator.notify"):
        counts = asyncio.run(scenario())
    assert counts[("bad-port", "failed")] == 6 and counts[("bad-port", "retried")] == 0
    assert counts[("good", "sent")] == 5 and counts[("good", "failed")] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warnings) == [
        "notification to bad-port failed after 1 attempts: cannot send: ExceptionGroup",
        "notification to good failed after 1 attempts: cannot send: ValueError",
    ]
    assert all("SECRET" not in r.getMessage() for r in caplog.records)
    assert len(receiver.posts) == 5


def test_targets_added_after_start_deliver_and_removed_ones_stop(receiver: Receiver) -> None:
    """The sender runs from the start even without targets; a reload's targets are used
    for the next event and for what is still queued."""

    async def scenario() -> tuple[dict[tuple[str, str], int], int]:
        notifier = notify.Notifier([], "http://remediator")
        notifier.start()
        notifier.submit(paused("before"))  # nobody wants it yet
        notifier.reconfigure([hook("added", f"{receiver.url}/added")], "http://remediator")
        notifier.submit(paused("after"))
        await notifier.idle()
        sent = len(receiver.posts)
        notifier.reconfigure([], "http://remediator")
        notifier.submit(paused("removed"))
        await notifier.idle()
        await notifier.close()
        return dict(notifier.counts), sent

    counts, sent = asyncio.run(scenario())
    assert sent == 1 and [b["reason"] for b in receiver.bodies("/added")] == ["after"]
    assert counts == {}  # the removed target's series went with it


def test_queued_events_follow_the_target_to_its_new_url(receiver: Receiver) -> None:
    """A target changed while its events wait in the queue: they go to the new URL."""

    async def scenario() -> None:
        notifier = notify.Notifier([hook("t", f"{receiver.url}/old")], "http://remediator")
        for _ in range(3):
            notifier.submit(paused())  # queued: the sender has not started
        notifier.reconfigure([hook("t", f"{receiver.url}/new")], "http://remediator")
        notifier.start()
        await notifier.idle()
        await notifier.close()

    asyncio.run(scenario())
    assert [path for path, _, _ in receiver.posts] == ["/new"] * 3


def test_a_lone_surrogate_in_an_event_is_sent_as_a_json_escape(receiver: Receiver) -> None:
    async def scenario() -> dict[tuple[str, str], int]:
        notifier = notify.Notifier([hook("t", f"{receiver.url}/x")], "http://remediator")
        notifier.start()
        notifier.submit(paused("half a pair: \ud800"))
        await notifier.idle()
        await notifier.close()
        return dict(notifier.counts)

    assert asyncio.run(scenario())[("t", "sent")] == 1
    assert receiver.bodies("/x")[0]["reason"] == "half a pair: \ud800"


def test_a_full_queue_warns_once_a_minute_not_once_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> dict[tuple[str, str], int]:
        notifier = notify.Notifier([hook("t", "http://127.0.0.1:9/x")], "http://remediator")
        for _ in range(notify.QUEUE_SIZE + 500):  # not started: nothing drains the queue
            notifier.submit(paused())
        return dict(notifier.counts)

    with caplog.at_level(logging.DEBUG, logger="remediator.notify"):
        counts = asyncio.run(scenario())
    assert counts[("t", "dropped")] == 500
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["notification to t dropped: 1000 already queued"]


def test_an_approval_request_goes_out_with_why_the_count_is_unknown(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A panel that does not answer the request's count: the notification still goes
    out, within the (injectable) preview timeout, saying why the count is missing."""
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = parse_config({
            "panels": {"web01": {"url": f"http://127.0.0.1:{silent.getsockname()[1]}",
                                 "username": "a", "password_env": "HOME"}},
            "remediator": {
                "insecure_no_auth": True, "state_file": str(tmp_path / "s.sqlite"),
                "notify": [{"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook",
                            "outcomes": ["awaiting_approval"]}],
                "rules": [{"name": "ask", "matchers": ['alertname="Surge"'],
                           "action": "delete_messages", "approval": "required",
                           "select": {"sender": "{{ labels.sender }}"}}],
            },
        })  # fmt: skip
        journal = Journal(config.remediator.state_file)
        stats = Stats()
        runner = Runner(journal, config.panels, {}, stats, max_concurrent=1, action_timeout=5)
        rem = Remediator(config, journal, runner, stats)
        rem.preview_timeout = 0.3

        async def scenario() -> float:
            rem.notifier.start()
            transport = httpx.ASGITransport(app=rem.app())
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                alert = am_alert("Surge", "web01", sender="spam@example.com")
                answer = await client.post("/webhook", json=notification(alert))
                assert answer.json()["results"][0]["outcome"] == "awaiting_approval"
            started = time.monotonic()
            await rem.notifier.idle()
            took = time.monotonic() - started
            await rem.notifier.close()
            await runner.close()
            return took

        took = asyncio.run(scenario())
        journal.close()
    (event,) = receiver.bodies("/hook")
    assert event["matching"] is None and took < 5
    assert event["matching_error"] == "the panel did not answer within 0.3s"
    assert event["selection"]["sender"] == "spam@example.com"
