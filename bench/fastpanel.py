"""A cheap panel emulator for benches: canned, contract-correct answers, raw asyncio.

The full simulator (``brainycp.simulator``, uvicorn + Starlette) costs ~1.3 ms of CPU a
request: a bench of the exporter on a small machine then measures the simulator. This
server serves the same URL layout (``/panel/<name>/api/api.php`` for ``panel0001`` ...)
over HTTP/1.1 keep-alive with ``Content-Length`` bodies, reads only enough of the POST
form to know the operation and that the bench's credentials were sent, and answers after
the configured latency (``loop.call_later``, no task or sleep per request).

The answers are the simulator's own for a fresh ``quiet`` panel (built once at start from
:class:`brainycp.simulator.app.SimulatorApp`), so the exporter parses and verifies the
same JSON it would get from the simulator; only the state never changes. Bench-only code.

    .venv/bin/python bench/fastpanel.py --listen 127.0.0.1:PORT --panels 5000 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brainycp.simulator.app import SimulatorApp, _encode  # noqa: E402
from brainycp.simulator.cli import build_app, build_parser  # noqa: E402

OPERATIONS = (b"count_msg", b"clamav", b"spamassassin", b"list_msg")
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


def response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def canned_answers(users: str) -> tuple[dict[bytes, bytes], bytes, dict[str, str]]:
    """Per operation key, the full HTTP response a root user gets; the no-auth response."""
    args = build_parser().parse_args(["--users", users, "--panels", "1"])
    app: SimulatorApp = build_app(args)
    panel = app.default
    logins = {n: u.password for n, u in app.settings.users.items() if u.role == "root"}
    root = next(u for u in app.settings.users.values() if u.role == "root")
    answers = {}
    for op in OPERATIONS:
        params = {"mailserver": "1", op.decode(): "1", "language": "en"}
        if op in (b"clamav", b"spamassassin"):
            params["command"] = "status"
        answer = app.answer(panel, params, op.decode(), root, english=True)
        answers[op] = response("200 OK", _encode(answer))
    denied = response("200 OK", _encode({"code": 1, "message": "Not perm2"}))
    return answers, denied, logins


class FastPanel(asyncio.Protocol):
    """One keep-alive connection; requests answered in order after ``latency``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.fail("431 Request Header Fields Too Large")
                return
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        self.fail("400 Bad Request")
                        return
            if length > MAX_BODY:
                self.fail("413 Content Too Large")
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            answer = self.server.answer(head.split(b"\r\n", 1)[0], body)
            self.loop.call_later(self.server.latency, self.send, answer)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, status: str) -> None:
        assert self.transport is not None
        self.transport.write(response(status, b'{"error": "bad request"}'))
        self.transport.close()


class Server:
    def __init__(self, panels: int, latency: float, users: str) -> None:
        self.latency = latency
        self.answers, self.denied, self.logins = canned_answers(users)
        self.panels = {f"panel{i:04d}".encode() for i in range(1, panels + 1)}
        self.not_found = response("404 Not Found", b'{"error": "not found"}')
        self.bad_operation = response(
            "200 OK", json.dumps({"error": 100, "mess": "Unknown command"}).encode()
        )

    def answer(self, request_line: bytes, body: bytes) -> bytes:
        parts = request_line.split(b" ")
        if len(parts) != 3:
            return self.not_found
        method, path, _ = parts
        if method == b"GET" and path == b"/healthz":
            return response("200 OK", json.dumps({"status": "ok"}).encode())
        if method != b"POST" or not path.startswith(b"/panel/"):
            return self.not_found
        name, _, rest = path[len(b"/panel/") :].partition(b"/")
        if name not in self.panels or rest != b"api/api.php":
            return self.not_found
        form: dict[bytes, bytes] = {}
        for pair in body.split(b"&"):
            key, _, value = pair.partition(b"=")
            form[key] = value
        # The client sends both credential pairs (login/pass and the vendor's spelling).
        user = unquote_to_bytes(form.get(b"username", form.get(b"login", b""))).decode()
        password = unquote_to_bytes(form.get(b"password", form.get(b"pass", b""))).decode()
        if not user or self.logins.get(user) != password:
            return self.denied
        if b"mailserver" not in form:
            return self.bad_operation
        for op in OPERATIONS:
            if op in form:
                if op in (b"clamav", b"spamassassin") and form.get(b"command") != b"status":
                    return self.bad_operation
                return self.answers[op]
        return self.bad_operation


async def serve(host: str, port: int, server: Server) -> None:
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: FastPanel(server), host, port, backlog=4096)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT (loopback only)")
    parser.add_argument("--panels", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--users", required=True, help="USER:PASSWORD:ROLE, as the simulator")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host.startswith("127.") and host != "::1":
        parser.error("the fast panel listens on loopback only")
    server = Server(args.panels, args.latency, args.users)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port), server))


if __name__ == "__main__":
    main()
