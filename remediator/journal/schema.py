"""The journal's schema (numbered migrations for both engines) and the SQLite file's safe
creation and start-up checks."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from remediator.journal.base import JournalError

log = logging.getLogger("remediator.journal")

SQLITE_HEADER = b"SQLite format 3\x00"

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
SQLITE_TYPES = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"}


def _move_aside(path: Path) -> str:
    return (
        "stop the remediator and move the journal aside with its -wal and -shm files "
        f"(keep them for inspection): mv {path} {path}.bad; mv {path}-wal {path}.bad-wal; "
        f"mv {path}-shm {path}.bad-shm (a missing -wal or -shm is fine); the next start "
        "creates an empty journal (history, dedupe and cooldown state start over). "
        f"Rows may be salvaged with: sqlite3 {path}.bad .recover | sqlite3 salvaged.sqlite"
    )


def create_sqlite(path: Path) -> None:
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
                    db.execute(statement.format(**SQLITE_TYPES))
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


def open_sqlite(path: Path) -> sqlite3.Connection:
    """Open an existing journal for writing after checking it; :class:`JournalError` if unfit."""
    if not path.is_file():
        raise JournalError(f"journal {path}: not a regular file; {_move_aside(path)}")
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        raise JournalError(
            f"journal {path}: the file is empty (0 bytes), so its history is gone or it is not "
            f"a journal; the remediator does not overwrite it. To start afresh, "
            + _move_aside(path)
        )
    if header != SQLITE_HEADER:
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
