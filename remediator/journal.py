"""The action journal: SQLite (one replica, the default) or PostgreSQL (any number of replicas).

One :class:`Journal` class holds every statement; the two engines differ only in
a tiny dialect layer (:class:`_Sqlite`, :class:`_Postgres`: parameter style,
``BEGIN``, the schema version store, column types, id reservation,
pipelining), so a schema change is made once. The journal's methods are
synchronous; the event loop reaches them through :meth:`Journal.call`, which
runs them inline for SQLite and on the journal's own thread (one connection)
for PostgreSQL, so a slow or unreachable database never blocks the loop.

SQLite: calls are short (an indexed lookup or a one-row write, well under a
millisecond), and doing them inline keeps the webhook's "journal, then answer"
step atomic without a thread hand-off. Accepting notifications commits with
``synchronous=FULL``: in WAL mode that fsyncs the log on every commit, so a
notification answered 2xx survives a power loss, not just a crash.
Notifications that arrive together share one commit (group commit, see
:mod:`remediator.app`), each inside its own savepoint. Claiming an action
(``pending`` -> ``running``) also commits with ``synchronous=FULL``, before its
first panel call is sent: after any crash or power cut, a ``pending`` row is
known never to have reached the panel (it is run at the next start) and only a
``running`` row may have (it is resumed when idempotent, ``interrupted``
otherwise). Finishing an action commits with ``synchronous=NORMAL`` (no fsync
of its own; the next FULL commit carries it): losing one to a power cut only
makes recovery treat the action as unfinished, which is safe. (PostgreSQL: the
same, with ``synchronous_commit`` on or off.)
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, ParamSpec, Protocol, TypedDict, TypeVar, Unpack

import psycopg

from remediator.planner import COUNTING_OUTCOMES, EPISODE_OUTCOMES, STARTED_OUTCOMES, EpisodeRun

IDEMPOTENT_ACTIONS = ("delete_frozen", "start_service", "stop_service", "restart_service")
log = logging.getLogger("remediator.journal")

_OWNER: contextvars.ContextVar[object] = contextvars.ContextVar("journal_owner", default=None)


class JournalBusy(sqlite3.OperationalError):
    """Another task holds a sliced transaction open; wait for :meth:`Journal.quiet`."""


_SQLITE_HEADER = b"SQLite format 3\x00"

JOURNAL_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
"""What a journal call raises when the database cannot be read or written."""

P = ParamSpec("P")
T = TypeVar("T")

# The schema, one entry per version, in portable DDL: {id} and {real} are the engine's
# types (see the dialects). The version is kept in SQLite's PRAGMA user_version or
# PostgreSQL's brainycp_schema table. A journal at version N runs entries N+1.. at
# start, in one transaction; a journal from a newer version is refused. A journal
# from before versioning reads 0 and has version 1's tables (hence IF NOT EXISTS).
# To change the schema, append an entry: it is made once, for both engines.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS actions (
            id {id},
            rule TEXT NOT NULL,
            panel TEXT NOT NULL,
            action TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            received_at {real} NOT NULL,
            started_at {real},
            finished_at {real},
            alertname TEXT NOT NULL DEFAULT '',
            fingerprint TEXT NOT NULL,
            starts_at TEXT NOT NULL,
            alert_status TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{{}}',
            dedupe_key TEXT NOT NULL,
            counts INTEGER NOT NULL DEFAULT 0,
            episode INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX IF NOT EXISTS actions_episode ON actions (dedupe_key, episode, id)",
        "CREATE INDEX IF NOT EXISTS actions_rule_panel "
        "ON actions (rule, panel, counts, received_at)",
        "CREATE INDEX IF NOT EXISTS actions_counting ON actions (counts, received_at)",
        "CREATE INDEX IF NOT EXISTS actions_outcome ON actions (outcome, rule, fingerprint)",
    ),
    (
        # Version 2 (issue 14):
        # - actions gains params (what the action runs with beyond its rule: the selection
        #   with alert-label values filled in, or a manual request), origin (alert|manual),
        #   requested_by, the approval decision, messages_total and state (before/after);
        # - action_messages: the messages an action touched, at most MAX_MESSAGE_RECORDS per
        #   action (actions.messages_total holds the exact count);
        # - control: the pause switch and the circuit breaker, one row each, so a restart
        #   keeps them; control_log: who flipped them, when and why.
        "ALTER TABLE actions ADD COLUMN params TEXT NOT NULL DEFAULT '{{}}'",
        "ALTER TABLE actions ADD COLUMN origin TEXT NOT NULL DEFAULT 'alert'",
        "ALTER TABLE actions ADD COLUMN requested_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE actions ADD COLUMN decided_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE actions ADD COLUMN decided_at {real}",
        "ALTER TABLE actions ADD COLUMN decision_comment TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE actions ADD COLUMN messages_total INTEGER",
        "ALTER TABLE actions ADD COLUMN state TEXT NOT NULL DEFAULT '{{}}'",
        """CREATE TABLE action_messages (
            action_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            message_id TEXT NOT NULL,
            sender TEXT,
            recipients INTEGER,
            size_bytes INTEGER,
            age_seconds {real},
            answer TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (action_id, seq)
        )""",
        """CREATE TABLE control (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL,
            changed_at {real} NOT NULL,
            changed_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE control_log (
            id {id},
            at {real} NOT NULL,
            name TEXT NOT NULL,
            value INTEGER NOT NULL,
            changed_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX actions_started ON actions (outcome, origin, started_at, received_at)",
    ),
    (
        # Leases: which replica works on an unfinished row, and until when.
        "ALTER TABLE actions ADD COLUMN lease_owner TEXT",
        "ALTER TABLE actions ADD COLUMN lease_expires {real}",
        "CREATE INDEX actions_open ON actions (lease_expires) "
        "WHERE outcome IN ('pending', 'running')",
        # At most one open row per alert episode: the planner never opens a second one
        # (an open row makes any repeat skipped_duplicate); the index makes it a fact.
        "CREATE UNIQUE INDEX actions_one_open ON actions (dedupe_key) "
        "WHERE outcome IN ('pending', 'running')",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
"""The journal's schema version (:data:`MIGRATIONS` applied)."""
_SQLITE_TYPES = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"}

MAX_MESSAGE_RECORDS = 10_000
CONTROLS = ("paused", "circuit_open")


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
_INTERRUPTED = (
    "the remediator stopped after this action started on the panel; "
    "not re-run because it is not idempotent"
)


# The planner's questions (JournalView), shared by Journal and Batch.
_EPISODE_LAST = (
    "SELECT id, outcome, received_at FROM actions WHERE dedupe_key = ? AND episode = 1 "
    "ORDER BY id DESC LIMIT 1"
)
_LAST_ACCEPTED = "SELECT MAX(received_at) FROM actions WHERE rule = ? AND panel = ? AND counts = 1"
_ACCEPTED_SINCE = "SELECT COUNT(*) FROM actions WHERE counts = 1 AND received_at > ?"
# The same count, stopped at a cap: the planner only compares it with max_actions.
_ACCEPTED_SINCE_UP_TO = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM actions WHERE counts = 1 AND received_at > ? "
    "LIMIT ?) AS capped"
)


class JournalError(Exception):
    """The journal cannot be used as it is (corrupt, not a journal, from a newer version);
    the message says why and what to do."""


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Dialect(Protocol):
    """What differs between the engines; everything else is shared SQL."""

    name: str
    shared: bool
    types: dict[str, str]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor: ...

    def begin(self, durable: bool) -> None: ...

    def end(self, durable: bool) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]: ...

    def reserve_ids(self, count: int) -> list[int]: ...

    reserve_sql: str

    def version(self) -> int: ...

    def set_version(self, version: int) -> None: ...

    def close(self) -> None: ...


class _Sqlite:
    name = "sqlite"
    shared = False

    def __init__(self, path: str | Path) -> None:
        self.types = _SQLITE_TYPES
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        if str(path) == ":memory:":
            self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            # An existing file is checked first (SQLite header, PRAGMA quick_check, schema
            # version) and never overwritten or truncated; a new one is created whole
            # with mode 0600. JournalError when the file is unfit.
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            if not file.exists():
                _create(file)
            self.db = _check(file)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=2000")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        return self.db.execute(sql, params)

    def begin(self, durable: bool) -> None:
        if not durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.end(durable)
            raise

    def end(self, durable: bool) -> None:
        if not durable:
            self.db.execute("PRAGMA synchronous=FULL")

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        return [self.db.execute(sql, params).fetchall() for sql, params in queries]

    # Only inside BEGIN IMMEDIATE (no other writer): the next ids after the highest used
    # (ids reserved and not used are simply never written). Parameter: how many.
    reserve_sql = (
        "WITH RECURSIVE top(n) AS (SELECT MAX(n) FROM (SELECT MAX(id) AS n FROM actions "
        "UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'actions')), "
        "ids(id, k) AS (SELECT COALESCE((SELECT n FROM top), 0) + 1, 1 "
        "UNION ALL SELECT id + 1, k + 1 FROM ids WHERE k < ?) SELECT id FROM ids"
    )

    def reserve_ids(self, count: int) -> list[int]:
        return sorted(int(r[0]) for r in self.db.execute(self.reserve_sql, (count,)))

    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        self.db.execute(f"PRAGMA user_version = {int(version)}")

    def close(self) -> None:
        self.db.close()


# Every write transaction of every replica takes this lock first (pg_advisory_xact_lock:
# released at COMMIT/ROLLBACK): "brainycp" as a 64-bit number, unlikely to meet another's.
ADVISORY_LOCK = 0x6272_6169_6E79_6370 & 0x7FFF_FFFF_FFFF_FFFF


class _Postgres:
    """One psycopg connection (autocommit; transactions are explicit), reconnected when lost.

    Never reconnects inside a transaction: a statement after a lost connection
    fails, the transaction rolls back, and the next one starts on a new connection.
    """

    name = "postgresql"
    shared = True

    def __init__(self, url: str, password: str | None, connect_timeout: float = 5.0) -> None:
        self.types = {
            "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "real": "DOUBLE PRECISION",
        }
        self._url = url
        self._password = password
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._in_tx = False
        self._sql: dict[str, str] = {}

    def _connect(self) -> psycopg.Connection[Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, int(self._timeout)),
            "application_name": "brainycp-mail-remediator",
            # A hung server or network must end in an error, not a thread stuck forever.
            "options": "-c statement_timeout=15000 -c idle_in_transaction_session_timeout=60000",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 15000,
        }
        if self._password is not None:
            kwargs["password"] = self._password
        return psycopg.connect(self._url, **kwargs)

    def _connection(self, sql: str) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            conn = self._conn = None
        if conn is None:
            if self._in_tx:
                raise psycopg.OperationalError("the connection to the journal was lost")
            conn = self._conn = self._connect()
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        statement = self._sql.get(sql)
        if statement is None:
            statement = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        if sql == "ROLLBACK" and (self._conn is None or self._conn.closed or self._conn.broken):
            self._in_tx = False  # nothing to roll back on a lost connection
            return _NoCursor()
        conn = self._connection(sql)
        try:
            # Without parameters the text goes as is (and may hold several statements).
            cur = conn.execute(statement, params) if params else conn.execute(sql)
        finally:
            if sql in ("COMMIT", "ROLLBACK"):
                self._in_tx = False
        return cur

    def begin(self, durable: bool) -> None:
        # One round trip (simple query protocol: several statements, no parameters).
        sql = "BEGIN; "
        if not durable:
            sql += "SET LOCAL synchronous_commit TO OFF; "
        self.execute(sql + f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})")
        self._in_tx = True

    def end(self, durable: bool) -> None:
        pass

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn = self._connection(sql)
        with conn.cursor() as cur:  # psycopg pipelines executemany: one round trip
            cur.executemany(sql.replace("%", "%%").replace("?", "%s"), rows)

    def fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Run the queries in one pipeline: one round trip for all of them."""
        conn = self._connection("")
        cursors = []
        with conn.pipeline():
            for sql, params in queries:
                statement = sql.replace("%", "%%").replace("?", "%s")
                cursors.append(conn.execute(statement, params))
        return [cur.fetchall() for cur in cursors]

    reserve_sql = (
        "SELECT nextval(pg_get_serial_sequence('actions', 'id')) FROM generate_series(1, ?)"
    )

    def reserve_ids(self, count: int) -> list[int]:
        rows = self.execute(self.reserve_sql, (count,)).fetchall()
        return sorted(int(r[0]) for r in rows)

    def version(self) -> int:
        self.execute("CREATE TABLE IF NOT EXISTS brainycp_schema (version INTEGER NOT NULL)")
        row = self.execute("SELECT version FROM brainycp_schema").fetchone()
        return int(row[0]) if row else 0

    def set_version(self, version: int) -> None:
        self.execute("DELETE FROM brainycp_schema")
        self.execute("INSERT INTO brainycp_schema (version) VALUES (?)", (version,))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _NoCursor:
    rowcount = 0

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []


def replica_id() -> str:
    """This process's lease owner name: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
            db.execute("BEGIN")
            for migration in MIGRATIONS:
                for statement in migration:
                    db.execute(statement.format(**_SQLITE_TYPES))
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
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
    """The remediator's state; implements :class:`remediator.planner.JournalView`.

    ``Journal(path)`` is the SQLite journal; :meth:`postgres` the shared one.
    """

    def __init__(self, path: str | Path, *, owner: str | None = None, lease: float = 30.0) -> None:
        self._init(_Sqlite(path), owner, lease)
        self.migrate()

    def _init(self, dialect: _Dialect, owner: str | None, lease: float) -> None:
        self._dialect = dialect
        self.owner = owner or replica_id()
        self.lease = lease
        self._in_tx = False
        self._executor: ThreadPoolExecutor | None = None
        self._thread_id: int | None = None
        # PostgreSQL: the journal's thread runs what the loop sends through call(); a
        # method called directly from the loop thread (rare paths) waits for it here
        # instead of joining its transaction. Reentrant: transactions nest _write.
        self._lock = threading.RLock()
        self._sliced = False
        self._quiet = asyncio.Event()
        self._quiet.set()

    @classmethod
    def postgres(
        cls,
        url: str,
        password: str | None = None,
        *,
        owner: str | None = None,
        lease: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> Journal:
        """The shared journal; does not connect yet: ``await j.call(j.migrate)`` does."""
        journal = cls.__new__(cls)
        journal._init(_Postgres(url, password, connect_timeout), owner, lease)
        journal._executor = ThreadPoolExecutor(1, thread_name_prefix="journal")
        return journal

    @property
    def shared(self) -> bool:
        """True when several replicas may share this journal (PostgreSQL)."""
        return self._dialect.shared

    @property
    def engine(self) -> str:
        return self._dialect.name

    @property
    def _db(self) -> Any:
        """The engine's connection (tests read SQLite's pragmas through it)."""
        return self._dialect.db if isinstance(self._dialect, _Sqlite) else self._dialect

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a journal method from the event loop: inline for SQLite, else on its thread."""
        if self._executor is None:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.submit(self._dialect.close).result()
            self._executor.shutdown(wait=True)
            self._executor = None
        else:
            self._dialect.close()

    def migrate(self) -> int:
        """Create or upgrade the schema; returns the version found before."""
        with self.transaction():
            found = self._dialect.version()
            if found > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal's schema is version {found}, newer than this remediator "
                    f"knows ({SCHEMA_VERSION}); upgrade the remediator"
                )
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    self._dialect.execute(statement.format(**self._dialect.types))
            if found != SCHEMA_VERSION:
                self._dialect.set_version(SCHEMA_VERSION)
        return found

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self._lock:
            self._dialect.execute("SELECT 1").fetchone()

    @contextmanager
    def transaction(self, durable: bool = True, *, sliced: bool = False) -> Iterator[None]:
        """One atomic write: everything inside commits together or not at all.

        ``sliced=True`` (SQLite, inline): the caller (one asyncio task) yields to the
        event loop inside the transaction. Until it ends, every other task's journal
        call raises :class:`JournalBusy` instead of joining (or reading) the open
        transaction; :meth:`quiet` waits for the end. (PostgreSQL runs each call
        whole on the journal's thread: nothing interleaves there.)
        """
        self._guard()
        with self._lock:
            yield from self._transaction(durable, sliced)

    def _transaction(self, durable: bool, sliced: bool) -> Iterator[None]:
        self._dialect.begin(durable)
        self._in_tx = True
        token = None
        if sliced:
            self._sliced = True
            self._quiet.clear()
            token = _OWNER.set(self)
        try:
            try:
                yield
            except BaseException:
                self._in_tx = False
                self._dialect.execute("ROLLBACK")
                raise
            self._in_tx = False
            self._dialect.execute("COMMIT")
        finally:
            self._dialect.end(durable)
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
        self._dialect.execute("SAVEPOINT notification")
        try:
            yield
        except BaseException:
            self._dialect.execute("ROLLBACK TO SAVEPOINT notification")
            self._dialect.execute("RELEASE SAVEPOINT notification")
            raise
        self._dialect.execute("RELEASE SAVEPOINT notification")

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[None]:
        self._guard()
        with self._lock:
            if self._in_tx:
                yield
            else:
                with self.transaction(durable):
                    yield

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        with self._lock:
            return self._dialect.execute(sql, params)

    # ------------------------------------------------------------------ JournalView

    def episode_last(self, dedupe_key: str) -> EpisodeRun | None:
        row = self._execute(_EPISODE_LAST, (dedupe_key,)).fetchone()
        return EpisodeRun(row[0], row[1], row[2]) if row else None

    def last_accepted(self, rule: str, panel: str) -> float | None:
        row = self._execute(_LAST_ACCEPTED, (rule, panel)).fetchone()
        return row[0] if row and row[0] is not None else None

    def accepted_since(self, since: float) -> int:
        row = self._execute(_ACCEPTED_SINCE, (since,)).fetchone()
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
        values = self._row_values(**row)
        with self._write():
            inserted = self._execute(
                "INSERT INTO actions (rule, panel, action, outcome, reason, received_at, "
                "finished_at, alertname, fingerprint, starts_at, alert_status, labels, "
                "dedupe_key, counts, episode, lease_owner, lease_expires, params, origin, "
                "requested_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
                values,
            ).fetchone()
        return int(inserted[0])

    def _row_values(self, **row: Unpack[NewRow]) -> tuple[Any, ...]:
        """The columns of a new row after ``id``, in the order of the INSERTs."""
        outcome, received_at = row["outcome"], row["received_at"]
        counts = row.get("counts")
        counting, episode = _flags(outcome)
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
    ) -> bool:
        """Record the final outcome of this replica's action, and the messages it touched;
        False when the row is not (or no longer) this replica's.

        At most :data:`MAX_MESSAGE_RECORDS` messages are kept; ``messages_total`` is exact.
        """
        counts, episode = _flags(outcome)
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
            if messages and ours:
                self._dialect.executemany(
                    "INSERT INTO action_messages (action_id, seq, message_id, sender, "
                    "recipients, size_bytes, age_seconds, answer) VALUES (?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (action_id, seq) DO UPDATE SET message_id = excluded.message_id, "
                    "sender = excluded.sender, recipients = excluded.recipients, "
                    "size_bytes = excluded.size_bytes, age_seconds = excluded.age_seconds, "
                    "answer = excluded.answer",
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
        return ours

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
            to_run = [r[0] for r in rows if r[2] == "pending" or r[1] in IDEMPOTENT_ACTIONS]
            resumed = [r[0] for r in rows if r[2] == "running" and r[1] in IDEMPOTENT_ACTIONS]
            interrupted = [
                r[0] for r in rows if r[2] == "running" and r[1] not in IDEMPOTENT_ACTIONS
            ]
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

    def prune(self, before: float) -> int:
        """Delete finished rows received before ``before``; returns how many went.

        Kept whatever their age: pending and running rows, and the newest episode row of
        each alert episode, so a long-firing alert that Alertmanager keeps repeating is
        still recognised as already handled (deduplication and ``rerun_after`` read it).
        Cooldowns and the rate limit only look back their own window, which the config
        requires to be shorter than the retention.
        """
        with self._write(durable=False):
            cursor = self._execute(
                "DELETE FROM actions WHERE received_at < ? "
                "AND outcome NOT IN ('pending', 'running', 'awaiting_approval') "
                "AND id NOT IN (SELECT MAX(id) FROM actions WHERE episode = 1 "
                "GROUP BY dedupe_key)",
                (before,),
            )
            removed = cursor.rowcount
            self._execute(
                "DELETE FROM action_messages WHERE action_id NOT IN (SELECT id FROM actions)"
            )
        return removed

    # ------------------------------------------------------------------ reads

    def get(self, action_id: int) -> ActionRow | None:
        self._guard()
        row = self._execute(f"SELECT {_COLUMNS} FROM actions WHERE id = ?", (action_id,)).fetchone()
        return ActionRow(*row) if row else None

    def detail(self, action_id: int, max_messages: int = MAX_MESSAGE_RECORDS) -> dict[str, Any]:
        """What ``GET /actions/ID`` adds to the summary: labels, params, approval, messages."""
        row = self._execute(
            "SELECT labels, params, origin, requested_by, decided_by, decided_at, "
            "decision_comment, messages_total, state FROM actions WHERE id = ?",
            (action_id,),
        ).fetchone()
        if row is None:
            return {}
        messages = [
            MessageRecord(*r).as_json()
            for r in self._execute(
                "SELECT message_id, sender, recipients, size_bytes, age_seconds, answer "
                "FROM action_messages WHERE action_id = ? ORDER BY seq LIMIT ?",
                (action_id, max_messages),
            ).fetchall()
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
        row = self._execute("SELECT COUNT(*) FROM actions WHERE outcome = ?", (outcome,))
        return int(row.fetchone()[0])

    def params(self, action_id: int) -> dict[str, Any]:
        row = self._execute("SELECT params FROM actions WHERE id = ?", (action_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def labels(self, action_id: int) -> dict[str, str]:
        row = self._execute("SELECT labels FROM actions WHERE id = ?", (action_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    # ------------------------------------------------------------------ console reads

    def history(
        self,
        *,
        panel: str | None = None,
        rule: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[ActionRow]:
        """Rows newest first, filtered like :meth:`list` and by receipt time
        (``since <= received_at < until``); ``before_id`` pages on (ids below it)."""
        self._guard()
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("panel", panel), ("rule", rule), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for clause, bound in (("received_at >= ?", since), ("received_at < ?", until),
                              ("id < ?", before_id)):  # fmt: skip
            if bound is not None:
                where.append(clause)
                args.append(bound)
        sql = f"SELECT {_COLUMNS} FROM actions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [ActionRow(*r) for r in self._execute(sql, (*args, limit)).fetchall()]

    def message_page(self, action_id: int, offset: int, limit: int) -> list[MessageRecord]:
        """The message records of one action, in the order they were made, from ``offset``."""
        self._guard()
        rows = self._execute(
            "SELECT message_id, sender, recipients, size_bytes, age_seconds, answer "
            "FROM action_messages WHERE action_id = ? ORDER BY seq LIMIT ? OFFSET ?",
            (action_id, limit, offset),
        ).fetchall()
        return [MessageRecord(*r) for r in rows]

    def control_log(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest changes of the pause switch and the breaker, newest first."""
        self._guard()
        rows = self._execute(
            "SELECT at, name, value, changed_by, reason FROM control_log ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {"at": at, "name": name, "value": bool(value), "changed_by": by, "reason": reason}
            for at, name, value, by, reason in rows
        ]

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
        rows = self._execute(sql, (*args, limit)).fetchall()
        return [ActionRow(*r) for r in rows]


_INSERT = (
    "INSERT INTO actions (id, rule, panel, action, outcome, reason, received_at, "
    "finished_at, alertname, fingerprint, starts_at, alert_status, labels, "
    "dedupe_key, counts, episode, lease_owner, lease_expires, params, origin, "
    "requested_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


class Batch:
    """Plan a whole group commit with a handful of round trips (the shared journal).

    Inside :meth:`Journal.transaction` (so under the fleet-wide lock, where nobody
    else writes), it reads up front what the planner will ask about the batch's
    alerts (newest episode row per dedupe key, newest counting row per rule and
    panel), answers the planner from that plus the rows planned so far, queues
    the new rows with ids reserved in advance, and writes them in one
    ``executemany`` at :meth:`flush`. Same answers as the journal itself, which
    :func:`tests.test_remediator_pg` checks on both engines. Resolved alerts
    (which cancel rows) are not planned here: :meth:`direct` flushes and hands
    over to the journal for the rest of the batch.
    """

    def __init__(
        self,
        journal: Journal,
        keys: Sequence[str],
        rule_panels: Sequence[tuple[str, str]],
        alerts: int,
        since: float,
        cap: int,
    ) -> None:
        self.journal = journal
        self._rows: list[tuple[Any, ...]] = []
        self._episodes: dict[str, EpisodeRun | None] = dict.fromkeys(keys)
        self._accepted: dict[tuple[str, str], float | None] = dict.fromkeys(rule_panels)
        self._since: dict[float, int] = {}
        self._new_counting: list[float] = []
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []
        # Everything in one go (one round trip on PostgreSQL: a pipeline): ids, the
        # newest episode row per key, the newest counting row per (rule, panel), the
        # rate-limit count; each with the journal's own statement.
        unique_keys = sorted(set(keys))
        pairs = sorted(set(rule_panels))
        queries: list[tuple[str, Sequence[Any]]] = [
            (journal._dialect.reserve_sql, (max(alerts, 1),)),
            (_ACCEPTED_SINCE_UP_TO, (since, cap)),
            ("SELECT name, value FROM control", ()),
            *((_EPISODE_LAST, (key,)) for key in unique_keys),
            *((_LAST_ACCEPTED, pair) for pair in pairs),
        ]
        ids, count, controls, *found = journal._dialect.fetch_all(queries)
        self._ids = sorted(int(r[0]) for r in ids)
        self._since[since] = int(count[0][0])
        self._controls = {name: bool(value) for name, value in controls}
        self._runs: dict[str, int] = {}
        self._started: dict[float, set[str]] = {}
        for key, rows in zip(unique_keys, found[: len(unique_keys)], strict=True):
            self._episodes[key] = EpisodeRun(*rows[0]) if rows else None
        for pair, rows in zip(pairs, found[len(unique_keys) :], strict=True):
            self._accepted[pair] = rows[0][0] if rows else None

    # ------------------------------------------------------------------ JournalView

    def episode_last(self, dedupe_key: str) -> EpisodeRun | None:
        if dedupe_key not in self._episodes:
            self._set(self._episodes, dedupe_key, self.journal.episode_last(dedupe_key))
        return self._episodes[dedupe_key]

    def last_accepted(self, rule: str, panel: str) -> float | None:
        if (rule, panel) not in self._accepted:
            self._set(self._accepted, (rule, panel), self.journal.last_accepted(rule, panel))
        return self._accepted[(rule, panel)]

    def accepted_since(self, since: float) -> int:
        """Exact up to the cap given to the batch (all the planner compares it with)."""
        if since not in self._since:
            self._since[since] = self.journal.accepted_since(since)
        return self._since[since] + sum(1 for at in self._new_counting if at > since)

    def pending_ids(self, rule: str, fingerprint: str, starts_at: str) -> list[int]:
        raise RuntimeError("resolved alerts are planned through Batch.direct()")

    # Columns of a queued row (see Journal._row_values, after the id).
    _OUTCOME, _RECEIVED, _KEY, _COUNTING, _ORIGIN, _PANEL = 4, 6, 13, 14, 19, 2

    def episode_runs(self, dedupe_key: str) -> int:
        if dedupe_key not in self._runs:
            self._runs[dedupe_key] = self.journal.episode_runs(dedupe_key)
        queued = sum(1 for r in self._rows if r[self._KEY] == dedupe_key and r[self._COUNTING])
        return self._runs[dedupe_key] + queued

    def paused(self) -> bool:
        return self._controls.get("paused", False)

    def circuit_open(self) -> bool:
        return self._controls.get("circuit_open", False)

    def set_control(self, name: str, value: bool, by: str, reason: str, now: float) -> bool:
        changed = self.journal.set_control(name, value, by, reason, now)
        self._controls[name] = value
        return changed

    def panels_started_since(self, since: float) -> set[str]:
        if since not in self._started:
            self._started[since] = self.journal.panels_started_since(since)
        return self._started[since] | {
            r[self._PANEL]
            for r in self._rows
            if r[self._ORIGIN] == "alert"
            and r[self._OUTCOME] in STARTED_OUTCOMES
            and r[self._RECEIVED] > since
        }

    # ------------------------------------------------------------------ writes

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._undo.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def insert(self, **row: Unpack[NewRow]) -> int:
        """Queue one row (the arguments of :meth:`Journal.insert`); returns its id."""
        if not self._ids:
            self._ids = self.journal._dialect.reserve_ids(16)
        action_id = self._ids.pop(0)
        values = (action_id, *self.journal._row_values(**row))
        self._rows.append(values)
        outcome, received_at = row["outcome"], row["received_at"]
        counts, episode = values[self._COUNTING], values[self._COUNTING + 1]
        if episode:
            run = EpisodeRun(action_id, outcome, received_at)
            self._set(self._episodes, row["dedupe_key"], run)
        if counts:
            key = (row["rule"], row["panel"])
            previous = self.last_accepted(*key)
            if previous is None or received_at > previous:
                self._set(self._accepted, key, received_at)
            self._new_counting.append(received_at)
        return action_id

    def cancel(self, ids: Sequence[int], reason: str, now: float) -> list[int]:
        raise RuntimeError("resolved alerts are planned through Batch.direct()")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """One notification: its queued rows and what they changed go if it fails."""
        rows, undo, counting = len(self._rows), len(self._undo), len(self._new_counting)
        try:
            yield
        except BaseException:
            del self._rows[rows:]
            del self._new_counting[counting:]
            while len(self._undo) > undo:
                table, key, value = self._undo.pop()
                if value is _MISSING:
                    table.pop(key, None)
                else:
                    table[key] = value
            raise

    def flush(self) -> None:
        """Write the queued rows (one pipelined ``executemany``)."""
        rows, self._rows = self._rows, []
        if rows:
            self.journal._dialect.executemany(_INSERT, rows)
        self._undo.clear()

    def direct(self) -> Journal:
        """Write what is queued; the rest of the batch is planned on the journal itself."""
        self.flush()
        return self.journal


_MISSING = object()
