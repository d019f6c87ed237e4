"""``GET /``: the plain status page (rules, brakes, approvals waiting, recent actions)."""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from remediator.journal import JOURNAL_ERRORS, first_line
from remediator.routes.common import error, log

if TYPE_CHECKING:
    from remediator.app import Remediator


class StatusPage:
    """The status page of one :class:`~remediator.app.Remediator`; every value escaped."""

    def __init__(self, remediator: Remediator) -> None:
        self.rem = remediator

    async def index(self, request: Request) -> Response:
        """``GET /``."""
        journal = self.rem.journal
        try:
            latest = await journal.call(journal.list, limit=20)
            controls = await journal.call(journal.controls)
            waiting = await journal.call(journal.list, outcome="awaiting_approval", limit=50)
        except JOURNAL_ERRORS as exc:
            log.error("status page: cannot read the journal: %s", first_line(exc))
            return error(503, "the action journal cannot be read; see the remediator's log")
        esc = html.escape
        brakes = "".join(
            f"<p><strong>{label}</strong> since {_when(c['changed_at'] or 0)} UTC by "
            f"{esc(c['changed_by'] or '-')}: {esc(c['reason'])}. <code>POST /resume</code> "
            "to act again.</p>"
            for label, c in (
                ("PAUSED", controls["paused"]),
                ("CIRCUIT BREAKER OPEN", controls["circuit_open"]),
            )
            if c["value"]
        )
        asks = "".join(
            f"<li><a href='/actions/{a.id}'>#{a.id}</a> {esc(a.rule)} on {esc(a.panel)} "
            f"({esc(a.action)}), since {_when(a.received_at)} UTC: "
            f"<code>POST /actions/{a.id}/approve</code> or <code>/deny</code></li>"
            for a in waiting
        )
        if asks:
            brakes += f"<h2>Awaiting approval</h2><ul>{asks}</ul>"
        recent = "".join(
            f"<tr><td>{a.id}</td><td>{_when(a.received_at)}</td><td>{esc(a.rule)}</td><td>{esc(a.panel)}</td><td>{esc(a.action)}</td>"
            f"<td>{esc(a.outcome)}</td><td>{esc(a.reason)}</td></tr>"
            for a in latest
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<title>brainycp-mail remediator</title></head><body>"
            "<h1>brainycp-mail remediator</h1>"
            f"<p>{len(self.rem.config.panels)} panels; webhook at <code>POST /webhook</code>; "
            "<a href='/actions'>actions</a>, <a href='/control'>control</a>, "
            f"<a href='/metrics'>metrics</a>.</p>{brakes}"
            "<h2>Rules (first match wins)</h2><table border=1><tr><th>name</th><th>matchers</th>"
            f"<th>action</th><th>cooldown</th><th>dry run</th></tr>{self._rules()}</table>"
            "<h2>Recent actions (UTC)</h2><table border=1><tr><th>id</th><th>received</th>"
            "<th>rule</th><th>panel</th><th>action</th><th>outcome</th><th>reason</th></tr>"
            f"{recent}</table></body></html>"
        )
        return HTMLResponse(page)

    def _rules(self) -> str:
        esc, rconfig = html.escape, self.rem.rconfig
        return "".join(
            f"<tr><td>{esc(r.name)}</td><td>{esc(', '.join(str(m) for m in r.matchers))}</td>"
            f"<td>{esc(r.action)}{' ' + esc(r.daemon) if r.daemon else ''}</td>"
            f"<td>{r.cooldown:g}s</td><td>{'yes' if r.dry_run or rconfig.dry_run else ''}"
            "</td></tr>"
            for r in rconfig.rules
        )


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
