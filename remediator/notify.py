"""Tell people what the remediator did: webhook, Slack and Telegram targets.

Acting never waits for telling: :meth:`Notifier.submit` puts an event in a
bounded in-memory queue and returns; one sender task, running from start-up
whatever the targets, delivers it, at most :data:`PARALLEL` deliveries at a
time, each retried with exponential backoff for its target's ``retry_for``. A
full queue drops the event and counts it. Targets are looked up by name when a
delivery starts, so a reload that adds, changes or removes one takes effect for
everything still queued. URLs and tokens are secrets (a Slack webhook URL and
the Telegram Bot API path carry them): log lines and metrics name the target,
never its URL, and never an exception's text (httpx puts the URL in some).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import time
from collections import defaultdict
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from brainycp import __version__
from brainycp.backoff import Backoff
from brainycp.panel.client import PanelClient
from remediator import actions as panel_actions
from remediator import chat
from remediator.settings.rules import Rule
from remediator.settings.targets import NotifyTarget
from remediator.settings.webhook import WebhookAuth

log = logging.getLogger("remediator.notify")

QUEUE_SIZE = 1000
PARALLEL = 8
FIRST_RETRY = 1.0
MAX_RETRY = 60.0
WARN_EVERY = 60.0
"""At most one failed-or-dropped warning per target in this many seconds; the rest: debug."""
RESULTS = ("sent", "retried", "failed", "dropped")

Event = dict[str, Any]


# ------------------------------------------------------------------ operator credentials


@dataclass(frozen=True)
class OperatorLogin:
    """How a person authenticates to approve or deny, so the printed curl line works.

    ``web_user``: a web config's ``basic_auth_users`` guard the operator routes (curl
    asks for the password); ``basic``: the webhook's own basic auth (``user``);
    ``bearer``: the webhook's bearer token; ``none``: ``insecure_no_auth``.
    ``client_cert``: the listener requires a verified client certificate
    (``RequireAndVerifyClientCert``), so the line names one (``--cert``/``--key``).
    """

    kind: Literal["web_user", "basic", "bearer", "none"]
    user: str = ""
    client_cert: bool = False


def operator_login(
    auth: WebhookAuth | None, web_users: bool, client_cert: bool = False
) -> OperatorLogin:
    """The credentials the operator routes take: web-config users when there are any; a
    client certificate besides when the listener requires one."""
    if web_users:
        return OperatorLogin("web_user", client_cert=client_cert)
    if auth is None:
        return OperatorLogin("none", client_cert=client_cert)
    if auth.bearer_token is None and auth.basic_username is not None:
        return OperatorLogin("basic", auth.basic_username, client_cert=client_cert)
    return OperatorLogin("bearer", client_cert=client_cert)


def action_url(external_url: str, action_id: int) -> str:
    return f"{external_url}/actions/{action_id}"


def approval_commands(
    external_url: str, action_id: int, login: OperatorLogin = OperatorLogin("bearer")
) -> dict[str, str]:
    """The curl lines that approve or deny an action; secrets stay in the reader's shell
    (``$BRAINYCP_REMEDIATOR_TOKEN``, ``$BRAINYCP_CLIENT_CERT``/``$BRAINYCP_CLIENT_KEY``) or
    are asked for by curl (``-u USER``)."""
    base = action_url(external_url, action_id)
    if login.kind == "web_user":
        creds = '-u "$USER" '
    elif login.kind == "basic":
        creds = f"-u {shlex.quote(login.user)} "
    elif login.kind == "bearer":
        creds = '-H "Authorization: Bearer $BRAINYCP_REMEDIATOR_TOKEN" '
    else:
        creds = ""
    if login.client_cert:
        creds = '--cert "$BRAINYCP_CLIENT_CERT" --key "$BRAINYCP_CLIENT_KEY" ' + creds
    head = f"curl -sS -X POST {creds}"
    body = "-H 'Content-Type: application/json' -d '{\"by\": \"'\"$USER\"'\"}' "
    return {"approve": f"{head}{body}{base}/approve", "deny": f"{head}{body}{base}/deny"}


# ------------------------------------------------------------------ events


def selection_of(rule: Rule | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """What an action acts on, as the event's ``selection``: the service, or the exact
    message selection (with ``max_messages`` and ``limit``) it runs or ran with."""
    if rule is None:
        select = params.get("select")
        return dict(select) if isinstance(select, dict) else {}
    takes = panel_actions.ACTIONS[rule.action].takes
    if "daemon" in takes:
        return {"daemon": rule.daemon}
    if "force" in takes:
        return {"force": rule.force}
    if rule.select is None:
        return {}
    out = {k: v for k, v in rule.select.model_dump(mode="json").items() if v is not None}
    return {**out, "max_messages": rule.max_messages, "limit": rule.limit}


def action_event(
    row: Mapping[str, Any],
    detail: Mapping[str, Any],
    external_url: str,
    *,
    outcome: str = "",
    login: OperatorLogin = OperatorLogin("bearer"),
    selection: Mapping[str, Any] | None = None,
    expires_at: float | None = None,
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
        "selection": dict(selection or {}),
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
        event["approval_commands"] = approval_commands(external_url, action_id, login)
        if expires_at is not None:
            event["expires_at"] = expires_at
    return event


async def matching_now(
    client: PanelClient | None, rule: Rule | None, timeout: float
) -> dict[str, Any]:
    """``{"matching": N}``: the messages an approval request would act on now, from a dry
    run on the panel bounded to ``timeout``; ``{"matching": None, "matching_error": why}``
    when it cannot be known (``client`` None: the rule or panel left the config); ``{}``
    for a service action (nothing to count)."""
    if rule is None or client is None:
        return {"matching": None, "matching_error": "its rule or panel left the config"}
    if not panel_actions.ACTIONS[rule.action].on_messages:
        return {}
    try:
        preview = await asyncio.wait_for(panel_actions.preview(client, rule), timeout)
    except TimeoutError:
        return {"matching": None, "matching_error": f"the panel did not answer within {timeout:g}s"}
    except panel_actions.ReadFailed as exc:
        return {"matching": None, "matching_error": panel_actions.why(exc)[:300]}
    return {"matching": int(preview["matching"])}


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


def payload(target: NotifyTarget, event: Event) -> tuple[str, dict[str, Any], dict[str, str]]:
    """``(url, json body, headers)`` for one delivery: chat targets get the message text
    (outside text quoted on one line), webhook targets the event's structured fields."""
    headers = {"User-Agent": f"brainycp-mail-remediator/{__version__}"}
    if target.type == "telegram":
        assert target.bot_token is not None
        url = f"{target.api_url}/bot{target.bot_token.get_secret_value()}/sendMessage"
        body = {"chat_id": target.chat_id, "text": chat.message(event, "telegram"),
                "parse_mode": "HTML", "disable_web_page_preview": True}  # fmt: skip
        return url, body, headers
    assert target.url is not None
    if target.type == "slack":
        return target.url.get_secret_value(), {"text": chat.message(event, "slack")}, headers
    if target.bearer_token is not None:
        headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
    return target.url.get_secret_value(), event, headers


def encode_body(body: Mapping[str, Any]) -> bytes:
    """JSON for the wire: ASCII (a lone surrogate from a label is an escape, not an
    encoding error), no NaN (receivers refuse it)."""
    return json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


# ------------------------------------------------------------------ delivery


class Notifier:
    """The queue, the sender task and the per-target counters."""

    def __init__(self, targets: Sequence[NotifyTarget], external_url: str) -> None:
        self.targets: dict[str, NotifyTarget] = {}
        self.external_url = external_url
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.reconfigure(targets, external_url)
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(QUEUE_SIZE)
        self._sender: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._preparing: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._warned: dict[str, float] = {}
        self._quiet: dict[str, int] = defaultdict(int)

    def reconfigure(self, targets: Sequence[NotifyTarget], external_url: str) -> None:
        """Use ``targets`` from now on (start-up and reload): new ones get their counters
        at 0, and queued events of a removed target are dropped when their turn comes."""
        self.targets = {t.name: t for t in targets}
        self.external_url = external_url
        for key in [key for key in self.counts if key[0] not in self.targets]:
            del self.counts[key]  # a removed target's series goes with it
        for name in self.targets:
            for result in RESULTS:
                self.counts.setdefault((name, result), 0)

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
                self._queue.put_nowait((target.name, event))
            except asyncio.QueueFull:
                self.counts[(target.name, "dropped")] += 1
                extra = {"target": target.name, "outcome": event.get("outcome")}
                self._warn(target.name, f"dropped: {QUEUE_SIZE} already queued", extra)

    def prepare(self, making: Coroutine[Any, Any, None]) -> None:
        """Run ``making`` (reads what an event needs, then submits it) as a task that
        :meth:`idle` and :meth:`close` wait for."""
        task = asyncio.get_running_loop().create_task(making)
        self._preparing.add(task)
        task.add_done_callback(self._prepared)

    def _prepared(self, task: asyncio.Task[None]) -> None:
        self._preparing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cannot prepare a notification", exc_info=task.exception())

    def start(self) -> None:
        """Start the sender; it runs even without targets, for those a reload adds."""
        if self._sender is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())

    def _busy(self) -> bool:
        return bool(self._queue.qsize() or self._deliveries or self._preparing)

    async def close(self, grace: float = 2.0) -> None:
        """Give queued notifications ``grace`` seconds, then stop."""
        deadline = time.monotonic() + grace
        while self._busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tasks = [*self._preparing, *self._deliveries]
        if self._sender is not None:
            tasks.append(self._sender)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sender = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def idle(self) -> None:
        """Wait until nothing is being prepared, queued or delivered (tests)."""
        while self._busy():
            await asyncio.sleep(0.01)

    async def _send_forever(self) -> None:
        slots = asyncio.Semaphore(PARALLEL)
        while True:
            await slots.acquire()
            name, event = await self._queue.get()
            task = asyncio.get_running_loop().create_task(self._deliver(name, event))
            self._deliveries.add(task)

            def done(t: asyncio.Task[None]) -> None:
                self._deliveries.discard(t)
                slots.release()

            task.add_done_callback(done)

    async def _deliver(self, name: str, event: Event) -> None:
        extra = {"target": name, "outcome": event.get("outcome"),
                 "action_id": event.get("action_id")}  # fmt: skip
        target = self.targets.get(name)
        if target is None:
            log.info("notification to %s not sent: the target left the config", name,
                     extra=extra)  # fmt: skip
            return
        backoff = Backoff(
            FIRST_RETRY, MAX_RETRY, jitter=(0.8, 1.2), deadline=time.monotonic() + target.retry_for
        )
        attempt = 0
        while True:
            attempt += 1
            problem, retry = await self._attempt(target, event)
            if not problem:
                self.counts[(name, "sent")] += 1
                log.debug("notification sent to %s", name, extra=extra)
                return
            if not retry or not backoff.allows():
                self.counts[(name, "failed")] += 1
                self._warn(name, f"failed after {attempt} attempts: {problem}", extra)
                return
            self.counts[(name, "retried")] += 1
            log.info("notification to %s: %s; retrying in %.1fs", name, problem, backoff.delay,
                     extra=extra)  # fmt: skip
            await backoff.wait()
            # A reload meanwhile: the target's new settings, or none when it was removed.
            if (target := self.targets.get(name)) is None:
                log.info("notification to %s not retried: the target left the config", name,
                         extra=extra)  # fmt: skip
                return

    async def _attempt(self, target: NotifyTarget, event: Event) -> tuple[str, bool]:
        """One delivery: ``("", False)`` when sent, else ``(why, worth retrying)``."""
        assert self._client is not None
        try:
            url, body, headers = payload(target, event)
            headers["Content-Type"] = "application/json"
            response = await self._client.post(
                url, content=encode_body(body), headers=headers, timeout=target.timeout
            )
        except httpx.HTTPError as exc:
            # Never str(exc): httpx puts the URL (and so the token) in some messages.
            return type(exc).__name__, not isinstance(exc, httpx.UnsupportedProtocol)
        except Exception as exc:  # a URL httpx refuses, a body that cannot be encoded...
            return f"cannot send: {type(exc).__name__}", False
        if response.status_code < 300:
            return "", False
        return f"HTTP {response.status_code}", (
            response.status_code >= 500 or response.status_code == 429
        )

    def _warn(self, name: str, what: str, extra: dict[str, Any]) -> None:
        """``notification to NAME WHAT`` as a warning at most every :data:`WARN_EVERY`
        seconds per target (the next one says how many were left out); debug otherwise."""
        now = time.monotonic()
        last = self._warned.get(name)
        if last is not None and now - last < WARN_EVERY:
            self._quiet[name] += 1
            log.debug("notification to %s %s", name, what, extra=extra)
            return
        self._warned[name] = now
        quiet, self._quiet[name] = self._quiet[name], 0
        more = f" ({quiet} more failed or dropped since the last warning)" if quiet else ""
        log.warning("notification to %s %s%s", name, what, more, extra=extra)
