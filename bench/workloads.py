"""Outbreak listings for the benches: what a compromised account does to a queue.

``exim_outbreak`` and ``postfix_outbreak`` build the text a panel's ``list_msg`` returns
during a spam run: one dominant sender (27 % of the queue), tens of thousands of other
senders, a few thousand recipient domains, multi-recipient messages with some recipients
already delivered, UTF-8 and quoted addresses, bounces (many of them frozen on Exim) and,
on Postfix, the deferral reasons real servers give. Deterministic for a seed.

    .venv/bin/python bench/workloads.py exim 300000 > /tmp/exim.txt
"""

from __future__ import annotations

import random
import string
import sys
import time

from brainycp.simulator.render import exim_age, exim_size

ALNUM = string.digits + string.ascii_letters
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
UTF8_LOCAL = ["пользователь", "jürgen.müller", "李雷", "ελένη", "søren", "josé.garcía"]
UTF8_DOMAIN = ["пример.рф", "bücher.example", "例子.中国", "παράδειγμα.δοκιμή"]
# Deferral reasons real Postfix servers give ({d}: the domain, {n}: a host number).
DEFERRAL_TEXTS = [
    "connect to mx.{d}[192.0.2.{n}]:25: Connection refused",
    "connect to mx.{d}[192.0.2.{n}]:25: Connection timed out",
    "host mx.{d}[192.0.2.{n}] said: 450 4.7.1 <a@{d}>: Recipient address rejected: "
    "Greylisted, see http://postgrey.schweikert.ch/help/{d}.html (in reply to RCPT TO command)",
    "host mx.{d}[192.0.2.{n}] said: 554 5.7.1 Service unavailable; Client host "
    "[198.51.100.{n}] blocked using zen.spamhaus.org (in reply to RCPT TO command)",
    "host mx.{d}[192.0.2.{n}] said: 552 5.2.2 mailbox full (in reply to RCPT TO command)",
]
_REASONS = [
    *DEFERRAL_TEXTS,
    "host mx.{d}[192.0.2.{n}] said: 550 5.1.1 <b@{d}>: user unknown (in reply to RCPT TO)",
]
DOMINANT_SENDER = "newsletter@compromised-shop.example"
DOMINANT_SHARE = 0.27


def _domain(rng: random.Random, domains: int) -> str:
    if rng.random() < 0.03:
        return rng.choice(UTF8_DOMAIN)
    # A few big providers take most of the mail, as in real outbreaks.
    index = min(domains - 1, int(domains * rng.random() ** 3))
    return f"mail{index}.example.{'com' if index % 3 else 'NET'}"


def _address(rng: random.Random, index: int, domains: int) -> str:
    roll = rng.random()
    domain = _domain(rng, domains)
    if roll < 0.05:
        return f"{rng.choice(UTF8_LOCAL)}{index}@{domain}"
    if roll < 0.08:
        return f'"john doe {index}"@{domain}'
    return f"user{index}@{domain}"


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.25:
        return rng.randint(300, 1023)
    if roll < 0.85:
        return int(1024 * 2 ** rng.uniform(0, 6.5))
    return int(1024 * 2 ** rng.uniform(6.5, 11))


def _recipient_count(rng: random.Random) -> int:
    roll = rng.random()
    return 1 if roll < 0.7 else rng.randint(2, 3) if roll < 0.97 else rng.randint(4, 12)


class _People:
    """The senders and recipients of one listing."""

    def __init__(self, rng: random.Random, senders: int, domains: int) -> None:
        self.rng = rng
        self.senders = [_address(rng, i, domains) for i in range(senders)]
        self.recipients = [_address(rng, 10**6 + i, domains) for i in range(60_000)]

    def sender(self) -> str:
        roll = self.rng.random()
        if roll < DOMINANT_SHARE:
            return DOMINANT_SENDER
        if roll < DOMINANT_SHARE + 0.08:
            return ""  # a bounce
        return self.rng.choice(self.senders)

    def recipients_of(self, sender: str) -> list[str]:
        if sender == DOMINANT_SENDER:
            # The spam run: many recipients in the big providers' domains.
            return [self.rng.choice(self.recipients) for _ in range(self.rng.randint(1, 3))]
        return [self.rng.choice(self.recipients) for _ in range(_recipient_count(self.rng))]


def exim_id(rng: random.Random, index: int) -> str:
    """An Exim message id (``1a2B3c-012345-Xy``), the ``index``-th of a listing."""
    return (
        "".join(rng.choices(ALNUM, k=6))
        + f"-{index % 1_000_000:06d}-"
        + "".join(rng.choices(ALNUM, k=2))
    )


def exim_outbreak(messages: int, seed: int = 1) -> str:
    """An ``exim -bp`` listing of ``messages`` messages during an outbreak."""
    rng = random.Random(seed)
    people = _People(rng, 30_000, 3_000)
    out: list[str] = []
    append = out.append
    for i in range(messages):
        age = int(7 * 86400 * rng.random() ** 2)
        msg_id = exim_id(rng, i)
        sender = people.sender()
        frozen = " *** frozen ***" if (sender == "" and rng.random() < 0.6) else ""
        if not frozen and rng.random() < 0.01:
            frozen = " *** frozen ***"
        append(f"{exim_age(age)} {exim_size(_size(rng))} {msg_id} <{sender}>{frozen}\n")
        for recipient in people.recipients_of(sender):
            mark = "        D " if rng.random() < 0.1 else "          "
            append(f"{mark}{recipient}\n")
        append("\n")
    return "".join(out)


def postfix_stamp(epoch: float) -> str:
    """Postfix's arrival column (UTC) for an epoch time."""
    t = time.gmtime(epoch)
    return (
        f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def random_reason(rng: random.Random, texts: list[str]) -> str:
    """One of ``texts`` for a random destination host."""
    n = rng.randint(1, 254)
    return rng.choice(texts).format(d=f"dest{n}.example.net", n=n)


def reason_line(reason: str) -> str:
    """A deferral reason as postqueue -p writes it: in parentheses, right-aligned."""
    return " " * max(0, 76 - len(reason)) + f"({reason})\n"


def postfix_outbreak(messages: int, now: float, seed: int = 2) -> str:
    """A ``postqueue -p`` listing of ``messages`` messages during an outbreak (UTC times)."""
    rng = random.Random(seed)
    people = _People(rng, 30_000, 3_000)
    out = ["-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"]
    total = 0
    for _ in range(messages):
        stamp = postfix_stamp(now - int(7 * 86400 * rng.random() ** 2))
        queue_id = "".join(rng.choices("0123456789ABCDEF", k=11))
        flag = rng.choice(("", "", "", "", "*", "!"))
        size = _size(rng)
        total += size
        sender = people.sender()
        recipients = people.recipients_of(sender)
        out.append(f"{queue_id}{flag or ' '} {size:>7} {stamp}  {sender or 'MAILER-DAEMON'}\n")
        for index, recipient in enumerate(recipients):
            if flag != "*" and (index == 0 or rng.random() < 0.1):
                out.append(reason_line(random_reason(rng, _REASONS)))
            out.append(" " * 41 + f"{recipient}\n")
        out.append("\n")
    out.append(f"-- {total // 1024} Kbytes in {messages} Requests.\n")
    return "".join(out)


if __name__ == "__main__":
    kind, count = sys.argv[1], int(sys.argv[2])
    if kind == "exim":
        sys.stdout.write(exim_outbreak(count))
    else:
        sys.stdout.write(postfix_outbreak(count, time.time()))
