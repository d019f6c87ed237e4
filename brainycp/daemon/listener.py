"""The HTTP listener both daemons run: uvicorn with limits against connection exhaustion.

Uvicorn alone keeps a connection that never sends a request head open forever, counts
no limit on connections by default, and at the file-descriptor limit asyncio logs a
traceback for every failed accept. :func:`server_config` builds a ``uvicorn.Config``
that closes a connection whose request head has not arrived within
:data:`HEAD_TIMEOUT` seconds (from the connection, or from the previous answer), whose
body has not arrived within :data:`BODY_TIMEOUT`, and idle keep-alive connections after
:data:`KEEP_ALIVE_TIMEOUT`; it answers 503 beyond ``max_connections`` open connections,
caps a request head at :data:`MAX_HEAD_BYTES`, and rate-limits the log lines that an
attack would otherwise repeat per connection. Each request's scope carries its
connection's TLS state (the ASGI TLS extension, :func:`connection_tls`), so routes judge
a client certificate by what this connection's handshake verified. :func:`open_listener`
binds the socket before anything else starts, so a busy port is one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from brainycp.daemon.logsetup import RateLimitFilter

HEAD_TIMEOUT = 10.0
"""Seconds a connection may take to send a complete request head."""
BODY_TIMEOUT = 30.0
"""Seconds a request may take to send its body once its head has arrived."""
KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle keep-alive connection stays open."""
DEFAULT_MAX_CONNECTIONS = 1000
"""Open connections beyond which a request is answered 503 (uvicorn's limit_concurrency)."""
MAX_HEAD_BYTES = 64 * 1024
"""A request head larger than this is a 400 (h11's incomplete-event cap)."""

TIMEOUTS_ENV = "BRAINYCP_LISTENER_TIMEOUTS"
"""Internal, for the tests, not an operator setting: ``"HEAD BODY KEEP_ALIVE"`` seconds in
place of the three deadlines above, so a test of them waits a second or two, not ten."""

log = logging.getLogger("brainycp.listener")


@dataclass(frozen=True)
class Deadlines:
    """The listener's three deadlines, in seconds (see the module)."""

    head: float = HEAD_TIMEOUT
    body: float = BODY_TIMEOUT
    keep_alive: int = KEEP_ALIVE_TIMEOUT

    @classmethod
    def from_env(cls) -> Deadlines:
        """The defaults, or what :data:`TIMEOUTS_ENV` sets; either way a set variable is
        logged as a warning (it is not an operator setting), a malformed one ignored."""
        text = os.environ.get(TIMEOUTS_ENV)
        if text is None:
            return cls()
        try:
            head, body, keep_alive = (float(x) for x in text.split())
        except ValueError:
            head = body = keep_alive = 0.0
        if min(head, body, keep_alive) <= 0:
            log.warning("%s=%r ignored: it takes three positive numbers of seconds",
                        TIMEOUTS_ENV, text[:80])  # fmt: skip
            return cls()
        chosen = cls(head, body, max(1, round(keep_alive)))
        log.warning("%s: the listener's deadlines are %s (a test setting)", TIMEOUTS_ENV, chosen)
        return chosen


# Short names of RFC 4514 for the attributes Python's ssl module names in a subject.
_RDN_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _rdn_value(value: str) -> str:
    out = [f"\\{c}" if c in '"+,;<>\\' else c for c in value]
    if out and out[0] in ("#", " "):
        out[0] = "\\" + out[0]
    if out and out[-1] == " ":
        out[-1] = "\\ "
    return "".join(out)


def subject_name(subject: Any) -> str:
    """An RFC 4514 string (``CN=prometheus,O=Example``) from ``getpeercert()["subject"]``."""
    parts = []
    for rdn in reversed(subject or ()):
        parts.append("+".join(f"{_RDN_NAMES.get(k, k)}={_rdn_value(str(v))}" for k, v in rdn))
    return ",".join(parts)


def connection_tls(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or None when it is plain HTTP.

    ``client_cert_chain`` holds the client's certificate only when this connection's
    handshake verified it against the client CA (Python's ``ssl`` fails the handshake
    on a certificate it cannot verify, and never asks for one under ``NoClientCert``).
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    verified = ssl_object.getpeercert()  # {} when a certificate came but was not verified
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": subject_name(verified["subject"]) if verified else None,
        "client_cert_error": "not verified" if der and not verified else None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


class _WithConnectionTls:
    """Puts one connection's TLS state into the scope of each of its requests."""

    def __init__(self, app: ASGIApp, tls: Mapping[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        await self.app(scope, receive, send)


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for uvicorn (``sockets=[...]``); ``OSError`` if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP; without it uvicorn's two writes per answer (head, body) meet Nagle
    # and the client's delayed ACK, and every answer waits about 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def bound_port(sock: socket.socket) -> int:
    """The port ``sock`` is bound to: with port 0 asked for, the one the kernel chose, which
    the daemons' start-up log line reports (the tests start them on port 0 and read it)."""
    return int(sock.getsockname()[1])


def host_port(host: str, port: int) -> str:
    """``HOST:PORT``, or ``[HOST]:PORT`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bound_address(host: str, sock: socket.socket) -> str:
    """:func:`host_port` with the port ``sock`` is bound to."""
    return host_port(host, bound_port(sock))


def open_listener(host: str, port: int, logger: logging.Logger) -> socket.socket | None:
    """:func:`listen_socket`, or None after one error line on ``logger``
    (``cannot listen on HOST:PORT: Address already in use``): the daemon then exits 1.

    Bound by the daemon, not by uvicorn, which would raise ``SystemExit`` inside its task
    with a traceback, and before the daemon touches anything else (the journal).
    """
    try:
        return listen_socket(host, port)
    except OSError as exc:
        logger.error("cannot listen on %s: %s", host_port(host, port), exc.strerror or exc)
        return None


class GuardedH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with deadlines for the request head and body.

    Uvicorn has a keep-alive timeout but none for a head that never completes: a client
    that connects and sends nothing (or one byte every few seconds) holds the socket
    forever. A deadline is armed when the connection opens and after every answer; when
    it fires and no request is being handled, the connection is closed.
    """

    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._seen_cycle: object = None

    def _arm(self, delay: float, check: Any) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(delay, check)

    def _head_overdue(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def _body_overdue(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = connection_tls(transport)
        if tls is not None:
            # Per connection: the handshake (and its client certificate) is done by now.
            self.app = _WithConnectionTls(self.app, tls)
        self._arm(self.head_timeout, self._head_overdue)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            # A new request head arrived: its body gets a deadline of its own.
            self._seen_cycle = self.cycle
            self._arm(self.body_timeout, self._body_overdue)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.head_timeout, self._head_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)


_ACCEPT_FILTER = RateLimitFilter()


def limit_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Make the loop log socket errors (a failed accept at the file limit) as one
    rate-limited line without a traceback; other errors keep the default handling."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        exc = context.get("exception")
        if "socket" in context or message.startswith("socket.accept()"):
            record = log.makeRecord(
                log.name,
                logging.WARNING,
                __file__,
                0,
                f"{message}: {exc}" if exc else message,
                (),
                None,
            )
            if _ACCEPT_FILTER.filter(record):
                log.handle(record)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _limit_uvicorn_warnings() -> None:
    # "Exceeded concurrency limit." and "Invalid HTTP request received." come once per
    # request; under attack that is a flood.
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
        logger.addFilter(RateLimitFilter())


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    timeout_graceful_shutdown: int | None = None,
    deadlines: Deadlines | None = None,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with the listener's limits (see the module);
    ``deadlines`` default to :meth:`Deadlines.from_env`.

    Called inside the daemon's running loop, it also installs :func:`limit_loop_errors`.
    """
    _limit_uvicorn_warnings()
    with contextlib.suppress(RuntimeError):
        limit_loop_errors(asyncio.get_running_loop())
    limits = deadlines or Deadlines.from_env()
    protocol = GuardedH11Protocol
    if (limits.head, limits.body) != (protocol.head_timeout, protocol.body_timeout):

        class Guarded(GuardedH11Protocol):
            head_timeout = limits.head
            body_timeout = limits.body

        protocol = Guarded
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=limits.keep_alive,
        limit_concurrency=max_connections,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=timeout_graceful_shutdown,
    )
