"""Who sent a request, and how that was established: one answer for every guarded route.

:func:`identity` is the question a route asks. It is answered by what the daemon
itself checked on this request, never by what a config file says the listener does:

- a web-config user whose password :class:`brainycp.daemon.webconfig.BasicAuthMiddleware`
  checked (it records the :class:`Identity` in the ASGI scope);
- a client certificate that the TLS handshake of this very connection verified
  (the listener puts the connection's TLS state in ``scope["extensions"]["tls"]``,
  the ASGI TLS extension; a certificate is only there when it was verified);
- on the remediator, the webhook's own credentials, recorded by the gate
  (:class:`brainycp.daemon.reload.OpsMiddleware`) when nothing above applies.

:class:`AuthFailures` counts refused credentials and logs them at most once per
interval, with the user name and the client address, never the password.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Scope

from brainycp.daemon.logsetup import RateLimitFilter
from brainycp.daemon.scraped import Scraped

IDENTITY = "brainycp.identity"
"""Scope key of the :class:`Identity` an auth layer established for a request."""

BASIC_AUTH = "basic_auth"
"""A user of the web config's ``basic_auth_users``, password checked."""
CLIENT_CERTIFICATE = "client_certificate"
"""A client certificate verified by this connection's TLS handshake."""
WEBHOOK_CREDENTIALS = "webhook_credentials"
"""The remediator's webhook token or basic pair (``remediator.auth``)."""
NO_AUTH = "insecure_no_auth"
"""The remediator without webhook auth (``insecure_no_auth: true``): anyone."""

MAX_LOGGED_USER = 64
"""Characters of a refused user name that reach the log (the name is the client's text)."""


@dataclass(frozen=True)
class Identity:
    """An authenticated requester: ``name`` (a user, a certificate subject) and ``method``."""

    name: str
    method: str


def tls_state(scope: Scope) -> Mapping[str, Any] | None:
    """The connection's TLS state (ASGI TLS extension), or None on plain HTTP."""
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls")
    return tls if isinstance(tls, Mapping) else None


def client_certificate(scope: Scope) -> Identity | None:
    """The verified client certificate of this request's connection, if it has one."""
    tls = tls_state(scope)
    if tls is None or tls.get("client_cert_error") is not None:
        return None
    name = tls.get("client_cert_name")
    if not tls.get("client_cert_chain") or not isinstance(name, str):
        return None
    return Identity(name, CLIENT_CERTIFICATE)


def identity(scope: Scope) -> Identity | None:
    """Who sent this request, as the daemon verified it; None when nobody is known.

    A web-config user (or the remediator's webhook credentials) recorded by an auth
    layer comes first, then a client certificate verified on this connection.
    """
    recorded = scope.get(IDENTITY)
    if isinstance(recorded, Identity):
        return recorded
    return client_certificate(scope)


def remember(scope: Scope, who: Identity) -> None:
    """Record ``who`` in the scope for the layers and routes behind this one."""
    scope[IDENTITY] = who


def client_address(scope: Scope) -> str:
    """The peer address of a request (``-`` when unknown), for log lines."""
    client = scope.get("client")
    if client:
        host, port = client[0], client[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "-"


class AuthFailures:
    """Requests refused for wrong credentials: a counter that exists from the start
    (``<metric>_total``) and a line on the ``<daemon>.auth`` logger at most once per
    interval (:class:`~brainycp.daemon.logsetup.RateLimitFilter`).

    Only requests that carried credentials count: a client that sent none gets a
    challenge, which is how every browser and scraper begins.
    """

    def __init__(self, metric: str, daemon: str) -> None:
        self.metric = metric
        self.count = 0
        self.log = logging.getLogger(f"{daemon}.auth")
        if not any(isinstance(f, RateLimitFilter) for f in self.log.filters):
            self.log.addFilter(RateLimitFilter())

    def record(self, scope: Scope, user: str | None, why: str) -> None:
        """Count one refused request and log it (rate-limited); ``user`` as sent, if any."""
        self.count += 1
        shown = "-" if user is None else repr(user[:MAX_LOGGED_USER])
        # One format string for every refusal: RateLimitFilter keys on it, so a burst of
        # guesses is one line per interval that says how many were not logged.
        self.log.warning(
            "refused credentials from %s for %s %s (user %s: %s)",
            client_address(scope),
            scope.get("method", "-"),
            scope.get("path", "-"),
            shown,
            why,
        )

    def collector(self) -> Collector:
        """A collector of the counter, for the daemon's registry."""
        return Scraped(
            lambda: [
                CounterMetricFamily(
                    self.metric,
                    "HTTP requests refused because their credentials were wrong (web-config"
                    " users, client certificates, the remediator's operator endpoints; not"
                    " /webhook).",
                    value=self.count,
                )
            ]
        )
