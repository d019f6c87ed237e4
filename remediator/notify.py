"""Tell people what the remediator did: webhook, Slack and Telegram targets.

Acting never waits for telling: :meth:`Notifier.submit` puts an event in a
bounded in-memory queue and returns; one sender task delivers it, at most
:data:`PARALLEL` deliveries at a time, each retried with exponential backoff
for its target's ``retry_for``. A full queue drops the event and counts it.
URLs and tokens are secrets (a Slack webhook URL and the Telegram Bot API path
carry them): log lines and metrics name the target, never its URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from brainycp import __version__
from brainycp.config import NotifyTarget

log = logging.getLogger("remediator.notify")

QUEUE_SIZE = 1000
PARALLEL = 8
FIRST_RETRY = 1.0
MAX_RETRY = 60.0
RESULTS = ("sent", "retried", "failed", "dropped")

Event = dict[str, Any]


def action_url(external_url: str, action_id: int) -> str:
    return f"{external_url}/actions/{action_id}"


def approval_commands(external_url: str, action_id: int) -> dict[str, str]:
    """The curl lines that approve or deny an action (the token stays in the reader's shell)."""
    base = action_url(external_url, action_id)
    head = 'curl -sS -X POST -H "Authorization: Bearer $BRAINYCP_REMEDIATOR_TOKEN" '
    body = "-H 'Content-Type: application/json' -d '{\"by\": \"'\"$USER\"'\"}' "
    return {"approve": f"{head}{body}{base}/approve", "deny": f"{head}{body}{base}/deny"}


def summary_line(event: Event) -> str:
    """One line for people: ``[outcome] action on panel (rule): reason``."""
    if event.get("kind") == "control":
        return f"[{event['outcome']}] remediator: {event.get('reason', '')}"
    alert = event.get("alert") or {}
    line = (
        f"[{event['outcome']}] {event['action']} on {event['panel']} "
        f"(rule {event['rule']}"
        + (f", alert {alert.get('alertname')}" if alert.get("alertname") else "")
        + f"): {event.get('reason', '')}"
    )
    if event.get("messages_total") is not None:
        line += f" [{event['messages_total']} messages]"
    return line


def text_message(event: Event) -> str:
    """The plain-text body for chat targets: summary, link, and approval commands."""
    lines = [summary_line(event)]
    if event.get("url"):
        lines.append(event["url"])
    commands = event.get("approval_commands")
    if commands:
        lines.append("approve: " + commands["approve"])
        lines.append("deny:    " + commands["deny"])
    return "\n".join(lines)


def payload(target: NotifyTarget, event: Event) -> tuple[str, dict[str, Any], dict[str, str]]:
    """``(url, json body, headers)`` for one delivery."""
    headers = {"User-Agent": f"brainycp-mail-remediator/{__version__}"}
    if target.type == "telegram":
        assert target.bot_token is not None
        url = f"{target.api_url}/bot{target.bot_token.get_secret_value()}/sendMessage"
        body = {"chat_id": target.chat_id, "text": text_message(event)[:4000],
                "disable_web_page_preview": True}  # fmt: skip
        return url, body, headers
    assert target.url is not None
    if target.type == "slack":
        text = text_message(event)
        return target.url.get_secret_value(), {"text": text}, headers
    if target.bearer_token is not None:
        headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
    return target.url.get_secret_value(), event, headers


class Notifier:
    """The queue, the sender task and the per-target counters."""

    def __init__(self, targets: Sequence[NotifyTarget], external_url: str) -> None:
        self.targets = {t.name: t for t in targets}
        self.external_url = external_url
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        for name in self.targets:
            for result in RESULTS:
                self.counts[(name, result)] = 0
        self._queue: asyncio.Queue[tuple[NotifyTarget, Event]] = asyncio.Queue(QUEUE_SIZE)
        self._sender: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def wanted(self, outcome: str, names: Sequence[str] | None) -> list[NotifyTarget]:
        """Targets that want ``outcome``; ``names`` None means every target."""
        chosen = self.targets.values() if names is None else [
            self.targets[n] for n in names if n in self.targets
        ]  # fmt: skip
        return [t for t in chosen if outcome in t.outcomes]

    def submit(self, event: Event, names: Sequence[str] | None = None) -> None:
        """Queue ``event`` for every target that wants its outcome; never blocks."""
        for target in self.wanted(str(event.get("outcome")), names):
            try:
                self._queue.put_nowait((target, event))
            except asyncio.QueueFull:
                self.counts[(target.name, "dropped")] += 1
                log.warning(
                    "notification to %s dropped: %d already queued",
                    target.name,
                    QUEUE_SIZE,
                    extra={"target": target.name, "outcome": event.get("outcome")},
                )

    def start(self) -> None:
        if self.targets and self._sender is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())

    async def close(self, grace: float = 2.0) -> None:
        """Give queued notifications ``grace`` seconds, then stop."""
        if self._sender is None:
            return
        deadline = time.monotonic() + grace
        while (self._queue.qsize() or self._deliveries) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._sender.cancel()
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(self._sender, *self._deliveries, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def idle(self) -> None:
        """Wait until the queue is empty and nothing is being delivered (tests)."""
        while self._queue.qsize() or self._deliveries:
            await asyncio.sleep(0.01)

    async def _send_forever(self) -> None:
        slots = asyncio.Semaphore(PARALLEL)
        while True:
            await slots.acquire()
            target, event = await self._queue.get()
            task = asyncio.get_running_loop().create_task(self._deliver(target, event))
            self._deliveries.add(task)

            def done(t: asyncio.Task[None]) -> None:
                self._deliveries.discard(t)
                slots.release()

            task.add_done_callback(done)

    async def _deliver(self, target: NotifyTarget, event: Event) -> None:
        assert self._client is not None
        url, body, headers = payload(target, event)
        give_up = time.monotonic() + target.retry_for
        delay = FIRST_RETRY
        attempt = 0
        extra = {"target": target.name, "outcome": event.get("outcome"),
                 "action_id": event.get("action_id")}  # fmt: skip
        while True:
            attempt += 1
            problem = ""
            try:
                response = await self._client.post(
                    url, json=body, headers=headers, timeout=target.timeout
                )
                if response.status_code < 300:
                    self.counts[(target.name, "sent")] += 1
                    log.debug("notification sent to %s", target.name, extra=extra)
                    return
                problem = f"HTTP {response.status_code}"
                retry = response.status_code >= 500 or response.status_code == 429
            except httpx.HTTPError as exc:
                # Never str(exc): httpx puts the URL (and so the token) in some messages.
                problem, retry = type(exc).__name__, True
            if not retry or time.monotonic() + delay > give_up:
                self.counts[(target.name, "failed")] += 1
                log.warning(
                    "notification to %s failed after %d attempts: %s",
                    target.name, attempt, problem, extra=extra,
                )  # fmt: skip
                return
            self.counts[(target.name, "retried")] += 1
            log.info(
                "notification to %s: %s; retrying in %.1fs", target.name, problem, delay,
                extra=extra,
            )  # fmt: skip
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_RETRY)


def action_event(
    row: Mapping[str, Any], detail: Mapping[str, Any], external_url: str, *, outcome: str = ""
) -> Event:
    """The documented webhook body for one journal row (``row`` is ``ActionRow.as_json()``)."""
    action_id = int(row["id"])
    event: Event = {
        "version": 1,
        "kind": "action",
        "action_id": action_id,
        "rule": row["rule"],
        "panel": row["panel"],
        "action": row["action"],
        "outcome": outcome or row["outcome"],
        "reason": row["reason"],
        "origin": detail.get("origin", "alert"),
        "requested_by": detail.get("requested_by", ""),
        "decision": detail.get("decision"),
        "state": detail.get("state") or {},
        "messages_total": detail.get("messages_total"),
        "alert": {
            "alertname": row["alert"]["alertname"],
            "status": row["alert"]["status"],
            "starts_at": row["alert"]["starts_at"],
            "labels": detail.get("labels") or {},
        },
        "params": detail.get("params") or {},
        "url": action_url(external_url, action_id),
        "at": time.time(),
    }
    if event["outcome"] == "awaiting_approval":
        event["approval_commands"] = approval_commands(external_url, action_id)
    return event


def control_event(outcome: str, reason: str, by: str, external_url: str) -> Event:
    """The body for ``circuit_open``, ``paused`` and ``resumed``."""
    return {
        "version": 1,
        "kind": "control",
        "outcome": outcome,
        "reason": reason,
        "by": by,
        "url": f"{external_url}/control",
        "at": time.time(),
    }


def encode(event: Event) -> str:
    return json.dumps(event, sort_keys=True)
