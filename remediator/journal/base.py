"""What the journal's parts share: errors, health, row types, the dialect protocol, common SQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict

import psycopg

from remediator.planner import COUNTING_OUTCOMES, EPISODE_OUTCOMES

MAX_MESSAGE_RECORDS = 10_000
CONTROLS = ("paused", "circuit_open")


class JournalError(Exception):
    """The journal cannot be used as it is (corrupt, not a journal, from a newer version);
    the message says why and what to do."""


class JournalUnavailable(Exception):
    """The journal did not run a call: it is closed, or the database did not answer in time."""


class JournalTimeout(JournalUnavailable):
    """The database did not answer within the bound the caller or the journal set."""


JOURNAL_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, JournalUnavailable)
"""What a journal call raises when the database cannot be read or written."""


def first_line(exc: BaseException) -> str:
    """A database error for logs, /healthz and health: its first line, bounded (never a
    password: the journal's password is passed apart from the URL and no error quotes it)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def storable(params: Sequence[Any], *, nul: bool) -> list[Any]:
    """Parameters the database can store: a lone surrogate (from a JSON escape in a panel
    answer or a request) becomes U+FFFD, the replacement character, as it cannot be
    encoded; with ``nul`` (PostgreSQL, whose text cannot hold it) so does U+0000."""
    out = list(params)
    for index, value in enumerate(out):
        if isinstance(value, str):
            if nul and "\x00" in value:
                value = out[index] = value.replace("\x00", "\ufffd")
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    out[index] = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return out


class Health:
    """What the journal's own calls say about it, kept by the journal itself.

    A failed write sets :attr:`write_error`, which only a committed write clears: a
    read that works (a ping, a scrape) says nothing about a full disk. A failed read
    or a database that stops answering sets :attr:`read_error`, which any statement
    that works clears. Written from the journal's thread, read from the event loop
    (plain attribute writes).
    """

    KINDS = ("write", "read", "cut_off")

    def __init__(self) -> None:
        self.write_error = ""
        self.write_failed_at = 0.0
        """``time.monotonic()`` of the last failed write."""
        self.read_error = ""
        self.failures = dict.fromkeys(self.KINDS, 0)
        """Failures so far by kind: a write or a read the database refused, a call cut off
        because the database stopped answering (``brainycp_remediator_journal_failures_total``)."""

    @property
    def reason(self) -> str:
        """``""`` while the journal works, else why it does not."""
        return self.write_error or self.read_error

    def write_failed(self, reason: str) -> None:
        self.write_error = reason or "a write failed"
        self.write_failed_at = time.monotonic()
        self.failures["write"] += 1

    def wrote(self) -> None:
        self.write_error = self.read_error = ""

    def read_failed(self, reason: str) -> None:
        self.read_error = reason or "a read failed"
        self.failures["read"] += 1

    def cut_off(self) -> None:
        self.failures["cut_off"] += 1

    def read(self) -> None:
        self.read_error = ""


class NewRow(TypedDict):
    """The arguments of :meth:`Journal.insert` and :meth:`Batch.insert`: one new row.

    ``params`` is what the action runs with beyond its rule (the selection with label
    values filled in, a manual request); ``origin`` is ``alert`` (the default) or
    ``manual``; ``counts`` overrides whether the row holds the rate limit.
    """

    rule: str
    panel: str
    action: str
    outcome: str
    reason: str
    received_at: float
    alertname: str
    fingerprint: str
    starts_at: str
    alert_status: str
    labels: dict[str, str]
    dedupe_key: str
    params: NotRequired[dict[str, Any] | None]
    origin: NotRequired[str]
    requested_by: NotRequired[str]
    counts: NotRequired[bool | None]


@dataclass(frozen=True)
class ActionRow:
    """One journal row as the API shows it."""

    id: int
    rule: str
    panel: str
    action: str
    outcome: str
    reason: str
    received_at: float
    started_at: float | None
    finished_at: float | None
    alertname: str
    fingerprint: str
    starts_at: str
    alert_status: str

    def as_json(self) -> dict[str, Any]:
        """The ``GET /actions`` shape."""
        return {
            "id": self.id,
            "rule": self.rule,
            "panel": self.panel,
            "action": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
            "received_at": self.received_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "alert": {
                "alertname": self.alertname,
                "fingerprint": self.fingerprint,
                "starts_at": self.starts_at,
                "status": self.alert_status,
            },
        }


def flags(outcome: str) -> tuple[int, int]:
    """``(counts, episode)`` of a row with ``outcome``."""
    return int(outcome in COUNTING_OUTCOMES), int(outcome in EPISODE_OUTCOMES)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Dialect(Protocol):
    """What differs between the engines; everything else is shared SQL.

    ``progress`` is called after every statement the database answered (the
    journal's worker uses it to tell a slow call from a stalled one); ``abort``
    may be called from another thread to end a statement that waits forever.
    """

    name: str
    shared: bool
    types: dict[str, str]
    reserve_sql: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def begin(self, durable: bool) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def end(self, durable: bool) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]: ...

    def reserve_ids(self, count: int) -> list[int]: ...

    def version(self) -> int: ...

    def set_version(self, version: int) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


COLUMNS = (
    "id, rule, panel, action, outcome, reason, received_at, started_at, finished_at, "
    "alertname, fingerprint, starts_at, alert_status"
)
INSERT_ROW = (
    "INSERT INTO actions (id, rule, panel, action, outcome, reason, received_at, "
    "finished_at, alertname, fingerprint, starts_at, alert_status, labels, "
    "dedupe_key, counts, episode, lease_owner, lease_expires, params, origin, "
    "requested_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_MESSAGE = (
    "INSERT INTO action_messages (action_id, seq, message_id, sender, recipients, "
    "size_bytes, age_seconds, answer) VALUES (?,?,?,?,?,?,?,?) "
    "ON CONFLICT (action_id, seq) DO UPDATE SET message_id = excluded.message_id, "
    "sender = excluded.sender, recipients = excluded.recipients, "
    "size_bytes = excluded.size_bytes, age_seconds = excluded.age_seconds, "
    "answer = excluded.answer"
)

# The planner's questions (JournalView), shared by Journal and Batch.
EPISODE_LAST = (
    "SELECT id, outcome, received_at FROM actions WHERE dedupe_key = ? AND episode = 1 "
    "ORDER BY id DESC LIMIT 1"
)
LAST_ACCEPTED = "SELECT MAX(received_at) FROM actions WHERE rule = ? AND panel = ? AND counts = 1"
ACCEPTED_SINCE = "SELECT COUNT(*) FROM actions WHERE counts = 1 AND received_at > ?"
# The same count, stopped at a cap: the planner only compares it with max_actions.
ACCEPTED_SINCE_UP_TO = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM actions WHERE counts = 1 AND received_at > ? "
    "LIMIT ?) AS capped"
)
