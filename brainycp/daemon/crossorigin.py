"""Refuse state-changing requests that a browser sends on behalf of another site (CSRF).

Browsers attach basic-auth credentials (and cookies) to a form that another site
posts to us, so valid credentials do not prove that a person meant the request.
The check is the one Go's ``net/http.CrossOriginProtection`` makes, without a token:

- a ``POST``/``PUT``/``PATCH``/``DELETE`` whose ``Sec-Fetch-Site`` header (sent by
  every current browser) is anything but ``same-origin`` is refused;
- without that header, one whose ``Origin`` names another host than the request's
  ``Host`` (or a trusted origin, such as the configured external URL) is refused,
  and so is ``Origin: null`` (sandboxed pages, some redirects);
- a request with neither header is not a browser's (curl, Alertmanager, the CLI) and
  passes: those clients send credentials only when told to.

Refused requests get ``403 {"error": ...}``, a warning log line and a count
(``brainycp_http_cross_origin_refused_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from brainycp.daemon.responses import send_json
from brainycp.daemon.scraped import Scraped

log = logging.getLogger("brainycp.crossorigin")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def origin_host(origin: str) -> str | None:
    """``host[:port]`` of an ``Origin`` value (lower case, default ports dropped), or None."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return host if port in (None, default) else f"{host}:{port}"


def _host_header(host: str) -> str:
    """The ``Host`` header the way :func:`origin_host` writes hosts (default ports dropped)."""
    host = host.strip().lower()
    for suffix in (":80", ":443"):
        if host.endswith(suffix):
            return host[: -len(suffix)]
    return host


def cross_origin_reason(
    method: str, headers: Iterable[tuple[bytes, bytes]], trusted: Iterable[str] = ()
) -> str | None:
    """Why a request must be refused as cross-origin, or None when it may pass."""
    if method.upper() in SAFE_METHODS:
        return None
    fetch_site = origin = host = None
    for key, value in headers:
        if key == b"sec-fetch-site" and fetch_site is None:
            fetch_site = value.decode("latin-1").strip().lower()
        elif key == b"origin" and origin is None:
            origin = value.decode("latin-1")
        elif key == b"host" and host is None:
            host = value.decode("latin-1")
    if fetch_site is not None:
        return None if fetch_site == "same-origin" else f"Sec-Fetch-Site: {fetch_site[:40]}"
    if origin is None:
        return None  # no browser sent this
    seen = origin_host(origin)
    allowed = {_host_header(host)} if host else set()
    allowed |= {h for h in (origin_host(t) for t in trusted) if h}
    if seen is None or seen not in allowed:
        return f"Origin: {origin.strip()[:80]}"
    return None


class CrossOriginGuard:
    """ASGI middleware: 403 for a state-changing request from another origin (see module)."""

    def __init__(self, app: ASGIApp, trusted: Callable[[], Iterable[str]] = tuple) -> None:
        self.app = app
        self.trusted = trusted
        """Origins allowed besides the request's own host, e.g. the external URL (read at
        each request, so a reload that changes it applies at once)."""
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = cross_origin_reason(scope["method"], scope.get("headers", ()), self.trusted())
            if reason is not None:
                self.refused += 1
                client = scope.get("client") or ("-", 0)
                log.warning(
                    "%s %s from %s refused: a cross-origin request (%r)",
                    scope["method"], scope["path"][:200], client[0], reason,
                )  # fmt: skip
                body = b'{"error": "cross-origin request refused: send it from this site"}'
                await send_json(send, 403, body, [(b"vary", b"Origin, Sec-Fetch-Site")])
                return
        await self.app(scope, receive, send)

    def collector(self) -> Collector:
        """``brainycp_http_cross_origin_refused_total`` for the daemon's registry."""
        return Scraped(
            lambda: [
                CounterMetricFamily(
                    "brainycp_http_cross_origin_refused",
                    "State-changing requests refused because a browser sent them from another"
                    " site.",
                    value=self.refused,
                )
            ]
        )
