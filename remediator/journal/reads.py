"""The journal's reads for the API, the console and notifications: rows, their details,
their messages, the control log (shared by both engines; :class:`Journal` inherits them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from remediator.actions.base import MessageRecord
from remediator.journal.base import COLUMNS, MAX_MESSAGE_RECORDS, ActionRow, Cursor


class Reads:
    """The read-only queries of :class:`~remediator.journal.Journal`."""

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def get(self, action_id: int) -> ActionRow | None:
        row = self._execute(f"SELECT {COLUMNS} FROM actions WHERE id = ?", (action_id,)).fetchone()
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

    def oldest_received(self, outcome: str) -> float | None:
        """``received_at`` of the oldest row with ``outcome`` now; None when there is none."""
        row = self._execute("SELECT MIN(received_at) FROM actions WHERE outcome = ?", (outcome,))
        oldest = row.fetchone()[0]
        return None if oldest is None else float(oldest)

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
        sql = f"SELECT {COLUMNS} FROM actions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [ActionRow(*r) for r in self._execute(sql, (*args, limit)).fetchall()]

    def message_page(self, action_id: int, offset: int, limit: int) -> list[MessageRecord]:
        """The message records of one action, in the order they were made, from ``offset``."""
        rows = self._execute(
            "SELECT message_id, sender, recipients, size_bytes, age_seconds, answer "
            "FROM action_messages WHERE action_id = ? ORDER BY seq LIMIT ? OFFSET ?",
            (action_id, limit, offset),
        ).fetchall()
        return [MessageRecord(*r) for r in rows]

    def control_log(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest changes of the pause switch and the breaker, newest first."""
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
        where, args = [], []
        for column, value in (("panel", panel), ("rule", rule), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {COLUMNS} FROM actions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._execute(sql, (*args, limit)).fetchall()
        return [ActionRow(*r) for r in rows]
