"""``delete_messages`` and ``reship_messages``: the queued messages a rule's ``select``
names, one ``controll_msg`` each, oldest first and at most ``max_messages``; then a
read-back that none of them is still queued. ``delete_messages`` is destructive."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from brainycp.panel.errors import PanelAPIError
from brainycp.queue import MessageFilter, QueueMessage
from remediator.actions.base import (
    ActionKind,
    Confirmed,
    Outcome,
    ReadFailed,
    preview_of,
    read_queue,
    record,
    unrecorded,
    unverified,
)

if TYPE_CHECKING:
    from brainycp.panel.client import MessageCommand, PanelClient
    from remediator.actions.base import MessageRecord
    from remediator.settings.rules import Rule, Selection


def selection_filter(select: Selection) -> MessageFilter:
    """The message filter of a rule's ``select`` (same criteria, same names): senders and
    domains compare as the exporter counts them (exact local part, ASCII-folded domain;
    see docs/remediation.md)."""
    return MessageFilter(**select.model_dump())


def selected(message: QueueMessage, select: Selection) -> bool:
    """True when ``message`` meets every criterion of ``select``."""
    return selection_filter(select).matches(message)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
    """Select, refuse above ``max_messages`` (``limit: refuse``), act on each message and
    record its answer, then read back which of them are still queued."""
    command: MessageCommand = "delete" if rule.action == "delete_messages" else "reship"
    assert rule.select is not None
    # Ages decide "oldest first" and older_than: Postfix times are read in the panel's zone.
    reading = await read_queue(client, selection_filter(rule.select), rule.max_messages)
    chosen, total = reading.selected, reading.selected_total
    if total == 0:
        return Outcome("skipped_nothing_to_do", "no queued message matches the selection")
    if total > rule.max_messages and rule.limit == "refuse":
        return Outcome(
            "failed",
            f"too_many_messages: {total} match, max_messages is {rule.max_messages}; "
            "nothing done (set limit: first to act on the oldest)",
        )
    errors = 0
    records: list[MessageRecord] = []
    for message in chosen:
        try:
            answer = await client.controll_msg(message.id, command)
            text = _first_line(answer.output) or answer.message or "ok"
        except (PanelAPIError, ValueError) as exc:
            # One message may be gone (delivered) meanwhile; the others still count.
            errors += 1
            text = f"error: {exc}"[:300]
        records.append(record(message, text))
        await confirmed(records[-1:], None)
    done = f"{command} {len(chosen)} of {total} matching"
    kept: dict[str, Any] = {"messages": records, "messages_total": len(records)}
    if errors == len(chosen):
        return Outcome("failed", f"{done}: every controll_msg call failed", **kept)
    ids = frozenset(m.id for m in chosen)
    try:
        left = (await read_queue(client, MessageFilter(ids=ids), 0)).selected_total
    except ReadFailed as exc:
        return unverified(done, exc, state={"before": {"matching": total}}, **kept)
    kept["state"] = {"before": {"matching": total}, "after": {"still_queued": left}}
    if left == 0:
        return Outcome("succeeded", done + (f" ({errors} calls failed)" if errors else ""), **kept)
    return Outcome("unverified", f"{done}: {left} still queued", **kept)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """The queued messages it would touch now, and whether it would refuse."""
    assert rule.select is not None
    reading = await read_queue(client, selection_filter(rule.select), rule.max_messages)
    total = reading.selected_total
    refuses = total > rule.max_messages and rule.limit == "refuse"
    verdict = f"would refuse: {total} match, max_messages is {rule.max_messages}"
    return preview_of(reading, verdict if refuses else "")


DELETE = ActionKind(
    names=("delete_messages",),
    takes=("select", "max_messages", "limit"),
    needs=("select",),
    destructive=True,
    idempotent=False,
    run=run,
    preview=preview,
    done="deleted",
)
RESHIP = replace(DELETE, names=("reship_messages",), destructive=False, done="reshipped")
