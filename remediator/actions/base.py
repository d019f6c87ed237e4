"""What every action module declares and shares: :class:`ActionKind`, :class:`Outcome`,
the journal's record of a touched message, the queue read once in a worker, and the
read-back that failed."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from brainycp.panel.errors import BrainyCPError
from brainycp.queue import MessageFilter, QueueMessage, Reading, ReadOptions
from brainycp.queue.worker import ReadingFailed, ReadJob, shared_readers

if TYPE_CHECKING:
    from brainycp.panel.client import PanelClient
    from remediator.settings.rules import Rule

PARAMS = ("daemon", "force", "select", "max_messages", "limit")
"""What a rule or a manual request may set for an action, beyond the action's name."""
EXCLUSIVE = ("daemon", "force", "select")
"""Of those, the ones a rule may set only for an action that takes them (the others
have defaults on every rule)."""


@dataclass(frozen=True)
class MessageRecord:
    """One message an action acted on, and the panel's answer for it."""

    id: str
    sender: str | None = None
    recipients: int | None = None
    size_bytes: int | None = None
    age_seconds: float | None = None
    answer: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Confirmed = Callable[[Sequence[MessageRecord], "int | None"], Awaitable[None]]
"""Called with the messages the panel just answered for (and, when the panel names no
ids, the count it reported): the caller records them before the action verifies."""


async def unrecorded(records: Sequence[MessageRecord], total: int | None) -> None:
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


Run = Callable[["PanelClient", "Rule", Confirmed], Awaitable[Outcome]]
Preview = Callable[["PanelClient", "Rule"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ActionKind:
    """One kind of action, as its module declares it; the registry
    (:data:`remediator.actions.ACTIONS`) maps each of its names to it."""

    names: tuple[str, ...]
    takes: tuple[str, ...]
    """Of :data:`PARAMS`, what a rule or a manual request may set for it."""
    needs: tuple[str, ...]
    """Of those, what it cannot run without."""
    destructive: bool
    """It removes mail for good: a rule and a manual request need ``allow_destructive``."""
    idempotent: bool
    """Running it twice does no harm: a ``running`` row left by a crash runs again."""
    run: Run
    """Re-read the live state, act, record what the panel confirms, read back, judge."""
    preview: Preview
    """What it would act on now, changing nothing (manual ``dry_run``, approval requests)."""
    on_messages: bool = True
    """It acts on queued messages (an approval request counts the ones it would touch);
    False for a service."""
    everything: str = ""
    """Whom it acts on when that is not a selection: ``every frozen message``."""
    done: str = "touched"
    """What it did to the messages it records (``deleted``), for people's messages."""


ReadFailed = (BrainyCPError, ReadingFailed)
"""What a panel read can raise: the panel's errors, or a listing its reader could not read."""


def why(exc: BrainyCPError | ReadingFailed) -> str:
    """A panel error, or a listing its reader could not read, as one line."""
    if isinstance(exc, ReadingFailed):
        return f"{exc.reason}: list_msg: {exc.detail}"
    return f"{exc.reason}: {exc.operation}: {exc.detail}"


def unverified(done: str, exc: BrainyCPError | ReadingFailed, **kept: Any) -> Outcome:
    """The change was made but the read-back that verifies it failed."""
    return Outcome("unverified", f"{done}; the read-back failed: {why(exc)}"[:300], **kept)


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


def preview_of(reading: Reading, verdict: str = "") -> dict[str, Any]:
    """A preview of the messages ``reading`` selected: how many match, the verdict
    (``would act`` or ``nothing to do`` unless given) and the first ones."""
    total = reading.selected_total
    return {
        "matching": total,
        "verdict": verdict or ("would act" if total else "nothing to do"),
        "messages": [record(m, "").as_json() | {"answer": None} for m in reading.selected],
    }


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


# Exim's ``-Mrm`` line per message; Postfix's ``postsuper`` per-id line.
_REMOVED = re.compile(r"^(?:Message (\S+) has been removed|postsuper: ([0-9A-Za-z]+): removed)")


def removed_answers(detail: str) -> dict[str, str]:
    """``{message id: the panel's line for it}`` from a deletion's console output."""
    out: dict[str, str] = {}
    for line in detail.splitlines():
        match = _REMOVED.match(line.strip())
        if match:
            out[match.group(1) or match.group(2)] = line.strip()[:300]
    return out
