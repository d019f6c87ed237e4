"""The SQLite dialect of the journal: one file in WAL mode, one connection, one replica."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from remediator.journal.base import Cursor, storable
from remediator.journal.schema import SQLITE_TYPES, create_sqlite, open_sqlite

BUSY_TIMEOUT_MS = 2000
"""How long a write waits for another connection's lock on the file (``sqlite3`` by
hand, a backup) before it fails with ``database is locked``."""


class SqliteDialect:
    name = "sqlite"
    shared = False

    def __init__(self, path: str | Path, progress: Callable[[], None] = lambda: None) -> None:
        self.types = SQLITE_TYPES
        self.progress = progress
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        # check_same_thread=False: the journal's worker thread makes the calls (one at a
        # time, under the journal's lock); the event loop thread only interrupts.
        if str(path) == ":memory:":
            self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            # An existing file is checked first (SQLite header, PRAGMA quick_check, schema
            # version) and never overwritten or truncated; a new one is created whole
            # with mode 0600. JournalError when the file is unfit.
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            if not file.exists():
                create_sqlite(file)
            self.db = open_sqlite(file)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor = self.db.execute(sql, storable(params, nul=False))
        self.progress()
        return cursor

    def begin(self, durable: bool) -> None:
        if not durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.end(durable)
            raise

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """End the open transaction, if any; never raises (a failed ROLLBACK leaves
        SQLite's own automatic rollback to undo the transaction)."""
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    def end(self, durable: bool) -> None:
        if not durable:
            # On failure the next begin() sets the level it needs again.
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA synchronous=FULL")

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.db.executemany(sql, [storable(row, nul=False) for row in rows])
        self.progress()

    def fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        return [self.execute(sql, params).fetchall() for sql, params in queries]

    # Only inside BEGIN IMMEDIATE (no other writer): the next ids after the highest used
    # (ids reserved and not used are simply never written). Parameter: how many.
    reserve_sql = (
        "WITH RECURSIVE top(n) AS (SELECT MAX(n) FROM (SELECT MAX(id) AS n FROM actions "
        "UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'actions')), "
        "ids(id, k) AS (SELECT COALESCE((SELECT n FROM top), 0) + 1, 1 "
        "UNION ALL SELECT id + 1, k + 1 FROM ids WHERE k < ?) SELECT id FROM ids"
    )

    def reserve_ids(self, count: int) -> list[int]:
        return sorted(int(r[0]) for r in self.execute(self.reserve_sql, (count,)).fetchall())

    def version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def abort(self) -> None:
        """From another thread: make the running statement fail (``interrupted``)."""
        self.db.interrupt()

    def close(self) -> None:
        self.db.close()
