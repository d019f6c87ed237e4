"""PanelTransport over real loopback sockets: framing, keep-alive, limits and every fault.

Each test starts a scripted HTTP server on 127.0.0.1 inside its own event loop. The
server reads each request whole, records it, and writes back the raw bytes the test
chose, so malformed and hostile answers are exactly what goes over the wire. TLS uses
the self-signed certificate in tests/fixtures/tls (127.0.0.1 and localhost, valid to
2126).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainycp.client import PanelClient
from brainycp.config import parse_config
from brainycp.errors import BrainyCPError
from brainycp.transport import MAX_HEAD_BYTES, PanelTransport, _Connection

T = TypeVar("T")
TLS = Path(__file__).parent / "fixtures" / "tls"
OK_JSON = json.dumps({"error": 0, "message": "Number of messages", "detail": 42}).encode()


def answer(body: bytes = OK_JSON, *, status: str = "200 OK", headers: str = "") -> bytes:
    """A well-formed HTTP/1.1 answer with Content-Length, plus any extra header lines."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}"
    if "content-length" not in headers.lower() and "transfer-encoding" not in headers.lower():
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


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


Script = Callable[[int, int, bytes], Reply | Awaitable[Reply]]
"""(request number, connection number, raw request) -> what to write back."""


@dataclass
class Server:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    open_most: int = 0
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


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


@asynccontextmanager
async def serving(script: Script, *, tls: bool = False) -> AsyncIterator[Server]:
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
                if reply.piecewise:
                    for i in range(len(reply.data)):
                        writer.write(reply.data[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(0)
                else:
                    writer.write(reply.data)
                    await writer.drain()
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

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    server_state.url = f"{scheme}://127.0.0.1:{port}/api/api.php"
    try:
        yield server_state
    finally:
        hold.set()
        server.close()


def always(data: bytes, **flags: Any) -> Script:
    return lambda _n, _c, _r: Reply(data, **flags)


async def post(transport: PanelTransport, url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    request = httpx.Request(
        "POST",
        url,
        content=b"a=1&b=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)},
    )
    response = await transport.handle_async_request(request)
    try:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    finally:
        await response.aclose()
    return response.status_code, body


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test's coroutine under a deadline, so a hang fails instead of blocking."""
    return asyncio.run(asyncio.wait_for(coro, 10))


def client_for(url: str, **overrides: Any) -> PanelClient:
    settings = {"url": url, "username": "admin", "password": "pw-Secret-42", **overrides}
    panel = parse_config({"panels": {"web01": settings}}).panels["web01"]
    return PanelClient(panel, retry_delay=(0.0, 0.01))


# ---------------------------------------------------------------- framing and keep-alive


def test_request_on_the_wire_and_keep_alive_reuse() -> None:
    async def go() -> None:
        async with serving(always(answer())) as server:
            transport = PanelTransport()
            assert await post(transport, server.url) == (200, OK_JSON)
            assert await post(transport, server.url) == (200, OK_JSON)
            await transport.aclose()
        assert server.connections == 1  # the second request reused the first connection
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /api/api.php HTTP/1.1"
        assert f"Host: {server.url.split('/')[2]}".encode() in lines
        assert b"Content-Length: 7" in lines
        assert body == b"a=1&b=2"

    run(go())


def test_chunked_body_with_extensions_and_trailers_arriving_byte_by_byte() -> None:
    body = b'{"error": 0, "detail": "' + b"x" * 300 + b'"}'
    chunked = (
        b"10;name=value\r\n" + body[:16] + b"\r\n"
        + format(len(body) - 16, "x").encode() + b"\r\n" + body[16:] + b"\r\n"
        + b"0\r\nX-Trailer: yes\r\n\r\n"
    )  # fmt: skip
    data = answer(chunked, headers="Transfer-Encoding: chunked\r\n")

    async def go() -> None:
        async with serving(always(data, piecewise=True)) as server:
            transport = PanelTransport()
            assert await post(transport, server.url) == (200, body)
            assert await post(transport, server.url) == (200, body)
            await transport.aclose()
        assert server.connections == 1

    run(go())


@pytest.mark.parametrize(
    ("data", "server_closes", "why"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n" + OK_JSON, True, "no length: read to close"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_JSON) + OK_JSON, False, "1.0"),
        (answer(headers="Connection: close\r\n"), False, "Connection: close"),
        (
            answer(
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(OK_JSON), OK_JSON),
                headers="Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            ),
            False,
            "both framings: chunked wins, the connection is not trusted again",
        ),
    ],
)
def test_answers_that_end_the_connection_are_read_whole_and_not_reused(
    data: bytes, server_closes: bool, why: str
) -> None:
    # Where the server keeps the connection open, only the client's own decision
    # can make the second request use a new connection.
    async def go() -> None:
        async with serving(always(data, close=server_closes)) as server:
            transport = PanelTransport()
            assert await post(transport, server.url) == (200, OK_JSON), why
            assert await post(transport, server.url) == (200, OK_JSON), why
            await transport.aclose()
        assert server.connections == 2, why

    run(go())


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def go() -> None:
        async with serving(always(answer(), close=True)) as server:
            transport = PanelTransport()
            assert await post(transport, server.url) == (200, OK_JSON)
            # Wait (no sleep) until the client side has seen the server's FIN.
            conn = transport._idle[0]
            while not conn.eof:
                await conn.wait(5)
            assert await post(transport, server.url) == (200, OK_JSON)
            await transport.aclose()
        assert server.connections == 2

    run(go())


def test_informational_answers_are_skipped() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + answer()

    async def go() -> None:
        async with serving(always(data)) as server:
            transport = PanelTransport()
            assert await post(transport, server.url) == (200, OK_JSON)
            await transport.aclose()

    run(go())


def test_a_large_body_streams_through_intact() -> None:
    body = bytes(range(256)) * (24 * 1024)  # 6 MiB, far over the read high-water mark

    async def go() -> None:
        async with serving(always(answer(body))) as server:
            transport = PanelTransport()
            status, received = await post(transport, server.url)
            await transport.aclose()
        assert status == 200
        assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()

    run(go())


def test_gzip_answers_are_decoded_by_httpx() -> None:
    data = answer(gzip.compress(OK_JSON), headers="Content-Encoding: gzip\r\n")

    async def go() -> int:
        async with serving(always(data)) as server, client_for(server.url) as client:
            return await client.count_msg()

    assert run(go()) == 42


def test_connections_per_panel_are_capped_and_waiting_requests_reuse_them() -> None:
    async def go() -> None:
        both_open = asyncio.Event()
        seen: set[int] = set()

        async def script(_n: int, conn: int, _r: bytes) -> Reply:
            seen.add(conn)
            if len(seen) >= 2:
                both_open.set()
            await both_open.wait()
            return Reply(answer())

        async with serving(script) as server:
            transport = PanelTransport(max_connections=2)
            results = await asyncio.gather(*(post(transport, server.url) for _ in range(5)))
            await transport.aclose()
        assert results == [(200, OK_JSON)] * 5
        assert server.open_most == 2 and server.connections == 2

    run(go())


def test_a_body_left_unread_closes_its_connection() -> None:
    big = json.dumps({"error": 0, "detail": "x" * 5000}).encode()

    async def go() -> None:
        async with (
            serving(always(answer(big))) as server,
            client_for(server.url, max_response_bytes=1000) as client,
        ):
            with pytest.raises(BrainyCPError) as info:
                await client.list_msg()
            assert info.value.reason == "too_large"
            with pytest.raises(BrainyCPError):
                await client.list_msg()
        # The half-read connection was dropped, not handed to the second call.
        assert server.connections == 2

    run(go())


def test_aclose_closes_idle_connections() -> None:
    async def go() -> None:
        async with serving(always(answer())) as server:
            transport = PanelTransport()
            await post(transport, server.url)
            await transport.aclose()
            await server.closed_by_client.wait()  # the server's reader saw our FIN
            with pytest.raises(httpx.ConnectError):
                await post(transport, server.url)

    run(go())


def test_an_idle_connection_is_closed_when_it_expires_without_another_request() -> None:
    async def go() -> None:
        async with serving(always(answer())) as server:
            transport = PanelTransport(keepalive_expiry=0.05)
            await post(transport, server.url)
            assert not server.closed_by_client.is_set()
            await server.closed_by_client.wait()  # our FIN, sent by the expiry timer
            assert transport._idle == []
            await transport.aclose()

    run(go())


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(b"", close=True), "without answering"),
        (Reply(b"HTTP/1.1 200 OK\r\nContent-Le", close=True), "mid-answer"),
        (Reply(answer()[:-10], close=True), "bytes of the body still to come"),
        (Reply(b"HELLO THERE\r\n\r\n"), "status line"),
        (Reply(b"HTTP/1.1 20 OK\r\n\r\n"), "status line"),
        (Reply(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"), "malformed header"),
        (Reply(b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n"), "malformed header"),
        (Reply(answer(headers="Content-Length: 1\r\nContent-Length: 2\r\n")), "conflicting"),
        (Reply(answer(headers="Content-Length: -1\r\n")), "invalid Content-Length"),
        (Reply(answer(b"zz\r\n", headers="Transfer-Encoding: chunked\r\n")), "chunk-size"),
        (
            Reply(answer(b"2\r\nabcd\r\n0\r\n\r\n", headers="Transfer-Encoding: chunked\r\n")),
            "longer than its declared size",
        ),
        (
            Reply(answer(b"5\r\nab", headers="Transfer-Encoding: chunked\r\n"), close=True),
            "inside a chunk",
        ),
        (Reply(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * MAX_HEAD_BYTES), "longer than"),
        (Reply(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"), "switched protocols"),
    ],
)
def test_malformed_or_cut_answers_are_protocol_errors(reply: Reply, message: str) -> None:
    async def go() -> None:
        async with serving(lambda _n, _c, _r: reply) as server:
            transport = PanelTransport()
            with pytest.raises(httpx.RemoteProtocolError, match=message):
                await post(transport, server.url)
            await transport.aclose()

    run(go())


def test_a_reset_during_a_body_read_to_the_close_is_an_error_not_a_short_body() -> None:
    data = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + OK_JSON[:10]

    async def go() -> None:
        async with serving(always(data, reset=True)) as server:
            transport = PanelTransport()
            with pytest.raises(httpx.ReadError):
                await post(transport, server.url)
            await transport.aclose()

    run(go())


def test_protocol_errors_reach_the_caller_as_connect_failures_and_reads_retry_once() -> None:
    async def go() -> None:
        async with serving(always(b"", close=True)) as server, client_for(server.url) as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
            assert info.value.reason == "connect"
            assert server.connections == 2  # one retry for a read
            with pytest.raises(BrainyCPError):
                await client.delete_frozen_msg()
            assert server.connections == 3  # never for a change

    run(go())


def test_no_answer_in_time_is_a_timeout() -> None:
    async def go() -> None:
        async with serving(always(b"", hang=True)) as server:
            transport = PanelTransport()
            with pytest.raises(httpx.ReadTimeout):
                await post(transport, server.url, timeout=0.2)
            await transport.aclose()
            async with client_for(server.url, timeout="0.2s") as client:
                with pytest.raises(BrainyCPError) as info:
                    await client.count_msg()
            assert info.value.reason == "timeout"

    run(go())


def test_a_refused_connection_is_a_connect_error() -> None:
    async def go() -> None:
        async with serving(always(answer())) as server:
            url = server.url
        transport = PanelTransport()  # the server is gone: its port refuses
        with pytest.raises(httpx.ConnectError):
            await post(transport, url)
        async with client_for(url) as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
        assert info.value.reason == "connect"

    run(go())


# ---------------------------------------------------------------- TLS


@pytest.mark.parametrize(
    ("verify", "reason"),
    [(str(TLS / "cert.pem"), None), (False, None), (True, "tls")],
    ids=["trusted-ca-file", "verify-off", "untrusted"],
)
def test_tls_panels(verify: object, reason: str | None) -> None:
    async def go() -> BrainyCPError | int:
        async with (
            serving(always(answer()), tls=True) as server,
            client_for(server.url, tls_verify=verify) as client,
        ):
            try:
                return await client.count_msg()
            except BrainyCPError as exc:
                return exc

    result = run(go())
    if reason is None:
        assert result == 42
    else:
        assert isinstance(result, BrainyCPError) and result.reason == reason


# ---------------------------------------------------------------- any split of the bytes


class _FakeSocket(asyncio.Transport):
    """Stands in for the socket so the test decides exactly how the answer is split."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = b""
        self.closing = False
        self.paused = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass


def _framed(body: bytes, framing: str, sizes: list[int]) -> bytes:
    if framing == "length":
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    if framing == "close":
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    out, rest = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    if rest:
        out.append(b"%x\r\n%s\r\n" % (len(rest), rest))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=3000),
    framing=st.sampled_from(["length", "chunked", "close"]),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=12),
)
def test_any_split_of_a_valid_answer_gives_the_same_body(
    body: bytes, framing: str, sizes: list[int], cuts: list[int]
) -> None:
    wire = _framed(body, framing, sizes)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    pieces = [wire[a:b] for a, b in itertools.pairwise(points) if b > a]

    async def go() -> bytes:
        loop = asyncio.get_running_loop()
        conn = _Connection(loop)
        sock = _FakeSocket()
        conn.connection_made(sock)
        transport = PanelTransport()

        async def feed() -> None:
            for piece in pieces:
                await asyncio.sleep(0)
                conn.data_received(piece)
            if framing == "close":
                conn.eof_received()

        feeder = asyncio.create_task(feed())
        request = httpx.Request("POST", "http://panel.test/api/api.php", content=b"x=1")
        response = await transport._exchange(request, conn, b"POST / HTTP/1.1\r\n\r\n")
        received = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        await feeder
        return received

    assert run(go()) == body
