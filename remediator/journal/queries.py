"""The journal's statements: :class:`Journal`, the one class every engine runs (see the
package docstring), and how its calls reach the database from the event loop."""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, Unpack

from remediator.actions import IDEMPOTENT, MessageRecord
from remediator.journal.base import (
    ACCEPTED_SINCE,
    CONTROLS,
    EPISODE_LAST,
    INSERT_MESSAGE,
    JOURNAL_ERRORS,
    LAST_ACCEPTED,
    MAX_MESSAGE_RECORDS,
    Cursor,
    Dialect,
    Health,
    JournalError,
    JournalTimeout,
    NewRow,
    first_line,
    flags,
)
from remediator.journal.batch import Batch
from remediator.journal.postgres import PostgresDialect
from remediator.journal.reads import Reads
from remediator.journal.schema import MIGRATIONS, SCHEMA_VERSION
from remediator.journal.sqlite import SqliteDialect
from remediator.journal.worker import Worker
from remediator.planner import STARTED_OUTCOMES, EpisodeRun

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_STALL = 10.0
"""SQLite: a call whose file has not answered a statement for this long is interrupted
(a write waits at most 2 s for a lock, so only a stuck file system gets here)."""
POSTGRES_STALL_MARGIN = 2.0
"""PostgreSQL: a call is cut off when the server has not answered for its statement
timeout plus this (the server ends slow statements itself; a paused one cannot)."""
PROBE_AFTER = 5.0
"""After a failed write, health checks try a small write of their own once the last
failure is this old, so the journal is seen writable again without traffic."""
PRUNE_CHUNK = 5_000
_INTERRUPTED = (
    "the remediator stopped after this action started on the panel; "
    "not re-run because it is not idempotent"
)


def replica_id() -> str:
    """This process's lease owner name: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Journal(Reads):
    """The remediator's state; implements :class:`remediator.planner.JournalView`.

    ``Journal(path)`` is the SQLite journal; :meth:`postgres` the shared one. The
    methods are synchronous and thread-safe (one lock); the event loop reaches them
    through :meth:`call` (or :meth:`call_within`), which runs them on the journal's
    worker thread, so the loop never waits for the database (see
    :class:`~remediator.journal.worker.Worker` for the bounds). :attr:`health` says
    whether the journal works, from what its own reads and writes met.
    """

    def __init__(self, path: str | Path, *, owner: str | None = None, lease: float = 30.0) -> None:
        self._init(lambda progress: SqliteDialect(path, progress), owner, lease, SQLITE_STALL)
        self.migrate()

    def _init(
        self,
        dialect: Callable[[Callable[[], None]], Dialect],
        owner: str | None,
        lease: float,
        stall: float,
    ) -> None:
        self.owner = owner or replica_id()
        self.lease = lease
        self.stall: float | None = stall
        """A call whose database has not answered a statement for this long is cut off."""
        self.probe_after = PROBE_AFTER
        self.health = Health()
        # Reentrant: transactions nest _write. Calls come from the worker thread; tests and
        # the CLI may call directly from theirs, and then wait here.
        self._lock = threading.RLock()
        self._in_tx = False
        self._tx_error = ""
        self._worker = Worker(self._abort)
        self._dialect = dialect(self._worker.progress)

    @classmethod
    def postgres(
        cls,
        url: str,
        password: str | None = None,
        *,
        owner: str | None = None,
        lease: float = 30.0,
        connect_timeout: float = 5.0,
        lock_wait: float | None = None,
    ) -> Journal:
        """The shared journal; does not connect yet: ``await j.call(j.migrate)`` does.

        ``lock_wait`` bounds each wait for the fleet lock (default: the lesser of 5 s
        and a quarter of ``lease``)."""
        journal = cls.__new__(cls)
        owner = owner or replica_id()

        def dialect(progress: Callable[[], None]) -> Dialect:
            return PostgresDialect(
                url, password, lease=lease, owner=owner, connect_timeout=connect_timeout,
                lock_wait=lock_wait, progress=progress,
            )  # fmt: skip

        journal._init(dialect, owner, lease, 0.0)
        assert isinstance(journal._dialect, PostgresDialect)
        journal.stall = journal._dialect.limits.statement + POSTGRES_STALL_MARGIN
        return journal

    @property
    def shared(self) -> bool:
        """True when several replicas may share this journal (PostgreSQL)."""
        return self._dialect.shared

    @property
    def engine(self) -> str:
        return self._dialect.name

    @property
    def busy(self) -> bool:
        """True while a call runs on the journal's thread."""
        return self._worker.busy

    @property
    def _db(self) -> Any:
        """The engine's connection (tests read SQLite's pragmas through it)."""
        return self._dialect.db if isinstance(self._dialect, SqliteDialect) else self._dialect

    # ------------------------------------------------------------------ from the event loop

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` (a method of this journal, or a function that calls
        several) on the journal's thread; cut off when the database stops answering."""
        return await self._worker.run(functools.partial(fn, *args, **kwargs), stall=self.stall)

    async def call_within(
        self, seconds: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`call`, but the caller waits at most ``seconds`` (JournalTimeout)."""
        return await self._worker.run(
            functools.partial(fn, *args, **kwargs), deadline=seconds, stall=self.stall
        )

    async def call_patient(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`call` without the stall bound: schema migrations, which may rebuild an
        index of a big table."""
        return await self._worker.run(functools.partial(fn, *args, **kwargs))

    async def check(self, seconds: float) -> str:
        """How the journal is, learnt within ``seconds``: ``""`` when it works, else why not.

        While a call makes progress (a big group commit) that is the answer. Otherwise
        a ping; or, after a failed write older than :attr:`probe_after`, a small write
        (a read that works says nothing about a full disk or a lock that times out).
        """
        if self._worker.answering(within=1.0):
            return self.health.reason
        stale = time.monotonic() - self.health.write_failed_at >= self.probe_after
        try:
            await self.call_within(
                seconds, self.probe if self.health.write_error and stale else self.ping
            )
        except JournalTimeout:
            if not self._worker.answering(within=1.0):
                self.health.read_failed(f"no answer within {seconds:g}s")
        except JOURNAL_ERRORS:
            pass  # the call wrote why into health
        return self.health.reason

    def _abort(self) -> None:
        self.health.cut_off()
        self._dialect.abort()

    def close(self) -> None:
        self._worker.close(self._dialect.close)

    # ------------------------------------------------------------------ transactions

    def migrate(self) -> int:
        """Create or upgrade the schema; returns the version found before."""
        with self.transaction():
            if self.shared:
                # Building an index of a big table may take longer than a statement may.
                self._execute("SET LOCAL statement_timeout = 0")
            found = self._dialect.version()
            if found > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal's schema is version {found}, newer than this remediator "
                    f"knows ({SCHEMA_VERSION}); upgrade the remediator"
                )
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    self._execute(statement.format(**self._dialect.types))
            if found != SCHEMA_VERSION:
                self._dialect.set_version(SCHEMA_VERSION)
        return found

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self._lock:
            self._execute("SELECT 1").fetchone()

    def probe(self) -> None:
        """A small write (the schema version, rewritten as it is); raise when it fails."""
        with self.transaction(durable=False):
            self._dialect.set_version(SCHEMA_VERSION)

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One atomic write: everything inside commits together or not at all.

        Every way out that is not a commit rolls back, so the connection is never left
        inside a failed transaction; :attr:`health` records whether the write worked.
        """
        with self._lock:
            try:
                self._dialect.begin(durable)
            except JOURNAL_ERRORS as exc:
                self.health.write_failed(first_line(exc))
                raise
            self._in_tx, self._tx_error = True, ""
            try:
                yield
            except BaseException as exc:
                self._in_tx = False
                self._dialect.rollback()
                self._dialect.end(durable)
                if self._tx_error or isinstance(exc, JOURNAL_ERRORS):
                    self.health.write_failed(self._tx_error or first_line(exc))
                raise
            self._in_tx = False
            try:
                self._dialect.commit()
            except BaseException as exc:
                self._dialect.rollback()
                if isinstance(exc, JOURNAL_ERRORS):
                    self.health.write_failed(first_line(exc))
                raise
            finally:
                self._dialect.end(durable)
            if self._tx_error:
                # A notification's savepoint failed (and answered 503) though the rest
                # committed: the journal did refuse a write.
                self.health.write_failed(self._tx_error)
            else:
                self.health.wrote()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside :meth:`transaction`: a nested unit that rolls back alone on error."""
        self._execute("SAVEPOINT notification")
        try:
            yield
        except BaseException:
            self._execute("ROLLBACK TO SAVEPOINT notification")
            self._execute("RELEASE SAVEPOINT notification")
            raise
        self._execute("RELEASE SAVEPOINT notification")

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[None]:
        with self._lock:
            if self._in_tx:
                yield
            else:
                with self.transaction(durable):
                    yield

    @contextmanager
    def _database_call(self) -> Iterator[None]:
        """Hold the lock for one call to the database; an error it raises is recorded (in
        the open transaction, else in :attr:`health`) and raised again."""
        with self._lock:
            try:
                yield
            except JOURNAL_ERRORS as exc:
                self._failed(exc)
                raise

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with self._database_call():
            cursor = self._dialect.execute(sql, params)
            if not self._in_tx:
                self.health.read()
            return cursor

    def _failed(self, exc: BaseException) -> None:
        if self._in_tx:
            self._tx_error = self._tx_error or first_line(exc)
        else:
            self.health.read_failed(first_line(exc))

    # ------------------------------------------------------------------ for Batch

    @property
    def reserve_sql(self) -> str:
        """The engine's statement reserving ``?`` new row ids."""
        return self._dialect.reserve_sql

    def reserve_ids(self, count: int) -> list[int]:
        with self._database_call():
            return self._dialect.reserve_ids(count)

    def fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Several queries in one round trip (PostgreSQL); their rows, in order."""
        with self._database_call():
            return self._dialect.fetch_all(queries)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows (an INSERT)."""
        with self._database_call():
            self._dialect.executemany(sql, rows)

    # ------------------------------------------------------------------ JournalView

    def episode_last(self, dedupe_key: str) -> EpisodeRun | None:
        row = self._execute(EPISODE_LAST, (dedupe_key,)).fetchone()
        return EpisodeRun(row[0], row[1], row[2]) if row else None

    def last_accepted(self, rule: str, panel: str) -> float | None:
        row = self._execute(LAST_ACCEPTED, (rule, panel)).fetchone()
        return row[0] if row and row[0] is not None else None

    def accepted_since(self, since: float) -> int:
        row = self._execute(ACCEPTED_SINCE, (since,)).fetchone()
        return int(row[0])

    def pending_ids(self, rule: str, fingerprint: str, starts_at: str) -> list[int]:
        rows = self._execute(
            "SELECT id FROM actions WHERE outcome IN ('pending', 'awaiting_approval') "
            "AND rule = ? AND fingerprint = ? AND starts_at = ? AND alert_status = 'firing'",
            (rule, fingerprint, starts_at),
        ).fetchall()
        return [r[0] for r in rows]

    def episode_runs(self, dedupe_key: str) -> int:
        row = self._execute(
            "SELECT COUNT(*) FROM actions WHERE dedupe_key = ? AND counts = 1", (dedupe_key,)
        ).fetchone()
        return int(row[0])

    def paused(self) -> bool:
        return self._control("paused")

    def circuit_open(self) -> bool:
        return self._control("circuit_open")

    def panels_started_since(self, since: float) -> set[str]:
        marks = ", ".join("?" * len(STARTED_OUTCOMES))
        rows = self._execute(
            f"SELECT DISTINCT panel FROM actions WHERE origin = 'alert' AND outcome IN ({marks}) "
            "AND COALESCE(started_at, received_at) > ?",
            (*STARTED_OUTCOMES, since),
        ).fetchall()
        return {r[0] for r in rows}

    def _control(self, name: str) -> bool:
        row = self._execute("SELECT value FROM control WHERE name = ?", (name,)).fetchone()
        return bool(row and row[0])

    # ------------------------------------------------------------------ pause and breaker

    def set_control(self, name: str, value: bool, by: str, reason: str, now: float) -> bool:
        """Set the pause switch or the breaker; returns True when it changed (logged)."""
        assert name in CONTROLS
        with self._write():
            if self._control(name) == value:
                return False
            self._execute(
                "INSERT INTO control (name, value, changed_at, changed_by, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "changed_at = excluded.changed_at, changed_by = excluded.changed_by, "
                "reason = excluded.reason",
                (name, int(value), now, by, reason),
            )
            self._execute(
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
        for name, value, at, by, reason in self._execute(
            "SELECT name, value, changed_at, changed_by, reason FROM control"
        ).fetchall():
            if name in out:
                out[name] = {"value": bool(value), "changed_at": at, "changed_by": by,
                             "reason": reason}  # fmt: skip
        return out

    # ------------------------------------------------------------------ writes

    def insert(self, **row: Unpack[NewRow]) -> int:
        """Add one row (see :class:`NewRow`); returns its id. An unfinished row is
        leased to this replica."""
        values = self.row_values(**row)
        with self._write():
            inserted = self._execute(
                "INSERT INTO actions (rule, panel, action, outcome, reason, received_at, "
                "finished_at, alertname, fingerprint, starts_at, alert_status, labels, "
                "dedupe_key, counts, episode, lease_owner, lease_expires, params, origin, "
                "requested_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
                values,
            ).fetchone()
        return int(inserted[0])

    def row_values(self, **row: Unpack[NewRow]) -> tuple[Any, ...]:
        """The columns of a new row after ``id``, in the order of the INSERTs."""
        outcome, received_at = row["outcome"], row["received_at"]
        counts = row.get("counts")
        counting, episode = flags(outcome)
        if counts is not None:  # a manual preview holds no rate limit
            counting = int(counts)
        finished = None if outcome in ("pending", "running", "awaiting_approval") else received_at
        unfinished = outcome in ("pending", "running")
        owner, expires = (self.owner, received_at + self.lease) if unfinished else (None, None)
        return (
            row["rule"], row["panel"], row["action"], outcome, row["reason"], received_at,
            finished, row["alertname"], row["fingerprint"], row["starts_at"],
            row["alert_status"], json.dumps(row["labels"], sort_keys=True),
            row["dedupe_key"], counting, episode, owner, expires,
            json.dumps(row.get("params") or {}, sort_keys=True), row.get("origin", "alert"),
            row.get("requested_by", ""),
        )  # fmt: skip

    def batch(
        self,
        keys: Sequence[str],
        rule_panels: Sequence[tuple[str, str]],
        alerts: int,
        since: float,
        cap: int,
    ) -> Batch:
        """A :class:`Batch` for one group commit (inside :meth:`transaction`): ``keys``
        and ``rule_panels`` the planner will ask about, ``alerts`` how many rows it may
        write at most, ``since`` the start of the rate-limit window and ``cap`` its
        ``max_actions`` (counting stops there)."""
        return Batch(self, keys, rule_panels, alerts, since, cap)

    def flush(self) -> None:
        """Nothing is queued on the journal itself (see :meth:`Batch.flush`)."""

    def direct(self) -> Journal:
        return self

    def cancel(self, ids: Sequence[int], reason: str, now: float) -> list[int]:
        """Mark still-pending rows ``cancelled``; returns the ids that were pending."""
        done = []
        with self._write():
            for action_id in ids:
                cur = self._execute(
                    "UPDATE actions SET outcome = 'cancelled', reason = ?, finished_at = ?, "
                    "counts = 0, episode = 1, lease_expires = NULL WHERE id = ? "
                    "AND outcome IN ('pending', 'awaiting_approval')",
                    (reason, now, action_id),
                )
                if cur.rowcount:
                    done.append(action_id)
        return done

    def claim(self, action_id: int, now: float) -> bool:
        """``pending`` -> ``running``, durably; False when the row is no longer pending
        (cancelled) or no longer this replica's (another one took it over after its
        lease expired).

        Called right before the action's first panel call: the commit is fsynced
        (``synchronous=FULL``) so that a crash at any later point leaves the row
        ``running`` ("may have reached the panel"), never ``pending``.
        """
        # Shared journal: one action at a time per panel across the fleet, as one process
        # keeps with its panel locks. Every write holds the advisory lock, so this check
        # and the claim are one step; a row of a dead replica blocks until taken over.
        busy = (
            " AND NOT EXISTS (SELECT 1 FROM actions other WHERE other.panel = actions.panel"
            " AND other.outcome = 'running' AND other.id <> actions.id)"
            if self.shared
            else ""
        )
        with self._write():
            cur = self._execute(
                "UPDATE actions SET outcome = 'running', started_at = ?, lease_expires = ? "
                "WHERE id = ? AND outcome = 'pending' AND lease_owner = ?" + busy,
                (now, now + self.lease, action_id, self.owner),
            )
        return cur.rowcount == 1

    def waits_for_panel(self, action_id: int) -> bool:
        """After a refused :meth:`claim`: True when the row is still this replica's and
        pending, so only another replica's action on the same panel stood in the way."""
        with self._lock:
            row = self._execute(
                "SELECT 1 FROM actions WHERE id = ? AND outcome = 'pending' AND lease_owner = ?",
                (action_id, self.owner),
            ).fetchone()
        return row is not None

    def unclaim(self, action_id: int) -> None:
        """``running`` -> ``pending`` for an action claimed but stopped before any panel call."""
        with self._write():
            self._execute(
                "UPDATE actions SET outcome = 'pending', started_at = NULL "
                "WHERE id = ? AND outcome = 'running' AND lease_owner = ?",
                (action_id, self.owner),
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
        first_seq: int = 0,
    ) -> bool:
        """Record the final outcome of this replica's action, and the messages it touched
        not recorded yet (``messages``, numbered from ``first_seq``); False when the row is
        not (or no longer) this replica's.

        At most :data:`MAX_MESSAGE_RECORDS` messages are kept; ``messages_total`` is exact.
        """
        counts, episode = flags(outcome)
        with self._write(durable=False):
            cur = self._execute(
                "UPDATE actions SET outcome = ?, reason = ?, finished_at = ?, counts = ?, "
                "episode = ?, lease_expires = NULL, "
                "messages_total = COALESCE(?, messages_total), state = COALESCE(?, state) "
                "WHERE id = ? AND lease_owner = ? AND outcome IN ('pending', 'running')",
                (
                    outcome, reason, now, counts, episode, messages_total,
                    json.dumps(state, sort_keys=True) if state is not None else None, action_id,
                    self.owner,
                ),
            )  # fmt: skip
            ours = cur.rowcount == 1
            if ours:
                self._insert_messages(action_id, first_seq, messages)
        return ours

    def record_messages(
        self, action_id: int, first_seq: int, messages: Sequence[MessageRecord], total: int
    ) -> bool:
        """While this replica's action runs: record ``messages`` (numbered from
        ``first_seq``) as the panel confirms them, and ``total``, the count so far; so a
        deletion is in the journal before it is verified, and after a crash.
        False when the row is no longer this replica's running action."""
        with self._write(durable=False):
            cur = self._execute(
                "UPDATE actions SET messages_total = ? WHERE id = ? AND lease_owner = ? "
                "AND outcome = 'running'",
                (total, action_id, self.owner),
            )
            ours = cur.rowcount == 1
            if ours:
                self._insert_messages(action_id, first_seq, messages)
        return ours

    def _insert_messages(
        self, action_id: int, first_seq: int, messages: Sequence[MessageRecord]
    ) -> None:
        kept = messages[: max(0, MAX_MESSAGE_RECORDS - first_seq)]
        if kept:
            self.execute_many(
                INSERT_MESSAGE,
                [
                    (action_id, first_seq + n, m.id, m.sender, m.recipients, m.size_bytes,
                     m.age_seconds, m.answer[:500])
                    for n, m in enumerate(kept)
                ],
            )  # fmt: skip

    def renew(self, ids: Sequence[int], now: float) -> int:
        """Extend this replica's lease on the unfinished rows ``ids``; returns how many."""
        renewed = 0
        with self._write(durable=False):
            for action_id in ids:
                renewed += self._execute(
                    "UPDATE actions SET lease_expires = ? WHERE id = ? AND lease_owner = ? "
                    "AND outcome IN ('pending', 'running')",
                    (now + self.lease, action_id, self.owner),
                ).rowcount
        return renewed

    def decide(self, action_id: int, approve: bool, by: str, comment: str, now: float) -> bool:
        """``awaiting_approval`` -> ``pending`` (approve; leased to this replica, which runs
        it) or ``denied``; False if not awaiting."""
        who = by or "someone"
        if approve:
            sql = (
                "UPDATE actions SET outcome = 'pending', reason = ?, decided_by = ?, "
                "decided_at = ?, decision_comment = ?, counts = 1, episode = 1, "
                "lease_owner = ?, lease_expires = ? "
                "WHERE id = ? AND outcome = 'awaiting_approval'"
            )
            args: tuple[Any, ...] = (
                f"approved by {who}", by, now, comment, self.owner, now + self.lease, action_id,
            )  # fmt: skip
        else:
            reason = f"denied by {who}" + (f": {comment}" if comment else "")
            sql = (
                "UPDATE actions SET outcome = 'denied', reason = ?, decided_by = ?, "
                "decided_at = ?, decision_comment = ?, finished_at = ?, counts = 0, episode = 1 "
                "WHERE id = ? AND outcome = 'awaiting_approval'"
            )
            args = (reason[:500], by, now, comment, now, action_id)
        with self._write():
            cur = self._execute(sql, args)
        return cur.rowcount == 1

    def expire(self, received_before: float, now: float) -> list[int]:
        """Approval requests received before ``received_before`` become ``expired``."""
        with self._write():
            ids = [
                r[0]
                for r in self._execute(
                    "SELECT id FROM actions WHERE outcome = 'awaiting_approval' "
                    "AND received_at < ? ORDER BY id",
                    (received_before,),
                ).fetchall()
            ]
            for action_id in ids:
                self._execute(
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
        oldest first; every row in ``to_run_ids`` is ``pending`` afterwards, leased to
        this replica. For one replica alone (SQLite, under its lock file).
        """
        return self._adopt(now, None)

    def take_over(self, now: float) -> tuple[list[int], list[int]]:
        """:meth:`recover` for the unfinished rows whose lease expired (their replica died).

        The claim is one ``UPDATE ... WHERE lease expired RETURNING``: when two
        replicas try at once, each row goes to exactly one of them.
        """
        return self._adopt(now, now)

    def _adopt(self, now: float, expired_before: float | None) -> tuple[list[int], list[int]]:
        sql = (
            "UPDATE actions SET lease_owner = ?, lease_expires = ? "
            "WHERE outcome IN ('pending', 'running')"
        )
        params: tuple[Any, ...] = (self.owner, now + self.lease)
        if expired_before is not None:
            sql += " AND (lease_expires IS NULL OR lease_expires < ?)"
            params += (expired_before,)
        with self._write():
            rows = sorted(self._execute(sql + " RETURNING id, action, outcome", params).fetchall())
            to_run = [r[0] for r in rows if r[2] == "pending" or r[1] in IDEMPOTENT]
            resumed = [r[0] for r in rows if r[2] == "running" and r[1] in IDEMPOTENT]
            interrupted = [r[0] for r in rows if r[2] == "running" and r[1] not in IDEMPOTENT]
            for action_id in resumed:
                self._execute(
                    "UPDATE actions SET outcome = 'pending', started_at = NULL, "
                    "reason = 'resumed after a restart' WHERE id = ?",
                    (action_id,),
                )
            for action_id in interrupted:
                self._execute(
                    "UPDATE actions SET outcome = 'interrupted', finished_at = ?, "
                    "lease_expires = NULL, reason = ? WHERE id = ?",
                    (now, _INTERRUPTED, action_id),
                )
        return to_run, interrupted

    def prune(self, before: float, chunk: int = PRUNE_CHUNK) -> int:
        """Delete finished rows received before ``before``; returns how many went.

        Kept whatever their age: pending and running rows, and the newest episode row of
        each alert episode, so a long-firing alert that Alertmanager keeps repeating is
        still recognised as already handled (deduplication and ``rerun_after`` read it).
        Cooldowns and the rate limit only look back their own window, which the config
        requires to be shorter than the retention. ``chunk`` rows per transaction, so a
        first prune of a big journal never holds the (fleet) lock for long.
        """
        removed = 0
        while True:
            with self._write(durable=False):
                gone = self._execute(
                    "DELETE FROM actions WHERE id IN (SELECT id FROM actions "
                    "WHERE received_at < ? "
                    "AND outcome NOT IN ('pending', 'running', 'awaiting_approval') "
                    "AND id NOT IN (SELECT MAX(id) FROM actions WHERE episode = 1 "
                    "GROUP BY dedupe_key) LIMIT ?)",
                    (before, chunk),
                ).rowcount
            removed += gone
            if gone < chunk:
                break
        with self._write(durable=False):
            self._execute(
                "DELETE FROM action_messages WHERE action_id NOT IN (SELECT id FROM actions)"
            )
        return removed
