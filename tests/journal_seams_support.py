"""Helpers for the journal seam tests: freezing PostgreSQL processes, a small full file
system, an in-process remediator on either journal, timed requests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator.app import Remediator
from remediator.journal import APPLICATION, Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import parse_config
from tests.pg import PASSWORD, Cluster
from tests.support import require_e2e

SAFETY = 30.0
"""Frozen processes are thawed after this long whatever happens, so that a test that
hangs (the code under test waiting on a frozen database) ends with a failure."""


def backend_pids(pg: Cluster, database: str, application: str) -> list[int]:
    """Server processes serving sessions whose application_name starts with ``application``."""
    with pg.connect(database) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
            (application + "%",),
        ).fetchall()
    return [int(r[0]) for r in rows]


def journal_backend(pg: Cluster, database: str, journal: Journal) -> list[int]:
    return backend_pids(pg, database, f"{APPLICATION} {journal.owner}"[:63])


def server_pids(pg: Cluster) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(entry.name))
    return pids


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """SIGSTOP ``pids`` (a VM pause, as the processes see it); SIGCONT at the end, or after
    :data:`SAFETY` seconds at the latest."""
    assert pids
    thawed = threading.Event()

    def thaw() -> None:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        thawed.set()

    timer = threading.Timer(SAFETY, thaw)
    timer.daemon = True
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if not thawed.is_set():
            thaw()


@contextmanager
def small_filesystem(size_kib: int, owner: str | None = None) -> Iterator[Path]:
    """A real file system of ``size_kib`` KiB (a tmpfs) for a test to fill; skipped with
    the reason when this process may not mount one (it needs root), failed in CI."""
    root = Path(tempfile.mkdtemp(prefix="brainycp-small-fs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(root)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        root.rmdir()
        reason = f"cannot mount a small tmpfs for a full-disk test: {mounted.stderr.strip()}"
        if require_e2e():
            pytest.fail(reason + " and BRAINYCP_REQUIRE_E2E=1")
        pytest.skip(reason)
    try:
        if owner is not None:
            shutil.chown(root, owner, owner)
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        root.rmdir()


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                continue
    return filler


RULES = [
    {"name": "clean", "matchers": ['alertname="Frozen"'], "action": "delete_frozen",
     "cooldown": "0s"},
]  # fmt: skip


def config(state: Path | None = None, journal_url: str | None = None, **extra: Any) -> Any:
    remediator: dict[str, Any] = {
        "insecure_no_auth": True,
        "rate_limit": {"max_actions": 100000, "per": "1h"},
        "rules": RULES,
        "manual": {"actions": ["delete_frozen"]},
        **extra,
    }
    if journal_url is not None:
        remediator["journal"] = {"url": journal_url, "lease": "4s"}
    else:
        remediator["state_file"] = str(state)
    return parse_config(
        {
            "panels": {
                f"web{i:02d}": {"url": "http://127.0.0.1:9", "username": "a",
                                "password_env": "HOME"}
                for i in range(4)
            },
            "remediator": remediator,
        }
    )  # fmt: skip


def remediator_on(journal: Journal, cfg: Any) -> Remediator:
    stats = Stats()
    runner = Runner(journal, cfg.panels, {}, stats, max_concurrent=1, action_timeout=5)
    return Remediator(cfg, journal, runner, stats)


def pg_journal(url: str, **kw: Any) -> Journal:
    journal = Journal.postgres(url, PASSWORD, lease=4, connect_timeout=1, **kw)
    journal.migrate()
    journal.stall = 1.0  # cut a silent database off after 1 s (12 s in production)
    return journal


@dataclass
class Timed:
    status: int
    seconds: float
    text: str


class Client:
    """Requests to an in-process remediator, each timed."""

    def __init__(self, rem: Remediator) -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rem.app()), base_url="http://t", timeout=60
        )

    async def request(self, method: str, path: str, **kw: Any) -> Timed:
        started = time.monotonic()
        answer = await self.http.request(method, path, **kw)
        return Timed(answer.status_code, time.monotonic() - started, answer.text)

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def until(what: str, check: Any, timeout: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy (a condition wait, deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
