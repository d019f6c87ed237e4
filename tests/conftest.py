"""Keeps the two test tiers honest.

``make test-fast`` runs the tests not marked ``e2e`` and promises that none of them starts
a process. Here the set-up and the call of such a test run with process creation refused:
``subprocess.Popen`` (which ``subprocess.run`` and ``asyncio.create_subprocess_exec`` use
too), ``os.fork``, ``os.posix_spawn`` and ``os.system`` raise an error naming the test and
the mark it needs. A test that starts a process, or uses a fixture that does, is marked
``@pytest.mark.e2e``. Tear-downs are left alone: a module fixture that an ``e2e`` test
started may stop its process after the file's last test, whichever tier that is.

The daemons read queue listings in worker processes (``brainycp.queue.worker``). In the
in-process tier the process-wide readers read in a thread instead (``ListingReaders(0)``,
the same decoding and reading, made for tests and one-shot tools); the worker processes
themselves are tested by the ``e2e`` tests (``tests/test_queue_worker.py`` and every
test that starts a daemon).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from brainycp.queue.worker import ListingReaders, swap_shared_readers

E2E_HINT = "mark it @pytest.mark.e2e (make test-fast runs only tests that start no process)"


@contextmanager
def processes_refused(nodeid: str) -> Iterator[None]:
    """Within the block, starting a process raises :class:`ProcessStartRefused`."""

    def refusal(what: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            shown = args[1] if what == "subprocess.Popen" and len(args) > 1 else args[:1]
            raise ProcessStartRefused(
                f"{nodeid} starts a process ({what}: {shown!r}) but is not marked e2e: " + E2E_HINT
            )

        return refuse

    names = {
        (subprocess.Popen, "__init__"): "subprocess.Popen",
        (os, "fork"): "os.fork",
        (os, "posix_spawn"): "os.posix_spawn",
        (os, "system"): "os.system",
    }
    saved = {(owner, attr): getattr(owner, attr) for owner, attr in names}
    for (owner, attr), what in names.items():
        setattr(owner, attr, refusal(what))
    try:
        yield
    finally:
        for (owner, attr), original in saved.items():
            setattr(owner, attr, original)


class ProcessStartRefused(AssertionError):
    """A test of the in-process tier tried to start a process."""


_thread_readers: ListingReaders | None = None


@contextmanager
def readers_in_this_process() -> Iterator[None]:
    """Within the block, :func:`brainycp.queue.worker.shared_readers` reads in a thread."""
    global _thread_readers
    if _thread_readers is None:
        _thread_readers = ListingReaders(0)
    saved = swap_shared_readers(_thread_readers)
    try:
        yield
    finally:
        swap_shared_readers(saved)


def _guarded(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("e2e") is not None:
        yield
        return
    with processes_refused(item.nodeid), readers_in_this_process():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    yield from _guarded(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield from _guarded(item)


# The files that take longest (seconds of real processes each: PostgreSQL replicas, the
# demo stack, the built wheel, property tests), run first: under ``--dist loadfile`` the
# workers take files in collection order, so the long ones start at once and the short
# ones fill in around them instead of one long file running alone at the end.
LONG_FILES = (
    "test_remediator_pg.py",
    "test_full_loop.py",
    "test_deploy.py",
    "test_queue.py",
    "test_remediator_journal_seams.py",
    "test_config_yaml.py",
    "test_dashboards.py",
    "test_reload_webconfig.py",
    "test_remediator_restart.py",
    "test_console_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put :data:`LONG_FILES` first, in that order; the rest keep theirs (a stable sort,
    so the tests inside each file keep their order)."""
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
