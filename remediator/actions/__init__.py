"""The remediation actions: one module per kind of action and the registry of them all.

Each module declares an :class:`~remediator.actions.base.ActionKind`: its names, the
parameters a rule or a manual request may set, whether it is destructive or
idempotent, how it runs and is verified (``run``) and what it would do (``preview``).
:data:`ACTIONS` maps every action name to its kind; the config checks, the runner,
manual requests, the console, notifications, metrics and the journal's restart rules
read it. A new action is a module, a line in :data:`ACTIONS`, its rows in
docs/remediation.md and docs/configuration.md, and its scenario in
tests/test_remediator_action_registry.py (a test fails until all three are there).

Every action returns an :class:`Outcome` (``succeeded``, ``failed``,
``unverified`` or ``skipped_nothing_to_do`` with a reason); panel errors become
``failed`` with the error's reason word and operation, never a secret. A panel
error after the change was made (the read-back that verifies it) is
``unverified``, not ``failed``: the change happened and is kept in the record.
The messages a deletion (or reship) touched are handed to ``confirmed`` as the
panel answers for them, before anything is verified, so the journal holds them
even when the verification fails or the process dies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remediator.actions import delete_all, delete_frozen, messages, service
from remediator.actions.base import (
    ActionKind,
    Confirmed,
    MessageRecord,
    Outcome,
    ReadFailed,
    unrecorded,
    why,
)

if TYPE_CHECKING:
    from brainycp.panel.client import PanelClient
    from remediator.settings.rules import Rule

__all__ = [
    "ACTIONS",
    "DESTRUCTIVE",
    "IDEMPOTENT",
    "ActionKind",
    "Confirmed",
    "MessageRecord",
    "Outcome",
    "ReadFailed",
    "preview",
    "run",
    "taking",
    "why",
]

ACTIONS: dict[str, ActionKind] = {
    name: kind
    for kind in (
        delete_frozen.KIND,
        delete_all.KIND,
        service.KIND,
        messages.DELETE,
        messages.RESHIP,
    )
    for name in kind.names
}
"""Every action a rule or a person may ask for, by name, in the order the docs list them."""
DESTRUCTIVE = tuple(name for name, kind in ACTIONS.items() if kind.destructive)
"""Actions that remove mail for good: a rule or a person needs ``allow_destructive``."""
IDEMPOTENT = tuple(name for name, kind in ACTIONS.items() if kind.idempotent)
"""Actions that may run again after a crash left them ``running`` (the others become
``interrupted``)."""


def taking(param: str) -> tuple[str, ...]:
    """The actions a rule or a request may give ``param`` (``daemon``, ``select``...)."""
    return tuple(name for name, kind in ACTIONS.items() if param in kind.takes)


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """What ``rule`` would act on now, without changing anything (manual ``dry_run``);
    raises :data:`ReadFailed` (:func:`why` says it in a line)."""
    return await ACTIONS[rule.action].preview(client, rule)


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
    """Run ``rule``'s action on the panel behind ``client``; panel errors become ``failed``
    (``unverified`` once the change was made); ``confirmed`` records as it goes."""
    try:
        return await ACTIONS[rule.action].run(client, rule, confirmed)
    except ReadFailed as exc:
        return Outcome("failed", why(exc)[:300])
