"""A lean HTTP/1.1 transport for httpx, built on asyncio protocols, for talking to panels.

Why not httpx's own transport: a poll is three tiny POSTs per panel, and with httpcore,
h11 and anyio underneath each request costs the exporter about 1 ms of CPU (some 4,000
Python calls). With 1,000 panels that CPU, not the panels' latency, set the length of
a poll cycle. This transport does the same work in a few hundred calls: one
:class:`asyncio.Protocol` per connection, the response head parsed in one pass, the
body handed to httpx as it arrives.

What it does, and what it leaves out on purpose:

- HTTP/1.1 over TCP or TLS (the shared :class:`ssl.SSLContext` of the client), with
  keep-alive: idle connections are reused for ``keepalive_expiry`` seconds (4, under the
  usual 5 s of servers, so a reuse does not race the panel closing it) unless the panel
  closed them already, and at most ``max_connections`` are open per transport (one
  transport per panel).
- Bodies framed by ``Content-Length``, ``chunked`` or the end of the connection, exactly
  as RFC 9112 section 6.3 orders them; conflicting or malformed framing is an error,
  never a guess. Content codings are not decoded here: :class:`ContentDecoder` does it
  for the client, incrementally and under a cap on the decoded size (decompression bombs).
- httpx's connect, read, write and pool timeouts from the request; a response head is
  capped at 64 KiB, a chunk-size line at 4 KiB. Reading pauses while more than 256 KiB
  wait unread, so a large listing streams instead of piling up in memory. The phase a
  request is in (``connecting``, ``writing``, ``reading``) is kept in
  ``request.extensions["phase"]``, so a caller's own deadline can say where it struck.
- Optional certificate pinning: with ``fingerprint`` (a SHA-256 digest) the leaf
  certificate must hash to it, whatever its issuer or name; nothing is sent otherwise.
- Nothing is retried here: a POST may have run on the panel even when no answer came
  back. The client decides what may be retried.
- Failures raise httpx's own exceptions (``ConnectError``, ``ConnectTimeout``,
  ``ReadTimeout``, ``WriteTimeout``, ``ReadError``, ``RemoteProtocolError``,
  ``PoolTimeout``), so the client maps them to the same reasons whatever transport is in
  use. Their message says what happened in words ("connection refused", "name does not
  resolve: ...", "certificate verify failed: self-signed certificate", "hostname
  mismatch: ..."); TLS failures keep the :class:`ssl.SSLError` as ``__cause__``.
- No proxies (the client never uses them), no HTTP/2, no ``Expect: 100-continue``
  (informational answers are skipped), no upgrades.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4 * 1024
READ_HIGH_WATER = 256 * 1024
READ_SIZE = 64 * 1024
MAX_CODINGS = 2
"""Stacked content codings accepted in one answer (``gzip, gzip`` is the most seen)."""
DECODE_STEP = 64 * 1024
"""Most bytes one inflate step produces: what a decoder holds at once, per coding."""

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([1-9][0-9][0-9])(?: ([^\r\n]*))?")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: bytes in a buffer, and one waiter for more of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ used by the transport

    def usable(self, now: float, expiry: float) -> bool:
        """True when an idle connection can carry another request."""
        transport = self.transport
        return (
            transport is not None
            and not self.eof
            and not self.buffer
            and not transport.is_closing()
            and now - self.idle_since < expiry
        )

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.eof:
            raise httpx.WriteError("the connection closed before the request was sent")
        transport.write(data)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the kernel took what was written; ``WriteTimeout`` after ``timeout``."""
        while self._write_paused and not self.eof:
            drained = self.loop.create_future()
            self._drained = drained
            try:
                async with asyncio.timeout(timeout):
                    await drained
            except TimeoutError:
                raise httpx.WriteTimeout(
                    f"timed out after {timeout:g}s while writing the request"
                ) from None
            finally:
                self._drained = None
        if self.eof and self.error is not None:
            raise httpx.WriteError(f"{describe_os_error(self.error)} while writing the request")

    async def wait(self, timeout: float | None) -> None:
        """Wait until more bytes arrived or the peer closed; ``ReadTimeout`` after ``timeout``."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self.loop.create_future()
        self._waiter = waiter
        timer = None
        if timeout is not None:
            timer = self.loop.call_later(timeout, _expire, waiter, timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.eof = True


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout(f"timed out after {timeout:g}s while reading"))


# X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH from OpenSSL's x509_vfy.h.
_NAME_MISMATCH_CODES = (62, 64)


def describe_os_error(exc: BaseException, host: str = "") -> str:
    """What a socket or TLS failure means, in the words an operator searches for."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _NAME_MISMATCH_CODES:
            return f"hostname mismatch: the certificate is not valid for {host or 'this host'}"
        return f"certificate verify failed: {exc.verify_message or exc.reason or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, UnicodeError):
        return f"name does not resolve: {host} is not a valid host name"
    if isinstance(exc, socket.gaierror):
        if exc.errno in _NO_SUCH_NAME:
            return f"name does not resolve: {host} ({exc.strerror})"
        return f"name resolution failed for {host}: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, ConnectionAbortedError):
        return "connection aborted"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


_NO_SUCH_NAME = {
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
}


def format_fingerprint(digest: bytes) -> str:
    """``sha256:AB:CD:...``, the form ``tls_fingerprint`` takes in the config."""
    return "sha256:" + ":".join(f"{b:02X}" for b in digest)


class FingerprintMismatch(ssl.SSLError):
    """The panel's certificate is not the pinned one (kept as ``__cause__``: a TLS failure)."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- content codings


class DecodeError(Exception):
    """A corrupt compressed body, too many stacked codings, or a coding we do not speak."""


class DecodeLimit(Exception):
    """The decoded body (or one decoding stage of it) went over the cap."""


class _Inflate:
    """One ``gzip`` or ``deflate`` stage, inflating at most :data:`DECODE_STEP` at a time."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.gzip = coding != "deflate"
        self.produced = 0
        self._started = False
        self._head: bytes | None = b""
        """The first bytes of a deflate body, kept until the zlib header (2 bytes) is read."""
        self._z = self._new()

    def _new(self) -> zlib._Decompress:
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self.gzip else zlib.MAX_WBITS)

    def _step(self, data: bytes) -> bytes:
        try:
            out = self._z.decompress(data, DECODE_STEP)
        except zlib.error as exc:
            if not self.gzip and self._head is not None:
                # "deflate" is meant to be zlib-wrapped; some servers send raw deflate.
                data, self._head = self._head + data, None
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._step(data)
            raise DecodeError(f"corrupt {self.coding} body: {exc}") from None
        if self._head is not None:
            self._head += data
            if len(self._head) >= 2:
                self._head = None  # the zlib header checked out: zlib-wrapped it is
        return out

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self._z.eof:
                if not data.strip(b"\0\r\n\t "):
                    return  # padding after the last member
                if not self.gzip:
                    raise DecodeError("data after the end of the deflate body")
                self._z = self._new()  # gzip allows several members back to back
            out = self._step(data)
            self._started = True
            if out:
                yield out
            if self._z.eof:
                data = self._z.unused_data
                if not data:
                    return
                continue
            data = self._z.unconsumed_tail
            if not data and len(out) < DECODE_STEP:
                return  # everything in, nothing pending: a full step may hide more

    def finish(self) -> None:
        if self._started and not self._z.eof:
            raise DecodeError(f"truncated {self.coding} body")


class ContentDecoder:
    """Decode a body by its ``Content-Encoding``, with the decoded size capped at ``cap``.

    ``gzip`` (``x-gzip``), ``deflate`` and ``identity``, at most :data:`MAX_CODINGS` stacked.
    Each stage inflates in steps of :data:`DECODE_STEP` and hands each step on at once, so
    memory stays bounded whatever arrives; every stage's output counts against the cap
    (an honest compressed stream is never larger than what it decodes to), so a bomb
    costs at most ``cap`` bytes of inflating per stage, and :class:`DecodeLimit` stops it.
    """

    def __init__(self, content_encoding: str, cap: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > MAX_CODINGS:
            raise DecodeError(
                f"{len(codings)} stacked content codings ({content_encoding}); "
                f"at most {MAX_CODINGS} are accepted"
            )
        for coding in codings:
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise DecodeError(f"unsupported content coding {coding!r}")
        self._stages = [_Inflate(c) for c in reversed(codings)]
        self._cap = cap
        self.size = 0
        """Decoded bytes so far."""

    @property
    def identity(self) -> bool:
        return not self._stages

    def decode(self, data: bytes) -> list[bytes]:
        """The decoded pieces of the next raw piece; DecodeError or DecodeLimit on failure."""
        out: list[bytes] = []
        self._run(0, data, out)
        return out

    def _run(self, index: int, data: bytes, out: list[bytes]) -> None:
        if index == len(self._stages):
            self.size += len(data)
            if self.size > self._cap:
                raise DecodeLimit(f"decoded body over the {self._cap}-byte cap")
            out.append(data)
            return
        stage = self._stages[index]
        for piece in stage.feed(data):
            stage.produced += len(piece)
            if stage.produced > self._cap:
                raise DecodeLimit(f"{stage.coding} stage decoded over the {self._cap}-byte cap")
            self._run(index + 1, piece, out)

    def finish(self) -> None:
        """Raise DecodeError when a compressed stream stopped before its end."""
        for stage in self._stages:
            stage.finish()


class _Body(httpx.AsyncByteStream):
    """The response body, read from the connection as httpx asks for it."""

    def __init__(
        self,
        owner: PanelTransport,
        conn: _Connection,
        mode: str,
        length: int,
        keep_alive: bool,
        read_timeout: float | None,
    ) -> None:
        self._owner = owner
        self._conn = conn
        self._mode = mode  # "length", "chunked" or "close"
        self._left = length
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._complete = mode == "length" and length == 0
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._complete:
            return
        try:
            if self._mode == "length":
                async for piece in self._read_length():
                    yield piece
            elif self._mode == "chunked":
                async for piece in self._read_chunked():
                    yield piece
            else:
                async for piece in self._read_to_close():
                    yield piece
            self._complete = True
        except BaseException:
            self._release(reuse=False)
            raise

    async def _more(self, what: str) -> None:
        conn = self._conn
        if conn.eof:
            if conn.error is not None:
                raise httpx.ReadError(f"{describe_os_error(conn.error)} {what}")
            raise httpx.RemoteProtocolError(f"the server closed the connection {what}")
        await conn.wait(self._timeout)

    async def _read_length(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while self._left:
            buffer = conn.buffer
            if buffer:
                take = min(self._left, len(buffer))
                piece = bytes(buffer[:take])
                del buffer[:take]
                self._left -= take
                yield piece
            elif self._left:
                await self._more(f"with {self._left} bytes of the body still to come")

    async def _read_line(self, what: str) -> bytes:
        conn = self._conn
        while True:
            end = conn.buffer.find(b"\n")
            if end >= 0:
                line = bytes(conn.buffer[:end])
                del conn.buffer[: end + 1]
                return line.rstrip(b"\r")
            if len(conn.buffer) > MAX_CHUNK_LINE_BYTES:
                raise httpx.RemoteProtocolError(f"{what} longer than {MAX_CHUNK_LINE_BYTES} bytes")
            await self._more(f"inside the chunked body ({what})")

    async def _read_chunked(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            line = await self._read_line("chunk-size line")
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise httpx.RemoteProtocolError("malformed chunk-size line in a chunked body")
            size = int(match.group(1), 16)
            if size == 0:
                break
            while size:
                buffer = conn.buffer
                if not buffer:
                    await self._more("inside a chunk")
                    continue
                take = min(size, len(buffer))
                piece = bytes(buffer[:take])
                del buffer[:take]
                size -= take
                yield piece
            if await self._read_line("chunk end") != b"":
                raise httpx.RemoteProtocolError("a chunk is longer than its declared size")
        total = 0
        while True:  # trailer fields, ignored, up to the empty line
            trailer = await self._read_line("trailer line")
            if not trailer:
                return
            total += len(trailer)
            if total > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(f"trailers longer than {MAX_HEAD_BYTES} bytes")

    async def _read_to_close(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.buffer:
                piece = bytes(conn.buffer)
                conn.buffer.clear()
                yield piece
            elif conn.eof:
                if conn.error is not None:
                    # A reset, not the server's orderly close: the body may be cut short.
                    raise httpx.ReadError(f"{describe_os_error(conn.error)} while reading the body")
                return
            else:
                await conn.wait(self._timeout)

    def _release(self, *, reuse: bool) -> None:
        if self._released:
            return
        self._released = True
        self._owner._release(self._conn, reuse=reuse)

    async def aclose(self) -> None:
        # A body not read to its end leaves the connection mid-message: it cannot be reused.
        self._release(reuse=self._complete and self._keep_alive)


def _timeout_of(request: httpx.Request, key: str) -> float | None:
    timeouts = request.extensions.get("timeout") or {}
    value = timeouts.get(key)
    return None if value is None else float(value)


def _parse_head(head: bytes) -> tuple[str, int, str, list[tuple[bytes, bytes]], dict[bytes, bytes]]:
    lines = head.split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
    if match is None:
        raise httpx.RemoteProtocolError(
            "the server's answer does not start with an HTTP/1.x status line"
        )
    version, code, reason = match.group(1), int(match.group(2)), match.group(3) or b""
    raw: list[tuple[bytes, bytes]] = []
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            # Also refuses obsolete line folding (a line starting with a space).
            raise httpx.RemoteProtocolError("malformed header line in the server's answer")
        value = value.strip(b" \t")
        raw.append((name, value))
        key = name.lower()
        if key in fields:
            if key == b"content-length" and fields[key] != value:
                raise httpx.RemoteProtocolError("conflicting Content-Length headers")
            fields[key] = fields[key] + b", " + value
        else:
            fields[key] = value
    return version.decode(), code, reason.decode("latin-1"), raw, fields


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
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

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

    async def _connect(self, request: httpx.Request) -> _Connection:
        url = request.url
        loop = asyncio.get_running_loop()
        https = url.scheme == "https"
        if https and self._ssl is None:
            self._ssl = pinning_context() if self._fingerprint else httpx.create_ssl_context()
        host = url.host
        port = url.port or (443 if https else 80)
        timeout = _timeout_of(request, "connect")
        request.extensions["phase"] = "connecting"
        try:
            async with asyncio.timeout(timeout):
                if _is_ip(host):
                    addresses = [host]
                else:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
                conn = await self._connect_any(loop, addresses, port, host if https else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"timed out after {timeout:g}s while connecting", request=request
            ) from None
        except OSError as exc:  # ssl.SSLError and CertificateError are OSErrors too
            raise httpx.ConnectError(describe_os_error(exc, host), request=request) from exc
        except UnicodeError as exc:  # the IDNA codec refuses the name (an empty label, ...)
            raise httpx.ConnectError(describe_os_error(exc, host), request=request) from None
        if https and self._fingerprint is not None:
            self._check_pin(conn, request)
        return conn

    async def _connect_any(
        self,
        loop: asyncio.AbstractEventLoop,
        addresses: list[str],
        port: int,
        server_hostname: str | None,
    ) -> _Connection:
        """Try each address in turn; a TLS failure is final, the first socket error is kept."""
        first: OSError | None = None
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
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

    def _check_pin(self, conn: _Connection, request: httpx.Request) -> None:
        expected = self._fingerprint
        assert expected is not None and conn.transport is not None
        ssl_object = conn.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        got = hashlib.sha256(der).digest() if der else b""
        if not hmac.compare_digest(got, expected):
            conn.close()
            shown = format_fingerprint(got) if got else "no certificate"
            message = (
                f"certificate fingerprint mismatch: expected {format_fingerprint(expected)},"
                f" got {shown}"
            )
            raise httpx.ConnectError(message, request=request) from FingerprintMismatch(message)

    def _release(self, conn: _Connection, *, reuse: bool) -> None:
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

    async def _open(self, request: httpx.Request) -> _Connection:
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
        conn: _Connection | None = None
        try:
            conn = await self._open(request)
            return await self._exchange(request, conn, data)
        except BaseException:
            # Never retried here: a POST may have run even when no answer came back.
            if conn is not None:
                conn.close()
            if self._slots is not None:
                self._slots.release()
            raise

    async def _exchange(
        self, request: httpx.Request, conn: _Connection, data: bytes
    ) -> httpx.Response:
        request.extensions["phase"] = "writing"
        conn.send(data)
        await conn.drain(_timeout_of(request, "write"))
        request.extensions["phase"] = "reading"
        timeout = _timeout_of(request, "read")
        while True:
            version, status, reason, raw, fields = await self._read_head(conn, timeout)
            if status >= 200:
                break
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols; not supported")
            # 100 Continue, 103 Early Hints: skip to the final answer.
        keep_alive = version == "1.1" and b"close" not in fields.get(b"connection", b"").lower()
        mode, length = "close", 0
        encoding = fields.get(b"transfer-encoding")
        if request.method == "HEAD" or status in (204, 304):
            mode = "length"
        elif encoding is not None:
            if encoding.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
                mode = "chunked"
            # A message with both may have been smuggled: never reuse its connection.
            keep_alive = keep_alive and b"content-length" not in fields
        elif b"content-length" in fields:
            value = fields[b"content-length"]
            if not value.isdigit() or len(value) > 18:
                raise httpx.RemoteProtocolError("invalid Content-Length in the server's answer")
            mode, length = "length", int(value)
        if mode == "close":
            keep_alive = False
        stream = _Body(self, conn, mode, length, keep_alive, timeout)
        return httpx.Response(
            status,
            headers=raw,
            stream=stream,
            extensions={
                "http_version": f"HTTP/{version}".encode(),
                "reason_phrase": reason.encode("latin-1"),
            },
            request=request,
        )

    @staticmethod
    async def _read_head(
        conn: _Connection, timeout: float | None
    ) -> tuple[str, int, str, list[tuple[bytes, bytes]], dict[bytes, bytes]]:
        scanned = 0  # bytes already searched: a head trickled in is not rescanned
        while True:
            buffer = conn.buffer
            # The end mark is at most 4 bytes: one that straddles the old end starts
            # no more than 3 bytes before it.
            match = _HEAD_END.search(buffer, max(0, scanned - 3)) if buffer else None
            if match is not None:
                head = bytes(buffer[: match.start()])
                del buffer[: match.end()]
                return _parse_head(head)
            scanned = len(buffer)
            if len(buffer) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(f"response head longer than {MAX_HEAD_BYTES} bytes")
            if conn.eof:
                if conn.error is not None:
                    raise httpx.ReadError(
                        f"{describe_os_error(conn.error)} while reading the answer"
                    )
                if buffer:
                    raise httpx.RemoteProtocolError("the server closed the connection mid-answer")
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without answering"
                )
            await conn.wait(timeout)

    def _expire(self, conn: _Connection) -> None:
        conn.idle_timer = None
        if conn in self._idle:
            self._idle.remove(conn)
        conn.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
            conn.close()


def pinning_context() -> ssl.SSLContext:
    """A client context for a pinned certificate: no chain or name check, the pin decides."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


__all__ = [
    "ContentDecoder",
    "DecodeError",
    "DecodeLimit",
    "FingerprintMismatch",
    "PanelTransport",
    "describe_os_error",
    "format_fingerprint",
    "pinning_context",
]
