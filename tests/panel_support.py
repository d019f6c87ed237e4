"""A scripted HTTP/1.1 server on loopback, for tests of the panel client and its transport.

Each test starts one inside its own event loop (:func:`serving`). The server reads each
request whole, records it, and writes back the raw bytes the test chose, so malformed and
hostile answers are exactly what goes over the wire. TLS uses the self-signed certificate
in tests/fixtures/tls (127.0.0.1 and localhost, valid to 2126).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

T = TypeVar("T")
TLS = Path(__file__).parent / "fixtures" / "tls"
OK_JSON = json.dumps({"error": 0, "message": "Number of messages", "detail": 42}).encode()


def answer(body: bytes = OK_JSON, *, status: str = "200 OK", headers: str = "") -> bytes:
    """A well-formed HTTP/1.1 answer with Content-Length, plus any extra header lines."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}"
    if "content-length" not in headers.lower() and "transfer-encoding" not in headers.lower():
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def json_answer(value: object, *, status: str = "200 OK") -> bytes:
    """:func:`answer` with ``value`` as its JSON body."""
    return answer(json.dumps(value).encode(), status=status)


@dataclass
class Reply:
    data: bytes = b""
    close: bool = False
    """Close the connection after writing ``data``."""
    hang: bool = False
    """Write ``data``, then never answer again (until the test ends)."""
    piecewise: bool = False
    """Write one byte at a time, yielding to the loop between them."""
    reset: bool = False
    """After writing, abort the connection with a TCP reset instead of an orderly close."""
    trickle: tuple[bytes, int, float] | None = None
    """After ``data``, write ``(piece, count, pause)``: ``count`` pieces, ``pause`` s apart."""
    endless: bytes = b""
    """After ``data``, write this piece again and again until the client goes away."""


Script = Callable[[int, int, bytes], Reply | Awaitable[Reply]]
"""(request number, connection number, raw request) -> what to write back."""


@dataclass
class Server:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    open_most: int = 0
    written: int = 0
    """Bytes written back to clients, all connections together."""
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


def form_of(request: bytes) -> dict[str, str]:
    """The form fields of a recorded request's body (first value of each)."""
    body = request.partition(b"\r\n\r\n")[2].decode()
    return {k: v[0] for k, v in parse_qs(body).items()}


def target_of(request: bytes) -> bytes:
    """The request line of a recorded request (``POST /api/api.php HTTP/1.1``)."""
    return request.split(b"\r\n", 1)[0]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def _write(writer: asyncio.StreamWriter, reply: Reply, server: Server) -> None:
    async def put(data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        server.written += len(data)

    if reply.piecewise:
        for i in range(len(reply.data)):
            await put(reply.data[i : i + 1])
            await asyncio.sleep(0)
    else:
        await put(reply.data)
    if reply.trickle is not None:
        piece, count, pause = reply.trickle
        for _ in range(count):
            await asyncio.sleep(pause)  # the trickle is the behaviour under test
            if writer.is_closing():
                return
            await put(piece)
    if reply.endless:
        while not writer.is_closing():
            await put(reply.endless)


@asynccontextmanager
async def serving(
    script: Script, *, tls: bool = False, host: str = "127.0.0.1"
) -> AsyncIterator[Server]:
    """Serve ``script`` on ``host``, on a port the kernel picks, until the block ends."""
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    server_state = Server(url="")
    hold = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_state.connections += 1
        number = server_state.connections
        server_state.open_now += 1
        server_state.open_most = max(server_state.open_most, server_state.open_now)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    server_state.closed_by_client.set()
                    return
                server_state.requests.append(request)
                reply = script(len(server_state.requests), number, request)
                if not isinstance(reply, Reply):
                    reply = await reply
                await _write(writer, reply, server_state)
                if reply.reset:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if reply.hang:
                    await hold.wait()
                if reply.close:
                    return
        except ConnectionError:
            return
        finally:
            server_state.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, host, 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    server_state.url = f"{scheme}://{host}:{port}/api/api.php"
    try:
        yield server_state
    finally:
        hold.set()
        server.close()


def always(data: bytes, **flags: Any) -> Script:
    """A script that gives every request the same reply."""
    return lambda _n, _c, _r: Reply(data, **flags)


def in_turn(*replies: Reply) -> Script:
    """A script that gives the n-th request the n-th reply (the last one from then on)."""
    return lambda n, _c, _r: replies[min(n, len(replies)) - 1]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test's coroutine under a deadline, so a hang fails instead of blocking."""
    return asyncio.run(asyncio.wait_for(coro, 10))
