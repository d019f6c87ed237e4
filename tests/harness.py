"""Start, wait for and stop child processes: the one harness of ``make demo`` and the tests.

Each process gets its own session (process group), so :func:`stop` reaches its children
too; readiness is an HTTP URL answering 200, waited for with a deadline, failing early
when the process exits first.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


class StartError(RuntimeError):
    """A process exited, or did not answer its ready URL, before the deadline."""


# The start-up lines of our daemons name the port they bound: the simulator's and the
# remediator's "listening on [http://]HOST:PORT", the exporter's "listen=HOST:PORT".
LISTENING = re.compile(
    r"(?:listening on (?:https?://)?|exporter started listen=|\"listen\": \")"
    r"(?:\[[^\]]*\]|[^\s:/\[\"]+):(\d+)"
)
OUR_DAEMONS = ("brainycp.simulator.cli", "exporter.cli", "remediator.cli")
"""Modules of the daemons that log the port they bound (:data:`LISTENING`)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for :func:`on_free_port`.

    A few tests still call it directly, where the port must be known before the daemon
    starts: a config that names the daemon's own address (``external_url``, which the
    links in its pages and notifications carry; ``run``, which finds the daemon from the
    config's ``listen``), or a restart that must come back on the same port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTaken(StartError):
    """A program could not bind the port it was given: another process took it first."""


def address_in_use(text: str) -> bool:
    """Whether a program's log says its port was taken (Prometheus, Alertmanager,
    PostgreSQL and Exim all say "address already in use", in some case)."""
    return "address already in use" in text.lower()


def on_free_port(start: Callable[[int], T], *, attempts: int = 5) -> T:
    """``start(port)`` on a port that was free a moment ago; again on another port while
    it raises :class:`PortTaken`.

    The one place the tests choose a port before a program binds it. Prometheus,
    Alertmanager, PostgreSQL and Exim take their port as a number and cannot report a
    port 0 back, so the port is chosen first, and another process (a parallel test
    worker) may bind it in between; ``start`` raises :class:`PortTaken` when the program
    failed for that reason, and a new port is tried. Our own daemons never need this:
    they start on port 0 (:func:`serving`).
    """
    for attempt in range(1, attempts + 1):
        try:
            return start(free_port())
        except PortTaken:
            if attempt == attempts:
                raise
    raise AssertionError("attempts must be at least 1")


def listening_port(
    log: Path,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 15.0,
    offset: int = 0,
) -> int:
    """The port one of our daemons, started on port 0, logged that it bound
    (:data:`LISTENING`), in ``log`` from byte ``offset`` on (a restart appends to the same
    log); :class:`StartError` when ``proc`` exits first or the deadline passes (a
    condition wait, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(log, "rb") as handle:
                handle.seek(offset)
                text = handle.read().decode(errors="replace")
        except OSError:
            text = ""
        found = LISTENING.search(text)
        if found:
            return int(found.group(1))
        if proc is not None and proc.poll() is not None:
            raise StartError(f"process exited with {proc.returncode} before it listened")
        if time.monotonic() > deadline:
            raise StartError(f"no listening line in {log} within {timeout:g}s")
        time.sleep(0.02)


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
    """Start ``args`` logging to ``log``; wait for ``ready_url``; stop it and its group after.

    For one of our daemons (:data:`OUR_DAEMONS`) on a port named in advance, the port it
    logs it bound must be ``ready_url``'s: a daemon that could not bind it fails here,
    instead of the ready check being answered by whatever else took the port meanwhile."""
    offset = log.stat().st_size if log.exists() else 0
    proc = start(args, log=log, env=env, cwd=cwd)
    try:
        if ready_url:
            try:
                if any(module in args for module in OUR_DAEMONS):
                    port = listening_port(log, proc=proc, timeout=timeout, offset=offset)
                    wanted = httpx.URL(ready_url).port
                    if port != wanted:
                        raise StartError(f"it listens on port {port}, not {wanted}")
                wait_ready(ready_url, timeout=timeout, proc=proc)
            except StartError as exc:
                raise StartError(f"{exc}\n--- {log}:\n{log_tail(log)}") from None
        yield proc
    finally:
        stop(proc)


@dataclass
class Served:
    """One of our daemons, started on port 0, with the port it bound."""

    proc: subprocess.Popen[bytes]
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        """``SCHEME://127.0.0.1:PORT``, without a trailing slash."""
        return f"{self.scheme}://127.0.0.1:{self.port}"


@contextmanager
def serving(
    args: Sequence[str],
    *,
    log: Path,
    ready_path: str | None = "/healthz",
    scheme: str = "http",
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
    cwd: Path | None = None,
    auth: tuple[str, str] | None = None,
) -> Iterator[Served]:
    """Start one of our daemons whose ``args`` ask for port 0 (``--listen 127.0.0.1:0`` or
    its config's ``listen``); read the port it bound from its log; wait until
    ``ready_path`` answers 200 (None: do not wait); stop it and its group after.

    The port is the kernel's choice, held from the bind on: never "free a moment ago".
    """
    proc = start(args, log=log, env=env, cwd=cwd)
    try:
        try:
            served = Served(proc, listening_port(log, proc=proc, timeout=timeout), scheme)
            if ready_path is not None:
                wait_ready(served.url + ready_path, timeout=timeout, proc=proc, auth=auth)
        except StartError as exc:
            raise StartError(f"{exc}\n--- {log}:\n{log_tail(log)}") from None
        yield served
    finally:
        stop(proc)


@contextmanager
def serving_on_free_port(
    args_for: Callable[[int], Sequence[str]],
    *,
    log: Path,
    ready_path: str,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
    cwd: Path | None = None,
) -> Iterator[Served]:
    """Start a program that takes its port as a number (Prometheus, Alertmanager):
    ``args_for(port)`` through :func:`on_free_port`, ready when ``ready_path`` answers 200;
    stop it and its group after."""

    def attempt(port: int) -> Served:
        logged = log.stat().st_size if log.exists() else 0
        proc = start(args_for(port), log=log, env=env, cwd=cwd)
        try:
            wait_ready(f"http://127.0.0.1:{port}{ready_path}", timeout=timeout, proc=proc)
        except StartError as exc:
            stop(proc)
            with open(log, "rb") as text:
                text.seek(logged)
                if address_in_use(text.read().decode(errors="replace")):
                    raise PortTaken(f"port {port} was taken") from None
            raise StartError(f"{exc}\n--- {log}:\n{log_tail(log)}") from None
        return Served(proc, port)

    served = on_free_port(attempt)
    try:
        yield served
    finally:
        stop(served.proc)


def prometheus_args(
    binary: str, config: Path, data: Path, *extra: str
) -> Callable[[int], list[str]]:
    """A throwaway Prometheus's command line for a port: ``config``, its TSDB in ``data``."""
    return lambda port: [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        *extra,
    ]


def alertmanager_args(binary: str, config: Path, data: Path) -> Callable[[int], list[str]]:
    """A throwaway Alertmanager's command line for a port: ``config``, its state in
    ``data``, no cluster (so it opens no second port)."""
    return lambda port: [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port held (bound and listening) for the block: a daemon told to listen
    on it finds it in use."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]
