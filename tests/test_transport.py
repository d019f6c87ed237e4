"""PanelTransport over real loopback sockets: framing, keep-alive, limits and every fault.

Each test starts a scripted HTTP server on 127.0.0.1 inside its own event loop
(tests/panel_support.py), which writes back the raw bytes the test chose, so malformed and
hostile answers are exactly what goes over the wire. TLS uses the self-signed certificate
in tests/fixtures/tls (127.0.0.1 and localhost, valid to 2126).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import hashlib
import itertools
import json
import socket
import ssl
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainycp.config.loader import parse_shared
from brainycp.panel.client import PanelClient
from brainycp.panel.connection import Connection
from brainycp.panel.decoding import DECODE_STEP, ContentDecoder, DecodeError, DecodeLimit
from brainycp.panel.errors import REASONS, BrainyCPError
from brainycp.panel.framing import MAX_HEAD_BYTES
from brainycp.panel.transport import PanelTransport
from tests.panel_support import (
    OK_JSON,
    TLS,
    Reply,
    Server,
    always,
    answer,
    in_turn,
    run,
    serving,
)


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


def client_for(url: str, **overrides: Any) -> PanelClient:
    settings = {"url": url, "username": "admin", "password": "pw-Secret-42", **overrides}
    panel = parse_shared({"panels": {"web01": settings}}).panels["web01"]
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


def test_gzip_answers_are_decoded() -> None:
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
            assert transport.idle_connections == 0
            await transport.aclose()

    run(go())


# ---------------------------------------------------------------- faults


MALFORMED = [
    pytest.param(Reply(b"HTTP/1.1 200 OK\r\nContent-Le", close=True), "mid-answer", id="cut-head"),
    pytest.param(
        Reply(answer()[:-10], close=True), "bytes of the body still to come", id="truncated-body"
    ),
    pytest.param(Reply(b"HELLO THERE\r\n\r\n"), "status line", id="no-status-line"),
    pytest.param(Reply(b"HTTP/1.1 20 OK\r\n\r\n"), "status line", id="bad-status-code"),
    pytest.param(
        Reply(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"), "malformed header", id="bad-header"
    ),
    pytest.param(
        Reply(b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n"), "malformed header", id="folded"
    ),
    pytest.param(
        Reply(answer(headers="Content-Length: 1\r\nContent-Length: 2\r\n")),
        "conflicting",
        id="two-lengths",
    ),
    pytest.param(
        Reply(answer(headers="Content-Length: -1\r\n")),
        "invalid Content-Length",
        id="negative-length",
    ),
    pytest.param(
        Reply(answer(b"zz\r\n", headers="Transfer-Encoding: chunked\r\n")),
        "chunk-size",
        id="bad-chunk-size",
    ),
    pytest.param(
        Reply(answer(b"2\r\nabcd\r\n0\r\n\r\n", headers="Transfer-Encoding: chunked\r\n")),
        "longer than its declared size",
        id="long-chunk",
    ),
    pytest.param(
        Reply(answer(b"5\r\nab", headers="Transfer-Encoding: chunked\r\n"), close=True),
        "inside a chunk",
        id="cut-chunk",
    ),
    pytest.param(
        Reply(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * MAX_HEAD_BYTES),
        "longer than",
        id="oversized-head",
    ),
    pytest.param(
        Reply(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"), "switched protocols", id="101"
    ),
]


@pytest.mark.parametrize(("reply", "message"), MALFORMED)
def test_malformed_or_cut_answers_are_protocol_errors(reply: Reply, message: str) -> None:
    async def go() -> None:
        async with serving(lambda _n, _c, _r: reply) as server:
            transport = PanelTransport()
            with pytest.raises(httpx.RemoteProtocolError, match=message):
                await post(transport, server.url)
            await transport.aclose()

    run(go())


def test_a_connection_closed_before_any_answer_is_a_read_error_not_a_protocol_error() -> None:
    async def go() -> None:
        async with serving(always(b"", close=True)) as server:
            transport = PanelTransport()
            with pytest.raises(httpx.ReadError, match="closed the connection without answering"):
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


def test_a_connection_closed_without_an_answer_is_connect_and_reads_retry_once() -> None:
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


@pytest.mark.parametrize(("reply", "message"), MALFORMED)
def test_malformed_answers_reach_the_caller_as_protocol_and_reads_retry_once(
    reply: Reply, message: str
) -> None:
    async def go() -> None:
        async with serving(lambda _n, _c, _r: reply) as server, client_for(server.url) as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
            assert (info.value.reason, info.value.operation) == ("protocol", "count_msg")
            assert message in info.value.detail
            assert len(server.requests) == 2  # one retry for a read
            with pytest.raises(BrainyCPError) as info:
                await client.delete_frozen_msg()
            assert info.value.reason == "protocol"
            assert len(server.requests) == 3  # never for a change

    run(go())


def test_a_read_succeeds_when_its_retry_gets_a_well_formed_answer() -> None:
    script = in_turn(Reply(b"HELLO THERE\r\n\r\n", close=True), Reply(answer()))

    async def go() -> int:
        async with serving(script) as server, client_for(server.url) as client:
            return await client.count_msg()

    assert run(go()) == 42


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


def test_a_refused_connection_is_a_connect_error_that_says_so() -> None:
    async def go() -> None:
        async with serving(always(answer())) as server:
            url = server.url
        transport = PanelTransport()  # the server is gone: its port refuses
        with pytest.raises(httpx.ConnectError, match=r"^connection refused$"):
            await post(transport, url)
        async with client_for(url) as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
        assert (info.value.reason, info.value.detail) == ("connect", "connection refused")

    run(go())


def test_a_name_that_does_not_resolve_says_so_with_the_resolvers_words() -> None:
    # .invalid never resolves (RFC 6761): only the local resolver is asked, nothing connects.
    try:
        socket.getaddrinfo("panel.invalid", 8002, type=socket.SOCK_STREAM)
        pytest.fail("panel.invalid resolved: this resolver breaks RFC 6761")
    except socket.gaierror as exc:
        resolver_says = exc.strerror

    async def go() -> BrainyCPError:
        async with client_for("http://panel.invalid:8002") as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
            return info.value

    error = run(go())
    assert error.reason == "connect"
    assert error.detail.endswith(f"panel.invalid ({resolver_says})") or error.detail.endswith(
        f"panel.invalid: {resolver_says}"
    )
    assert error.detail.startswith(("name does not resolve", "name resolution failed"))


@pytest.mark.parametrize("host", ["a..invalid", "x" * 70 + ".invalid"])
def test_a_host_name_the_idna_codec_refuses_is_a_connect_failure(host: str) -> None:
    async def go() -> BrainyCPError:
        async with client_for(f"http://{host}:8002") as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
            return info.value

    error = run(go())
    assert error.reason == "connect"
    assert error.detail == f"name does not resolve: {host} is not a valid host name"


def test_a_connection_reset_mid_answer_says_so() -> None:
    async def go() -> BrainyCPError:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + OK_JSON[:10]
        async with serving(always(data, reset=True)) as server, client_for(server.url) as client:
            with pytest.raises(BrainyCPError) as info:
                await client.delete_frozen_msg()
            return info.value

    error = run(go())
    assert error.reason == "connect"
    assert "connection reset by peer" in error.detail


def test_timeouts_say_which_phase_they_struck_in() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers, not even a TLS handshake
        writer.close()

    async def go() -> tuple[str, str]:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        details = []
        try:
            for scheme in ("https", "http"):
                url = f"{scheme}://127.0.0.1:{port}/api/api.php"
                async with client_for(url, timeout="0.3s") as client:
                    with pytest.raises(BrainyCPError) as info:
                        await client.count_msg()
                assert info.value.reason == "timeout"
                details.append(info.value.detail)
        finally:
            server.close()
        return details[0], details[1]

    connecting, reading = run(go())
    assert connecting == "timed out after 0.3s while connecting"  # the TLS handshake
    assert reading == "timed out after 0.3s while reading"


def test_a_panel_that_stops_reading_the_request_is_a_write_timeout() -> None:
    started = asyncio.Event

    async def go() -> None:
        accepted = started()

        async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            await asyncio.sleep(30)  # holds the socket without reading; cancelled at the end

        server = await asyncio.start_server(stalled, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = PanelTransport()
        request = httpx.Request(
            "POST",
            f"http://127.0.0.1:{port}/api/api.php",
            content=b"x" * (64 * 1024 * 1024),  # far more than the socket buffers hold
            extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), 0.3)},
        )
        try:
            with pytest.raises(httpx.WriteTimeout, match="while writing"):
                await transport.handle_async_request(request)
            assert request.extensions["phase"] == "writing"
            assert accepted.is_set()
        finally:
            await transport.aclose()
            server.close()

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


def _fixture_fingerprint() -> bytes:
    der = ssl.PEM_cert_to_DER_cert((TLS / "cert.pem").read_text())
    return hashlib.sha256(der).digest()


def _tls_result(
    verify: object = True, host: str = "127.0.0.1", **overrides: Any
) -> tuple[BrainyCPError | int, Server]:
    async def go() -> tuple[BrainyCPError | int, Server]:
        async with (
            serving(always(answer()), tls=True, host=host) as server,
            client_for(server.url, tls_verify=verify, **overrides) as client,
        ):
            try:
                return await client.count_msg(), server
            except BrainyCPError as exc:
                return exc, server

    return run(go())


def test_an_untrusted_certificate_says_why() -> None:
    result, _ = _tls_result(True)
    assert isinstance(result, BrainyCPError) and result.reason == "tls"
    assert result.detail == "certificate verify failed: self-signed certificate"


def test_a_certificate_for_another_name_is_a_hostname_mismatch() -> None:
    # Trusted (its own CA file) but issued for 127.0.0.1 and localhost, not 127.0.0.2.
    result, _ = _tls_result(str(TLS / "cert.pem"), host="127.0.0.2")
    assert isinstance(result, BrainyCPError) and result.reason == "tls"
    assert result.detail.startswith("hostname mismatch")


def test_https_to_a_plain_http_port_is_a_tls_failure_that_says_so() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def go() -> BrainyCPError:
        server = await asyncio.start_server(plain, "127.0.0.1", 0)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/api.php"
        try:
            async with client_for(url) as client:
                with pytest.raises(BrainyCPError) as info:
                    await client.count_msg()
                return info.value
        finally:
            server.close()

    error = run(go())
    assert error.reason == "tls" and error.detail.startswith("TLS handshake failed")


@pytest.mark.parametrize(
    "spelling",
    [
        lambda d: "sha256:" + ":".join(f"{b:02X}" for b in d),
        lambda d: d.hex(),
        lambda d: "SHA256:" + d.hex().upper(),
        lambda d: ":".join(f"{b:02x}" for b in d),
    ],
    ids=["canonical", "bare-lower", "prefix-upper-no-colons", "colons-lower"],
)
def test_a_pinned_fingerprint_is_accepted_whatever_the_issuer_or_name(
    spelling: Callable[[bytes], str],
) -> None:
    # Self-signed, and 127.0.0.2 is not a name in the certificate: the pin alone decides.
    pin = spelling(_fixture_fingerprint())
    result, server = _tls_result(True, host="127.0.0.2", tls_fingerprint=pin)
    assert result == 42 and len(server.requests) == 1


def test_a_fingerprint_mismatch_is_tls_and_nothing_is_sent() -> None:
    other = hashlib.sha256(b"another certificate").digest()
    result, server = _tls_result(False, tls_fingerprint=other.hex())
    assert isinstance(result, BrainyCPError) and result.reason == "tls"
    got = "sha256:" + ":".join(f"{b:02X}" for b in _fixture_fingerprint())
    expected = "sha256:" + ":".join(f"{b:02X}" for b in other)
    assert result.detail == (f"certificate fingerprint mismatch: expected {expected}, got {got}")
    assert server.requests == []  # the password never left: no request was written


# ---------------------------------------------------------------- content codings


def _coded(body: bytes, coding: str) -> bytes:
    for name in [c.strip() for c in coding.split(",") if c.strip()]:
        if name in ("gzip", "x-gzip"):
            body = gzip.compress(body)
        elif name == "deflate":
            body = zlib.compress(body)
        elif name == "raw-deflate":
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = packer.compress(body) + packer.flush()
    return body


@pytest.mark.parametrize(
    ("coding", "header"),
    [
        ("gzip", "gzip"),
        ("x-gzip", "x-gzip"),
        ("deflate", "deflate"),
        ("raw-deflate", "deflate"),
        ("gzip, gzip", "gzip, gzip"),
        ("deflate, gzip", "deflate, gzip"),
        ("", "identity"),
        ("gzip", "identity, GZIP"),
    ],
)
def test_content_codings_are_decoded(coding: str, header: str) -> None:
    data = answer(_coded(OK_JSON, coding), headers=f"Content-Encoding: {header}\r\n")

    async def go() -> int:
        async with serving(always(data)) as server, client_for(server.url) as client:
            return await client.count_msg()

    assert run(go()) == 42


def test_several_gzip_members_are_one_body() -> None:
    body = gzip.compress(OK_JSON[:20]) + gzip.compress(OK_JSON[20:])
    data = answer(body, headers="Content-Encoding: gzip\r\n")

    async def go() -> int:
        async with serving(always(data)) as server, client_for(server.url) as client:
            return await client.count_msg()

    assert run(go()) == 42


@pytest.mark.parametrize(
    ("body", "header", "words"),
    [
        (b"\x1f\x8b\x08\x00garbage-not-deflate" * 3, "gzip", "corrupt gzip body"),
        (gzip.compress(OK_JSON)[:-12], "gzip", "truncated gzip body"),
        (OK_JSON, "gzip", "corrupt gzip body"),
        (_coded(OK_JSON, "deflate") + b"tail", "deflate", "after the end"),
        (_coded(OK_JSON, "gzip, gzip, gzip"), "gzip, gzip, gzip", "3 stacked content codings"),
        (OK_JSON, "br", "unsupported content coding 'br'"),
        (OK_JSON, "compress", "unsupported content coding 'compress'"),
    ],
    ids=["corrupt", "truncated", "not-compressed", "trailing-data", "three-stacked", "br", "lzw"],
)
def test_bad_content_codings_are_bad_encoding(body: bytes, header: str, words: str) -> None:
    data = answer(body, headers=f"Content-Encoding: {header}\r\n")

    async def go() -> BrainyCPError:
        async with serving(always(data)) as server, client_for(server.url) as client:
            with pytest.raises(BrainyCPError) as info:
                await client.count_msg()
            return info.value

    error = run(go())
    assert error.reason == "bad_encoding"
    assert words in error.detail


@functools.cache
def _bomb(decoded_mib: int) -> bytes:
    """gzip(gzip(decoded_mib MiB of zeros)), a few KB, built in milliseconds.

    The inner stream is full-flushed after every MiB, so each MiB compresses to the same
    bytes and is repeated instead of compressed again. Its trailer is left off: a decoder
    that ever reached the end would call it truncated (bad_encoding), not too_large.
    """
    zeros = bytes(1024 * 1024)
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = inner.compress(zeros) + inner.flush(zlib.Z_FULL_FLUSH)
    unit = inner.compress(zeros) + inner.flush(zlib.Z_FULL_FLUSH)
    assert unit == inner.compress(zeros) + inner.flush(zlib.Z_FULL_FLUSH)
    outer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [outer.compress(first)]
    parts += [outer.compress(unit) for _ in range(decoded_mib - 1)]
    parts.append(outer.flush())
    return b"".join(parts)


async def refused_with_peak(client: PanelClient) -> tuple[BrainyCPError, int]:
    """The error ``list_msg`` fails with on ``client``, and the most memory Python held
    meanwhile (tracemalloc's peak)."""
    tracemalloc.start()
    try:
        with pytest.raises(BrainyCPError) as info:
            await client.list_msg()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return info.value, peak


def test_a_double_gzip_bomb_is_too_large_fast_with_bounded_memory() -> None:
    bomb = _bomb(4096)  # 4 GiB of zeros once decoded
    assert len(bomb) < 16 * 1024
    data = answer(bomb, headers="Content-Encoding: gzip, gzip\r\n")

    async def go() -> BrainyCPError:
        async with (
            serving(always(data)) as server,
            client_for(server.url, max_response_bytes="4MiB") as client,
        ):
            error, peak = await refused_with_peak(client)
            # The 4 MiB of body the cap allows, and a few inflate steps besides.
            assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while refusing a bomb"
            return error

    error = run(go())  # run() fails the test if this takes 10 s
    assert error.reason == "too_large" and "cap" in error.detail


def test_the_default_cap_also_holds_a_bomb_under_100_mb() -> None:
    bomb = _bomb(2048)
    data = answer(bomb, headers="Content-Encoding: gzip, gzip\r\n")

    async def go() -> str:
        # The default max_response_bytes, 64 MiB.
        async with serving(always(data)) as server, client_for(server.url) as client:
            error, peak = await refused_with_peak(client)
        assert peak < 100 * 1024 * 1024, f"peak {peak} bytes"
        return error.reason

    assert run(go()) == "too_large"


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=2000),
    header=st.sampled_from(["gzip", "deflate", "gzip, gzip", "deflate, gzip", "x-gzip"]),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
)
def test_any_bytes_under_any_coding_decode_or_fail_cleanly(
    raw: bytes, header: str, cuts: list[int]
) -> None:
    decoder = ContentDecoder(header, 100_000)
    points = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    try:
        for a, b in itertools.pairwise(points):
            for piece in decoder.decode(raw[a:b]):
                assert len(piece) <= DECODE_STEP
        decoder.finish()
    except (DecodeError, DecodeLimit):
        pass
    assert decoder.size <= 100_000


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=300_000).map(lambda b: b * 3),
    header=st.sampled_from(["gzip", "deflate", "raw-deflate", "gzip, gzip", "deflate, gzip"]),
    cuts=st.lists(st.integers(0, 1_000_000), max_size=8),
)
def test_valid_coded_bodies_decode_whole_under_any_split(
    body: bytes, header: str, cuts: list[int]
) -> None:
    coded = _coded(body, header)
    decoder = ContentDecoder(header.replace("raw-deflate", "deflate"), 10**9)
    points = sorted({min(c, len(coded)) for c in cuts} | {0, len(coded)})
    out = b"".join(b"".join(decoder.decode(coded[a:b])) for a, b in itertools.pairwise(points))
    decoder.finish()
    assert out == body


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
        conn = Connection(loop)
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
        response = await transport.exchange(request, conn, b"POST / HTTP/1.1\r\n\r\n")
        received = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        await feeder
        return received

    assert run(go()) == body


# ---------------------------------------------------------------- any answer through the client


class _ScriptedTransport(PanelTransport):
    """Every connection gets exactly ``wire``, in ``pieces``, then the end of the connection."""

    def __init__(self, wire: bytes, cuts: list[int]) -> None:
        super().__init__()
        points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
        self.pieces = [wire[a:b] for a, b in itertools.pairwise(points) if b > a]
        self.feeders: list[asyncio.Task[None]] = []

    async def _open(self, request: httpx.Request) -> Connection:
        conn = Connection(asyncio.get_running_loop())
        conn.connection_made(_FakeSocket())

        async def feed() -> None:
            for piece in self.pieces:
                await asyncio.sleep(0)
                conn.data_received(piece)
            conn.eof_received()

        self.feeders.append(asyncio.create_task(feed()))
        return conn


def _through_client(wire: bytes, cuts: list[int], call: str) -> object:
    async def go() -> object:
        panel = parse_shared(
            {"panels": {"p": {"url": "http://p.test", "username": "u", "password": "pw-x"}}}
        ).panels["p"]
        panel = dataclasses.replace(panel, max_response_bytes=200_000, timeout=5.0)
        transport = _ScriptedTransport(wire, cuts)
        async with PanelClient(panel, transport=transport, retry_delay=(0.0, 0.0)) as client:
            try:
                method = getattr(client, call)
                result: object = await (method("status") if call == "clamav" else method())
            except BrainyCPError as exc:
                assert exc.reason in REASONS
                assert "pw-x" not in str(exc)
                result = exc
        for feeder in transport.feeders:
            feeder.cancel()
        return result

    return run(go())


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=st.dictionaries(
        st.sampled_from(["error", "code", "detail", "mess", "message"]), _JSON_VALUES
    ),
    coding=st.sampled_from(["", "gzip", "deflate", "gzip, gzip", "br", "gzip, gzip, gzip"]),
    mangle=st.sampled_from(["none", "truncate", "flip", "raw"]),
    framing=st.sampled_from(["length", "chunked", "close"]),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
    call=st.sampled_from(["count_msg", "list_msg", "delete_frozen_msg", "clamav"]),
)
def test_any_answer_through_the_client_is_a_result_or_a_brainycp_error(
    answer: dict[str, Any], coding: str, mangle: str, framing: str, cuts: list[int], call: str
) -> None:
    body = json.dumps(answer, allow_nan=True).encode()
    coded = _coded(body, coding) if coding not in ("br", "") else body
    if mangle == "truncate":
        coded = coded[: len(coded) // 2]
    elif mangle == "flip" and coded:
        coded = coded[:-3] + bytes([coded[-3] ^ 0xFF]) + coded[-2:] if len(coded) > 3 else b"x"
    elif mangle == "raw":
        coded = body  # claims a coding, sends plain JSON
    head = "HTTP/1.1 200 OK\r\n" + (f"Content-Encoding: {coding}\r\n" if coding else "")
    sizes = [max(1, len(coded) // 3)]
    wire = _framed(coded, framing, sizes).replace(b"HTTP/1.1 200 OK\r\n", head.encode(), 1)
    _through_client(wire, cuts, call)


@pytest.mark.parametrize(
    ("body", "call", "reason"),
    [
        (b'{"error": Infinity}', "count_msg", "bad_detail"),
        (b'{"error": NaN}', "count_msg", "bad_detail"),
        (b'{"error": -Infinity, "code": 1}', "count_msg", "bad_detail"),
        ('{"error": "²"}'.encode(), "count_msg", "bad_detail"),
        (b'{"error": "' + b"9" * 5000 + b'"}', "count_msg", "bad_detail"),
        (b'{"error": 0, "detail": 1e400}', "count_msg", "bad_detail"),
        (b'{"error": 0, "detail": "\xc2\xb2"}', "count_msg", "bad_detail"),
        (b'{"error": 0, "detail": 9007199254740993}', "count_msg", "bad_detail"),
        (b'{"error": 0, "detail": "' + b"9" * 5000 + b'"}', "count_msg", "bad_detail"),
        (b'{"code": Infinity}', "count_msg", "bad_detail"),
        (b"[" * 100_000 + b"]" * 100_000, "list_msg", "not_json"),
        (b'{"error": 0, "detail": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "list_msg", "not_json"),
    ],
    ids=[
        "error-inf", "error-nan", "error-minus-inf", "error-superscript", "error-5000-digits",
        "count-1e400", "count-superscript", "count-over-2**53", "count-5000-digits",
        "code-inf", "deep-list", "deep-detail",
    ],
)  # fmt: skip
def test_absurd_numbers_and_deep_json_are_failures_with_a_reason(
    body: bytes, call: str, reason: str
) -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    result = _through_client(wire, [], call)
    assert isinstance(result, BrainyCPError) and result.reason == reason, result


def test_a_count_of_exactly_2_to_the_53_is_believed() -> None:
    body = b'{"error": 0, "detail": 9007199254740992}'
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert _through_client(wire, [], "count_msg") == 2**53
