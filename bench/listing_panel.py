"""A bench panel that serves big queue listings: raw asyncio, canned answers, loopback only.

Panels ``exim`` and ``postfix`` (``/panel/<name>/api/api.php``) answer ``list_msg`` with the
listing in a file, encoded as PHP's ``json_encode`` does (non-ASCII as ``\\uXXXX``),
``count_msg`` with its message count, and the daemons' ``status``. Each ``list_msg`` request
is counted, and the CPU seconds of a watched process tree (the exporter and its workers,
from /proc) are noted when it arrives: ``GET /stats`` gives both, so a bench knows what
one list poll cost the exporter. Bench-only code.

    .venv/bin/python bench/listing_panel.py --listen 127.0.0.1:PORT \\
        --listing exim=/tmp/exim.txt:300000 --listing postfix=/tmp/pf.txt:100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path

MAX_HEAD = 64 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")


def response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return (head + "\r\n\r\n").encode("ascii") + body


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of ``pid`` alone, and of ``pid``, its live descendants
    and its reaped children."""
    own = total = 0.0
    todo, seen = [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
        if current == pid:
            own = total
            total += (int(fields[13]) + int(fields[14])) / _TICKS
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return own, total


class Panels:
    def __init__(self, listings: dict[str, tuple[Path, int]]) -> None:
        self.answers: dict[bytes, dict[bytes, bytes]] = {}
        for name, (path, count) in listings.items():
            detail = path.read_text(encoding="utf-8")
            self.answers[name.encode()] = {
                b"list_msg": response(
                    "200 OK", json.dumps({"error": 0, "detail": detail}).encode()
                ),
                b"count_msg": response(
                    "200 OK", json.dumps({"error": 0, "detail": count}).encode()
                ),
            }
        self.status = response("200 OK", b'{"error": 0, "detail": "active (running)"}')
        self.watched: int | None = None
        self.lists: dict[str, list[tuple[float, float]]] = {name: [] for name in listings}
        """Per panel: the watched process's and its tree's CPU seconds at each list_msg
        request."""

    def answer(self, request_line: bytes, body: bytes) -> bytes:
        method, path, _ = [*request_line.split(b" "), b"", b""][:3]
        if method == b"GET" and path == b"/healthz":
            return response("200 OK", b'{"status": "ok"}')
        if method == b"GET" and path == b"/stats":
            return response("200 OK", json.dumps({"lists": self.lists}).encode())
        if method == b"POST" and path.startswith(b"/watch/"):
            self.watched = int(path.rsplit(b"/", 1)[1])
            self.lists = {name: [] for name in self.lists}
            return response("200 OK", b"{}")
        name, _, rest = path.removeprefix(b"/panel/").partition(b"/")
        if method != b"POST" or name not in self.answers or rest != b"api/api.php":
            return response("404 Not Found", b'{"error": "not found"}')
        form = dict(pair.partition(b"=")[::2] for pair in body.split(b"&"))
        if b"list_msg" in form:
            if self.watched is not None:
                self.lists[name.decode()].append(tree_cpu(self.watched))
            return self.answers[name][b"list_msg"]
        if b"count_msg" in form:
            return self.answers[name][b"count_msg"]
        return self.status


class Connection(asyncio.Protocol):
    def __init__(self, panels: Panels) -> None:
        self.panels = panels
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(self.panels.answer(head.split(b"\r\n", 1)[0], body))
        if len(self.buffer) > MAX_HEAD and self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int, panels: Panels) -> None:
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(panels), host, port)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT (loopback only)")
    parser.add_argument("--listing", action="append", default=[], help="NAME=FILE:MESSAGES")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host.startswith("127.") and host != "::1":
        parser.error("the listing panel listens on loopback only")
    listings = {}
    for item in args.listing:
        name, _, rest = item.partition("=")
        path, _, count = rest.rpartition(":")
        listings[name] = (Path(path), int(count))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port), Panels(listings)))


if __name__ == "__main__":
    main()
