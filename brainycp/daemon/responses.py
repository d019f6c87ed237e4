"""The plain-ASGI edges both daemons' middleware share: read a request header, answer a
small JSON body, and compress answers with gzip."""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Scope, Send

GZIP_LEVEL = 6
"""zlib level of gzip answers (Prometheus asks for gzip): 1,000 panels' /metrics go from
~2.6 MB to ~175 KiB; level 1 saves little time for ~25% more bytes, level 9 costs twice
the time for 5% fewer (bench/bench_metrics_gzip.py)."""
GZIP_MINIMUM_BYTES = 1024
"""Answers shorter than this go uncompressed: gzip would not make them smaller."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower-case bytes)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer a request with a small JSON body (from a plain ASGI middleware)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def gzipped(app: ASGIApp) -> ASGIApp:
    """``app`` answering gzip to clients that ask for it, at :data:`GZIP_LEVEL`."""
    return GZipMiddleware(app, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL)
