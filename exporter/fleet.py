"""The exporter's ``/``: the fleet view, one row per panel from the last polls, sortable.

Read from the shared state like ``/metrics``: no route calls a panel. Sorting is a query
parameter (``?sort=queue&order=desc``), done here, so the page needs no script.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from brainycp import __version__
from brainycp.daemon.htmlpages import Pages, query_choice
from exporter.state import ExporterState, PanelState

FLEET_DASHBOARD = "brainycp-mail-fleet"
PANEL_DASHBOARD = "brainycp-mail-panel"
SORTS = ("panel", "up", "queue", "frozen", "oldest", "last_poll")
"""Columns the page sorts by (``?sort=``); the others are not ordered quantities."""


@dataclass(frozen=True)
class FleetRow:
    """What the fleet view shows of one panel (None: unknown or stale)."""

    name: str
    up: bool | None
    queue: int | None
    frozen: int | None
    oldest: float | None
    top_sender: tuple[str, int] | None
    last_poll: float | None
    errors: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    dashboard: str


def fleet_row(panel: PanelState, state: ExporterState, now: float) -> FleetRow:
    """One panel's row; values older than ``max_staleness`` show as unknown, as in /metrics."""
    stale_after = state.max_staleness
    count = panel.operations.get("count_msg")
    listing = panel.operations.get("list_msg")
    up = None if count is None or not count.attempted else count.success
    queue = panel.queue_messages if count and count.is_fresh(now, stale_after) else None
    summary = panel.summary if listing and listing.is_fresh(now, stale_after) else None
    attempts = [op.last_attempt for op in panel.operations.values() if op.last_attempt]
    errors = tuple(
        f"{name}: {op.last_reason}" + (f" ({op.last_detail})" if op.last_detail else "")
        for name, op in sorted(panel.operations.items())
        if op.attempted and not op.success
    )
    return FleetRow(
        name=panel.name,
        up=up,
        queue=queue,
        frozen=summary.frozen if summary else None,
        oldest=summary.oldest_age_seconds if summary else None,
        top_sender=panel.top_senders[0] if summary and panel.top_senders else None,
        last_poll=max(attempts) if attempts else None,
        errors=errors,
        labels=panel.labels,
        dashboard=_dashboard(state.grafana_url, PANEL_DASHBOARD, panel.name),
    )


def _dashboard(grafana_url: str, uid: str, panel: str = "") -> str:
    if not grafana_url:
        return ""
    url = f"{grafana_url.rstrip('/')}/d/{quote(uid)}"
    return url + ("?" + urlencode({"var-panel": panel}) if panel else "")


def _sort_key(column: str) -> Callable[[FleetRow], Any]:
    def key(row: FleetRow) -> Any:
        value = {
            "panel": row.name,
            "up": None if row.up is None else int(row.up),
            "queue": row.queue,
            "frozen": row.frozen,
            "oldest": row.oldest,
            "last_poll": row.last_poll,
        }[column]
        return (value is None, value if value is not None else 0, row.name)

    return key


def sorted_rows(rows: list[FleetRow], column: str, descending: bool) -> list[FleetRow]:
    """``rows`` by ``column``; unknown values last whatever the order, ties by name."""
    known = [r for r in rows if _sort_key(column)(r)[0] is False]
    unknown = [r for r in rows if _sort_key(column)(r)[0] is True]
    known.sort(key=_sort_key(column), reverse=descending)
    unknown.sort(key=lambda r: r.name)
    return known + unknown


class FleetView:
    """The ``/`` handler of the exporter."""

    def __init__(self, state: ExporterState, clock: Callable[[], float]) -> None:
        self.state = state
        self.clock = clock
        self.pages = Pages("exporter", title="exporter")

    def render(self, sort: str = "panel", order: str = "asc") -> tuple[str, list[FleetRow]]:
        """The rows in the asked order (for tests and the page)."""
        now = self.clock()
        rows = [fleet_row(p, self.state, now) for p in self.state.panels.values()]
        return sort, sorted_rows(rows, sort, order == "desc")

    async def page(self, request: Request) -> HTMLResponse:
        sort = query_choice(request, "sort", SORTS, "panel")
        order = query_choice(request, "order", ("asc", "desc"), "asc")
        _, rows = self.render(sort, order)
        state = self.state
        links = {
            column: "?"
            + urlencode(
                {"sort": column, "order": "desc" if column == sort and order == "asc" else "asc"}
            )
            for column in SORTS
        }
        return self.pages.render(
            "fleet.html",
            {
                "stylesheet": "/style.css",
                "version": __version__,
                "rows": rows,
                "now": self.clock(),
                "sort": sort,
                "order": order,
                "links": links,
                "shard": state.shard,
                "top_senders": state.top_senders,
                "fleet_dashboard": _dashboard(state.grafana_url, FLEET_DASHBOARD),
                "down": sum(1 for r in rows if r.up is False),
            },
        )
