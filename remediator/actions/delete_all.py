"""``delete_all``: empty the whole queue (``force``: the panel's forced deletion), and see
the queue's count drop. Destructive: it needs ``allow_destructive``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from brainycp.panel.errors import BrainyCPError, PanelAPIError
from remediator.actions.base import (
    ActionKind,
    Confirmed,
    MessageRecord,
    Outcome,
    removed_answers,
    unrecorded,
    unverified,
)

if TYPE_CHECKING:
    from brainycp.panel.client import PanelClient
    from remediator.settings.rules import Rule

_DELETED_COUNT = re.compile(r"postsuper: Deleted: (\d+) message")


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
    """Count, delete all, record what the panel names, count again."""
    # count_msg, not list_msg: delete_all is for a queue so large that its listing may
    # exceed max_response_bytes or time out, and the count is all this action needs.
    before = await client.count_msg()
    if before == 0:
        return Outcome("skipped_nothing_to_do", "the queue is empty")
    try:
        result = await client.delete_all_msg(force=rule.force)
    except PanelAPIError as exc:
        if rule.force and str(exc.code) == "100":
            return Outcome("failed", "forced deletion is not supported by this mail server")
        raise
    # No listing before (see above): the record is what the panel's answer names. Exim
    # prints one line per id; Postfix only "Deleted: N messages", so ids are unknown.
    answers = removed_answers(result.output)
    records = [MessageRecord(id=i, answer=line) for i, line in answers.items()]
    counted = _DELETED_COUNT.search(result.output)
    named = len(records) if records else int(counted.group(1)) if counted else None
    await confirmed(records, named)
    try:
        after = await client.count_msg()
    except BrainyCPError as exc:
        kept: dict[str, Any] = {"messages": records, "messages_total": named}
        done = f"queued messages deleted (were {before})"
        return unverified(done, exc, state={"before": {"messages": before}}, **kept)
    total = named if named is not None else before - after
    kept = {
        "messages": records,
        "messages_total": max(total, 0),
        "state": {"before": {"messages": before}, "after": {"messages": after}},
    }
    if after == 0 or after < before:
        return Outcome("succeeded", f"queued messages {before} -> {after}", **kept)
    return Outcome("unverified", f"queued messages still {after} (were {before})", **kept)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """How many messages it would delete now (the cheap count, never the listing)."""
    count = await client.count_msg()
    return {"matching": count, "verdict": "would act" if count else "nothing to do",
            "messages": []}  # fmt: skip


KIND = ActionKind(
    names=("delete_all",),
    takes=("force",),
    needs=(),
    destructive=True,
    idempotent=False,
    run=run,
    preview=preview,
    everything="every queued message",
    done="deleted",
)
