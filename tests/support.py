"""Helpers for tests that start real processes: ports, readiness, binaries, cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PYTHON = sys.executable
T = TypeVar("T")


def require_e2e() -> bool:
    """True in CI: a missing binary is then a failure, not a skip."""
    return os.environ.get("BRAINYCP_REQUIRE_E2E") == "1"


def require_binary(name: str, hint: str = "") -> str:
    """Path of ``name``; skip with the reason when missing, fail in CI."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed" + (f" ({hint})" if hint else "")
    if require_e2e():
        pytest.fail(reason + " and BRAINYCP_REQUIRE_E2E=1")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline.

    This is a condition wait with a deadline, not a sleep used as synchronisation.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # the thing may not be up yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


def wait_http(
    url: str, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``url`` answers 200; fail early when ``proc`` exits first."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} was up")
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up within {timeout:g}s")
        time.sleep(0.05)


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
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        if ready_url:
            try:
                wait_http(ready_url, timeout=timeout, proc=proc)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\n--- {log}:\n{log.read_text(errors='replace')[-3000:]}"
                ) from None
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def sim_args(port: int, *extra: str) -> list[str]:
    """Command line for a panel simulator on ``port``."""
    return [PYTHON, "-m", "brainycp.simulator.cli", "--listen", f"127.0.0.1:{port}", *extra]
