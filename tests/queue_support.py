"""Listing samples shared by the queue parser's tests (tests/test_queue*.py)."""

from __future__ import annotations

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
