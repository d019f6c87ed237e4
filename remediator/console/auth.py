"""Who is signed in to the console, and where browsers are sent.

The console's sign-in is the browser's own basic auth against the web config's
``basic_auth_users`` (bcrypt): :class:`~brainycp.daemon.webconfig.BasicAuthMiddleware`
verifies the password and names the user in the request scope. The console acts only
for such a user, whatever else the gate in front of the API accepts (the webhook's
credentials, a client certificate), because every decision is recorded under a
person's name.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from brainycp.daemon.access import BASIC_AUTH, identity

PREFIX = "/console"
_ACTION_PATH = re.compile(r"/actions/([0-9]{1,19})")


def signed_in_user(scope: Scope) -> str | None:
    """The web-config user basic auth verified for this request, or None (a client
    certificate or the webhook's credentials do not sign anyone in)."""
    who = identity(scope)
    return who.name if who is not None and who.method == BASIC_AUTH and who.name else None


def wants_html(scope: Scope) -> bool:
    """True when the client asks for HTML before JSON (a browser), by ``Accept``.

    A browser's navigation sends ``text/html,...,*/*;q=0.8``; curl, httpx and the
    CLI send ``*/*`` or ``application/json`` and keep getting JSON.
    """
    accept = ""
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            accept = bytes(value).decode("latin-1").lower()
            break
    quality: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality.setdefault(media, q)
    html = max(quality.get("text/html", 0.0), quality.get("application/xhtml+xml", 0.0))
    return html > 0 and html >= quality.get("application/json", 0.0)


class ConsoleRouter:
    """Send ``/console/...`` to the console and a browser's ``GET /`` or ``GET /actions/ID``
    to the console's page of it (303); everything else goes on to ``app`` (the API)."""

    def __init__(self, console: ASGIApp, app: ASGIApp) -> None:
        self.console = console
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == PREFIX or path.startswith(PREFIX + "/"):
                await self.console(scope, receive, send)
                return
            if scope["method"] in ("GET", "HEAD") and wants_html(scope):
                match = _ACTION_PATH.fullmatch(path)
                if path == "/" or match:
                    target = f"{PREFIX}/actions/{match.group(1)}" if match else f"{PREFIX}/"
                    await _redirect(send, target)
                    return
        await self.app(scope, receive, send)


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode()),
                (b"vary", b"Accept"),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
