"""Which queued messages an action touches: a filter over messages, applied while reading."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from brainycp.queue.identity import domain_matches, recipient_domain, sender_domain, sender_matches
from brainycp.queue.model import QueueMessage


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Every criterion that is not None must hold (plain data: it crosses to the reader's
    worker process). Senders and domains compare as :mod:`brainycp.queue.identity` says."""

    sender: str | None = None
    sender_domain: str | None = None
    recipient_domain: str | None = None
    """At least one pending recipient in this domain."""
    bounce: bool | None = None
    frozen: bool | None = None
    older_than: float | None = None
    """Seconds; compared with the age the listing proves (an Exim ``5m`` counts as 300 s)."""
    larger_than: int | None = None
    ids: frozenset[str] | None = None
    """Only these message ids."""

    def matches(self, message: QueueMessage) -> bool:
        """True when ``message`` meets every criterion."""
        if self.ids is not None and message.id not in self.ids:
            return False
        if self.sender is not None and not sender_matches(message.sender, self.sender):
            return False
        if self.sender_domain is not None and not domain_matches(
            sender_domain(message.sender), self.sender_domain
        ):
            return False
        if self.recipient_domain is not None:
            wanted = self.recipient_domain
            if not any(domain_matches(recipient_domain(r), wanted) for r in message.recipients):
                return False
        if self.bounce is not None and (message.sender == "<>") != self.bounce:
            return False
        if self.frozen is not None and message.frozen != self.frozen:
            return False
        # The age the listing proves: an Exim "5m" is 300-359 s old, and counts as 300 here,
        # so a deletion never takes a message that may be younger than older_than.
        if self.older_than is not None and not message.proven_age_seconds > self.older_than:
            return False
        return self.larger_than is None or message.size_bytes > self.larger_than


def oldest_first(
    messages: Iterable[QueueMessage], limit: int | None
) -> tuple[tuple[QueueMessage, ...], int]:
    """At most ``limit`` of ``messages``, oldest first (in listing order among equals), and
    how many there were."""
    ordered = sorted(messages, key=lambda m: -m.age_seconds)
    return tuple(ordered if limit is None else ordered[:limit]), len(ordered)
