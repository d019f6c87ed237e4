"""Benchmark brainycp.queue.summarize on synthetic Exim listings against a naive parser.

For each size it builds an ``exim -bp`` listing (ages 0m..30d, sizes like ``812``/``2.1K``/
``1.3M``, ~5% frozen, ~10% bounces, 1-3 recipients with some delivered ``D`` lines), then prints
the median of three timed runs of ``summarize`` and of a naive baseline (split lines, one regex
per line, one dict per message), and the extra peak memory of each measured with tracemalloc in
a separate run (the listing text itself excluded). A 100k-message Postfix listing is measured
for information.

    .venv/bin/python bench/bench_queue_parse.py            # 10k, 100k, 1M
    .venv/bin/python bench/bench_queue_parse.py --quick    # 10k, 100k
    .venv/bin/python bench/bench_queue_parse.py --sizes 50000,200000
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import string
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from brainycp.queue import summarize
from brainycp.simulator.render import exim_age, exim_size

GOAL_RATE = 2_000_000.0
GOAL_RATIO = 5.0
GOAL_MEMORY_SHARE = 0.10
_ALNUM = string.digits + string.ascii_letters
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.25:
        return rng.randint(300, 1023)  # bounces, notifications
    if roll < 0.80:
        return int(1024 * 2 ** rng.uniform(0, 6.5))  # 1K..90K: ordinary mail
    if roll < 0.97:
        return int(1024 * 2 ** rng.uniform(6.5, 10))  # ..1M: attachments
    return rng.randint(1024 * 1024, 20 * 1024 * 1024)


def exim_listing(messages: int, seed: int = 1) -> str:
    """An ``exim -bp`` listing of ``messages`` messages with a realistic mix."""
    rng = random.Random(seed)
    senders = [f"user{i}@customer{i % 97}.example.com" for i in range(500)]
    senders += ["newsletter@lists.example.com", "billing@shop.example.org", "root@vm"]
    recipients = [f"rcpt{i}@dest{i % 211}.example.net" for i in range(2000)]
    out: list[str] = []
    append = out.append
    for i in range(messages):
        age = int(30 * 86400 * rng.random() ** 3)
        msg_id = "".join(rng.choices(_ALNUM, k=6)) + f"-{i % 1_000_000:06d}-"
        msg_id += "".join(rng.choices(_ALNUM, k=2))
        sender = "" if rng.random() < 0.10 else rng.choice(senders)
        frozen = " *** frozen ***" if rng.random() < 0.05 else ""
        append(f"{exim_age(age)} {exim_size(_size(rng))} {msg_id} <{sender}>{frozen}\n")
        for _ in range(rng.randint(1, 3)):
            mark = "D" if rng.random() < 0.1 else " "
            append(f"        {mark} {rng.choice(recipients)}\n")
        append("\n")
    return "".join(out)


def postfix_listing(messages: int, now: float, seed: int = 2) -> str:
    """A ``postqueue -p`` listing of ``messages`` messages."""
    rng = random.Random(seed)
    out = ["-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"]
    total = 0
    for _ in range(messages):
        arrival = time.gmtime(now - int(30 * 86400 * rng.random() ** 3))
        stamp = (
            f"{_DAYS[arrival.tm_wday]} {_MONTHS[arrival.tm_mon - 1]} {arrival.tm_mday:2d} "
            f"{arrival.tm_hour:02d}:{arrival.tm_min:02d}:{arrival.tm_sec:02d}"
        )
        queue_id = "".join(rng.choices("0123456789ABCDEF", k=11))
        flag = rng.choice(("", "", "", "*", "!"))
        size = _size(rng)
        total += size
        sender = "MAILER-DAEMON" if rng.random() < 0.1 else f"user{rng.randint(1, 500)}@ex.com"
        out.append(f"{queue_id}{flag or ' '} {size:>7} {stamp}  {sender}\n")
        out.append(" " * 58 + "(deferred transport)\n")
        out.append(" " * 41 + f"rcpt{rng.randint(1, 2000)}@dest.example.net\n\n")
    out.append(f"-- {total // 1024} Kbytes in {messages} Requests.\n")
    return "".join(out)


_NAIVE_HEADER = re.compile(
    r"^\s*(\d+)([smhd])\s+(\S+)\s+(\S+)\s+<(.*?)>(\s+\*\*\* frozen \*\*\*)?$"
)
_NAIVE_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAIVE_SIZE = {"K": 1024, "M": 1024**2, "G": 1024**3}


def naive_summarize(text: str) -> dict[str, Any]:
    """The baseline: split lines, one regex per line, one dict per message."""
    messages: list[dict[str, Any]] = []
    for line in text.split("\n"):
        m = _NAIVE_HEADER.match(line)
        if m:
            size = m.group(3)
            unit = _NAIVE_SIZE.get(size[-1])
            messages.append(
                {
                    "age": int(m.group(1)) * _NAIVE_UNIT[m.group(2)],
                    "size": round(float(size[:-1]) * unit) if unit else int(size),
                    "id": m.group(4),
                    "sender": m.group(5),
                    "frozen": m.group(6) is not None,
                    "recipients": [],
                }
            )
        elif line.strip() and messages and not line.lstrip().startswith("D "):
            messages[-1]["recipients"].append(line.strip())
    return {
        "messages": len(messages),
        "frozen": sum(m["frozen"] for m in messages),
        "bounces": sum(m["sender"] == "" for m in messages),
        "bytes": sum(m["size"] for m in messages),
        "oldest": max((m["age"] for m in messages), default=None),
    }


def timed(func: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    """Median wall time of ``runs`` calls, and the last result."""
    times = []
    result = None
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_extra_bytes(func: Callable[[], Any]) -> int:
    """Peak memory allocated by one call, beyond what existed before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return max(0, peak - base)


def mib(value: float) -> str:
    return f"{value / 2**20:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10k and 100k messages only")
    parser.add_argument("--sizes", help="comma-separated message counts (e.g. 10000,100000)")
    parser.add_argument("--no-baseline-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    else:
        sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]

    print(f"Python {sys.version.split()[0]}; median of 3 runs; memory = tracemalloc peak")
    header = (
        f"{'messages':>9} {'text MiB':>8} | {'summarize s':>11} {'msg/s':>10} {'extra MiB':>9} "
        f"{'% text':>6} | {'naive s':>8} {'msg/s':>9} {'extra MiB':>9} | {'speedup':>7}"
    )
    print(header)
    print("-" * len(header))
    verdicts: list[tuple[int, bool, bool, bool]] = []
    for count in sizes:
        text = exim_listing(count)
        text_bytes = len(text)  # ASCII: one byte per character
        fast_time, summary = timed(lambda text=text: summarize(text))
        naive_time, naive = timed(lambda text=text: naive_summarize(text))
        if (summary.messages, summary.frozen, summary.bounces, summary.bytes) != (
            naive["messages"],
            naive["frozen"],
            naive["bounces"],
            naive["bytes"],
        ):
            print(f"MISMATCH at {count}: {summary} vs {naive}")
            return 1
        fast_mem = peak_extra_bytes(lambda text=text: summarize(text))
        naive_mem = peak_extra_bytes(lambda text=text: naive_summarize(text))
        rate = count / fast_time
        ratio = naive_time / fast_time
        share = fast_mem / text_bytes
        print(
            f"{count:>9} {mib(text_bytes):>8} | {fast_time:>11.3f} {rate:>10,.0f} "
            f"{mib(fast_mem):>9} {share * 100:>5.1f}% | {naive_time:>8.3f} "
            f"{count / naive_time:>9,.0f} {mib(naive_mem):>9} | {ratio:>6.1f}x"
        )
        verdicts.append((count, rate >= GOAL_RATE, ratio >= GOAL_RATIO, share <= GOAL_MEMORY_SHARE))
        del text

    now = time.time()
    pf_count = 100_000
    pf_text = postfix_listing(pf_count, now)
    pf_time, pf_summary = timed(lambda: summarize(pf_text, now=now))
    pf_mem = peak_extra_bytes(lambda: summarize(pf_text, now=now))
    print(
        f"\nPostfix postqueue -p, {pf_count} messages ({mib(len(pf_text))} MiB, information only): "
        f"{pf_time:.3f} s, {pf_count / pf_time:,.0f} msg/s, extra {mib(pf_mem)} MiB "
        f"({pf_summary.messages} messages, {pf_summary.held} held)"
    )
    moscow = ZoneInfo("Europe/Moscow")
    tz_time, _ = timed(lambda: summarize(pf_text, now=now, zone=moscow))
    print(
        f"  the same read with timezone Europe/Moscow: {tz_time:.3f} s, "
        f"{pf_count / tz_time:,.0f} msg/s ({tz_time / pf_time:.2f}x the UTC time)"
    )

    print("\nGoals (issue 3): >= 2,000,000 msg/s, >= 5x the baseline, extra memory <= 10% of text")
    for count, rate_ok, ratio_ok, memory_ok in verdicts:
        marks = ", ".join(
            f"{name} {'met' if ok else 'NOT met'}"
            for name, ok in (("rate", rate_ok), ("speedup", ratio_ok), ("memory", memory_ok))
        )
        print(f"  {count:>9} messages: {marks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
