"""A lean HTTP/1.1 transport for httpx, built on asyncio protocols, for talking to panels.

Why not httpx's own transport: a poll is three tiny POSTs per panel, and with httpcore,
h11 and anyio underneath each request costs the exporter about 1 ms of CPU (some 4,000
Python calls). With 1,000 panels that CPU, not the panels' latency, set the length of
a poll cycle. This transport does the same work in a few hundred calls: one
:class:`~brainycp.panel.connection.Connection` (an :class:`asyncio.Protocol`) per
connection, the response head parsed in one pass, the body handed to httpx as it
arrives. It also pins a certificate before any byte is sent, which httpx's own
transport cannot.

This module keeps the pool and runs one exchange; the other jobs are in their modules:
:mod:`~brainycp.panel.connection` (one socket's bytes), :mod:`~brainycp.panel.framing`
(the head and the body's framing), :mod:`~brainycp.panel.decoding` (content codings,
decoded by the client), :mod:`~brainycp.panel.tls` (pinning).

What it does, and what it leaves out on purpose:

- HTTP/1.1 over TCP or TLS (the shared :class:`ssl.SSLContext` of the client), with
  keep-alive: idle connections are reused for ``keepalive_expiry`` seconds (4, under the
  usual 5 s of servers, so a reuse does not race the panel closing it) unless the panel
  closed them already, and at most ``max_connections`` are open per transport (one
  transport per panel).
- httpx's connect, read, write and pool timeouts from the request. Reading pauses while
  more than 256 KiB wait unread, so a large listing streams instead of piling up in
  memory. The phase a request is in (``connecting``, ``writing``, ``reading``) is kept
  in ``request.extensions["phase"]``, so a caller's own deadline can say where it struck.
- Optional certificate pinning: with ``fingerprint`` (a SHA-256 digest) the leaf
  certificate must hash to it, whatever its issuer or name; nothing is sent otherwise.
- Nothing is retried here: a POST may have run on the panel even when no answer came
  back. The client decides what may be retried.
- Failures raise httpx's own exceptions, so the client maps them to the same reasons
  whatever transport is in use: ``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
  ``WriteTimeout``, ``ReadError`` and ``PoolTimeout`` when the connection failed,
  ``RemoteProtocolError`` when the answer broke HTTP/1.1 (malformed, cut short). Their
  message says what happened in words ("connection refused", "name does not resolve:
  ...", "certificate verify failed: self-signed certificate", "hostname mismatch: ...");
  TLS failures keep the :class:`ssl.SSLError` as ``__cause__``.
- No proxies (the client never uses them), no HTTP/2, no ``Expect: 100-continue``
  (informational answers are skipped), no upgrades.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx

from brainycp.panel.connection import Connection
from brainycp.panel.framing import ResponseBody, body_framing, read_head
from brainycp.panel.sockets import describe_os_error, resolve
from brainycp.panel.tls import FingerprintMismatch, pin_mismatch, pinning_context


def _timeout_of(request: httpx.Request, key: str) -> float | None:
    timeouts = request.extensions.get("timeout") or {}
    value = timeouts.get(key)
    return None if value is None else float(value)


class PanelTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive to one panel; see the module docstring for the scope."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 4,
        keepalive_expiry: float = 4.0,
        fingerprint: bytes | None = None,
    ) -> None:
        """``fingerprint``: the SHA-256 digest the leaf certificate must have. The caller
        gives it a context that does not verify (:func:`pinning_context`): the pin replaces
        the chain and name checks, it does not add to them."""
        self._ssl = ssl_context
        self._fingerprint = fingerprint
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._idle: list[Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """Connections kept open for the next request."""
        return len(self._idle)

    # ------------------------------------------------------------------ connections

    async def _claim_slot(self, request: httpx.Request) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        if not self._slots.locked():
            await self._slots.acquire()
            return
        pool = _timeout_of(request, "pool")
        try:
            async with asyncio.timeout(pool):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"all {self._max} connections busy for {pool:g}s", request=request
            ) from None

    async def _connect(self, request: httpx.Request) -> Connection:
        url = request.url
        https = url.scheme == "https"
        if https and self._ssl is None:
            self._ssl = pinning_context() if self._fingerprint else httpx.create_ssl_context()
        host = url.host
        port = url.port or (443 if https else 80)
        timeout = _timeout_of(request, "connect")
        request.extensions["phase"] = "connecting"
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
                conn = await self._connect_any(addresses, port, host if https else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"timed out after {timeout:g}s while connecting", request=request
            ) from None
        except OSError as exc:  # ssl.SSLError and CertificateError are OSErrors too
            raise httpx.ConnectError(describe_os_error(exc, host), request=request) from exc
        except UnicodeError as exc:  # the IDNA codec refuses the name (an empty label, ...)
            raise httpx.ConnectError(describe_os_error(exc, host), request=request) from None
        if https and self._fingerprint is not None:
            assert conn.transport is not None
            mismatch = pin_mismatch(conn.transport.get_extra_info("ssl_object"), self._fingerprint)
            if mismatch is not None:
                conn.close()
                raise httpx.ConnectError(mismatch, request=request) from FingerprintMismatch(
                    mismatch
                )
        return conn

    async def _connect_any(
        self, addresses: list[str], port: int, server_hostname: str | None
    ) -> Connection:
        """Try each address in turn; a TLS failure is final, the first socket error is kept."""
        loop = asyncio.get_running_loop()
        first: OSError | None = None
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(loop),
                    address,
                    port,
                    ssl=self._ssl if server_hostname is not None else None,
                    server_hostname=server_hostname,
                )
                return conn
            except ssl.SSLError:
                raise
            except OSError as exc:
                first = first or exc
        raise first or OSError("the name resolved to no address")

    def _release(self, conn: Connection, reuse: bool) -> None:
        if reuse and not self._closed and not conn.eof:
            conn.idle_since = conn.loop.time()
            # Closed when it expires, not at the next request: with a poll a minute,
            # 1,000 panels would otherwise hold thousands of idle sockets open.
            conn.idle_timer = conn.loop.call_later(self._expiry, self._expire, conn)
            self._idle.append(conn)
        else:
            conn.close()
        if self._slots is not None:
            self._slots.release()

    async def _open(self, request: httpx.Request) -> Connection:
        """An idle connection that is still usable, or a new one."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
                conn.idle_timer = None
            if conn.loop is loop and conn.usable(now, self._expiry):
                return conn
            conn.close()
        return await self._connect(request)

    def _expire(self, conn: Connection) -> None:
        conn.idle_timer = None
        if conn in self._idle:
            self._idle.remove(conn)
        conn.close()

    # ------------------------------------------------------------------ one request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {url.scheme!r}", request=request
            )
        body = await request.aread()
        lines = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        data = b"".join(lines) + body

        await self._claim_slot(request)
        conn: Connection | None = None
        try:
            conn = await self._open(request)
            return await self.exchange(request, conn, data)
        except BaseException:
            # Never retried here: a POST may have run even when no answer came back.
            if conn is not None:
                conn.close()
            if self._slots is not None:
                self._slots.release()
            raise

    async def exchange(
        self, request: httpx.Request, conn: Connection, data: bytes
    ) -> httpx.Response:
        """Write ``data`` (the whole request) on ``conn`` and read the answer's head.

        The body streams from the returned response; the connection goes back to the pool
        (or is closed) when the body is done with.
        """
        request.extensions["phase"] = "writing"
        conn.send(data)
        await conn.drain(_timeout_of(request, "write"))
        request.extensions["phase"] = "reading"
        timeout = _timeout_of(request, "read")
        while True:
            head = await read_head(conn, timeout)
            if head.status >= 200:
                break
            if head.status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols; not supported")
            # 100 Continue, 103 Early Hints: skip to the final answer.
        mode, length, keep_alive = body_framing(request.method, head)
        stream = ResponseBody(
            conn, mode, length, keep_alive, timeout, lambda reuse: self._release(conn, reuse)
        )
        return httpx.Response(
            head.status,
            headers=head.raw,
            stream=stream,
            extensions={
                "http_version": f"HTTP/{head.version}".encode(),
                "reason_phrase": head.reason.encode("latin-1"),
            },
            request=request,
        )

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
            conn.close()


__all__ = ["PanelTransport"]
