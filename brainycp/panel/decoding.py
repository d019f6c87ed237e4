"""Content codings of a panel's answer (gzip, deflate) decoded in steps, under a size cap."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

MAX_CODINGS = 2
"""Stacked content codings accepted in one answer (``gzip, gzip`` is the most seen)."""
DECODE_STEP = 64 * 1024
"""Most bytes one inflate step produces: what a decoder holds at once, per coding."""


class DecodeError(Exception):
    """A corrupt compressed body, too many stacked codings, or a coding we do not speak."""


class DecodeLimit(Exception):
    """The decoded body (or one decoding stage of it) went over the cap."""


class Decompressor(Protocol):
    """What a stage uses of a ``zlib.decompressobj()``."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def unconsumed_tail(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


class _Inflate:
    """One ``gzip`` or ``deflate`` stage, inflating at most :data:`DECODE_STEP` at a time."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.gzip = coding != "deflate"
        self.produced = 0
        self._started = False
        self._head: bytes | None = b""
        """The first bytes of a deflate body, kept until the zlib header (2 bytes) is read."""
        self._z: Decompressor = self._new()

    def _new(self) -> Decompressor:
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


__all__ = ["DECODE_STEP", "MAX_CODINGS", "ContentDecoder", "DecodeError", "DecodeLimit"]
