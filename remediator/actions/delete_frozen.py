"""``delete_frozen``: remove the frozen messages (Exim's undeliverable bounces), and see
the frozen count drop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainycp.panel.errors import BrainyCPError
from brainycp.queue import iter_messages, summarize
from remediator.actions.base import (
    ActionKind,
    Confirmed,
    MessageRecord,
    Outcome,
    record,
    removed_answers,
    unverified,
)

if TYPE_CHECKING:
    from brainycp.config import Rule
    from brainycp.panel.client import PanelClient


async def frozen_count(client: PanelClient) -> int:
    """The read-back: how many frozen messages the queue holds now."""
    listing = await client.list_msg()
    return summarize(listing.detail).frozen


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed) -> Outcome:
    """List the frozen messages, delete them, record each removal, read the count back."""
    listing = await client.list_msg()
    frozen = [m for m in iter_messages(listing.detail, zone=client.panel.zone) if m.frozen]
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
        after = await frozen_count(client)
    except BrainyCPError as exc:
        done = f"frozen messages deleted (were {before})"
        return unverified(done, exc, state={"before": {"frozen": before}}, **kept)
    kept["state"] = {"before": {"frozen": before}, "after": {"frozen": after}}
    if after == 0 or after < before:
        return Outcome("succeeded", f"frozen messages {before} -> {after}", **kept)
    return Outcome("unverified", f"frozen messages still {after} (were {before})", **kept)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """The frozen messages it would delete now, oldest first (at most ``max_messages``)."""
    listing = await client.list_msg()
    queued = iter_messages(listing.detail, zone=client.panel.zone)
    frozen = sorted((m for m in queued if m.frozen), key=lambda m: -m.age_seconds)
    return {
        "matching": len(frozen),
        "verdict": "would act" if frozen else "nothing to do",
        "messages": [
            record(m, "").as_json() | {"answer": None} for m in frozen[: rule.max_messages]
        ],
    }


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
