"""What a reading of a queue listing gives: messages, summaries, and the totals behind them."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from brainycp.queue.identity import recipient_domain, sender_key
from brainycp.queue.reasons import DEFERRAL_REASONS
from brainycp.queue.tokens import age_token_values

AGE_BUCKETS: tuple[float, ...] = (
    300.0,
    900.0,
    3600.0,
    14400.0,
    43200.0,
    86400.0,
    259200.0,
    604800.0,
    math.inf,
)
"""Upper bounds (seconds) of the age histogram: <= 5m, 15m, 1h, 4h, 12h, 1d, 3d, 7d, +Inf."""

Flavour = Literal["exim", "postfix", "unknown"]


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One queued message.

    ``sender`` has no angle brackets; a bounce (null sender) is ``"<>"`` on both flavours, and
    ``""`` means the listing did not show a sender. ``recipients`` are the pending ones only.
    ``age_seconds`` is the best estimate of the age: exact on Postfix, the middle of the
    token's range on Exim (``5m`` is 300-359 s, so 330). ``age_min_seconds`` is the age the
    listing proves (Exim ``5m``: 300), None when the age is exact; see :attr:`proven_age_seconds`.
    """

    id: str
    age_seconds: float
    size_bytes: int
    sender: str
    recipients: tuple[str, ...]
    frozen: bool
    held: bool
    age_min_seconds: float | None = None

    @property
    def proven_age_seconds(self) -> float:
        """The least age the message can have: what a deletion's ``older_than`` compares."""
        return self.age_seconds if self.age_min_seconds is None else self.age_min_seconds


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """Counts over a whole listing; ``age_buckets`` holds one NON-cumulative count per bound."""

    messages: int
    frozen: int
    bounces: int
    held: int
    bytes: int
    oldest_age_seconds: float | None
    age_buckets: tuple[int, ...]
    age_sum_seconds: float
    unparsed_lines: int
    flavour: Flavour
    deferral_reasons: tuple[int, ...] = ()
    """Messages with at least one recipient deferred for each class of
    :data:`DEFERRAL_REASONS`, in that order; empty when the listing shows no reasons (Exim)."""

    def cumulative_buckets(self) -> tuple[int, ...]:
        """Counts of messages with age <= each bound of :data:`AGE_BUCKETS` (Prometheus style)."""
        return tuple(itertools.accumulate(self.age_buckets))


Ranked = tuple[tuple[str, int], ...]
"""``(name, queued messages)``, most first, ties by name."""


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one reading of a listing gives a poll or an action."""

    summary: QueueSummary
    top_senders: Ranked = ()
    """The senders with most queued messages (see :func:`brainycp.queue.identity.sender_key`)."""
    top_recipient_domains: Ranked = ()
    """The recipient domains with most queued messages; a message counts once per domain it
    has a pending recipient in."""
    selected: tuple[QueueMessage, ...] = ()
    """The messages a selection chose, oldest first, at most its limit."""
    selected_total: int = 0
    """How many messages the selection matched in all."""


def ranked(counts: Counter[str] | dict[str, int], limit: int) -> Ranked:
    """The ``limit`` entries with the highest counts, most first, ties by name."""
    if limit <= 0:
        return ()
    entries = list(counts.items())
    if len(entries) > limit:
        # Only entries at or above the limit-th highest count can make it: an outbreak's
        # 30,000 senders are not all sorted by name for the top 10 (15 ms -> 2 ms).
        floor = heapq.nlargest(limit, counts.values())[-1]
        entries = [item for item in entries if item[1] >= floor]
    return tuple(sorted(entries, key=lambda item: (-item[1], item[0]))[:limit])


@dataclass(slots=True)
class Tally:
    """Running totals of one reading: O(distinct tokens, senders, domains), never O(messages)
    unless ``records`` is asked for.

    Exim ages arrive as tokens (``5m``), tallied as such and converted once in :meth:`summary`;
    Postfix arrivals (whole epoch seconds) are tallied as exact integers against bounds in
    arrival terms (``arrival >= now - bound``); objects give ages in seconds.
    """

    now: float = 0.0
    senders: Counter[str] | None = None
    """Messages per sender key; None when not asked for."""
    domains: Counter[str] | None = None
    """Messages per recipient domain; None when not asked for."""
    records: list[QueueMessage] | None = None
    """The messages ``keep`` accepts, in listing order; None when not asked for."""
    keep: Callable[[QueueMessage], bool] | None = None
    messages: int = 0
    frozen: int = 0
    bounces: int = 0
    held: int = 0
    bytes: int = 0
    unparsed: int = 0
    flavour: Flavour = "unknown"
    buckets: list[int] = field(default_factory=lambda: [0] * len(AGE_BUCKETS))
    age_sum: float = 0.0
    oldest: float | None = None
    age_tokens: Counter[str] = field(default_factory=Counter)
    arrival_bounds: list[float] = field(default_factory=list)
    arrival_count: int = 0
    """Postfix arrivals not after now, and their sum (exact integers)."""
    arrival_sum: int = 0
    arrival_min: int | None = None
    reasons: list[int] = field(default_factory=lambda: [0] * len(DEFERRAL_REASONS))

    def __post_init__(self) -> None:
        self.arrival_bounds = [self.now - bound for bound in reversed(AGE_BUCKETS[:-1])]

    def add_age(self, age: float, count: int = 1) -> None:
        """``count`` messages of ``age`` seconds."""
        self.buckets[bisect.bisect_left(AGE_BUCKETS, age)] += count
        self.age_sum += age * count
        if self.oldest is None or age > self.oldest:
            self.oldest = age

    def add_arrival(self, arrival: int) -> None:
        """One Postfix arrival (epoch seconds)."""
        self.buckets[-1 - bisect.bisect_right(self.arrival_bounds, arrival)] += 1
        if arrival <= self.now:
            self.arrival_count += 1
            self.arrival_sum += arrival
        if self.arrival_min is None or arrival < self.arrival_min:
            self.arrival_min = arrival

    def add_people(self, sender: str, recipients: Iterable[str]) -> None:
        """Count a message's sender (unless ``""``: not shown) and its recipients' domains
        (once per domain), where asked for."""
        if self.senders is not None and sender:
            self.senders[sender_key(sender)] += 1
        if self.domains is not None:
            self.domains.update({d for r in recipients if (d := recipient_domain(r)) is not None})

    def add_record(self, message: QueueMessage) -> None:
        """Keep ``message`` when records are asked for and ``keep`` accepts it."""
        if self.records is not None and (self.keep is None or self.keep(message)):
            self.records.append(message)

    def add_reasons(self, mask: int) -> None:
        """One message showing the reason classes of ``mask`` (a bit per class)."""
        for index in range(len(self.reasons)):
            self.reasons[index] += mask >> index & 1

    def summary(self) -> QueueSummary:
        """The :class:`QueueSummary` of everything tallied."""
        buckets = list(self.buckets)
        age_sum, oldest = self.age_sum, self.oldest
        # In token order: the sum does not depend on which reader found which token first.
        for token, count in sorted(self.age_tokens.items()):
            values = age_token_values(token)
            age = values[0] if values is not None else 0.0
            buckets[bisect.bisect_left(AGE_BUCKETS, age)] += count
            age_sum += age * count
            if oldest is None or age > oldest:
                oldest = age
        if self.arrival_min is not None:
            age_sum += self.arrival_count * self.now - self.arrival_sum
            arrival_oldest = max(0.0, self.now - self.arrival_min)
            if oldest is None or arrival_oldest > oldest:
                oldest = arrival_oldest
        return QueueSummary(
            messages=self.messages,
            frozen=self.frozen,
            bounces=self.bounces,
            held=self.held,
            bytes=self.bytes,
            oldest_age_seconds=oldest if self.messages else None,
            age_buckets=tuple(buckets),
            age_sum_seconds=age_sum,
            unparsed_lines=self.unparsed,
            flavour=self.flavour,
            deferral_reasons=tuple(self.reasons) if self.flavour == "postfix" else (),
        )
