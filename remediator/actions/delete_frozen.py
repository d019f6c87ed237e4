"""``delete_frozen``: remove the frozen messages (Exim's undeliverable bounces), and see
the frozen count drop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainycp.queue import MessageFilter
from remediator.actions.base import (
    ActionKind,
    Confirmed,
    MessageRecord,
    Outcome,
    ReadFailed,
    preview_of,
    read_queue,
    record,
    removed_answers,
    unrecorded,
    unverified,
)

if TYPE_CHECKING:
    from brainycp.panel.client import PanelClient
    from remediator.settings.rules import Rule

FROZEN = MessageFilter(frozen=True)


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
    """List the frozen messages, delete them, record each removal, read the count back."""
    frozen = (await read_queue(client, FROZEN)).selected
    before = len(frozen)
    if before == 0:
        return Outcome("skipped_nothing_to_do", "no frozen messages in the queue")
    result = await client.delete_frozen_msg()
    if not result.applicable:
        return Outcome("skipped_nothing_to_do", "the mail server has no frozen messages (code 100)")
    answers = removed_answers(result.output)
    records = [record(m, answers.pop(m.id, "not in the panel's answer")) for m in frozen]
    # Frozen since our listing: the panel removed them too; we know only their id.
    records += [MessageRecord(id=i, answer=line) for i, line in answers.items()]
    await confirmed(records, None)
    kept: dict[str, Any] = {"messages": records, "messages_total": len(records)}
    try:
        # The read-back: how many frozen messages the queue holds now.
        after = (await read_queue(client)).summary.frozen
    except ReadFailed as exc:
        done = f"frozen messages deleted (were {before})"
        return unverified(done, exc, state={"before": {"frozen": before}}, **kept)
    kept["state"] = {"before": {"frozen": before}, "after": {"frozen": after}}
    if after == 0 or after < before:
        return Outcome("succeeded", f"frozen messages {before} -> {after}", **kept)
    return Outcome("unverified", f"frozen messages still {after} (were {before})", **kept)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """The frozen messages it would delete now, oldest first (at most ``max_messages``)."""
    return preview_of(await read_queue(client, FROZEN, rule.max_messages))


KIND = ActionKind(
    names=("delete_frozen",),
    takes=("max_messages",),
    needs=(),
    destructive=False,
    idempotent=True,
    run=run,
    preview=preview,
    everything="every frozen message",
    done="deleted",
)
