"""An ASGI guard for both daemons' apps: turn a request Starlette cannot represent into a 400.

uvicorn passes the query string through as raw bytes; Starlette decodes it as
UTF-8 when it builds a URL (for example the redirect of ``/metrics/`` to
``/metrics``), and a hostile client's ``?\\x80`` then ends in an exception and
a 500. The guard answers such a request ``400`` with a JSON reason instead.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from brainycp.daemon.responses import send_json


class QueryGuard:
    """Middleware: a query string that is not UTF-8 gets ``400 {"error": ...}``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                bytes(scope.get("query_string", b"")).decode("utf-8")
            except UnicodeDecodeError:
                body = json.dumps({"error": "the query string is not valid UTF-8"}).encode()
                await send_json(send, 400, body)
                return
        await self.app(scope, receive, send)
