"""The operator console's pages: waiting for a decision, brakes, history, an action, manual.

Every page is rendered on the server (:mod:`brainycp.daemon.htmlpages`); every change goes
through the JSON API's own handlers (:mod:`remediator.console.api`) with the signed-in
user as ``by``; reads go to the journal, off the event loop where it has its own thread.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from brainycp.daemon.htmlpages import Pages, stylesheet_response
from remediator import actions as panel_actions
from remediator.actions import ACTIONS, DESTRUCTIVE, taking
from remediator.console.api import OperatorAPI
from remediator.console.auth import PREFIX, signed_in_user
from remediator.console.forms import FormError, read_form
from remediator.console.manual_form import ManualForm
from remediator.journal import JOURNAL_ERRORS, ActionRow
from remediator.manual import MANUAL_RULE, rule_for_row
from remediator.planner import OUTCOMES
from remediator.settings.rules import Rule

if TYPE_CHECKING:
    from remediator.app import Remediator

log = logging.getLogger("remediator.console")
P = ParamSpec("P")
T = TypeVar("T")

PAGE_SIZE = 50
MESSAGES_PER_PAGE = 500
PREVIEWS_ON_LIST = 10
"""Waiting requests whose live preview the first page runs (each one reads the panel's queue)."""
PREVIEW_ROWS = {"list": 5, "action": 100}
MAX_FILTER = 256
_TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")

Handler = Callable[[Request, str], Awaitable[Response]]


class PageError(Exception):
    """A request the page cannot serve; ``status`` is the answer's code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Console:
    """The console's routes over one :class:`~remediator.app.Remediator`."""

    def __init__(self, remediator: Remediator, *, preview_timeout: float = 10.0) -> None:
        self.rem = remediator
        self.api = OperatorAPI(remediator.app())
        self.pages = Pages("remediator.console", title="remediator")
        self.preview_timeout = preview_timeout

    # ------------------------------------------------------------------ plumbing

    def app(self) -> Starlette:
        """The console's ASGI app (mounted at :data:`PREFIX` by the console router)."""
        page = self._page
        return Starlette(
            routes=[
                Route(f"{PREFIX}/style.css", stylesheet_response, methods=["GET"]),
                Route(PREFIX, lambda r: RedirectResponse(f"{PREFIX}/", 303), methods=["GET"]),
                Route(f"{PREFIX}/", page(self.waiting), methods=["GET"]),
                Route(f"{PREFIX}/actions/{{action_id:int}}", page(self.action), methods=["GET"]),
                Route(
                    f"{PREFIX}/actions/{{action_id:int}}/approve",
                    page(self.decide),
                    methods=["POST"],
                ),
                Route(
                    f"{PREFIX}/actions/{{action_id:int}}/deny", page(self.decide), methods=["POST"]
                ),
                Route(f"{PREFIX}/brakes", page(self.brakes), methods=["GET"]),
                Route(f"{PREFIX}/pause", page(self.brake), methods=["POST"]),
                Route(f"{PREFIX}/resume", page(self.brake), methods=["POST"]),
                Route(f"{PREFIX}/history", page(self.history), methods=["GET"]),
                Route(f"{PREFIX}/manual", page(self.manual), methods=["GET"]),
                Route(f"{PREFIX}/manual/preview", page(self.manual_preview), methods=["POST"]),
                Route(f"{PREFIX}/manual/run", page(self.manual_run), methods=["POST"]),
            ],
        )

    def _page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Sign-in check, then ``handler``; journal and form problems become a page."""

        async def serve(request: Request) -> Response:
            user = signed_in_user(request.scope)
            if user is None:
                return self.pages.render("refused.html", self._base(request, ""), status=403)
            try:
                return await handler(request, user)
            except PageError as exc:
                return self._problem(request, user, exc.status, str(exc))
            except FormError as exc:
                return self._problem(request, user, exc.status, str(exc))
            except JOURNAL_ERRORS as exc:
                log.error("console: cannot read the journal: %s", str(exc).splitlines()[:1])
                return self._problem(
                    request, user, 503, "the action journal cannot be read; see the log"
                )

        return serve

    def _base(self, request: Request, user: str) -> dict[str, Any]:
        return {
            "stylesheet": f"{PREFIX}/style.css",
            "prefix": PREFIX,
            "user": user,
            "path": request.url.path,
            "now": time.time(),
        }

    def _problem(self, request: Request, user: str, status: int, message: str) -> Response:
        context = {**self._base(request, user), "status": status, "message": message}
        return self.pages.render("problem.html", context, status=status)

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.rem.journal.call(fn, *args, **kwargs)

    async def _common(self, request: Request, user: str) -> dict[str, Any]:
        """What every page shows: who is signed in and the brakes when set."""
        controls = await self._read(self.rem.journal.controls)
        return {**self._base(request, user), "controls": controls}

    # ------------------------------------------------------------------ selection, preview

    def _rule(self, row: ActionRow, params: dict[str, Any]) -> Rule | None:
        rule = rule_for_row(row.rule, row.action, params, self.rem.rules)
        return rule if rule is not None and row.panel in self.rem.config.panels else None

    async def _preview(self, row: ActionRow, rule: Rule | None) -> dict[str, Any]:
        """A live dry run of what the action would do now; ``{"error": ...}`` when none can run."""
        if rule is None:
            return {"error": "its rule or panel left the config; it cannot run"}
        client = self.rem.runner.client(row.panel)
        try:
            return await asyncio.wait_for(panel_actions.preview(client, rule), self.preview_timeout)
        except TimeoutError:
            return {"error": f"the panel did not answer within {self.preview_timeout:g}s"}
        except panel_actions.ReadFailed as exc:
            return {"error": panel_actions.why(exc)[:300]}

    async def _request(self, row: ActionRow, preview: bool) -> dict[str, Any]:
        """An action with its detail, the rule it runs with, its selection and a preview."""
        detail = await self._read(self.rem.journal.detail, row.id, max_messages=0)
        rule = self._rule(row, detail.get("params") or {})
        out = {"row": row, "detail": detail, "rule": rule, "selection": selection(row, rule)}
        out["expires_at"] = row.received_at + self.rem.rconfig.approval_timeout
        out["preview"] = await self._preview(row, rule) if preview else None
        return out

    # ------------------------------------------------------------------ waiting

    async def waiting(self, request: Request, user: str) -> Response:
        context = await self._common(request, user)
        rows = await self._read(self.rem.journal.list, outcome="awaiting_approval", limit=200)
        rows.sort(key=lambda r: r.id)  # oldest first: it expires first
        requests = await asyncio.gather(
            *(self._request(row, i < PREVIEWS_ON_LIST) for i, row in enumerate(rows))
        )
        recent = await self._read(self.rem.journal.list, limit=10)
        context.update(
            requests=requests,
            recent=recent,
            preview_rows=PREVIEW_ROWS["list"],
            previews_on_list=PREVIEWS_ON_LIST,
        )
        return self.pages.render("waiting.html", context)

    # ------------------------------------------------------------------ one action

    async def action(self, request: Request, user: str, **extra: Any) -> Response:
        action_id = request.path_params["action_id"]
        row = await self._read(self.rem.journal.get, action_id) if action_id < 2**63 else None
        if row is None:
            raise PageError(404, f"no action {action_id}")
        context = await self._common(request, user)
        awaiting = row.outcome == "awaiting_approval"
        found = await self._request(row, preview=awaiting)
        detail = found["detail"]
        page = _number(request.query_params.get("page", "1"), "page", 1, 10**6)
        total = detail.get("messages_total") or 0
        messages = await self._read(
            self.rem.journal.message_page,
            action_id,
            (page - 1) * MESSAGES_PER_PAGE,
            MESSAGES_PER_PAGE,
        )
        done = request.query_params.get("done", "")
        context.update(
            found,
            awaiting=awaiting,
            timeline=timeline(row, detail, found["expires_at"]),
            messages=messages,
            page=page,
            pages=max(1, -(-min(total, 10_000) // MESSAGES_PER_PAGE)),
            preview_rows=PREVIEW_ROWS["action"],
            done=done if done in ("approved", "denied") else "",
            **extra,
        )
        return self.pages.render("action.html", context, status=extra.get("status", 200))

    async def decide(self, request: Request, user: str) -> Response:
        form = await read_form(request)
        action_id = request.path_params["action_id"]
        verb = "approve" if request.url.path.endswith("/approve") else "deny"
        status, answer = await self.api.post(
            f"/actions/{action_id}/{verb}", {"by": user, "comment": form.get("comment", "")}
        )
        if status == 200:
            done = "approved" if verb == "approve" else "denied"
            return RedirectResponse(f"{PREFIX}/actions/{action_id}?done={done}", 303)
        if status == 404:
            raise PageError(404, str(answer.get("error", "no such action")))
        return await self.action(request, user, error=answer.get("error", ""), status=status)

    # ------------------------------------------------------------------ brakes

    async def brakes(self, request: Request, user: str, **extra: Any) -> Response:
        context = await self._common(request, user)
        changes = await self._read(self.rem.journal.control_log, 20)
        done = request.query_params.get("done", "")
        context.update(
            changes=changes, done=done if done in ("paused", "resumed") else "", error="", **extra
        )
        return self.pages.render("brakes.html", context, status=extra.get("status", 200))

    async def brake(self, request: Request, user: str) -> Response:
        form = await read_form(request)
        pause = request.url.path.endswith("/pause")
        reason = form.get("reason", "").strip()
        if pause and not reason:
            return await self.brakes(request, user, error="say why you pause", status=422)
        status, answer = await self.api.post(
            "/pause" if pause else "/resume", {"by": user, "comment": reason}
        )
        if status != 200:
            return await self.brakes(request, user, error=answer.get("error", ""), status=status)
        return RedirectResponse(f"{PREFIX}/brakes?done={'paused' if pause else 'resumed'}", 303)

    # ------------------------------------------------------------------ history

    async def history(self, request: Request, user: str) -> Response:
        query = request.query_params
        filters: dict[str, Any] = {}
        for key in ("panel", "rule", "outcome"):
            value = query.get(key, "")
            if len(value) > MAX_FILTER:
                raise PageError(400, f"{key} is longer than {MAX_FILTER} characters")
            filters[key] = value or None
        if filters["outcome"] is not None and filters["outcome"] not in OUTCOMES:
            raise PageError(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        since = _when(query.get("since", ""), "since")
        until = _when(query.get("until", ""), "until")
        before = query.get("before", "")
        before_id = _number(before, "before", 1, 2**63 - 1) if before else None
        rows = await self._read(
            self.rem.journal.history,
            **filters,
            since=since,
            until=until,
            before_id=before_id,
            limit=PAGE_SIZE + 1,
        )
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        context = await self._common(request, user)
        shown = {k: query.get(k, "") for k in ("panel", "rule", "outcome", "since", "until")}
        kept = {k: v for k, v in shown.items() if v}
        older = {**kept, "before": str(rows[-1].id)} if more else None
        newest = kept if before_id is not None else None
        context.update(
            rows=rows,
            filters=shown,
            older=older,
            newest=newest,
            outcomes=OUTCOMES,
            panels=sorted(self.rem.config.panels),
            rules=[*self.rem.rules, MANUAL_RULE],
        )
        return self.pages.render("history.html", context)

    # ------------------------------------------------------------------ manual actions

    def _manual_context(self) -> dict[str, Any]:
        settings = self.rem.rconfig.manual
        return {
            "manual_actions": list(settings.actions),
            "max_messages": settings.max_messages,
            "panels": sorted(self.rem.config.panels),
            "destructive": DESTRUCTIVE,
            "message_actions": taking("select"),
        }

    async def manual(self, request: Request, user: str, **extra: Any) -> Response:
        context = await self._common(request, user)
        context.update(self._manual_context(), form=ManualForm(), preview=None, error="")
        context.update(extra)
        return self.pages.render("manual.html", context, status=extra.get("status", 200))

    async def manual_preview(self, request: Request, user: str) -> Response:
        form = ManualForm.from_fields(await read_form(request))
        status, answer = await self.api.post("/actions", form.request(user, dry_run=True))
        if status != 200:
            return await self.manual(
                request, user, form=form, error=answer.get("error", ""), status=status
            )
        return await self.manual(request, user, form=form, preview=answer)

    async def manual_run(self, request: Request, user: str) -> Response:
        fields = await read_form(request)
        form = ManualForm.from_fields(fields)
        body = form.request(user, dry_run=False)
        body["allow_destructive"] = fields.get("confirm") == "yes"
        status, answer = await self.api.post("/actions", body)
        if status == 202 and isinstance(answer.get("action_id"), int):
            return RedirectResponse(f"{PREFIX}/actions/{answer['action_id']}", 303)
        return await self.manual(
            request,
            user,
            form=form,
            error=answer.get("error", ""),
            status=status if status >= 400 else 409,
        )


def selection(row: ActionRow, rule: Rule | None) -> list[tuple[str, str]]:
    """What an action acts on, as ``(criterion, value)`` pairs for the page."""
    if rule is None:
        return []
    kind = ACTIONS[rule.action]
    if not kind.on_messages:
        return [("daemon", str(rule.daemon))]
    if kind.everything:
        return [("messages", kind.everything + (" (forced)" if rule.force else ""))]
    pairs = [
        (k, str(v))
        for k, v in (rule.select.model_dump() if rule.select else {}).items()
        if v is not None
    ]
    verb = "the oldest" if rule.limit == "first" else "refuse above"
    return [*pairs, ("at most", f"{rule.max_messages} messages ({verb})")]


def timeline(row: ActionRow, detail: dict[str, Any], expires_at: float) -> list[dict[str, Any]]:
    """The action's story, in order: alert, request, decision, start, end, verification."""
    events: list[dict[str, Any]] = []
    if row.alertname:
        events.append(
            {
                "at": None,
                "what": "alert",
                "text": f"{row.alertname} ({row.alert_status})"
                + (f", firing since {row.starts_at}" if row.starts_at else ""),
            }
        )
    who = detail.get("requested_by") or ""
    origin = detail.get("origin", "alert")
    events.append(
        {
            "at": row.received_at,
            "what": "request",
            "text": f"{origin} request" + (f" by {who}" if who else ""),
        }
    )
    decision = detail.get("decision")
    if decision:
        verb = "denied" if row.outcome == "denied" else "approved"
        text = f"{verb} by {decision.get('by') or 'someone'}"
        if decision.get("comment"):
            text += f": {decision['comment']}"
        events.append({"at": decision.get("at"), "what": "decision", "text": text})
    elif row.outcome == "awaiting_approval":
        events.append({"at": expires_at, "what": "decision", "text": "waiting; expires"})
    if row.started_at is not None:
        events.append({"at": row.started_at, "what": "start", "text": "started"})
    if row.finished_at is not None:
        end = f"{row.outcome}: {row.reason}"
        events.append({"at": row.finished_at, "what": "end", "text": end})
    state = detail.get("state") or {}
    if state.get("before") or state.get("after"):
        events.append(
            {
                "at": None,
                "what": "verification",
                "text": f"before {_pairs(state.get('before'))}; after {_pairs(state.get('after'))}",
            }
        )
    return events


def _pairs(values: Any) -> str:
    if not isinstance(values, dict) or not values:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _number(raw: str, key: str, low: int, high: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not low <= int(raw) <= high:
        raise PageError(400, f"{key} must be a number from {low} to {high}")
    return int(raw)


def _when(raw: str, key: str) -> float | None:
    """A ``datetime-local`` value read as UTC; None when empty."""
    if not raw:
        return None
    for fmt in _TIME_FORMATS:
        try:
            return float(calendar.timegm(time.strptime(raw, fmt)))
        except ValueError:
            continue
    raise PageError(400, f"{key} must be a UTC time like 2026-11-25T08:00")
