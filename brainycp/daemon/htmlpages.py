"""Both daemons' HTML pages: autoescaping templates, one stylesheet, the security headers.

Pages are rendered on the server from Jinja2 templates with autoescaping on, so every
value (a sender, a panel's message, an alert label) is HTML-escaped unless a template
says otherwise, which none does. Nothing is loaded from elsewhere: no script at all,
the stylesheet comes from the daemon itself, and the Content-Security-Policy says so
to the browser (no inline script or style, no framing, forms post only to the daemon).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Pages show live state and who did what: no cache keeps a copy.
    "Cache-Control": "no-store",
}
STYLESHEET = "style.css"


def utc(epoch: float | None) -> str:
    """``2026-11-25 08:00:00 UTC`` for a Unix time; ``-`` for None."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3.5h``, ``2.0d``: a short age or interval."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def size(value: int | None) -> str:
    """``512 B``, ``12.0 KiB``, ``3.1 MiB``."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024 or unit == "MiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"  # pragma: no cover


@cache
def environment(packages: tuple[str, ...]) -> jinja2.Environment:
    """Templates of ``packages`` (each a ``templates/`` folder), then the shared ones."""
    loader = jinja2.ChoiceLoader(
        [jinja2.PackageLoader(name) for name in packages]
        + [jinja2.PackageLoader("brainycp.daemon")]
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=utc, duration=duration, size=size)
    return env


class Pages:
    """Renders one daemon's templates into responses with :data:`SECURITY_HEADERS`."""

    def __init__(self, *packages: str, title: str) -> None:
        self.env = environment(tuple(packages))
        self.title = title

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        body = self.env.get_template(template).render(daemon=self.title, **context)
        return HTMLResponse(body, status, headers={**SECURITY_HEADERS, **(headers or {})})


def stylesheet_response(request: Request) -> Response:
    """The shared stylesheet (cacheable for an hour; it changes only with the version)."""
    return Response(
        _stylesheet(),
        media_type="text/css",
        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"},
    )


@cache
def _stylesheet() -> bytes:
    return resources.files("brainycp.daemon").joinpath("static", STYLESHEET).read_bytes()


def query_choice(request: Request, key: str, allowed: Sequence[str], default: str) -> str:
    """Query parameter ``key`` when it is one of ``allowed``, else ``default``."""
    value = request.query_params.get(key, default)
    return value if value in allowed else default
