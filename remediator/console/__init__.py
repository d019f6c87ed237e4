"""The operator console: pages to decide on approvals, brake, investigate and act by hand.

:class:`~remediator.console.pages.Console` serves them under ``/console/``;
:func:`mount` puts them in front of the remediator's API (``remediator/serve.py``).
"""

from __future__ import annotations

from starlette.types import ASGIApp

from remediator.console.auth import PREFIX, ConsoleRouter, signed_in_user
from remediator.console.pages import Console

__all__ = ["PREFIX", "Console", "ConsoleRouter", "mount", "signed_in_user"]


def mount(console: Console, api: ASGIApp) -> ASGIApp:
    """``api`` with the console's pages at ``/console/`` and browsers sent there."""
    return ConsoleRouter(console.app(), api)
