"""The console's way to the operator API: the remediator's own handlers, called in process.

Approve, deny, pause, resume and manual actions from a page run exactly what the JSON
API runs (the same checks, journal rows, log lines and notifications); the page only
adds who is signed in (``by``). Nothing leaves the process: it is an ASGI call to the
remediator's app, marked authenticated because the console verified the web-config
user before calling (:func:`remediator.console.auth.signed_in_user`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message

from brainycp.daemon.reload import AUTHENTICATED


class OperatorAPI:
    """Calls the JSON API of ``app`` (the remediator's Starlette app) in process."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST path`` with a JSON ``body``: ``(status, answer)``; the answer is always a dict."""
        raw = json.dumps(body).encode()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
            "client": ("console", 0),
            "server": ("console", 0),
            AUTHENTICATED: True,
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        status, chunks = 500, []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        try:
            answer = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            answer = {"error": "the remediator answered something that is not JSON"}
        return status, answer if isinstance(answer, dict) else {"answer": answer}
