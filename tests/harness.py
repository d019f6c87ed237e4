"""Start, wait for and stop child processes: the one harness of ``make demo`` and the tests.

Each process gets its own session (process group), so :func:`stop` reaches its children
too; readiness is an HTTP URL answering 200, waited for with a deadline, failing early
when the process exits first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx


class StartError(RuntimeError):
    """A process exited, or did not answer its ready URL, before the deadline."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    args: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new session, stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )


def wait_ready(
    url: str,
    *,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
    auth: tuple[str, str] | None = None,
) -> None:
    """Wait until ``url`` answers 200 (to basic ``auth`` when given); raise
    :class:`StartError` when ``proc`` exits first or the deadline passes (a condition
    wait, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"process exited with {proc.returncode} before {url} was up")
        try:
            if httpx.get(url, timeout=1.0, auth=auth).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise StartError(f"{url} did not come up within {timeout:g}s")
        time.sleep(0.05)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM the process groups of ``procs`` at once, then wait for each; SIGKILL the
    groups still there after ``timeout`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``proc``; SIGKILL it after ``timeout`` seconds."""
    stop_all([proc], timeout)


def log_tail(log: Path, size: int = 3000) -> str:
    """The end of a log file, for an error message."""
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return ""


@contextmanager
def running(
    args: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    timeout: float = 20.0,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` logging to ``log``; wait for ``ready_url``; stop it and its group after."""
    proc = start(args, log=log, env=env, cwd=cwd)
    try:
        if ready_url:
            try:
                wait_ready(ready_url, timeout=timeout, proc=proc)
            except StartError as exc:
                raise StartError(f"{exc}\n--- {log}:\n{log_tail(log)}") from None
        yield proc
    finally:
        stop(proc)
