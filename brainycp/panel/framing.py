"""HTTP/1.1 answer framing: the head parsed in one pass, the body by length, chunks or close.

Bodies are framed by ``Content-Length``, ``chunked`` or the end of the connection,
exactly as RFC 9112 section 6.3 orders them; conflicting or malformed framing is an
error (``httpx.RemoteProtocolError``), never a guess. A response head is capped at
64 KiB, a chunk-size line at 4 KiB. A connection the peer closes before any byte of an
answer is an ``httpx.ReadError`` instead: nothing was malformed, the connection ended.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Literal, NamedTuple

import httpx

from brainycp.panel.connection import Connection
from brainycp.panel.sockets import describe_os_error

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([1-9][0-9][0-9])(?: ([^\r\n]*))?")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")

BodyMode = Literal["length", "chunked", "close"]


class ResponseHead(NamedTuple):
    """The status line and header fields of one answer."""

    version: str
    """``1.0`` or ``1.1``."""
    status: int
    reason: str
    raw: list[tuple[bytes, bytes]]
    """The header fields as sent, in order."""
    fields: dict[bytes, bytes]
    """Lower-cased names; repeated fields joined with ``, ``."""


def parse_head(head: bytes) -> ResponseHead:
    """The head of an answer (without its empty line); ``RemoteProtocolError`` if malformed."""
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
    return ResponseHead(version.decode(), code, reason.decode("latin-1"), raw, fields)


async def read_head(conn: Connection, timeout: float | None) -> ResponseHead:
    """Read and parse the next answer's head from ``conn``, waiting up to ``timeout`` per read."""
    scanned = 0  # bytes already searched: a head trickled in is not rescanned
    while True:
        buffer = conn.buffer
        # The end mark is at most 4 bytes: one that straddles the old end starts
        # no more than 3 bytes before it.
        match = _HEAD_END.search(buffer, max(0, scanned - 3)) if buffer else None
        if match is not None:
            head = bytes(buffer[: match.start()])
            del buffer[: match.end()]
            return parse_head(head)
        scanned = len(buffer)
        if len(buffer) > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(f"response head longer than {MAX_HEAD_BYTES} bytes")
        if conn.eof:
            if conn.error is not None:
                raise httpx.ReadError(f"{describe_os_error(conn.error)} while reading the answer")
            if buffer:
                raise httpx.RemoteProtocolError("the server closed the connection mid-answer")
            # No byte of an answer: the connection ended (a restart, a stale keep-alive).
            raise httpx.ReadError("the server closed the connection without answering")
        await conn.wait(timeout)


def body_framing(method: str, head: ResponseHead) -> tuple[BodyMode, int, bool]:
    """How the body of this answer ends: ``(mode, length, keep_alive)``, per RFC 9112 6.3."""
    fields = head.fields
    keep_alive = head.version == "1.1" and b"close" not in fields.get(b"connection", b"").lower()
    mode: BodyMode = "close"
    length = 0
    encoding = fields.get(b"transfer-encoding")
    if method == "HEAD" or head.status in (204, 304):
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
    return mode, length, keep_alive


class ResponseBody(httpx.AsyncByteStream):
    """The body of one answer, read from the connection as httpx asks for it.

    ``release(reuse)`` is called once, when the body is done with: ``reuse`` is True only
    when the body was read to its end and the connection may carry another request.
    """

    def __init__(
        self,
        conn: Connection,
        mode: BodyMode,
        length: int,
        keep_alive: bool,
        read_timeout: float | None,
        release: Callable[[bool], None],
    ) -> None:
        self._conn = conn
        self._mode = mode
        self._left = length
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._on_release = release
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
        self._on_release(reuse)

    async def aclose(self) -> None:
        # A body not read to its end leaves the connection mid-message: it cannot be reused.
        self._release(reuse=self._complete and self._keep_alive)


__all__ = [
    "MAX_CHUNK_LINE_BYTES",
    "MAX_HEAD_BYTES",
    "BodyMode",
    "ResponseBody",
    "ResponseHead",
    "body_framing",
    "parse_head",
    "read_head",
]
