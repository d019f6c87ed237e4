"""Mail-queue listings: Exim ``exim -bp`` and Postfix ``mailq`` / ``postqueue -p|-j``, read once."""

from __future__ import annotations

from brainycp.queue.compiled import c_readers
from brainycp.queue.model import (
    AGE_BUCKETS,
    Flavour,
    QueueMessage,
    QueueSummary,
    Reading,
)
from brainycp.queue.reader import ReadOptions, iter_messages, read_listing, summarize
from brainycp.queue.reasons import DEFERRAL_REASONS, deferral_reason
from brainycp.queue.select import MessageFilter
from brainycp.queue.tokens import MAX_MESSAGE_BYTES

__all__ = [
    "AGE_BUCKETS",
    "DEFERRAL_REASONS",
    "MAX_MESSAGE_BYTES",
    "Flavour",
    "MessageFilter",
    "QueueMessage",
    "QueueSummary",
    "ReadOptions",
    "Reading",
    "c_readers",
    "deferral_reason",
    "iter_messages",
    "read_listing",
    "summarize",
]
