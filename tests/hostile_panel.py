"""A panel that breaks HTTP and the API contract on purpose, for robustness tests.

Raw asyncio, no HTTP library: it must be able to send what no library would. Each
*mode* is a panel at ``/<mode>/api/api.php``; :data:`MODES` says which operation it
breaks and the ``reason`` the exporter must give that poll. Every other operation of a
mode answers like a healthy, empty panel.

    python -m tests.hostile_panel --listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qs

BOMB_BYTES = 512 * 1024**2
"""What the gzip bombs inflate to; the exporter's cap for these panels is far below."""


@dataclass(frozen=True)
class Mode:
    operation: str
    """The operation this mode breaks: ``count_msg`` or ``list_msg``."""
    reason: str
    """The poll's expected ``reason`` (``ok`` when the answer is usable after cleaning)."""


MODES: dict[str, Mode] = {
    "gzip-bomb": Mode("count_msg", "too_large"),
    "double-gzip-bomb": Mode("count_msg", "too_large"),
    "corrupt-gzip": Mode("count_msg", "bad_encoding"),
    "endless-body": Mode("count_msg", "too_large"),
    "dripping-body": Mode("count_msg", "timeout"),
    "huge-head": Mode("count_msg", "protocol"),
    "bad-chunking": Mode("count_msg", "protocol"),
    "count-1e400": Mode("count_msg", "bad_detail"),
    "count-5000-digits": Mode("count_msg", "bad_detail"),
    "count-superscript": Mode("count_msg", "bad_detail"),
    "count-nan": Mode("count_msg", "bad_detail"),
    "error-infinity": Mode("count_msg", "bad_detail"),
    "deep-json": Mode("count_msg", "not_json"),
    "not-utf8": Mode("count_msg", "not_json"),
    # Each size is past MAX_MESSAGE_BYTES (1 TiB): the parser counts the objects as
    # unparsed lines, so the listing is usable (no bytes from them).
    "sizes-overflow": Mode("list_msg", "ok"),
    "ages-overflow": Mode("list_msg", "bad_detail"),
    "lone-surrogate-sender": Mode("list_msg", "ok"),
}


def _gzip(*, total: int = 0, payload: bytes = b"") -> bytes:
    """gzip of ``payload``, or of ``total`` zero bytes fed in slices (never held whole)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    if total:
        block = b'{"error": 0, "detail": "' + b"0" * (1024**2 - 25)
        fed = 0
        while fed < total:
            out.append(comp.compress(block))
            fed += len(block)
            block = b"0" * 1024**2
    else:
        out.append(comp.compress(payload))
    out.append(comp.flush())
    return b"".join(out)


class HostilePanel:
    def __init__(self) -> None:
        self.bomb = _gzip(total=BOMB_BYTES)
        self.double_bomb = _gzip(payload=self.bomb)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length)
                form = parse_qs(body.decode("latin-1"))
                operation = next(
                    (
                        op
                        for op in ("count_msg", "list_msg", "clamav", "spamassassin")
                        if op in form
                    ),
                    "",
                )
                mode = path.strip("/").split("/")[0]
                keep = await self.answer(writer, mode, operation)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def send(
        writer: asyncio.StreamWriter,
        body: bytes,
        headers: tuple[str, ...] = (),
        status: str = "200 OK",
    ) -> None:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
        head.append("Content-Type: application/json")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    async def answer(self, writer: asyncio.StreamWriter, mode: str, operation: str) -> bool:
        """Write the answer; False when the connection must close afterwards."""
        spec = MODES.get(mode)
        if spec is None or operation != spec.operation:
            detail: object = 0 if operation == "count_msg" else ""
            self.send(writer, json.dumps({"error": 0, "detail": detail}).encode())
            return True
        if mode == "gzip-bomb":
            self.send(writer, self.bomb, ("Content-Encoding: gzip",))
        elif mode == "double-gzip-bomb":
            self.send(writer, self.double_bomb, ("Content-Encoding: gzip, gzip",))
        elif mode == "corrupt-gzip":
            good = _gzip(payload=b'{"error": 0, "detail": 1}')
            self.send(writer, good[:10] + b"\x00garbage\xff" * 20, ("Content-Encoding: gzip",))
        elif mode == "endless-body":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
            while not writer.is_closing():
                writer.write(chunk)
                await writer.drain()
            return False
        elif mode == "dripping-body":
            body = b'{"error": 0, "detail": 1}' + b" " * 200
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
            return False
        elif mode == "huge-head":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Junk: ")
            for _ in range(64):  # 64 MB of one header line, never ended
                writer.write(b"a" * 1024**2)
                await writer.drain()
            return False
        elif mode == "bad-chunking":
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
            )
            return False
        elif mode == "count-1e400":
            self.send(writer, b'{"error": 0, "detail": 1e400}')
        elif mode == "count-5000-digits":
            self.send(writer, b'{"error": 0, "detail": "' + b"9" * 5000 + b'"}')
        elif mode == "count-superscript":
            self.send(writer, '{"error": 0, "detail": "\u00b2"}'.encode())
        elif mode == "count-nan":
            self.send(writer, b'{"error": 0, "detail": NaN}')
        elif mode == "error-infinity":
            self.send(writer, b'{"error": Infinity, "detail": 1}')
        elif mode == "deep-json":
            self.send(writer, b'{"error": 0, "detail": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
        elif mode == "not-utf8":
            self.send(writer, b'{"error": 0, "detail": "\xff\xfe\xc3"}')
        elif mode == "sizes-overflow":
            objs = [
                {"id": f"m{i}", "size": 1.5e308, "age": 1e308, "sender": "a@b"} for i in range(4)
            ]
            self.send(writer, json.dumps({"error": 0, "detail": objs}).encode())
        elif mode == "ages-overflow":
            objs = [{"id": f"m{i}", "size": 10, "age": 1e308, "sender": "a@b"} for i in range(4)]
            self.send(writer, json.dumps({"error": 0, "detail": objs}).encode())
        elif mode == "lone-surrogate-sender":
            self.send(
                writer,
                b'{"error": 0, "detail": [{"id": "m1", "size": 10, "age": 5,'
                b' "sender": "ev\\ud800il@example.com"}]}',
            )
        return True


async def serve(host: str, port: int) -> None:
    panel = HostilePanel()
    server = await asyncio.start_server(panel.handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    # With port 0, the port the kernel chose: tests.harness.serving reads it from this line.
    print(f"hostile panel listening on {host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT (loopback only)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host.startswith("127.") and host != "::1":
        parser.error("the hostile panel listens on loopback only")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
