"""What every route shares: JSON errors, the webhook's credentials, bounded body reads."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from remediator.journal import first_line
from remediator.settings.webhook import WebhookAuth

log = logging.getLogger("remediator.webhook")
"""Every route logs here (the name operators filter on predates the split by concern)."""


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error answer: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def authorized(header: str | None, auth: WebhookAuth | None) -> bool:
    """Check an ``Authorization`` header in constant time; ``auth`` None means no auth."""
    if auth is None:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if auth.bearer_token is not None:
        expected = auth.bearer_token.get_secret_value().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), expected)
    if scheme.lower() != "basic" or auth.basic_password is None or auth.basic_username is None:
        return False
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        # ValueError also covers non-ASCII header text and undecodable UTF-8.
        return False
    user_ok = hmac.compare_digest(user.encode(), auth.basic_username.encode())
    password_ok = hmac.compare_digest(
        password.encode(), auth.basic_password.get_secret_value().encode()
    )
    return bool(sep) and user_ok and password_ok


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The whole body, or the answer when it is over ``limit`` bytes (413) or the client
    left before sending it all (400). Counted as it comes: a lying Content-Length or an
    endless chunked body never holds more than ``limit`` bytes here."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error(413, f"body over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        log.debug(
            "%s %s: the client from %s disconnected before sending its whole body",
            request.method,
            request.url.path,
            client_address(request),
        )
        return error(400, "the client disconnected before sending its whole body")
    return b"".join(chunks)


def client_address(request: Request) -> str:
    """The peer's address for log lines (``-`` when the server does not know it)."""
    return request.client.host if request.client else "-"


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, as JSON like every other error here."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, dict(exc.headers or {}))


async def journal_error(request: Request, exc: Exception) -> Response:
    """Any route the journal failed under: a JSON 503 and a log line, never a traceback."""
    log.error("%s %s: the journal failed: %s", request.method, request.url.path,
              first_line(exc))  # fmt: skip
    return error(503, "the action journal cannot be used right now; see the remediator's log")
