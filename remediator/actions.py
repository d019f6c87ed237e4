"""Each remediation action against one panel: re-read the live state, act, verify.

Every action returns an :class:`Outcome` (``succeeded``, ``failed``,
``unverified`` or ``skipped_nothing_to_do`` with a reason); panel errors become
``failed`` with the error's reason word and operation, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from brainycp.client import MessageCommand, PanelClient
from brainycp.config import Rule, Selection
from brainycp.errors import BrainyCPError, PanelAPIError
from brainycp.queue import QueueMessage, iter_messages, summarize


@dataclass(frozen=True)
class Outcome:
    outcome: str
    reason: str


def _domain(address: str) -> str:
    return address.strip("<>").rpartition("@")[2].lower()


def selected(message: QueueMessage, select: Selection) -> bool:
    """True when ``message`` meets every criterion of ``select``."""
    if (
        select.sender is not None
        and message.sender.strip("<>").lower() != select.sender.strip("<>").lower()
    ):
        return False
    if select.sender_domain is not None and _domain(message.sender) != select.sender_domain.lower():
        return False
    if select.recipient_domain is not None:
        wanted = select.recipient_domain.lower()
        if not any(_domain(r) == wanted for r in message.recipients):
            return False
    if select.bounce is not None and (message.sender == "<>") != select.bounce:
        return False
    if select.frozen is not None and message.frozen != select.frozen:
        return False
    # The age the listing proves: an Exim "5m" is 300-359 s old, and counts as 300 here, so
    # a deletion never takes a message that may be younger than older_than.
    if select.older_than is not None and not message.proven_age_seconds > select.older_than:
        return False
    return select.larger_than is None or message.size_bytes > select.larger_than


def choose(messages: Iterable[QueueMessage], rule: Rule) -> tuple[list[QueueMessage], int]:
    """The messages to act on (oldest first) and how many matched in all."""
    assert rule.select is not None
    matching = sorted(
        (m for m in messages if selected(m, rule.select)), key=lambda m: -m.age_seconds
    )
    return matching[: rule.max_messages], len(matching)


async def _frozen_count(client: PanelClient) -> tuple[int, int]:
    listing = await client.list_msg()
    summary = summarize(listing.detail)
    return summary.frozen, summary.messages


async def delete_frozen(client: PanelClient, rule: Rule) -> Outcome:
    before, _ = await _frozen_count(client)
    if before == 0:
        return Outcome("skipped_nothing_to_do", "no frozen messages in the queue")
    result = await client.delete_frozen_msg()
    if not result.applicable:
        return Outcome("skipped_nothing_to_do", "the mail server has no frozen messages (code 100)")
    after, _ = await _frozen_count(client)
    if after == 0 or after < before:
        return Outcome("succeeded", f"frozen messages {before} -> {after}")
    return Outcome("unverified", f"frozen messages still {after} (were {before})")


async def delete_all(client: PanelClient, rule: Rule) -> Outcome:
    # count_msg, not list_msg: delete_all is for a queue so large that its listing may
    # exceed max_response_bytes or time out, and the count is all this action needs.
    before = await client.count_msg()
    if before == 0:
        return Outcome("skipped_nothing_to_do", "the queue is empty")
    try:
        await client.delete_all_msg(force=rule.force)
    except PanelAPIError as exc:
        if rule.force and str(exc.code) == "100":
            return Outcome("failed", "forced deletion is not supported by this mail server")
        raise
    after = await client.count_msg()
    if after == 0 or after < before:
        return Outcome("succeeded", f"queued messages {before} -> {after}")
    return Outcome("unverified", f"queued messages still {after} (were {before})")


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
    after = (await client.service(daemon, "status")).state
    if after == want:
        return Outcome("succeeded", f"{daemon} was {state}, now {after}")
    if after == "unknown":
        return Outcome("unverified", f"{daemon} status reads neither running nor stopped")
    return Outcome("failed", f"{daemon} still reads {after} after {rule.action}")


async def messages(client: PanelClient, rule: Rule) -> Outcome:
    command: MessageCommand = "delete" if rule.action == "delete_messages" else "reship"
    listing = await client.list_msg()
    # Ages decide "oldest first" and older_than: Postfix times are read in the panel's zone.
    chosen, total = choose(iter_messages(listing.detail, zone=client.panel.zone), rule)
    if total == 0:
        return Outcome("skipped_nothing_to_do", "no queued message matches the selection")
    if total > rule.max_messages and rule.limit == "refuse":
        return Outcome(
            "failed",
            f"too_many_messages: {total} match, max_messages is {rule.max_messages}; "
            "nothing done (set limit: first to act on the oldest)",
        )
    errors = 0
    for message in chosen:
        try:
            await client.controll_msg(message.id, command)
        except (PanelAPIError, ValueError):
            # One message may be gone (delivered) meanwhile; the others still count.
            errors += 1
    ids = {m.id for m in chosen}
    after = await client.list_msg()
    left = sum(1 for m in iter_messages(after.detail) if m.id in ids)
    done = f"{command} {len(chosen)} of {total} matching"
    if errors == len(chosen):
        return Outcome("failed", f"{done}: every controll_msg call failed")
    if left == 0:
        return Outcome("succeeded", done + (f" ({errors} calls failed)" if errors else ""))
    return Outcome("unverified", f"{done}: {left} still queued")


async def run(client: PanelClient, rule: Rule) -> Outcome:
    """Run ``rule``'s action on the panel behind ``client``; panel errors become ``failed``."""
    try:
        if rule.action == "delete_frozen":
            return await delete_frozen(client, rule)
        if rule.action == "delete_all":
            return await delete_all(client, rule)
        if rule.action in ("start_service", "stop_service", "restart_service"):
            return await service(client, rule)
        return await messages(client, rule)
    except BrainyCPError as exc:
        return Outcome("failed", f"{exc.reason}: {exc.operation}: {exc.detail}"[:300])
