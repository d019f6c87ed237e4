"""Each remediation action against one panel: re-read the live state, act, record, verify.

Every action returns an :class:`Outcome` (``succeeded``, ``failed``,
``unverified`` or ``skipped_nothing_to_do`` with a reason); panel errors become
``failed`` with the error's reason word and operation, never a secret. A panel
error after the change was made (the read-back that verifies it) is
``unverified``, not ``failed``: the change happened and is kept in the record.
The messages a deletion (or reship) touched are handed to ``confirmed`` as the
panel answers for them, before anything is verified, so the journal holds them
even when the verification fails or the process dies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from brainycp.panel.client import MessageCommand, PanelClient
from brainycp.panel.errors import BrainyCPError, PanelAPIError
from brainycp.queue import MessageFilter, QueueMessage, Reading, ReadOptions
from brainycp.queue.worker import ReadingFailed, ReadJob, shared_readers
from remediator.journal import MessageRecord
from remediator.settings.rules import Rule, Selection

Confirmed = Callable[[Sequence[MessageRecord], "int | None"], Awaitable[None]]
"""Called with the messages the panel just answered for (and, when the panel names no
ids, the count it reported): the caller records them before the action verifies."""


async def _unrecorded(records: Sequence[MessageRecord], total: int | None) -> None:
    """The default :data:`Confirmed`: nothing is recorded before the outcome."""


@dataclass(frozen=True)
class Outcome:
    """How an action ended; message actions also say which messages they touched."""

    outcome: str
    reason: str
    messages: Sequence[MessageRecord] = ()
    messages_total: int | None = None
    """Exact number of messages acted on (``messages`` may hold fewer)."""
    state: dict[str, Any] = field(default_factory=dict)
    """``{"before": ..., "after": ...}``: the live state read around the action."""


def _why(exc: BrainyCPError | ReadingFailed) -> str:
    """A panel error, or a listing its reader could not read, as one line."""
    if isinstance(exc, ReadingFailed):
        return f"{exc.reason}: list_msg: {exc.detail}"
    return f"{exc.reason}: {exc.operation}: {exc.detail}"


def _unverified(done: str, exc: BrainyCPError | ReadingFailed, **kept: Any) -> Outcome:
    """The change was made but the read-back that verifies it failed."""
    return Outcome("unverified", f"{done}; the read-back failed: {_why(exc)}"[:300], **kept)


def record(message: QueueMessage, answer: str) -> MessageRecord:
    """The journal's record of ``message`` with the panel's answer for it."""
    return MessageRecord(
        id=message.id,
        sender=message.sender,
        recipients=len(message.recipients),
        size_bytes=message.size_bytes,
        age_seconds=message.age_seconds,
        answer=answer,
    )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


# Exim's ``-Mrm`` line per message; Postfix's ``postsuper`` per-id line.
_REMOVED = re.compile(r"^(?:Message (\S+) has been removed|postsuper: ([0-9A-Za-z]+): removed)")
_DELETED_COUNT = re.compile(r"postsuper: Deleted: (\d+) message")


def removed_answers(detail: str) -> dict[str, str]:
    """``{message id: the panel's line for it}`` from a deletion's console output."""
    out: dict[str, str] = {}
    for line in detail.splitlines():
        match = _REMOVED.match(line.strip())
        if match:
            out[match.group(1) or match.group(2)] = line.strip()[:300]
    return out


def selection_filter(select: Selection) -> MessageFilter:
    """The message filter of a rule's ``select``: senders and domains compare as the
    exporter counts them (exact local part, ASCII-folded domain; see docs/remediation.md)."""
    return MessageFilter(
        sender=select.sender,
        sender_domain=select.sender_domain,
        recipient_domain=select.recipient_domain,
        bounce=select.bounce,
        frozen=select.frozen,
        older_than=select.older_than,
        larger_than=select.larger_than,
    )


def selected(message: QueueMessage, select: Selection) -> bool:
    """True when ``message`` meets every criterion of ``select``."""
    return selection_filter(select).matches(message)


async def read_queue(
    client: PanelClient, select: MessageFilter | None = None, limit: int | None = None
) -> Reading:
    """The panel's queue, read once in a worker process (never on the event loop): the
    summary and, with ``select``, the matching messages (oldest first, at most ``limit``).
    Raises the panel's errors, or :class:`ReadingFailed` when the listing's reader failed."""
    panel = client.panel
    options = ReadOptions(select=select, select_limit=limit)
    fetched = [await client.list_msg_body()]
    # Ages count from when the listing arrived; the body leaves this frame with the call,
    # so it is freed as soon as a worker has it.
    job = ReadJob(panel.name, time.time(), panel.zone, options)
    return await shared_readers().read(job, fetched.pop())


async def _frozen_count(client: PanelClient) -> tuple[int, int]:
    summary = (await read_queue(client)).summary
    return summary.frozen, summary.messages


async def delete_frozen(
    client: PanelClient, rule: Rule, confirmed: Confirmed = _unrecorded
) -> Outcome:
    frozen = (await read_queue(client, MessageFilter(frozen=True))).selected
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
        after, _ = await _frozen_count(client)
    except (BrainyCPError, ReadingFailed) as exc:
        done = f"frozen messages deleted (were {before})"
        return _unverified(done, exc, state={"before": {"frozen": before}}, **kept)
    kept["state"] = {"before": {"frozen": before}, "after": {"frozen": after}}
    if after == 0 or after < before:
        return Outcome("succeeded", f"frozen messages {before} -> {after}", **kept)
    return Outcome("unverified", f"frozen messages still {after} (were {before})", **kept)


async def delete_all(
    client: PanelClient, rule: Rule, confirmed: Confirmed = _unrecorded
) -> Outcome:
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
        return _unverified(done, exc, state={"before": {"messages": before}}, **kept)
    total = named if named is not None else before - after
    kept = {
        "messages": records,
        "messages_total": max(total, 0),
        "state": {"before": {"messages": before}, "after": {"messages": after}},
    }
    if after == 0 or after < before:
        return Outcome("succeeded", f"queued messages {before} -> {after}", **kept)
    return Outcome("unverified", f"queued messages still {after} (were {before})", **kept)


async def service(client: PanelClient, rule: Rule) -> Outcome:
    daemon = rule.daemon
    assert daemon is not None
    state = (await client.service(daemon, "status")).state
    if rule.action == "stop_service":
        if state == "stopped":
            return Outcome("skipped_nothing_to_do", f"{daemon} is already stopped")
        await client.service(daemon, "off")
        want = "stopped"
    else:
        if state == "running":
            return Outcome("skipped_nothing_to_do", f"{daemon} is already running")
        if rule.action == "restart_service":
            await client.service(daemon, "off")
        await client.service(daemon, "on")
        want = "running"
    try:
        after = (await client.service(daemon, "status")).state
    except BrainyCPError as exc:
        return _unverified(f"{daemon} was {state}; {rule.action} sent", exc)
    if after == want:
        return Outcome("succeeded", f"{daemon} was {state}, now {after}")
    if after == "unknown":
        return Outcome("unverified", f"{daemon} status reads neither running nor stopped")
    return Outcome("failed", f"{daemon} still reads {after} after {rule.action}")


async def messages(client: PanelClient, rule: Rule, confirmed: Confirmed = _unrecorded) -> Outcome:
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
    except (BrainyCPError, ReadingFailed) as exc:
        return _unverified(done, exc, state={"before": {"matching": total}}, **kept)
    kept["state"] = {"before": {"matching": total}, "after": {"still_queued": left}}
    if left == 0:
        return Outcome("succeeded", done + (f" ({errors} calls failed)" if errors else ""), **kept)
    return Outcome("unverified", f"{done}: {left} still queued", **kept)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """What ``rule`` would act on now, without changing anything (manual ``dry_run``)."""
    if rule.action in ("delete_messages", "reship_messages", "delete_frozen"):
        if rule.action == "delete_frozen":
            wanted = MessageFilter(frozen=True)
        else:
            assert rule.select is not None
            wanted = selection_filter(rule.select)
        reading = await read_queue(client, wanted, rule.max_messages)
        chosen, total = reading.selected, reading.selected_total
        verdict = "would act"
        if total == 0:
            verdict = "nothing to do"
        elif (
            total > rule.max_messages and rule.limit == "refuse" and rule.action != "delete_frozen"
        ):
            verdict = f"would refuse: {total} match, max_messages is {rule.max_messages}"
        return {
            "matching": total,
            "verdict": verdict,
            "messages": [record(m, "").as_json() | {"answer": None} for m in chosen],
        }
    if rule.action == "delete_all":
        count = await client.count_msg()
        return {"matching": count, "verdict": "would act" if count else "nothing to do",
                "messages": []}  # fmt: skip
    daemon = rule.daemon
    assert daemon is not None
    state = (await client.service(daemon, "status")).state
    return {"service": daemon, "state": state, "verdict": f"{daemon} reads {state}"}


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = _unrecorded) -> Outcome:
    """Run ``rule``'s action on the panel behind ``client``; panel errors become ``failed``
    (``unverified`` once the change was made); ``confirmed`` records as it goes."""
    try:
        if rule.action == "delete_frozen":
            return await delete_frozen(client, rule, confirmed)
        if rule.action == "delete_all":
            return await delete_all(client, rule, confirmed)
        if rule.action in ("start_service", "stop_service", "restart_service"):
            return await service(client, rule)
        return await messages(client, rule, confirmed)
    except (BrainyCPError, ReadingFailed) as exc:
        return Outcome("failed", _why(exc)[:300])
