"""Helpers for tests that start real processes: ports, readiness, binaries, cleanup.

Starting, waiting for and stopping processes is :mod:`tests.harness`, the same code
``make demo`` uses; this module adds what only tests need (skips, condition waits).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.harness import (
    StartError,
    alertmanager_args,
    free_port,
    on_free_port,
    prometheus_args,
    running,
    serving,
    serving_on_free_port,
    stop,
    wait_ready,
)

__all__ = [
    "alertmanager_args",
    "free_port",
    "on_free_port",
    "prometheus_args",
    "running",
    "serving",
    "serving_on_free_port",
    "stop",
]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PYTHON = sys.executable
T = TypeVar("T")


def require_e2e() -> bool:
    """True in CI: a missing binary is then a failure, not a skip."""
    return os.environ.get("BRAINYCP_REQUIRE_E2E") == "1"


def require_c_reader(flavour: str) -> None:
    """Skip with the reason when brainycp.queue's compiled reader of ``flavour`` (``exim``,
    ``postfix``) was not built (no C compiler or Python headers at install); fail in CI."""
    from brainycp.queue import c_readers

    if flavour not in c_readers():
        reason = f"the compiled {flavour} reader is not built (no C compiler or Python headers)"
        if require_e2e():
            pytest.fail(reason + " and BRAINYCP_REQUIRE_E2E=1")
        pytest.skip(reason)


def require_binary(name: str, hint: str = "") -> str:
    """Path of ``name``; skip with the reason when missing, fail in CI."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed" + (f" ({hint})" if hint else "")
    if require_e2e():
        pytest.fail(reason + " and BRAINYCP_REQUIRE_E2E=1")
    pytest.skip(reason)


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
    try:
        wait_ready(url, timeout=timeout, proc=proc)
    except StartError as exc:
        raise AssertionError(str(exc)) from None


ANY_PORT = ("--listen", "127.0.0.1:0")
"""Our daemons' flags to listen on a port the kernel picks; :func:`tests.harness.serving`
reads it back from the start-up line."""


def exporter_cmd(config: Path, *extra: str) -> list[str]:
    """The command line of an exporter on ``config``, listening on :data:`ANY_PORT`."""
    return [PYTHON, "-m", "exporter.cli", "--config", str(config), *ANY_PORT, *extra]


def sim_args(port: int, *extra: str) -> list[str]:
    """Command line for a panel simulator on ``port``."""
    return [PYTHON, "-m", "brainycp.simulator.cli", "--listen", f"127.0.0.1:{port}", *extra]


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and the body of the next HTTP/1.1 answer on ``reader`` (one that has a
    Content-Length, as every answer of the daemons has)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def secret_file(path: Path, text: str) -> Path:
    """``text`` written to ``path``, readable by its owner only (as the daemons want a
    password or token file)."""
    path.write_text(text)
    path.chmod(0o600)
    return path
