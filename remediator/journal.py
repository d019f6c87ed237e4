"""The action journal: one SQLite file (stdlib ``sqlite3``, WAL) that survives restarts.

Calls are short and synchronous on the event loop: each is an indexed lookup or
a one-row write (well under a millisecond), and doing them inline keeps the
webhook's "journal, then answer" step atomic without a thread hand-off.
Accepting notifications commits with ``synchronous=FULL``: in WAL mode that
fsyncs the log on every commit, so a notification answered 2xx survives a power
loss, not just a crash. Notifications that arrive together share one commit
(group commit, see :mod:`remediator.app`), each inside its own savepoint.
Claiming an action (``pending`` -> ``running``) also commits with
``synchronous=FULL``, before its first panel call is sent: after any crash or
power cut, a ``pending`` row is known never to have reached the panel (it is
run at the next start) and only a ``running`` row may have (it is resumed when
idempotent, ``interrupted`` otherwise). Finishing an action commits with
``synchronous=NORMAL`` (no fsync of its own; the next FULL commit carries it):
losing one to a power cut only makes recovery treat the action as unfinished,
which is safe.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator.planner import COUNTING_OUTCOMES, EPISODE_OUTCOMES, STARTED_OUTCOMES, EpisodeRun

IDEMPOTENT_ACTIONS = ("delete_frozen", "start_service", "stop_service", "restart_service")
log = logging.getLogger("remediator.journal")

SCHEMA_VERSION = 2
"""The journal's schema version, kept in ``PRAGMA user_version``.

Version 1 is :data:`_SCHEMA`. A journal from before versioning reads 0 and has
version 1's tables. To change the schema, add ``_MIGRATIONS[n]`` (the SQL that
takes a version-``n`` journal to ``n + 1``) and raise this number: older
journals are migrated forward at start, each step in its own transaction, and a
journal from a newer version is refused. A new journal is created at version 1
and migrated like any other, so every journal runs the same SQL.

Version 2 (issue 14): approvals, the brakes, manual actions and message records.
"""
_OWNER: contextvars.ContextVar[object] = contextvars.ContextVar("journal_owner", default=None)


class JournalBusy(sqlite3.OperationalError):
    """Another task holds a sliced transaction open; wait for :meth:`Journal.quiet`."""


_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    panel TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    alertname TEXT NOT NULL DEFAULT '',
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alert_status TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    dedupe_key TEXT NOT NULL,
    counts INTEGER NOT NULL DEFAULT 0,
    episode INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_episode ON actions (dedupe_key, episode, id);
CREATE INDEX IF NOT EXISTS actions_rule_panel ON actions (rule, panel, counts, received_at);
CREATE INDEX IF NOT EXISTS actions_counting ON actions (counts, received_at);
CREATE INDEX IF NOT EXISTS actions_outcome ON actions (outcome, rule, fingerprint);
"""

# Version 2 (issue 14), plain SQL that ports to another backend:
# - actions gains params (what the action runs with beyond its rule: the selection
#   with alert-label values filled in, or a manual request), origin (alert|manual),
#   requested_by, the approval decision, messages_total and state (before/after);
# - action_messages: the messages an action touched, at most MAX_MESSAGE_RECORDS per
#   action (actions.messages_total holds the exact count);
# - control: the pause switch and the circuit breaker, one row each, so a restart
#   keeps them; control_log: who flipped them, when and why.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE actions ADD COLUMN params TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE actions ADD COLUMN origin TEXT NOT NULL DEFAULT 'alert'",
        "ALTER TABLE actions ADD COLUMN requested_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE actions ADD COLUMN decided_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE actions ADD COLUMN decided_at REAL",
        "ALTER TABLE actions ADD COLUMN decision_comment TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE actions ADD COLUMN messages_total INTEGER",
        "ALTER TABLE actions ADD COLUMN state TEXT NOT NULL DEFAULT '{}'",
        """CREATE TABLE action_messages (
            action_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            message_id TEXT NOT NULL,
            sender TEXT,
            recipients INTEGER,
            size_bytes INTEGER,
            age_seconds REAL,
            answer TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (action_id, seq)
        )""",
        """CREATE TABLE control (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL,
            changed_at REAL NOT NULL,
            changed_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE control_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            name TEXT NOT NULL,
            value INTEGER NOT NULL,
            changed_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX actions_started ON actions (outcome, origin, started_at, received_at)",
    ),
}
MAX_MESSAGE_RECORDS = 10_000
CONTROLS = ("paused", "circuit_open")


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
        return {
            "id": self.id,
            "sender": self.sender,
            "recipients": self.recipients,
            "size_bytes": self.size_bytes,
            "age_seconds": self.age_seconds,
            "answer": self.answer,
        }


_COLUMNS = (
    "id, rule, panel, action, outcome, reason, received_at, started_at, finished_at, "
    "alertname, fingerprint, starts_at, alert_status"
)


class JournalError(Exception):
    """The journal file cannot be used as it is; the message says why and what to do."""


def _move_aside(path: Path) -> str:
    return (
        "stop the remediator and move the journal aside with its -wal and -shm files "
        f"(keep them for inspection): mv {path} {path}.bad; mv {path}-wal {path}.bad-wal; "
        f"mv {path}-shm {path}.bad-shm (a missing -wal or -shm is fine); the next start "
        "creates an empty journal (history, dedupe and cooldown state start over). "
        f"Rows may be salvaged with: sqlite3 {path}.bad .recover | sqlite3 salvaged.sqlite"
    )


def _create(path: Path) -> None:
    """A new, empty journal at ``path``, mode 0600, appearing whole or not at all.

    Built under a temporary name and linked into place, so a crash while it is
    created never leaves an empty or half-made file that the next start would refuse.
    """
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        db = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("PRAGMA user_version=1")  # the migrations bring it to SCHEMA_VERSION
        finally:
            db.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.link(tmp, path)  # never replaces a file that appeared meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check(path: Path) -> sqlite3.Connection:
    """Open an existing journal for writing after checking it; :class:`JournalError` if unfit."""
    if not path.is_file():
        raise JournalError(f"journal {path}: not a regular file; {_move_aside(path)}")
    with open(path, "rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    if not header:
        raise JournalError(
            f"journal {path}: the file is empty (0 bytes), so its history is gone or it is not "
            f"a journal; the remediator does not overwrite it. To start afresh, "
            + _move_aside(path)
        )
    if header != _SQLITE_HEADER:
        raise JournalError(
            f"journal {path}: not an SQLite database (bad header); it may be corrupt or "
            f"another file. {_move_aside(path)}"
        )
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists() and name.stat().st_mode & 0o077:
            log.warning("journal %s was readable by others; now 0600", name)
            name.chmod(0o600)
    db = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=rw", uri=True, isolation_level=None,
        check_same_thread=False,
    )  # fmt: skip
    try:
        problems = [row[0] for row in db.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            found = "; ".join(" ".join(str(p).split()) for p in problems)[:500]
            raise JournalError(
                f"journal {path}: corrupt (PRAGMA quick_check: {found}). " + _move_aside(path)
            )
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path}: schema version {version} was written by a newer "
                f"brainycp-mail (this one knows version {SCHEMA_VERSION} and will not "
                "downgrade it); run that version, or " + _move_aside(path)
            )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and tables and "actions" not in tables:
            raise JournalError(
                f"journal {path}: an SQLite database that is not a brainycp-mail journal "
                f"(tables: {', '.join(sorted(tables))[:200]}); check remediator.state_file"
            )
    except sqlite3.DatabaseError as exc:
        db.close()
        raise JournalError(f"journal {path}: cannot be read ({exc}). {_move_aside(path)}") from None
    except BaseException:
        db.close()
        raise
    return db


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


def _flags(outcome: str) -> tuple[int, int]:
    return int(outcome in COUNTING_OUTCOMES), int(outcome in EPISODE_OUTCOMES)


class Journal:
    """The remediator's state; implements :class:`remediator.planner.JournalView`."""

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the journal; :class:`JournalError` when the file is unfit.

        An existing file is checked first (SQLite header, ``PRAGMA quick_check``,
        schema version) and never overwritten or truncated; a new one is created
        whole with mode 0600. Older schema versions are migrated forward.
        """
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        if str(path) == ":memory:":
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            if not file.exists():
                _create(file)
            self._db = _check(file)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        self._sliced = False
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._migrate()

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for start in range(max(version, 1), SCHEMA_VERSION):
            with self.transaction():
                for statement in _MIGRATIONS[start]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={start + 1}")
        if version < 1:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self, *, sliced: bool = False) -> Iterator[None]:
        """One atomic write: everything inside commits together or not at all.

        ``sliced=True``: the caller (one asyncio task) yields to the event loop
        inside the transaction. Until it ends, every other task's journal call
        raises :class:`JournalBusy` instead of joining (or reading) the open
        transaction; :meth:`quiet` waits for the end.
        """
        self._guard()
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        token = None
        if sliced:
            self._sliced = True
            self._quiet.clear()
            token = _OWNER.set(self)
        try:
            yield
        except BaseException:
            self._in_tx = False
            self._db.execute("ROLLBACK")
            raise
        else:
            self._in_tx = False
            self._db.execute("COMMIT")
        finally:
            if token is not None:
                _OWNER.reset(token)
                self._sliced = False
                self._quiet.set()

    def _guard(self) -> None:
        if self._sliced and _OWNER.get() is not self:
            raise JournalBusy("the journal is busy with a large notification; retry")

    async def quiet(self) -> None:
        """Wait until no sliced transaction is open (returns at once when none is)."""
        while self._sliced:
            await self._quiet.wait()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside :meth:`transaction`: a nested unit that rolls back alone on error."""
        self._db.execute("SAVEPOINT notification")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO notification")
            self._db.execute("RELEASE notification")
            raise
        self._db.execute("RELEASE notification")

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[None]:
        self._guard()
        if self._in_tx:
            yield
        elif durable:
            with self.transaction():
                yield
        else:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self.transaction():
                    yield
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    # ------------------------------------------------------------------ JournalView

    def episode_last(self, dedupe_key: str) -> EpisodeRun | None:
        row = self._db.execute(
            "SELECT id, outcome, received_at FROM actions WHERE dedupe_key = ? AND episode = 1 "
            "ORDER BY id DESC LIMIT 1",
            (dedupe_key,),
        ).fetchone()
        return EpisodeRun(row[0], row[1], row[2]) if row else None

    def last_accepted(self, rule: str, panel: str) -> float | None:
        row = self._db.execute(
            "SELECT MAX(received_at) FROM actions WHERE rule = ? AND panel = ? AND counts = 1",
            (rule, panel),
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def accepted_since(self, since: float) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM actions WHERE counts = 1 AND received_at > ?", (since,)
        ).fetchone()
        return int(row[0])

    def pending_ids(self, rule: str, fingerprint: str, starts_at: str) -> list[int]:
        rows = self._db.execute(
            "SELECT id FROM actions WHERE outcome IN ('pending', 'awaiting_approval') "
            "AND rule = ? AND fingerprint = ? AND starts_at = ? AND alert_status = 'firing'",
            (rule, fingerprint, starts_at),
        ).fetchall()
        return [r[0] for r in rows]

    def episode_runs(self, dedupe_key: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM actions WHERE dedupe_key = ? AND counts = 1", (dedupe_key,)
        ).fetchone()
        return int(row[0])

    def paused(self) -> bool:
        return self._control("paused")

    def circuit_open(self) -> bool:
        return self._control("circuit_open")

    def panels_started_since(self, since: float) -> set[str]:
        marks = ", ".join("?" * len(STARTED_OUTCOMES))
        rows = self._db.execute(
            f"SELECT DISTINCT panel FROM actions WHERE origin = 'alert' AND outcome IN ({marks}) "
            "AND COALESCE(started_at, received_at) > ?",
            (*STARTED_OUTCOMES, since),
        ).fetchall()
        return {r[0] for r in rows}

    def _control(self, name: str) -> bool:
        row = self._db.execute("SELECT value FROM control WHERE name = ?", (name,)).fetchone()
        return bool(row and row[0])

    # ------------------------------------------------------------------ pause and breaker

    def set_control(self, name: str, value: bool, by: str, reason: str, now: float) -> bool:
        """Set the pause switch or the breaker; returns True when it changed (logged)."""
        assert name in CONTROLS
        with self._write():
            if self._control(name) == value:
                return False
            self._db.execute(
                "INSERT INTO control (name, value, changed_at, changed_by, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "changed_at = excluded.changed_at, changed_by = excluded.changed_by, "
                "reason = excluded.reason",
                (name, int(value), now, by, reason),
            )
            self._db.execute(
                "INSERT INTO control_log (at, name, value, changed_by, reason) VALUES (?,?,?,?,?)",
                (now, name, int(value), by, reason),
            )
        return True

    def controls(self) -> dict[str, dict[str, Any]]:
        """``{"paused": {...}, "circuit_open": {...}}``: value, since when, by whom, why."""
        out: dict[str, dict[str, Any]] = {
            name: {"value": False, "changed_at": None, "changed_by": "", "reason": ""}
            for name in CONTROLS
        }
        for name, value, at, by, reason in self._db.execute(
            "SELECT name, value, changed_at, changed_by, reason FROM control"
        ):
            if name in out:
                out[name] = {"value": bool(value), "changed_at": at, "changed_by": by,
                             "reason": reason}  # fmt: skip
        return out

    # ------------------------------------------------------------------ writes

    def insert(
        self,
        *,
        rule: str,
        panel: str,
        action: str,
        outcome: str,
        reason: str,
        received_at: float,
        alertname: str,
        fingerprint: str,
        starts_at: str,
        alert_status: str,
        labels: dict[str, str],
        dedupe_key: str,
        params: dict[str, Any] | None = None,
        origin: str = "alert",
        requested_by: str = "",
        counts: bool | None = None,
    ) -> int:
        """Add one row; returns its id.

        ``params`` is what the action runs with beyond its rule (the selection with
        label values filled in, a manual request); ``origin`` is ``alert`` or ``manual``.
        """
        counting, episode = _flags(outcome)
        if counts is not None:  # a manual preview holds no rate limit
            counting = int(counts)
        finished = None if outcome in ("pending", "running", "awaiting_approval") else received_at
        with self._write():
            cur = self._db.execute(
                "INSERT INTO actions (rule, panel, action, outcome, reason, received_at, "
                "finished_at, alertname, fingerprint, starts_at, alert_status, labels, "
                "dedupe_key, counts, episode, params, origin, requested_by) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rule, panel, action, outcome, reason, received_at, finished, alertname,
                    fingerprint, starts_at, alert_status, json.dumps(labels, sort_keys=True),
                    dedupe_key, counting, episode, json.dumps(params or {}, sort_keys=True),
                    origin, requested_by,
                ),
            )  # fmt: skip
        assert cur.lastrowid is not None
        return cur.lastrowid

    def cancel(self, ids: Sequence[int], reason: str, now: float) -> list[int]:
        """Mark still-pending rows ``cancelled``; returns the ids that were pending."""
        done = []
        with self._write():
            for action_id in ids:
                cur = self._db.execute(
                    "UPDATE actions SET outcome = 'cancelled', reason = ?, finished_at = ?, "
                    "counts = 0, episode = 1 WHERE id = ? "
                    "AND outcome IN ('pending', 'awaiting_approval')",
                    (reason, now, action_id),
                )
                if cur.rowcount:
                    done.append(action_id)
        return done

    def claim(self, action_id: int, now: float) -> bool:
        """``pending`` -> ``running``, durably; False when the row is no longer pending.

        Called right before the action's first panel call: the commit is fsynced
        (``synchronous=FULL``) so that a crash at any later point leaves the row
        ``running`` ("may have reached the panel"), never ``pending``.
        """
        with self._write():
            cur = self._db.execute(
                "UPDATE actions SET outcome = 'running', started_at = ? "
                "WHERE id = ? AND outcome = 'pending'",
                (now, action_id),
            )
        return cur.rowcount == 1

    def unclaim(self, action_id: int) -> None:
        """``running`` -> ``pending`` for an action claimed but stopped before any panel call."""
        with self._write():
            self._db.execute(
                "UPDATE actions SET outcome = 'pending', started_at = NULL "
                "WHERE id = ? AND outcome = 'running'",
                (action_id,),
            )

    def finish(
        self,
        action_id: int,
        outcome: str,
        reason: str,
        now: float,
        *,
        state: dict[str, Any] | None = None,
        messages: Sequence[MessageRecord] = (),
        messages_total: int | None = None,
    ) -> None:
        """Record the final outcome of a running action, and the messages it touched.

        At most :data:`MAX_MESSAGE_RECORDS` messages are kept; ``messages_total`` is exact.
        """
        counts, episode = _flags(outcome)
        with self._write(durable=False):
            self._db.execute(
                "UPDATE actions SET outcome = ?, reason = ?, finished_at = ?, counts = ?, "
                "episode = ?, messages_total = COALESCE(?, messages_total), "
                "state = COALESCE(?, state) WHERE id = ?",
                (
                    outcome, reason, now, counts, episode, messages_total,
                    json.dumps(state, sort_keys=True) if state is not None else None, action_id,
                ),
            )  # fmt: skip
            if messages:
                self._db.executemany(
                    "INSERT OR REPLACE INTO action_messages (action_id, seq, message_id, sender, "
                    "recipients, size_bytes, age_seconds, answer) VALUES (?,?,?,?,?,?,?,?)",
                    [
                        (
                            action_id,
                            seq,
                            m.id,
                            m.sender,
                            m.recipients,
                            m.size_bytes,
                            m.age_seconds,
                            m.answer[:500],
                        )
                        for seq, m in enumerate(messages[:MAX_MESSAGE_RECORDS])
                    ],
                )

    def decide(self, action_id: int, approve: bool, by: str, comment: str, now: float) -> bool:
        """``awaiting_approval`` -> ``pending`` (approve) or ``denied``; False if not awaiting."""
        who = by or "someone"
        if approve:
            sql = (
                "UPDATE actions SET outcome = 'pending', reason = ?, decided_by = ?, "
                "decided_at = ?, decision_comment = ?, counts = 1, episode = 1 "
                "WHERE id = ? AND outcome = 'awaiting_approval'"
            )
            args: tuple[Any, ...] = (f"approved by {who}", by, now, comment, action_id)
        else:
            reason = f"denied by {who}" + (f": {comment}" if comment else "")
            sql = (
                "UPDATE actions SET outcome = 'denied', reason = ?, decided_by = ?, "
                "decided_at = ?, decision_comment = ?, finished_at = ?, counts = 0, episode = 1 "
                "WHERE id = ? AND outcome = 'awaiting_approval'"
            )
            args = (reason[:500], by, now, comment, now, action_id)
        with self._write():
            cur = self._db.execute(sql, args)
        return cur.rowcount == 1

    def expire(self, received_before: float, now: float) -> list[int]:
        """Approval requests received before ``received_before`` become ``expired``."""
        with self._write():
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM actions WHERE outcome = 'awaiting_approval' "
                    "AND received_at < ? ORDER BY id",
                    (received_before,),
                )
            ]
            for action_id in ids:
                self._db.execute(
                    "UPDATE actions SET outcome = 'expired', finished_at = ?, counts = 0, "
                    "episode = 1, reason = 'nobody approved or denied it within "
                    "approval_timeout' WHERE id = ? AND outcome = 'awaiting_approval'",
                    (now, action_id),
                )
        return ids

    def recover(self, now: float) -> tuple[list[int], list[int]]:
        """After a restart: re-queue what never reached the panel, interrupt what may have.

        ``pending`` rows were never claimed, so no panel call of theirs was sent: all
        of them run normally. ``running`` rows were claimed (their first panel call
        may have gone out): idempotent ones go back to ``pending`` and run again,
        the others become ``interrupted``. Returns ``(to_run_ids, interrupted_ids)``,
        oldest first; every row in ``to_run_ids`` is ``pending`` afterwards.
        """
        rows = self._db.execute(
            "SELECT id, action, outcome FROM actions WHERE outcome IN ('pending', 'running') "
            "ORDER BY id"
        ).fetchall()
        to_run = [r[0] for r in rows if r[2] == "pending" or r[1] in IDEMPOTENT_ACTIONS]
        resumed = [r[0] for r in rows if r[2] == "running" and r[1] in IDEMPOTENT_ACTIONS]
        interrupted = [r[0] for r in rows if r[2] == "running" and r[1] not in IDEMPOTENT_ACTIONS]
        with self._write():
            for action_id in resumed:
                self._db.execute(
                    "UPDATE actions SET outcome = 'pending', started_at = NULL, "
                    "reason = 'resumed after a restart' WHERE id = ?",
                    (action_id,),
                )
            for action_id in interrupted:
                self._db.execute(
                    "UPDATE actions SET outcome = 'interrupted', finished_at = ?, "
                    "reason = 'the remediator stopped after this action started on the panel; "
                    "not re-run because it is not idempotent' WHERE id = ?",
                    (now, action_id),
                )
        return to_run, interrupted

    def prune(self, before: float) -> int:
        """Delete finished rows received before ``before``; returns how many went.

        Kept whatever their age: pending and running rows, and the newest episode row of
        each alert episode, so a long-firing alert that Alertmanager keeps repeating is
        still recognised as already handled (deduplication and ``rerun_after`` read it).
        Cooldowns and the rate limit only look back their own window, which the config
        requires to be shorter than the retention.
        """
        with self._write(durable=False):
            cursor = self._db.execute(
                "DELETE FROM actions WHERE received_at < ? "
                "AND outcome NOT IN ('pending', 'running', 'awaiting_approval') "
                "AND id NOT IN (SELECT MAX(id) FROM actions WHERE episode = 1 "
                "GROUP BY dedupe_key)",
                (before,),
            )
            removed = cursor.rowcount
            self._db.execute(
                "DELETE FROM action_messages WHERE action_id NOT IN (SELECT id FROM actions)"
            )
        return removed

    # ------------------------------------------------------------------ reads

    def get(self, action_id: int) -> ActionRow | None:
        self._guard()
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM actions WHERE id = ?", (action_id,)
        ).fetchone()
        return ActionRow(*row) if row else None

    def detail(self, action_id: int, max_messages: int = MAX_MESSAGE_RECORDS) -> dict[str, Any]:
        """What ``GET /actions/ID`` adds to the summary: labels, params, approval, messages."""
        row = self._db.execute(
            "SELECT labels, params, origin, requested_by, decided_by, decided_at, "
            "decision_comment, messages_total, state FROM actions WHERE id = ?",
            (action_id,),
        ).fetchone()
        if row is None:
            return {}
        messages = [
            MessageRecord(*r).as_json()
            for r in self._db.execute(
                "SELECT message_id, sender, recipients, size_bytes, age_seconds, answer "
                "FROM action_messages WHERE action_id = ? ORDER BY seq LIMIT ?",
                (action_id, max_messages),
            )
        ]
        return {
            "labels": json.loads(row[0]),
            "params": json.loads(row[1]),
            "origin": row[2],
            "requested_by": row[3],
            "decision": {"by": row[4], "at": row[5], "comment": row[6]} if row[5] else None,
            "messages_total": row[7],
            "messages": messages,
            "state": json.loads(row[8]),
        }

    def count(self, outcome: str) -> int:
        """Number of rows with ``outcome`` now (e.g. awaiting approval)."""
        row = self._db.execute("SELECT COUNT(*) FROM actions WHERE outcome = ?", (outcome,))
        return int(row.fetchone()[0])

    def params(self, action_id: int) -> dict[str, Any]:
        row = self._db.execute("SELECT params FROM actions WHERE id = ?", (action_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def labels(self, action_id: int) -> dict[str, str]:
        row = self._db.execute("SELECT labels FROM actions WHERE id = ?", (action_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def list(
        self,
        *,
        panel: str | None = None,
        rule: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[ActionRow]:
        """Rows newest first, filtered by any of panel, rule, outcome."""
        self._guard()
        where, args = [], []
        for column, value in (("panel", panel), ("rule", rule), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM actions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [ActionRow(*r) for r in rows]
