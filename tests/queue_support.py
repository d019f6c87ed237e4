"""Listing samples shared by the queue parser's tests (tests/test_queue*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import brainycp.queue as queue
from brainycp.queue import QueueMessage, QueueSummary
from tests.support import require_c_reader

READERS = ["compiled", "python"]
"""The params of a module's reader fixture: each test runs with both readers."""
COMPILED = [True]
"""Whether the running module's tests use the compiled readers now (else the Python ones)."""


def use_reader(name: str) -> str:
    """Make the running module's tests read with the ``compiled`` or ``python`` readers."""
    if name == "compiled":
        require_c_reader("exim")
        require_c_reader("postfix")
    COMPILED[0] = name == "compiled"
    return name


def summarize(detail: Any, now: float | None = None, *, zone: Any = None) -> QueueSummary:
    """:func:`brainycp.queue.summarize` with the readers chosen by :func:`use_reader`."""
    return queue.summarize(detail, now, zone=zone, use_compiled=COMPILED[0])


def iter_messages(
    detail: Any, now: float | None = None, *, zone: Any = None
) -> Iterator[QueueMessage]:
    """:func:`brainycp.queue.iter_messages` with the readers chosen by :func:`use_reader`."""
    return queue.iter_messages(detail, now, zone=zone, use_compiled=COMPILED[0])


ODD_EXIM_HEADERS = (
    " 6m   350 1xW6VZ-0000xu-1S <>x>",
    " 6m   350 1xW6VZ-0000xu-1S <x <>",
    " 6m   350 1xW6VZ-0000xu-1S <> *** frozen ***>",
    " 6m   350 1xW6VZ-0000xu-1S <a> (alice) *** frozen ***",
    " 6m   350 1xW6VZ-0000xu-1S <a> *** frozen *** ",
    " 6m  1.2.3 1xW6VZ-0000xu-1S <a>",
    " 6m       1xW6VZ-0000xu-1S <a>",
    " 6m   350 1xW6VZ-0000xu-1S <",
    " 6m   350 1xW6VZ-0000xu-1S",
)
"""Exim header lines at the edges of the grammar: each path must read them alike."""
