"""Read listings off the event loop: in worker processes, a bounded number at a time.

A big listing costs CPU twice: decoding the panel's JSON (about 0.1 s per 40 MB, one call
that holds the GIL) and reading it. Either would stall every scrape, probe and webhook of
the daemon while it runs, and a thread does not help (the GIL), so both run in worker
processes (``python -m brainycp.queue.worker``, started when first needed): the daemon
hands a worker the raw body of the panel's answer and gets the :class:`Reading` back. The
worker decodes the answer exactly as :meth:`PanelClient.list_msg` would (same errors).

- At most ``processes`` readings run at once (by default one core is left to the daemon);
  more wait their turn. The caller bounds the listings it fetches ahead (see the
  exporter's poller).
- A reading that is cancelled (its panel was removed at reload) or that takes longer than
  ``deadline`` stops its worker process (SIGKILL); the next reading starts a new one.
- A worker that dies (a crash, the OOM killer) fails that reading with
  :class:`ReadingFailed`; other readings go on.
- ``processes=0`` reads in a thread of this process instead (tests, one-shot tools).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import fcntl
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from brainycp.panel.answers import (
    answer_code,
    body_text,
    decode_answer,
    listing_from_body,
    queue_listing,
)
from brainycp.panel.errors import BrainyCPError, PanelNotJSON
from brainycp.queue.model import Reading
from brainycp.queue.reader import ReadOptions, read_listing

DEFAULT_DEADLINE = 120.0
"""Seconds a reading may take (a 1,000,000-message listing takes about 2 s)."""
_FRAME = struct.Struct("!Q")
_PIPE_BYTES = 1 << 20


class ReadingFailed(Exception):
    """A reading that did not complete. ``reason`` is ``bad_detail`` when the listing could
    not be read (the reader raised on it, or took too long) and ``internal`` when the
    reader's process died; ``detail`` says what happened."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ReadJob:
    """What a worker needs besides the body (plain data: it is pickled to the worker)."""

    panel: str
    now: float
    zone: datetime.tzinfo | None = None
    options: ReadOptions = field(default_factory=ReadOptions)


def read_body(job: ReadJob, holder: list[bytes | bytearray]) -> Reading:
    """Decode a ``list_msg`` answer and read its listing (what a worker runs); raises the
    :class:`BrainyCPError` that :meth:`PanelClient.list_msg` would. ``holder`` holds the
    only reference to the body: it is let go as soon as it is text, so that a 40 MB answer
    is not in memory three times (bytes, text, and the listing inside the JSON)."""
    body = holder.pop()
    size = len(body)
    text = body_text(body)
    if text is None:  # not text at all: the client's error for it
        listing_from_body(job.panel, body)
        raise PanelNotJSON(job.panel, "list_msg", f"truncated or invalid JSON ({size} bytes)")
    del body
    answer = decode_answer(job.panel, "list_msg", text, size)
    del text
    listing = queue_listing(job.panel, answer_code(job.panel, "list_msg", answer), answer, size)
    del answer
    return read_listing(listing.detail, job.now, zone=job.zone, options=job.options)


# ------------------------------------------------------------------ the worker's side


def _write_frame(out: IO[bytes], payload: bytes | bytearray | memoryview) -> None:
    out.write(_FRAME.pack(len(payload)))
    out.write(payload)


def _read_frame(source: IO[bytes]) -> bytes | None:
    head = source.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    payload = source.read(size)
    return payload if len(payload) == size else None


def _answer(job: ReadJob, holder: list[bytes | bytearray]) -> tuple[str, Any]:
    """``("ok", Reading)``, ``("error", BrainyCPError)`` or ``("failed", (reason, detail))``."""
    try:
        return "ok", read_body(job, holder)
    except BrainyCPError as exc:
        return "error", exc
    except Exception as exc:
        # Our bug: the traceback goes to the daemon's log (stderr), the poll fails.
        traceback.print_exc(limit=8)
        return "failed", ("bad_detail", f"answer not usable: {type(exc).__name__}")


def serve(source: IO[bytes], out: IO[bytes]) -> None:
    """Answer jobs until ``source`` ends: each is a pickled :class:`ReadJob` frame and a body
    frame; each answer is a pickled :func:`_answer`."""
    while True:
        header = _read_frame(source)
        body = _read_frame(source) if header is not None else None
        if header is None or body is None:
            return
        holder: list[bytes | bytearray] = [body]
        del body  # the reading lets go of it as soon as it can
        answer = _answer(pickle.loads(header), holder)
        _write_frame(out, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        out.flush()


def main() -> int:
    """The worker process: jobs on stdin, answers on stdout."""
    # The daemon stops its workers (it closes their pipes, or kills them): a signal to the
    # whole process group (Ctrl-C, a terminal hanging up, systemd's stop) is for the
    # daemon, which then stops them itself rather than losing the readings in flight.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answers
    with contextlib.suppress(BrokenPipeError):  # the daemon went away: so do we
        serve(sys.stdin.buffer, out)
    return 0


# ------------------------------------------------------------------ the daemon's side


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, command: Sequence[str]) -> None:
        # glibc: allocations over 1 MiB (a listing, its text) come from mmap and go back to
        # the system when freed, instead of staying in the worker's heap between readings.
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
        self.process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=env
        )
        # A listing crosses the pipe in 1 MiB steps rather than 64 KiB ones (Linux).
        if self.process.stdin is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.process.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

    def roundtrip(self, job: ReadJob, holder: list[bytes | bytearray]) -> tuple[str, Any]:
        """Send a job, wait for its answer (blocking: run in a thread). The body in
        ``holder`` is let go once it is sent: a big listing is not kept in the daemon
        while a worker reads it."""
        assert self.process.stdin is not None and self.process.stdout is not None
        _write_frame(self.process.stdin, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        body = holder.pop()
        with memoryview(body) as view:
            _write_frame(self.process.stdin, view)
        del body
        self.process.stdin.flush()
        frame = _read_frame(self.process.stdout)
        if frame is None:
            raise EOFError("the worker closed its answer pipe")
        answer: tuple[str, Any] = pickle.loads(frame)
        return answer

    def stop(self) -> None:
        """Kill the process (if it runs) and reap it."""
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()

    def how_it_ended(self) -> str:
        code = self.process.poll()
        if code is None:
            return "the reader process stopped answering"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"the reader process was killed by {signal.Signals(-code).name}"
        return f"the reader process exited with status {code}"


class _Turn:
    """One reading's claim on a worker, so that cancelling it can stop that worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: _Worker | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            worker = self.worker
        if worker is not None:
            worker.stop()


class ListingReaders:
    """Runs :func:`read_body` in worker processes, at most ``processes`` at once."""

    def __init__(
        self,
        processes: int | None = None,
        *,
        deadline: float = DEFAULT_DEADLINE,
        command: Sequence[str] | None = None,
    ) -> None:
        self.processes = default_processes() if processes is None else processes
        self.deadline = deadline
        self._command = list(command or (sys.executable, "-m", "brainycp.queue.worker"))
        self._threads = ThreadPoolExecutor(
            max_workers=max(1, self.processes), thread_name_prefix="listing-reader"
        )
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.started = 0
        """Worker processes started so far (a replaced worker counts again)."""

    @property
    def slots(self) -> int:
        """How many readings run at once."""
        return max(1, self.processes)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now, idle or reading (tests, the bench)."""
        with self._lock:
            return sorted(w.process.pid for w in self._workers if w.process.poll() is None)

    async def read(self, job: ReadJob, body: bytes | bytearray) -> Reading:
        """The :class:`Reading` of a ``list_msg`` body; raises what :func:`read_body` raises,
        or :class:`ReadingFailed`. Cancelling the caller stops the reading. Pass the body
        without keeping a reference (``await read(job, await client.list_msg_body())``) and
        it is freed as soon as the worker has it."""
        loop = asyncio.get_running_loop()
        turn = _Turn()
        if self._closed:
            raise ReadingFailed("internal", "the listing readers are stopped")
        holder = [body]  # the reading lets go of the body as soon as it can
        del body
        future = loop.run_in_executor(self._threads, self._run, job, holder, turn)
        try:
            answer = await asyncio.wait_for(asyncio.shield(future), self.deadline)
        except TimeoutError:
            turn.cancel()
            detail = f"reading the listing took over {self.deadline:g}s"
            raise ReadingFailed("bad_detail", detail) from None
        except asyncio.CancelledError:
            turn.cancel()
            future.cancel()
            raise
        kind, value = answer
        if kind == "ok":
            result: Reading = value
            return result
        if kind == "error":
            raise value
        raise ReadingFailed(*value)

    def _run(self, job: ReadJob, holder: list[bytes | bytearray], turn: _Turn) -> tuple[str, Any]:
        if self.processes == 0:
            return _answer(job, holder)
        with turn.lock:
            if turn.cancelled:
                return "failed", ("internal", "cancelled")
            worker = turn.worker = self._take()
        if worker is None:
            return "failed", ("internal", "the listing readers are stopped")
        try:
            answer = worker.roundtrip(job, holder)
        except (OSError, EOFError, pickle.UnpicklingError):
            self._retire(worker)
            return "failed", ("internal", "cancelled" if turn.cancelled else worker.how_it_ended())
        self._give_back(worker)
        return answer

    def _take(self) -> _Worker | None:
        with self._lock:
            if self._closed:
                return None
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                self._workers.discard(worker)
                worker.stop()
            self.started += 1
            worker = _Worker(self._command)
            self._workers.add(worker)
            return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self._workers.discard(worker)

    def close(self) -> None:
        """Stop every worker process, reading or not; readings after this fail."""
        with self._lock:
            self._closed = True
            workers, self._idle = list(self._workers), []
        for worker in workers:
            self._retire(worker)
        self._threads.shutdown(wait=False, cancel_futures=True)


def default_processes() -> int:
    """Worker processes by default: one core is left to the daemon's event loop (scrapes,
    webhooks), so one worker on two cores, two from three cores on."""
    return min(2, max(1, (os.cpu_count() or 1) - 1))


_shared: ListingReaders | None = None
_shared_lock = threading.Lock()


def shared_readers() -> ListingReaders:
    """This process's :class:`ListingReaders` (started on first use, stopped at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ListingReaders()
            atexit.register(_shared.close)
        return _shared


def swap_shared_readers(readers: ListingReaders | None) -> ListingReaders | None:
    """Make ``readers`` this process's :func:`shared_readers` (None: start them anew on
    next use) and return the ones it had: how a test reads in a thread
    (``ListingReaders(0)``) instead of worker processes."""
    global _shared
    with _shared_lock:
        previous, _shared = _shared, readers
    return previous


if __name__ == "__main__":
    sys.exit(main())
