"""One TCP (or TLS) connection to a panel, as an asyncio protocol: bytes in, one waiter."""

from __future__ import annotations

import asyncio

import httpx

from brainycp.panel.sockets import describe_os_error

READ_HIGH_WATER = 256 * 1024
"""Unread bytes at which reading pauses, so a large listing streams instead of piling up."""


class Connection(asyncio.Protocol):
    """One connection: the bytes received so far in ``buffer``, and one waiter for more."""

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
        """Write ``data``; ``WriteError`` when the connection is already closed."""
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
        """Close the socket; the connection is never used again."""
        if self.transport is not None:
            self.transport.close()
        self.eof = True


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout(f"timed out after {timeout:g}s while reading"))


__all__ = ["READ_HIGH_WATER", "Connection"]
