"""``start_service``, ``stop_service``, ``restart_service``: a mail-side daemon (ClamAV,
SpamAssassin) through the panel, then its status read back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainycp.panel.errors import BrainyCPError
from remediator.actions.base import ActionKind, Confirmed, Outcome, unrecorded, unverified

if TYPE_CHECKING:
    from brainycp.panel.client import PanelClient
    from remediator.settings.rules import Rule


async def run(client: PanelClient, rule: Rule, confirmed: Confirmed = unrecorded) -> Outcome:
    """Read the status, switch the daemon (off, then on for a restart), read it back."""
    daemon = rule.daemon
    assert daemon is not None
    state = (await client.service(daemon, "status")).state
    if rule.action == "stop_service":
        if state == "stopped":
            return Outcome("skipped_nothing_to_do", f"{daemon} is already stopped")
        await client.service(daemon, "off")
        want = "stopped"
    else:
        if state == "running":
            return Outcome("skipped_nothing_to_do", f"{daemon} is already running")
        if rule.action == "restart_service":
            await client.service(daemon, "off")
        await client.service(daemon, "on")
        want = "running"
    try:
        after = (await client.service(daemon, "status")).state
    except BrainyCPError as exc:
        return unverified(f"{daemon} was {state}; {rule.action} sent", exc)
    if after == want:
        return Outcome("succeeded", f"{daemon} was {state}, now {after}")
    if after == "unknown":
        return Outcome("unverified", f"{daemon} status reads neither running nor stopped")
    return Outcome("failed", f"{daemon} still reads {after} after {rule.action}")


async def preview(client: PanelClient, rule: Rule) -> dict[str, Any]:
    """The daemon's status now."""
    daemon = rule.daemon
    assert daemon is not None
    state = (await client.service(daemon, "status")).state
    return {"service": daemon, "state": state, "verdict": f"{daemon} reads {state}"}


KIND = ActionKind(
    names=("start_service", "stop_service", "restart_service"),
    takes=("daemon",),
    needs=("daemon",),
    destructive=False,
    idempotent=True,
    run=run,
    preview=preview,
    on_messages=False,
)
