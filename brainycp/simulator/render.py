"""Console output the way Exim and Postfix print it, rendered from the simulated state."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from brainycp.simulator.state import Daemon, Flavour, Message, PanelState

_POSTFIX_TITLE = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
_POSTFIX_RCPT = " " * 41
_POSTFIX_REASON = " " * 58 + "(deferred transport)"

_UNITS: tuple[tuple[str, str, str, str, int], ...] = (
    ("clamav", "clamav-daemon.service", "Clam AntiVirus userspace daemon", "clamd", 612),
    ("spamassassin", "spamassassin.service", "Perl-based spam filter using text analysis",
     "spamd", 733),
)  # fmt: skip


def exim_age(seconds: float) -> str:
    """Exim's ``-bp`` age column: minutes up to 90, hours up to 72, then days (queue.c).

    Minutes are floored (a message 359 s old shows ``5m``), hours and days rounded.
    """
    minutes = int(max(0.0, seconds) // 60)
    if minutes > 90:
        hours = (minutes + 30) // 60
        if hours > 72:
            return f"{(hours + 12) // 24:2d}d"
        return f"{hours:2d}h"
    return f"{minutes:2d}m"


def exim_size(size: int) -> str:
    """Exim's ``string_format_size``: 5 columns, ``350``, ``3.3K``, ``147K``, ``1.9M``, ``11M``."""
    if size == 0:
        return "     "
    if size < 1024:
        return f"{size:5d}"
    if size < 10 * 1024:
        return f"{size / 1024:4.1f}K"
    if size < 1024 * 1024:
        return f"{(size + 512) // 1024:4d}K"
    if size < 10 * 1024 * 1024:
        return f"{size / (1024 * 1024):4.1f}M"
    return f"{(size + 512 * 1024) // (1024 * 1024):4d}M"


def exim_message(message: Message, now: float) -> str:
    """One message of ``exim -bp``, blank line included."""
    frozen = " *** frozen ***" if message.frozen else ""
    lines = [
        f"{exim_age(now - message.arrival)} {exim_size(message.size)} {message.id}"
        f" <{message.sender}>{frozen}"
    ]
    for index, recipient in enumerate(message.recipients):
        mark = "        D " if index == message.delivered else "          "
        lines.append(mark + recipient)
    lines.append("")
    return "\n".join(lines) + "\n"


def postfix_arrival(wall: float, zone: tzinfo | None = None) -> str:
    """Postfix's 20-column arrival time (``ctime`` without the year), local to ``zone``
    (the panel's clock; None is UTC), with no zone shown, as Postfix prints it."""
    if zone is None:
        return time.strftime("%a %b %e %H:%M:%S ", time.gmtime(wall))
    return datetime.fromtimestamp(wall, zone).strftime("%a %b %e %H:%M:%S ")


def postfix_message(message: Message, arrival_wall: float, zone: tzinfo | None = None) -> str:
    """One message of ``postqueue -p``, blank line included."""
    flag = "!" if message.held else "*" if message.active else ""
    sender = message.sender or "MAILER-DAEMON"
    arrival = postfix_arrival(arrival_wall, zone)
    lines = [f"{message.id + flag:<10}{message.size:>8} {arrival} {sender}"]
    if not message.active:
        lines.append(_POSTFIX_REASON)
    lines.extend(_POSTFIX_RCPT + recipient for recipient in message.recipients)
    lines.append("")
    return "\n".join(lines) + "\n"


def listing_text(state: PanelState, wall_now: float, zone: tzinfo | None = None) -> str:
    """The panel's queue as ``exim -bp`` or ``postqueue -p`` prints it (``zone``: the
    panel's clock, for Postfix arrival times)."""
    if state.flavour == "exim":
        return "".join(exim_message(m, state.now) for m in state.iter_messages())
    if not state.messages:
        return "Mail queue is empty\n"
    parts = [_POSTFIX_TITLE + "\n"]
    parts.extend(
        postfix_message(m, state.wall_time(m.arrival, wall_now), zone)
        for m in state.iter_messages()
    )
    total = state.counts.bytes
    count = state.counts.messages
    parts.append(f"-- {total // 1024} Kbytes in {count} Request{'s' if count != 1 else ''}.\n")
    return "".join(parts)


def listing_objects(state: PanelState) -> list[dict[str, Any]]:
    """The queue as a list of per-message objects (``--detail-format objects``)."""
    return [
        {
            "id": m.id,
            "age": int(state.now - m.arrival),
            "size": m.size,
            "sender": m.sender or "<>",
            "recipients": [r for i, r in enumerate(m.recipients) if i != m.delivered],
            "frozen": m.frozen,
            "held": m.held,
        }
        for m in state.iter_messages()
    ]


def as_lines(text: str) -> list[str]:
    """Console text as a list of lines, without the empty string after the last newline."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def removed_lines(flavour: Flavour, ids: Iterable[str]) -> str:
    """What ``exim -Mrm`` / ``postsuper -d`` print after removing ``ids``."""
    if flavour == "exim":
        return "".join(f"Message {i} has been removed\n" for i in ids)
    ids = list(ids)
    lines = [f"postsuper: {i}: removed\n" for i in ids]
    lines.append(postsuper_total(len(ids)))
    return "".join(lines)


def postsuper_total(count: int) -> str:
    """``postsuper``'s closing line."""
    return f"postsuper: Deleted: {count} message{'s' if count != 1 else ''}\n"


def exim_missing(message_id: str) -> str:
    """``exim -Mrm`` on an id that is not queued (tests/fixtures/exim-Mrm-missing.txt)."""
    return (
        f"Spool data file for {message_id} does not exist\n"
        "Continuing, to ensure all files removed\n"
        f"Spool read error for {message_id}-H: No such file or directory\n"
        "Continuing to ensure all files removed\n"
        f"Message {message_id} has been removed or did not exist\n"
    )


def daemon_status(name: str, daemon: Daemon, state: PanelState, wall_now: float) -> str:
    """``systemctl status`` of the daemon's unit."""
    unit, description, process, pid = next(u[1:] for u in _UNITS if u[0] == name)
    since_wall = state.wall_time(daemon.since, wall_now)
    since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(since_wall))
    ago = _ago(max(0.0, state.now - daemon.since))
    lines = [
        f"● {unit} - {description}",
        f"     Loaded: loaded (/lib/systemd/system/{unit}; enabled; preset: enabled)",
    ]
    if daemon.running:
        lines.append(f"     Active: active (running) since {since}; {ago} ago")
        lines.append(f"   Main PID: {pid} ({process})")
    elif daemon.failed:
        lines.append(f"     Active: failed (Result: signal) since {since}; {ago} ago")
        lines.append(f"    Process: {pid} ExecStart=/usr/sbin/{process} (code=killed, signal=SEGV)")
    else:
        lines.append(f"     Active: inactive (dead) since {since}; {ago} ago")
    return "\n".join(lines) + "\n"


def _ago(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours}h"
    if hours:
        return f"{hours}h {minutes}min"
    if minutes:
        return f"{minutes}min {s}s"
    return f"{s}s"


# --------------------------------------------------------------------- synthetic listings

_EXIM_TEMPLATES = (
    " 5m   350 1xW6VZ-{i}-1S <alice@example.org>\n          bob@example.net\n\n",
    " 2h  3.3K 1xW6Vj-{i}-1w <newsletter@lists.example.com>\n          bob@example.net\n\n",
    " 3d   476 1xW6VZ-{i}-1X <> *** frozen ***\n          frank@example.net\n\n",
    "45m  1.9M 1xW6Z0-{i}-2t <billing@shop.example.org>\n          accounts@example.com\n"
    "        D ledger@example.com\n\n",
    "12h   330 1xW6Vj-{i}-1y <>\n          grace@example.com\n\n",
)
_POSTFIX_TEMPLATES = (
    "{i}     364 Wed Nov 25 06:38:58  alice@example.org\n" + _POSTFIX_REASON + "\n"
    + _POSTFIX_RCPT + "bob@example.net\n\n",
    "{i}*     279 Wed Nov 25 06:43:36  alerts@monitor.example.org\n"
    + _POSTFIX_RCPT + "ops@slow.example.com\n\n",
    "{i}     383 Wed Nov 25 06:38:58  MAILER-DAEMON\n" + _POSTFIX_REASON + "\n"
    + _POSTFIX_RCPT + "frank@example.net\n\n",
    "{i}! 2026279 Wed Nov 25 06:40:22  billing@shop.example.org\n" + _POSTFIX_REASON + "\n"
    + _POSTFIX_RCPT + "accounts@example.com\n\n",
)  # fmt: skip


def synthetic_listing(flavour: Flavour, count: int) -> str:
    """A ``count``-message listing built from a few templates (fault ``listing_messages``)."""
    if flavour == "exim":
        parts = [p.replace("{i}", "%06X") for p in _EXIM_TEMPLATES]
        k = len(parts)
        return "".join([parts[i % k] % i for i in range(count)])
    if count == 0:
        return "Mail queue is empty\n"
    parts = [p.replace("{i}", "%011X") for p in _POSTFIX_TEMPLATES]
    k = len(parts)
    body = "".join([parts[i % k] % (0x10000000000 + i) for i in range(count)])
    sizes = (364, 279, 383, 2026279)
    total = sum(sizes[i % k] for i in range(k)) * (count // k) + sum(
        sizes[i] for i in range(count % k)
    )
    s = "s" if count != 1 else ""
    return f"{_POSTFIX_TITLE}\n{body}-- {total // 1024} Kbytes in {count} Request{s}.\n"
