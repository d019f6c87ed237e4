"""The remediation actions: one module per kind of action and the registry of them all.

Each module declares an :class:`~remediator.actions.base.ActionKind`: its names, the
parameters a rule or a manual request may set, whether it is destructive or
idempotent, how it runs and is verified (``run``) and what it would do (``preview``).
:data:`ACTIONS` maps every action name to its kind; the config checks, the runner,
manual requests, the console, notifications, metrics and the docs read it. A new
action is a module and a line in :data:`ACTIONS` (and its row in docs/remediation.md).

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

from collections.abc import Iterable
from typing import Any

from brainycp.config import Rule, Selection
from brainycp.panel.client import MessageCommand, PanelClient
from brainycp.panel.errors import BrainyCPError, PanelAPIError
from brainycp.queue import QueueMessage, iter_messages
from remediator.actions import delete_all, delete_frozen, service
from remediator.actions.base import (
    ActionKind,
    Confirmed,
    MessageRecord,
    Outcome,
    record,
    unrecorded,
    unverified,
)

__all__ = [
    "ACTIONS",
    "DESTRUCTIVE",
    "IDEMPOTENT",
    "ActionKind",
    "Confirmed",
    "MessageRecord",
    "Outcome",
    "preview",
    "run",
    "taking",
]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


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


async def messages(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
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
    ids = {m.id for m in chosen}
    try:
        after = await client.list_msg()
    except BrainyCPError as exc:
        return unverified(done, exc, state={"before": {"matching": total}}, **kept)
    left = sum(1 for m in iter_messages(after.detail) if m.id in ids)
    kept["state"] = {"before": {"matching": total}, "after": {"still_queued": left}}
    if left == 0:
        return Outcome("succeeded", done + (f" ({errors} calls failed)" if errors else ""), **kept)
    return Outcome("unverified", f"{done}: {left} still queued", **kept)


async def preview_messages(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """The queued messages a message action would touch now, and whether it would refuse."""
    listing = await client.list_msg()
    queued = iter_messages(listing.detail, zone=client.panel.zone)
    chosen, total = choose(queued, rule)
    verdict = "would act"
    if total == 0:
        verdict = "nothing to do"
    elif total > rule.max_messages and rule.limit == "refuse":
        verdict = f"would refuse: {total} match, max_messages is {rule.max_messages}"
    return {
        "matching": total,
        "verdict": verdict,
        "messages": [record(m, "").as_json() | {"answer": None} for m in chosen],
    }


_MESSAGE_PARAMS = ("select", "max_messages", "limit")
DELETE_MESSAGES = ActionKind(
    names=("delete_messages",),
    takes=_MESSAGE_PARAMS,
    needs=("select",),
    destructive=True,
    idempotent=False,
    run=messages,
    preview=preview_messages,
    done="deleted",
)
RESHIP_MESSAGES = ActionKind(
    names=("reship_messages",),
    takes=_MESSAGE_PARAMS,
    needs=("select",),
    destructive=False,
    idempotent=False,
    run=messages,
    preview=preview_messages,
    done="reshipped",
)

ACTIONS: dict[str, ActionKind] = {
    name: kind
    for kind in (
        delete_frozen.KIND,
        delete_all.KIND,
        service.KIND,
        DELETE_MESSAGES,
        RESHIP_MESSAGES,
    )
    for name in kind.names
}
"""Every action a rule or a person may ask for, by name, in the order the docs list them."""
DESTRUCTIVE = tuple(name for name, kind in ACTIONS.items() if kind.destructive)
"""Actions that remove mail for good: a rule or a person needs ``allow_destructive``."""
IDEMPOTENT = tuple(name for name, kind in ACTIONS.items() if kind.idempotent)
"""Actions that may run again after a crash left them ``running`` (the others become
``interrupted``)."""


def taking(param: str) -> tuple[str, ...]:
    """The actions a rule or a request may give ``param`` (``daemon``, ``select``...)."""
    return tuple(name for name, kind in ACTIONS.items() if param in kind.takes)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """What ``rule`` would act on now, without changing anything (manual ``dry_run``)."""
    return await ACTIONS[rule.action].preview(client, rule)


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
    """Run ``rule``'s action on the panel behind ``client``; panel errors become ``failed``
    (``unverified`` once the change was made); ``confirmed`` records as it goes."""
    try:
        return await ACTIONS[rule.action].run(client, rule, confirmed)
    except BrainyCPError as exc:
        return Outcome("failed", f"{exc.reason}: {exc.operation}: {exc.detail}"[:300])
