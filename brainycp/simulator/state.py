"""The simulated panel's state: a mail queue and two daemons on a simulated clock.

Pure model, no I/O: the clock is injected, so tests drive it by hand. Evolution is
lazy: every read or action first calls :meth:`PanelState.advance`, which applies the
scenario's events for the simulated time elapsed since the last call, with bounded work.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

Flavour = Literal["exim", "postfix"]
DaemonName = Literal["clamav", "spamassassin"]
FLAVOURS: tuple[Flavour, ...] = ("exim", "postfix")
DAEMONS: tuple[DaemonName, ...] = ("clamav", "spamassassin")
SCENARIOS = ("quiet", "spam-outbreak", "frozen-pileup", "clamav-crash")

#: Most messages one panel keeps, so a long demo does not eat the machine's memory.
QUEUE_CAP = 200_000
#: Most messages one :meth:`PanelState.step` creates, so one request's work is bounded.
MAX_NEW_PER_STEP = 20_000

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_SENDERS = (
    "alice@example.org",
    "billing@shop.example.org",
    "newsletter@lists.example.com",
    "root@web.example.net",
    "backup@storage.example.org",
    "noreply@app.example.com",
    "support@helpdesk.example.net",
    "very.long.sender.name+tag@subdomain.department.example.org",
)
_SPAM_SENDERS = (
    "promo@cheap-meds.example",
    "winner@lottery.example",
    "info@offers.example",
    "admin@compromised-site.example.com",
)
_RECIPIENTS = (
    "bob@example.net",
    "carol@example.net",
    "dave@example.com",
    "erin@example.com",
    "accounts@example.com",
    "archive@example.com",
    "subscribers@example.net",
    "helpdesk@example.net",
    "frank@slow.example.com",
    "spammer@bogus.example",
    "victim@example.com",
    "no-such-user@gone.example.org",
)


def b62(number: int, width: int) -> str:
    """``number`` in Exim's base 62, zero-padded to ``width`` digits (low digits kept)."""
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_B62[digit])
    return "".join(reversed(out))


@dataclass(frozen=True)
class Scenario:
    """Rates and schedules of one scenario, in SIMULATED seconds (x60 = real at the default)."""

    name: str
    initial_messages: int
    arrival_rate: float  # new messages per simulated second
    mean_life: float  # simulated seconds a deliverable message stays queued
    stuck_share: float  # share of new messages that never get delivered by themselves
    bounce_share: float  # share of new messages with the null sender
    freeze_share: float  # share of new bounces that arrive frozen (Exim only)
    initial_frozen_share: float
    spam: bool = False
    # frozen-pileup: a frozen bounce appears at first_freeze, then every freeze_every;
    # after a delete of frozen messages the next one waits freeze_after_delete.
    first_freeze: float | None = None
    freeze_every: float = 900.0
    freeze_after_delete: float = 4200.0
    # clamav-crash: clamav fails crash_at after start, then crash_again after each "on".
    crash_at: float | None = None
    crash_again: float = 12_000.0


# Quiet traffic; frozen-pileup and clamav-crash are this plus their one event.
_QUIET = Scenario(
    "quiet",
    initial_messages=20,
    arrival_rate=1 / 120,
    mean_life=1800.0,
    stuck_share=0.1,
    bounce_share=0.1,
    freeze_share=0.0,
    initial_frozen_share=0.0,
)

SCENARIO_TABLE: dict[str, Scenario] = {
    "quiet": _QUIET,
    "spam-outbreak": Scenario(
        "spam-outbreak",
        initial_messages=200,
        arrival_rate=1.0,
        mean_life=3600.0,
        stuck_share=0.6,
        bounce_share=0.4,
        freeze_share=0.2,
        initial_frozen_share=0.05,
        spam=True,
    ),
    "frozen-pileup": replace(_QUIET, name="frozen-pileup", first_freeze=480.0),
    "clamav-crash": replace(_QUIET, name="clamav-crash", crash_at=1200.0),
}


@dataclass(slots=True)
class Message:
    """One queued message. ``arrival`` is on the simulated clock."""

    id: str
    arrival: float
    size: int
    sender: str  # "" for a bounce (rendered <> or MAILER-DAEMON)
    recipients: tuple[str, ...]
    delivered: int = -1  # index of a recipient already delivered (Exim shows "D"), -1 none
    frozen: bool = False
    held: bool = False
    stuck: bool = False
    active: bool = False  # Postfix "*": in the active queue


@dataclass(slots=True)
class Daemon:
    """A service the panel can start and stop; ``since`` is on the simulated clock."""

    running: bool = True
    since: float = 0.0
    failed: bool = False


@dataclass
class QueueCounts:
    """Incrementally kept totals, so ``/_sim/state`` is O(1)."""

    messages: int = 0
    frozen: int = 0
    bounces: int = 0
    held: int = 0
    bytes: int = 0


def _zero_clock() -> float:
    return 0.0


@dataclass
class PanelState:
    """A panel's queue and daemons, evolving on a simulated clock.

    ``clock`` returns real seconds (monotonic); simulated time advances ``time_scale``
    times as fast while not paused. ``sim_epoch`` is the wall-clock time simulated
    time 0 corresponds to (used for Exim ids).
    """

    flavour: Flavour = "exim"
    scenario: Scenario = field(default_factory=lambda: SCENARIO_TABLE["quiet"])
    seed: int = 0
    time_scale: float = 60.0
    clock: Callable[[], float] = _zero_clock
    sim_epoch: float = 1_764_000_000.0
    initial_messages: int | None = None
    cap: int = QUEUE_CAP
    paused: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.messages: dict[str, Message] = {}
        # Deliverable messages in arrival order; entries whose message left or froze
        # are skipped lazily when popped.
        self._delivery: deque[str] = deque()
        self.counts = QueueCounts()
        self._counter = self.rng.randrange(1, 62**3)
        self._last_real = self.clock()
        self.now = 0.0  # simulated seconds since start
        self._carry = 0.0  # fractional arrivals carried between steps
        self.daemons: dict[str, Daemon] = {name: Daemon(True, -86_400.0) for name in DAEMONS}
        sc = self.scenario
        self.next_freeze: float | None = sc.first_freeze if self.flavour == "exim" else None
        self.next_crash: float | None = sc.crash_at
        count = sc.initial_messages if self.initial_messages is None else self.initial_messages
        for _ in range(min(count, self.cap)):
            age = self.rng.expovariate(1 / 7200)
            if self.rng.random() < 0.1:
                age += self.rng.uniform(86_400, 10 * 86_400)
            self._create(
                arrival=-age,
                frozen=self.flavour == "exim" and self.rng.random() < sc.initial_frozen_share,
                stuck=self.rng.random() < max(sc.stuck_share, 0.3),
            )

    # ------------------------------------------------------------------ clock

    def advance(self) -> None:
        """Apply the scenario for the real time elapsed since the last call."""
        real = self.clock()
        elapsed = max(0.0, real - self._last_real)
        self._last_real = real
        if self.paused or elapsed == 0.0:
            return
        self.step(elapsed * self.time_scale)

    def set_paused(self, paused: bool) -> None:
        """Stop or resume evolution (aging included) from now on."""
        self.advance()
        self.paused = paused

    def wall_time(self, sim_time: float, wall_now: float) -> float:
        """Wall-clock time of ``sim_time``, given that now is ``wall_now`` on the wall clock."""
        return wall_now - (self.now - sim_time)

    # ------------------------------------------------------------------ evolution

    def step(self, dt: float) -> None:
        """Move simulated time forward by ``dt`` seconds, applying scenario events."""
        if dt <= 0:
            return
        start = self.now
        end = start + dt
        sc = self.scenario
        # Deliveries: each deliverable message leaves with probability 1 - exp(-dt/life).
        if self._delivery:
            share = 1.0 - math.exp(-dt / sc.mean_life)
            leaving = self._binomial(len(self._delivery), share)
            self._deliver_oldest(leaving)
        # Arrivals, spread evenly over the interval.
        expected = sc.arrival_rate * dt + self._carry
        arriving = int(expected)
        self._carry = min(expected - arriving, 1.0)
        arriving = min(arriving, MAX_NEW_PER_STEP, max(0, self.cap - self.counts.messages))
        for i in range(arriving):
            bounce = self.rng.random() < sc.bounce_share
            frozen = bounce and self.flavour == "exim" and self.rng.random() < sc.freeze_share
            self._create(
                arrival=start + dt * (i + 1) / (arriving + 1),
                bounce=bounce,
                frozen=frozen,
                stuck=self.rng.random() < sc.stuck_share,
                held=self.flavour == "postfix" and sc.spam and self.rng.random() < 0.02,
            )
        # Scheduled freezes (frozen-pileup), bounded per step.
        done = 0
        while self.next_freeze is not None and self.next_freeze <= end and done < 1000:
            if self.counts.messages < self.cap:
                self._create(arrival=self.next_freeze, bounce=True, frozen=True, stuck=True)
            self.next_freeze += sc.freeze_every
            done += 1
        if self.next_freeze is not None and self.next_freeze <= end:
            self.next_freeze = end + sc.freeze_every
        # Scheduled crash (clamav-crash).
        if self.next_crash is not None and self.next_crash <= end:
            daemon = self.daemons["clamav"]
            if daemon.running:
                daemon.running, daemon.failed, daemon.since = False, True, self.next_crash
            self.next_crash = None
        self.now = end

    def _binomial(self, n: int, p: float) -> int:
        if p >= 1.0:
            return n
        if n < 50:
            return sum(1 for _ in range(n) if self.rng.random() < p)
        mean = n * p
        sd = math.sqrt(n * p * (1 - p))
        return max(0, min(n, round(self.rng.gauss(mean, sd))))

    def _deliver_oldest(self, count: int) -> None:
        while count > 0 and self._delivery:
            message = self.messages.get(self._delivery.popleft())
            if message is None or message.frozen or message.held or message.stuck:
                continue
            self._remove(message)
            count -= 1

    # ------------------------------------------------------------------ messages

    def new_id(self, arrival: float | None = None) -> str:
        """A fresh message id in the flavour's shape, unique within this panel.

        Exim's first six characters are the arrival time in base 62, so an old
        message carries an old id, as on a real spool.
        """
        self._counter += 1
        if self.flavour == "exim":
            wall = int(self.sim_epoch + (self.now if arrival is None else arrival))
            return f"{b62(wall, 6)}-{b62(self._counter, 6)}-{b62(self.rng.randrange(3844), 2)}"
        # Postfix short ids: 11 hex digits. Multiplying by an odd constant modulo 16**11
        # is a bijection, so ids stay unique while looking random.
        return f"{(self._counter * 0x9E3779B97F5 + self.seed) % 16**11:011X}"

    def _create(
        self,
        *,
        arrival: float,
        bounce: bool | None = None,
        frozen: bool = False,
        stuck: bool = False,
        held: bool = False,
        sender: str | None = None,
        recipient: str | None = None,
        size: int | None = None,
    ) -> Message:
        rng = self.rng
        if bounce is None:
            bounce = rng.random() < self.scenario.bounce_share
        if sender is None:
            if bounce:
                sender = ""
            else:
                pool = _SPAM_SENDERS if self.scenario.spam and rng.random() < 0.7 else _SENDERS
                sender = rng.choice(pool)
        if recipient is not None:
            recipients: tuple[str, ...] = (recipient,)
        else:
            recipients = tuple(rng.sample(_RECIPIENTS, 1 if rng.random() < 0.8 else 3))
        if size is None:
            size = int(min(30_000_000, rng.lognormvariate(6.5, 1.6))) + 200
        delivered = 1 if len(recipients) > 1 and rng.random() < 0.3 else -1
        message = Message(
            id=self.new_id(arrival),
            arrival=arrival,
            size=size,
            sender=sender,
            recipients=recipients,
            delivered=delivered if self.flavour == "exim" else -1,
            frozen=frozen and self.flavour == "exim",
            held=held and self.flavour == "postfix",
            stuck=stuck,
            active=self.flavour == "postfix" and not held and rng.random() < 0.05,
        )
        self.messages[message.id] = message
        counts = self.counts
        counts.messages += 1
        counts.bytes += message.size
        counts.frozen += message.frozen
        counts.held += message.held
        counts.bounces += message.sender == ""
        if not (message.frozen or message.held or message.stuck):
            self._delivery.append(message.id)
        return message

    def _remove(self, message: Message) -> None:
        del self.messages[message.id]
        counts = self.counts
        counts.messages -= 1
        counts.bytes -= message.size
        counts.frozen -= message.frozen
        counts.held -= message.held
        counts.bounces -= message.sender == ""

    def add_messages(
        self,
        count: int,
        *,
        frozen: bool = False,
        bounce: bool = False,
        age: float = 0.0,
        sender: str | None = None,
        recipient: str | None = None,
        size: int | None = None,
        held: bool = False,
    ) -> int:
        """Add up to ``count`` messages (control API); returns how many fit under the cap.

        They never leave by themselves, so a test sees exactly what it added.
        """
        self.advance()
        null_sender = bounce or sender in ("", "<>", "MAILER-DAEMON")
        room = max(0, min(count, self.cap - self.counts.messages))
        for _ in range(room):
            self._create(
                arrival=self.now - max(0.0, age),
                bounce=null_sender,
                frozen=frozen,
                held=held,
                stuck=True,
                sender="" if null_sender else sender,
                recipient=recipient,
                size=size,
            )
        return room

    def iter_messages(self) -> Iterator[Message]:
        """Messages as the mail server lists them.

        ``exim -bp`` sorts by message id, i.e. oldest first; Postfix walks its
        hashed queue directories, so insertion order stands in for that.
        """
        if self.flavour == "exim":
            return iter(sorted(self.messages.values(), key=lambda m: (m.arrival, m.id)))
        return iter(self.messages.values())

    # ------------------------------------------------------------------ actions

    def delete_frozen(self) -> list[str]:
        """Remove every frozen message; returns their ids."""
        self.advance()
        frozen = [m for m in self.messages.values() if m.frozen]
        for message in frozen:
            self._remove(message)
        self._quiet_after_delete()
        return [m.id for m in frozen]

    def delete_all(self) -> list[str]:
        """Empty the queue; returns the removed ids."""
        self.advance()
        ids = list(self.messages)
        self.messages.clear()
        self._delivery.clear()
        self.counts = QueueCounts()
        self._quiet_after_delete()
        return ids

    def _quiet_after_delete(self) -> None:
        # frozen-pileup: give an alert on "frozen > 0" time to resolve before the next one.
        if self.scenario.first_freeze is not None and self.flavour == "exim":
            self.next_freeze = self.now + self.scenario.freeze_after_delete

    def delete(self, message_id: str) -> bool:
        """Remove one message; False when no such message is queued."""
        self.advance()
        message = self.messages.get(message_id)
        if message is None:
            return False
        self._remove(message)
        return True

    def reship(self, message_id: str) -> bool:
        """Deliver one message now (it leaves the queue); False when it is not queued."""
        return self.delete(message_id)

    def set_daemon(self, name: str, running: bool) -> Daemon:
        """Start or stop a daemon; starting clamav in clamav-crash re-arms the next crash."""
        self.advance()
        daemon = self.daemons[name]
        if daemon.running != running or daemon.failed:
            daemon.since = self.now
        daemon.running, daemon.failed = running, False
        if name == "clamav" and self.scenario.crash_at is not None:
            self.next_crash = self.now + self.scenario.crash_again if running else None
        return daemon

    def summary(self) -> dict[str, int]:
        """Queue totals as ``/_sim/state`` reports them."""
        c = self.counts
        return {"messages": c.messages, "frozen": c.frozen, "bounces": c.bounces, "held": c.held}


def panel_seed(seed: int, name: str) -> int:
    """A per-panel seed derived from the global seed and the panel's name."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) & 0xFFFFFFFF
