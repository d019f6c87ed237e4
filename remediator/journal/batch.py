"""A group commit's planning on the shared journal: everything the planner will ask read in
one round trip, the new rows written in one statement (see :class:`Batch`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Unpack

from remediator.journal.base import (
    ACCEPTED_SINCE_UP_TO,
    EPISODE_LAST,
    INSERT_ROW,
    LAST_ACCEPTED,
    NewRow,
)
from remediator.planner import STARTED_OUTCOMES, EpisodeRun

if TYPE_CHECKING:
    from remediator.journal.queries import Journal


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
        # Everything in one go (one round trip on PostgreSQL, one message): ids, the
        # newest episode row per key, the newest counting row per (rule, panel), the
        # rate-limit count; each with the journal's own statement.
        unique_keys = sorted(set(keys))
        pairs = sorted(set(rule_panels))
        queries: list[tuple[str, Sequence[Any]]] = [
            (journal.reserve_sql, (max(alerts, 1),)),
            (ACCEPTED_SINCE_UP_TO, (since, cap)),
            ("SELECT name, value FROM control", ()),
            *((EPISODE_LAST, (key,)) for key in unique_keys),
            *((LAST_ACCEPTED, pair) for pair in pairs),
        ]
        ids, count, controls, *found = journal.fetch_all(queries)
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

    # Columns of a queued row (see Journal.row_values, after the id).
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
            self._ids = self.journal.reserve_ids(16)
        action_id = self._ids.pop(0)
        values = (action_id, *self.journal.row_values(**row))
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
        """Write the queued rows (PostgreSQL: one multi-row INSERT per 60,000 values)."""
        rows, self._rows = self._rows, []
        if rows:
            self.journal.execute_many(INSERT_ROW, rows)
        self._undo.clear()

    def direct(self) -> Journal:
        """Write what is queued; the rest of the batch is planned on the journal itself."""
        self.flush()
        return self.journal


_MISSING = object()
