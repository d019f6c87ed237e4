"""The operator API: list and read actions, approve or deny, pause and resume, act by hand.

Every route but the reads needs the webhook's credentials or a request the gate in
front of the app authenticated (a web-config user, a client certificate); ``by`` and
``comment`` come from the optional JSON body and are journaled with the decision.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from brainycp.daemon.reload import AUTHENTICATED
from remediator import actions as panel_actions
from remediator import operator
from remediator.journal import JOURNAL_ERRORS, Journal, first_line
from remediator.manual import MANUAL_RULE, ManualError, parse_request
from remediator.notify import control_event
from remediator.planner import OUTCOMES
from remediator.routes.common import authorized, client_address, error, log, read_body

if TYPE_CHECKING:
    from remediator.app import Remediator

MAX_LIMIT = 10000
MAX_REQUEST_BYTES = 64 * 1024
MAX_ACTION_ID = 2**63 - 1  # SQLite's INTEGER; a larger path id would overflow the binding
_ACTIONS_PARAMS = ("panel", "rule", "outcome", "limit")
_MAX_PARAM = 256
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() also takes "²" and "٣"


class OperatorRoutes:
    """The operator API of one :class:`~remediator.app.Remediator`."""

    def __init__(self, remediator: Remediator) -> None:
        self.rem = remediator

    # ------------------------------------------------------------------ reads

    async def actions(self, request: Request) -> Response:
        """``GET /actions``: the newest rows, filtered by panel, rule and outcome."""
        query = request.query_params
        for key in query:
            if key not in _ACTIONS_PARAMS:
                return error(
                    400, f"unknown parameter {key[:40]!r}; use {', '.join(_ACTIONS_PARAMS)}"
                )
            if len(query.getlist(key)) > 1:
                return error(400, f"parameter {key!r} given more than once")
            if len(query[key]) > _MAX_PARAM:
                return error(400, f"parameter {key!r} is longer than {_MAX_PARAM} characters")
        outcome = query.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            return error(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        raw_limit = query.get("limit", "100")
        if _DIGITS.fullmatch(raw_limit) is None or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return error(400, f"limit must be a number from 1 to {MAX_LIMIT}")
        journal = self.rem.journal
        try:
            rows = await journal.call(
                journal.list,
                panel=query.get("panel"),
                rule=query.get("rule"),
                outcome=outcome,
                limit=int(raw_limit),
            )
        except JOURNAL_ERRORS as exc:
            log.error("actions: cannot read the journal: %s", first_line(exc))
            return error(503, "the action journal cannot be read; see the remediator's log")
        return JSONResponse({"actions": [row.as_json() for row in rows]})

    async def action(self, request: Request) -> Response:
        """``GET /actions/ID``: the summary plus labels, params, approval and messages."""
        action_id = request.path_params["action_id"]
        found = None
        if action_id <= MAX_ACTION_ID:
            found = await self.rem.journal.call(_row_and_detail, self.rem.journal, action_id)
        if found is None:
            return error(404, f"no action {action_id}")
        return JSONResponse(found)

    async def control(self, request: Request) -> Response:
        """``GET /control``: the brakes (paused, circuit open), who set them and why."""
        return JSONResponse(await self.rem.journal.call(self.rem.journal.controls))

    # ------------------------------------------------------------------ people

    def _auth(self, request: Request) -> Response | None:
        # The gate in front of the app (remediator/serve.py) marks a request it authenticated:
        # with --web.config.file its users' basic auth is not the webhook's credentials.
        if request.scope.get(AUTHENTICATED) or authorized(
            request.headers.get("authorization"), self.rem.rconfig.auth
        ):
            return None
        log.warning("%s %s: unauthorized request from %s", request.method, request.url.path,
                    client_address(request))  # fmt: skip
        return error(401, "missing or wrong credentials", self.rem.challenge_header)

    async def _json_body(self, request: Request, *, optional: bool) -> dict[str, Any] | Response:
        raw = await read_body(request, MAX_REQUEST_BYTES)
        if isinstance(raw, Response):
            return raw
        if not raw.strip() and optional:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return error(400, "body is not valid JSON")
        if not isinstance(data, dict):
            return error(422, "the body must be a JSON object")
        return data

    @staticmethod
    def _who(data: dict[str, Any]) -> tuple[str, str] | Response:
        by, comment = data.get("by", ""), data.get("comment", "")
        for key, value, limit in (("by", by, 200), ("comment", comment, 2000)):
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > limit:
                return error(422, f"{key} must be a string of at most {limit} characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return error(422, f"{key} is not valid Unicode")
        return by or "", comment or ""

    async def _operator(self, request: Request) -> tuple[str, str] | Response:
        """An operator's POST: credentials, then ``by`` and ``comment`` from the optional
        JSON body; the error response when any of that fails."""
        if (denied := self._auth(request)) is not None:
            return denied
        data = await self._json_body(request, optional=True)
        if isinstance(data, Response):
            return data
        return self._who(data)

    async def decide(self, request: Request) -> Response:
        """``POST /actions/ID/approve`` and ``/deny``."""
        who = await self._operator(request)
        if isinstance(who, Response):
            return who
        by, comment = who
        approve = request.url.path.endswith("/approve")
        raw_id = request.path_params["action_id"]
        if raw_id > MAX_ACTION_ID:
            return error(404, f"no action {raw_id}")
        rem = self.rem
        done = await rem.journal.call(
            operator.decide, rem.journal, raw_id, approve, by=by, comment=comment,
            now=time.time(), settings=rem.settings, rules=rem.rules,
            approval_timeout=rem.rconfig.approval_timeout,
        )  # fmt: skip
        rem.expired(done.expired)
        if done.opened_circuit:
            rem.circuit_opened(done.opened_circuit)
        if done.row is None:
            return error(done.status, done.error)
        row, outcome = done.row, "approved" if approve else "denied"
        log.info(
            "action %d %s by %s", raw_id, outcome, by or "someone",
            extra={"action_id": raw_id, "rule": row.rule, "panel": row.panel,
                   "outcome": outcome, "reason": comment},
        )  # fmt: skip
        if done.rule is not None:
            rem.runner.submit(raw_id, done.rule, row.panel, row.alertname)
        else:
            rem.stats.outcome(row.panel, row.action, "denied")
        rem.notify_action(raw_id, outcome)
        return JSONResponse(
            {
                "action_id": raw_id,
                "outcome": "pending" if approve else "denied",
                "url": f"{rem.external_url}/actions/{raw_id}",
            }
        )

    async def brake(self, request: Request) -> Response:
        """``POST /pause`` and ``POST /resume`` (resume also closes the circuit breaker)."""
        who = await self._operator(request)
        if isinstance(who, Response):
            return who
        by, comment = who
        pause = request.url.path == "/pause"
        changed, controls = await self.rem.journal.call(
            operator.set_brake, self.rem.journal, pause, by, comment, time.time()
        )
        if changed:
            what = "paused" if pause else "resumed"
            said = f"{what} by {by or 'someone'}" + (f": {comment}" if comment else "")
            log.warning("remediator %s", said)
            self.rem.notifier.submit(control_event(what, said, by, self.rem.external_url))
        return JSONResponse(controls)

    # ------------------------------------------------------------------ by hand

    async def manual(self, request: Request) -> Response:
        """``POST /actions``: run (or preview) one action by hand."""
        if (denied := self._auth(request)) is not None:
            return denied
        data = await self._json_body(request, optional=False)
        if isinstance(data, Response):
            return data
        status, body = await self.run_manual(data)
        return JSONResponse(body, status_code=status)

    async def run_manual(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A manual request: ``(HTTP status, answer)``; the CLI's ``run`` alone calls it too."""
        rem = self.rem
        try:
            req = parse_request(data, rem.rconfig.manual, rem.config.panels)
        except ManualError as exc:
            return exc.status, {"error": str(exc)}
        now = time.time()
        common: dict[str, Any] = {
            "rule": MANUAL_RULE, "panel": req.panel, "action": req.rule.action,
            "received_at": now, "alertname": "", "fingerprint": "", "starts_at": "",
            "alert_status": "", "labels": {}, "params": req.params(), "origin": "manual",
            "requested_by": req.by,
        }  # fmt: skip
        if req.dry_run:
            try:
                preview = await panel_actions.preview(rem.runner.client(req.panel), req.rule)
            except panel_actions.ReadFailed as exc:
                return 502, {"error": panel_actions.why(exc)[:300]}
            action_id = await rem.journal.call(
                rem.journal.insert, outcome="dry_run",
                reason=f"manual preview: {preview['verdict']}",
                dedupe_key=f"manual\x1fpreview\x1f{now}", counts=False, **common,
            )  # fmt: skip
            return 200, {"action_id": action_id, "outcome": "dry_run", **preview}
        common["reason"] = f"manual: {req.rule.action} by {req.by or 'someone'}"
        action_id, outcome = await rem.journal.call(
            operator.accept_manual, rem.journal, common, rem.rconfig.rate_limit, now
        )
        if outcome != "pending":
            limit = rem.rconfig.rate_limit
            reason = f"{limit.max_actions} actions already accepted in the last {limit.per:g}s"
            rem.stats.outcome(req.panel, req.rule.action, outcome)
            rem.notify_action(action_id, outcome)
            return 429, {"action_id": action_id, "outcome": outcome, "error": reason}
        log.info(
            "manual action %d: %s on %s by %s", action_id, req.rule.action, req.panel,
            req.by or "someone",
            extra={"action_id": action_id, "rule": MANUAL_RULE, "panel": req.panel,
                   "outcome": "pending"},
        )  # fmt: skip
        rem.runner.submit(action_id, req.rule, req.panel, "")
        return 202, {
            "action_id": action_id,
            "outcome": "pending",
            "url": f"{rem.external_url}/actions/{action_id}",
        }


def _row_and_detail(journal: Journal, action_id: int) -> dict[str, Any] | None:
    """``GET /actions/ID``'s answer, read in one journal call; None when there is no row."""
    row = journal.get(action_id)
    return None if row is None else {**row.as_json(), **journal.detail(action_id)}
