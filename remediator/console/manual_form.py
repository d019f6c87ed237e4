"""The manual-action form: its fields, and the ``POST /actions`` body they make.

The form carries text as typed; the API validates it (``remediator.manual.parse_request``)
and its answer is what the page shows, so the page and the CLI refuse the same things.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from remediator.actions import ACTIONS

SELECT_TEXT = ("sender", "sender_domain", "recipient_domain", "older_than", "larger_than")
SELECT_FLAGS = ("bounce", "frozen")
MAX_FIELD = 500


@dataclass(frozen=True)
class ManualForm:
    panel: str = ""
    action: str = ""
    daemon: str = ""
    sender: str = ""
    sender_domain: str = ""
    recipient_domain: str = ""
    older_than: str = ""
    larger_than: str = ""
    bounce: str = ""
    frozen: str = ""
    max_messages: str = ""
    limit: str = "refuse"

    @classmethod
    def from_fields(cls, data: Mapping[str, str]) -> ManualForm:
        """The form as posted; unknown fields are ignored, each value cut to 500 characters."""
        defaults = cls()
        return cls(
            **{f.name: data.get(f.name, getattr(defaults, f.name))[:MAX_FIELD] for f in fields(cls)}
        )

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` of every field, for the hidden inputs of the run form."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def request(self, by: str, *, dry_run: bool) -> dict[str, Any]:
        """The ``POST /actions`` body; criteria left empty are not sent."""
        body: dict[str, Any] = {
            "panel": self.panel,
            "action": self.action,
            "by": by,
            "dry_run": dry_run,
        }
        kind = ACTIONS.get(self.action)
        takes = kind.takes if kind is not None else ()
        if "daemon" in takes:
            body["daemon"] = self.daemon or None
        if "select" in takes:
            select: dict[str, Any] = {
                k: getattr(self, k).strip() for k in SELECT_TEXT if getattr(self, k).strip()
            }
            for key in SELECT_FLAGS:
                if getattr(self, key) in ("yes", "no"):
                    select[key] = getattr(self, key) == "yes"
            body["select"] = select
        if "limit" in takes:
            body["limit"] = self.limit or "refuse"
        if "max_messages" in takes and self.max_messages.strip():
            raw = self.max_messages.strip()
            body["max_messages"] = int(raw) if raw.isascii() and raw.isdigit() else raw
        return body
