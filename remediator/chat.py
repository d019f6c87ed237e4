"""Chat text for people: one notification event as Slack mrkdwn or Telegram HTML.

A message is lines the remediator writes; each line starts with the remediator's
own words (a headline, or a prefix such as ``reason:``). Text from outside (panel
answers, alert labels, senders, rule and panel names, comments, operator names)
only ever sits inside a line, after its prefix: :func:`one_line` turns it into one
visible line (control characters, line and paragraph separators and invisible
format characters such as bidi overrides become ``\\n``, ``\\u202e``...), cuts it
to a length, and the target's quoting shows it as quoted code (Slack `` `...` ``,
Telegram ``<code>...</code>``), escaped for that markup. So no panel or alert can
add a line, a mention, a link or an ``approve:`` command of its own.
"""

from __future__ import annotations

import html
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from brainycp.daemon.logsetup import HIDDEN_CATEGORIES, escape_char
from remediator.actions import ACTIONS

Markup = Literal["slack", "telegram"]
Kind = Literal["ours", "quoted", "bold", "command"]

VALUE_CAP = 120
"""Longest outside value shown (names, senders, labels), in characters after escaping."""
TEXT_CAP = 300
"""Longest outside sentence shown (a reason, a comment). With these caps a message stays
far below Telegram's 4,096 characters (it refuses longer ones) and a phone's screen."""

# Categories that must not reach a chat as themselves: controls (Cc), invisible format
# characters (Cf: bidi overrides, zero-width joiners), line and paragraph separators
# (Zl, Zp), surrogates (Cs), private use (Co) and unassigned code points (Cn).
# Chat symbols for the headline: what the outcome means, at a glance.
_SYMBOL = {
    "awaiting_approval": "\u23f3",  # hourglass
    "succeeded": "\u2705",  # check mark
    "failed": "\u274c",  # cross
    "unverified": "\u26a0\ufe0f",  # warning
    "interrupted": "\u26a0\ufe0f",
    "circuit_open": "\U0001f6d1",  # stop sign
    "paused": "\u23f8\ufe0f",  # pause
    "resumed": "\u25b6\ufe0f",  # play
}
PREFIXES = (
    "selection:", "service:", "matching now:", "messages:", "rule:", "alert:",
    "approved by", "denied by", "by:", "reason:", "open:", "approve:", "deny:", "expires:",
)  # fmt: skip
"""How every line after the headline starts; nothing from outside starts a line."""


def one_line(text: object, cap: int = VALUE_CAP) -> str:
    """``text`` as one visible line of at most ``cap`` characters (``…`` marks a cut)."""
    out = []
    for char in str(text):
        if unicodedata.category(char) in HIDDEN_CATEGORIES:
            out.append(escape_char(char))
        else:
            out.append(char)
        if len(out) > cap:  # stop early: a megabyte of text costs no more than cap
            break
    line = "".join(out)
    return line if len(line) <= cap else line[: cap - 1] + "\u2026"


@dataclass(frozen=True)
class Part:
    """A piece of a line: the remediator's words, or a value from outside (quoted)."""

    text: str
    kind: Kind = "ours"
    cap: int = VALUE_CAP


Line = Sequence[Part]


def ours(text: str) -> Part:
    return Part(text)


def quoted(text: object, cap: int = VALUE_CAP) -> Part:
    return Part(str(text), "quoted", cap)


def _slack_escape(text: str) -> str:
    # Slack's three control characters (mrkdwn), escaped everywhere it shows text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _render_part(part: Part, markup: Markup) -> str:
    text = part.text
    if part.kind == "quoted":
        shown = one_line(text, part.cap)
        if not shown:
            return "(none)"
        if markup == "slack":
            # A backtick would end the code span early; U+02CB looks the same.
            return "`" + _slack_escape(shown.replace("`", "\u02cb")) + "`"
        return "<code>" + html.escape(shown, quote=False) + "</code>"
    if markup == "slack":
        text = _slack_escape(text)
        if part.kind == "bold":
            return f"*{text}*"
        return f"`{text}`" if part.kind == "command" else text
    text = html.escape(text, quote=False)
    if part.kind == "bold":
        return f"<b>{text}</b>"
    return f"<code>{text}</code>" if part.kind == "command" else text


def render(lines: Sequence[Line], markup: Markup) -> str:
    """``lines`` as one message in ``markup``; each line is one line of the result."""
    return "\n".join("".join(_render_part(p, markup) for p in line) for line in lines)


# ------------------------------------------------------------------------- what to say


def _headline(outcome: str, what: Sequence[Part]) -> Line:
    symbol = _SYMBOL.get(outcome, "\u2139\ufe0f")  # information
    return [ours(symbol + " "), Part(outcome.replace("_", " ").upper(), "bold"), *what]


def selection_parts(event: Mapping[str, Any]) -> list[Line]:
    """What the action acts on: its selection or service, and how many messages match."""
    kind = ACTIONS.get(str(event.get("action", "")))
    selection = event.get("selection") or {}
    lines: list[Line] = []
    if "daemon" in selection:
        lines.append([ours("service: "), quoted(selection["daemon"])])
    elif kind is not None and kind.everything:
        forced = " (forced)" if selection.get("force") else ""
        lines.append([ours(f"selection: {kind.everything}{forced}")])
    elif selection:
        line: list[Part] = [ours("selection:")]
        for key, value in selection.items():
            if key in ("max_messages", "limit"):
                continue
            line += [ours(f" {key.replace('_', ' ')} "), quoted(_criterion(key, value))]
        if "max_messages" in selection:
            most = _number(selection["max_messages"])
            if selection.get("limit") == "first":
                line.append(ours(f"; the oldest {most} messages at most"))
            else:
                line.append(ours(f"; at most {most} messages, else nothing"))
        lines.append(line)
    if "matching" in event:
        if isinstance(event["matching"], int):
            lines.append([ours(f"matching now: {_number(event['matching'])} messages")])
        else:
            problem = event.get("matching_error") or "unknown"
            lines.append([ours("matching now: unknown, "), quoted(problem, TEXT_CAP)])
    return lines


def _criterion(key: str, value: Any) -> str:
    if key == "older_than" and isinstance(value, (int, float)):
        return _duration(float(value))
    if key == "larger_than" and isinstance(value, int):
        return f"{value:,} bytes"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else one_line(value, 20)


def action_lines(event: Mapping[str, Any]) -> list[Line]:
    """The lines of an action's message, in reading order (headline first)."""
    outcome = str(event.get("outcome", ""))
    lines: list[Line] = [
        _headline(outcome, [ours(f": {event.get('action', '')} on "), quoted(event.get("panel"))])
    ]
    lines += selection_parts(event)
    total = event.get("messages_total")
    if isinstance(total, int) and outcome != "awaiting_approval":
        kind = ACTIONS.get(str(event.get("action")))
        verb = kind.done if kind is not None else "touched"
        lines.append([ours(f"messages: {_number(total)} {verb}")])
    alert = event.get("alert") or {}
    if event.get("origin") == "manual":
        lines.append([ours("rule: (manual) "), ours("asked by "),
                      quoted(event.get("requested_by") or "someone")])  # fmt: skip
    else:
        lines.append([ours("rule: "), quoted(event.get("rule"))])
        if alert.get("alertname"):
            line = [ours("alert: "), quoted(alert["alertname"])]
            if alert.get("status") in ("firing", "resolved"):
                line.append(ours(f" {alert['status']}"))
            if alert.get("starts_at"):
                line += [ours(" since "), quoted(alert["starts_at"], 40)]
            lines.append(line)
    decision = event.get("decision") or {}
    if decision.get("at"):
        verdict = "approved by " if outcome != "denied" else "denied by "
        line = [ours(verdict), quoted(decision.get("by") or "someone")]
        if decision.get("comment"):
            line += [ours(": "), quoted(decision["comment"], TEXT_CAP)]
        lines.append(line)
    if event.get("reason") and outcome != "awaiting_approval":  # that reason is the headline
        lines.append([ours("reason: "), quoted(event["reason"], TEXT_CAP)])
    if event.get("url"):
        lines.append([ours(f"open: {event['url']}")])
    commands = event.get("approval_commands")
    if commands and outcome == "awaiting_approval":
        lines.append([ours("approve: "), Part(commands["approve"], "command")])
        lines.append([ours("deny: "), Part(commands["deny"], "command")])
        if isinstance(event.get("expires_at"), (int, float)):
            at = float(event.get("at") or time.time())
            left = max(0, round(float(event["expires_at"]) - at))
            lines.append([ours(f"expires: in {_duration(float(left))} unless decided")])
    return lines


def control_lines(event: Mapping[str, Any]) -> list[Line]:
    """The lines of a pause, resume or circuit-breaker message."""
    lines: list[Line] = [_headline(str(event.get("outcome", "")), [ours(": remediator")])]
    if event.get("by"):
        lines.append([ours("by: "), quoted(event["by"])])
    if event.get("reason"):
        lines.append([ours("reason: "), quoted(event["reason"], TEXT_CAP)])
    if event.get("url"):
        lines.append([ours(f"open: {event['url']}")])
    return lines


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), (" min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def lines_of(event: Mapping[str, Any]) -> list[Line]:
    """The lines of any event."""
    return control_lines(event) if event.get("kind") == "control" else action_lines(event)


def message(event: Mapping[str, Any], markup: Markup) -> str:
    """``event`` as one chat message in ``markup``."""
    return render(lines_of(event), markup)
