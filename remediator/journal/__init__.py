"""The action journal: SQLite (one replica, the default) or PostgreSQL (any number of replicas).

One :class:`Journal` class holds every statement (:mod:`.queries`, :mod:`.reads`); the
two engines differ only in a small dialect layer (:mod:`.sqlite`, :mod:`.postgres`:
parameter style, ``BEGIN``, the schema version store, column types, id reservation,
lock waits), so a schema change (:mod:`.schema`) is made once.

Every call from the event loop runs on the journal's own thread (:mod:`.worker`), for
both engines: the loop never waits for a file or a server, a statement the database
never answers is cut off, and ``/healthz`` gets an answer within its bound whatever
the database does. Calls run one at a time, in order, on one connection, so nothing
joins or reads another call's open transaction.

Accepting notifications commits with ``synchronous=FULL`` (SQLite; PostgreSQL:
``synchronous_commit`` on): in WAL mode that fsyncs the log on every commit, so a
notification answered 2xx survives a power loss, not just a crash. Notifications that
arrive together share one commit (group commit, see :mod:`remediator.routes.webhook`), each
inside its own savepoint. Claiming an action (``pending`` -> ``running``) also commits
durably, before its first panel call is sent: after any crash or power cut, a
``pending`` row is known never to have reached the panel (it is run at the next start)
and only a ``running`` row may have (it is resumed when idempotent, ``interrupted``
otherwise). The messages a deletion removed are recorded as the panel confirms them,
before the action verifies anything. Finishing an action commits without an fsync of
its own (the next durable commit carries it): losing one to a power cut only makes
recovery treat the action as unfinished, which is safe.
"""

from remediator.journal.base import (
    CONTROLS,
    JOURNAL_ERRORS,
    MAX_MESSAGE_RECORDS,
    ActionRow,
    Health,
    JournalError,
    JournalTimeout,
    JournalUnavailable,
    NewRow,
    first_line,
)
from remediator.journal.batch import Batch
from remediator.journal.postgres import ADVISORY_LOCK, APPLICATION, SessionLimits
from remediator.journal.queries import Journal, replica_id
from remediator.journal.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "ADVISORY_LOCK",
    "APPLICATION",
    "CONTROLS",
    "JOURNAL_ERRORS",
    "MAX_MESSAGE_RECORDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ActionRow",
    "Batch",
    "Health",
    "Journal",
    "JournalError",
    "JournalTimeout",
    "JournalUnavailable",
    "NewRow",
    "SessionLimits",
    "first_line",
    "replica_id",
]
