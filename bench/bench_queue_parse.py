"""Benchmark brainycp.queue.summarize on generated Exim and Postfix listings against naive parsers.

Two workloads per format, each measured against a naive baseline (split lines, one regex
per line, one dict per message) in the same run:

- ``plain``: what earlier versions measured: 1-3 short recipients, a few hundred senders;
- ``real``: what real queues look like: long recipient lists (up to 60, some delivered),
  tens of thousands of distinct senders, UTF-8 and quoted local parts (``"john doe"@...``),
  and for Postfix the reasons real servers give (greylisting, blocklists, timeouts; long
  reasons unindented).

Times are the median of three runs in CPU seconds of this process (``time.process_time``):
the machines this runs on are shared, and wall time measures the neighbours. Memory is the
extra peak measured with tracemalloc in a separate run (the listing text itself excluded).

    .venv/bin/python bench/bench_queue_parse.py            # Exim 10k..1M, Postfix 100k
    .venv/bin/python bench/bench_queue_parse.py --quick    # Exim 10k, 100k
    .venv/bin/python bench/bench_queue_parse.py --sizes 50000,200000
    .venv/bin/python bench/bench_queue_parse.py --listing FILE [--now EPOCH]   # a real capture
"""

from __future__ import annotations

import argparse
import datetime
import gc
import random
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.workloads import (  # noqa: E402
    DEFERRAL_TEXTS,
    UTF8_DOMAIN,
    UTF8_LOCAL,
    exim_id,
    postfix_stamp,
    random_reason,
    reason_line,
)
from brainycp.queue import DEFERRAL_REASONS, c_readers, summarize  # noqa: E402
from brainycp.simulator.render import exim_age, exim_size  # noqa: E402

GOAL_EXIM_RATE = 3_000_000.0  # messages/s at 1M messages (issue 10)
GOAL_POSTFIX_RATE = 1_000_000.0  # messages/s at 100k messages (issue 10)
GOAL_MEMORY_SHARE = 0.10


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.25:
        return rng.randint(300, 1023)  # bounces, notifications
    if roll < 0.80:
        return int(1024 * 2 ** rng.uniform(0, 6.5))  # 1K..90K: ordinary mail
    if roll < 0.97:
        return int(1024 * 2 ** rng.uniform(6.5, 10))  # ..1M: attachments
    return rng.randint(1024 * 1024, 20 * 1024 * 1024)


def _address(rng: random.Random, index: int, real: bool) -> str:
    if not real:
        return f"user{index % 500}@customer{index % 97}.example.com"
    roll = rng.random()
    if roll < 0.08:
        return f"{rng.choice(UTF8_LOCAL)}{index}@{rng.choice(UTF8_DOMAIN)}"
    if roll < 0.12:
        return f'"john doe {index}"@customer{index % 997}.example.com'
    if roll < 0.15:
        return f"very.long.sender.name+tag{index}@subdomain.department{index % 89}.example.org"
    return f"user{index}@customer{index % 4099}.example.com"


def _recipients(rng: random.Random, real: bool) -> int:
    if not real:
        return rng.randint(1, 3)
    roll = rng.random()
    return rng.randint(1, 3) if roll < 0.8 else rng.randint(4, 12) if roll < 0.97 else 60


def exim_listing(messages: int, seed: int = 1, *, real: bool = False) -> str:
    """An ``exim -bp`` listing of ``messages`` messages."""
    rng = random.Random(seed)
    senders = [_address(rng, i, real) for i in range(50_000 if real else 500)]
    recipients = [_address(rng, i + 10**6, real) for i in range(20_000 if real else 2000)]
    out: list[str] = []
    append = out.append
    for i in range(messages):
        age = int(30 * 86400 * rng.random() ** 3)
        msg_id = exim_id(rng, i)
        sender = "" if rng.random() < 0.10 else rng.choice(senders)
        frozen = " *** frozen ***" if rng.random() < 0.05 else ""
        append(f"{exim_age(age)} {exim_size(_size(rng))} {msg_id} <{sender}>{frozen}\n")
        for _ in range(_recipients(rng, real)):
            mark = "D" if rng.random() < 0.1 else " "
            append(f"        {mark} {rng.choice(recipients)}\n")
        append("\n")
    return "".join(out)


_REASONS = [
    *DEFERRAL_TEXTS,
    "delivery temporarily suspended: connect to mx.{d}[192.0.2.{n}]:25: Connection timed out",
]


def postfix_listing(messages: int, now: float, seed: int = 2, *, real: bool = False) -> str:
    """A ``postqueue -p`` listing of ``messages`` messages."""
    rng = random.Random(seed)
    senders = [_address(rng, i, real) for i in range(50_000 if real else 500)]
    recipients = [_address(rng, i + 10**6, real) for i in range(20_000 if real else 2000)]
    out = ["-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"]
    total = 0
    for _ in range(messages):
        stamp = postfix_stamp(now - int(30 * 86400 * rng.random() ** 3))
        queue_id = "".join(rng.choices("0123456789ABCDEF", k=11))
        flag = rng.choice(("", "", "", "*", "!"))
        size = _size(rng)
        total += size
        sender = "MAILER-DAEMON" if rng.random() < 0.1 else rng.choice(senders)
        out.append(f"{queue_id}{flag or ' '} {size:>7} {stamp}  {sender}\n")
        reason = "deferred transport"
        for index in range(_recipients(rng, real)):
            if index == 0 or (real and rng.random() < 0.05):
                if real:
                    reason = random_reason(rng, _REASONS)
                out.append(reason_line(reason))
            out.append(" " * 41 + f"{rng.choice(recipients)}\n")
        out.append("\n")
    out.append(f"-- {total // 1024} Kbytes in {messages} Requests.\n")
    return "".join(out)


_NAIVE_HEADER = re.compile(
    r"^\s*(\d+)([smhd])\s+(\S+)\s+(\S+)\s+<(.*?)>(\s+\*\*\* frozen \*\*\*)?$"
)
_NAIVE_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAIVE_SIZE = {"K": 1024, "M": 1024**2, "G": 1024**3}


def naive_summarize(text: str) -> dict[str, Any]:
    """The Exim baseline: split lines, one regex per line, one dict per message."""
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


_NAIVE_POSTFIX = re.compile(
    r"^([0-9A-Za-z]+)([*!#]*)\s+(\d+)\s+(\w{3} \w{3}\s+\d+ [\d:]{8})\s+(.*)$"
)


def naive_postfix_summarize(text: str, now: float) -> dict[str, Any]:
    """The Postfix baseline: split lines, one regex per line, strptime, one dict per message."""
    year = time.gmtime(now).tm_year
    messages: list[dict[str, Any]] = []
    for line in text.split("\n"):
        m = _NAIVE_POSTFIX.match(line)
        if m:
            stamp = datetime.datetime.strptime(f"{year} {m.group(4)}", "%Y %a %b %d %H:%M:%S")
            arrival = stamp.replace(tzinfo=datetime.UTC).timestamp()
            if arrival > now + 86400:
                arrival = stamp.replace(year=year - 1, tzinfo=datetime.UTC).timestamp()
            messages.append(
                {
                    "id": m.group(1),
                    "held": "!" in m.group(2),
                    "size": int(m.group(3)),
                    "age": max(0.0, now - arrival),
                    "sender": m.group(5),
                    "recipients": [],
                    "reasons": [],
                }
            )
        elif line.strip() and messages:
            item = line.strip()
            key = "reasons" if item.startswith("(") and item.endswith(")") else "recipients"
            messages[-1][key].append(item)
    return {
        "messages": len(messages),
        "held": sum(m["held"] for m in messages),
        "bounces": sum(m["sender"] == "MAILER-DAEMON" for m in messages),
        "bytes": sum(m["size"] for m in messages),
    }


def timed(func: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    """Median CPU time of ``runs`` calls, and the last result."""
    times = []
    result = None
    for _ in range(runs):
        gc.collect()
        start = time.process_time()
        result = func()
        times.append(time.process_time() - start)
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


HEADER = (
    f"{'workload':<8} {'messages':>9} {'text MiB':>8} | {'summarize s':>11} {'msg/s':>10} "
    f"{'extra MiB':>9} {'% text':>6} | {'python s':>8} {'msg/s':>9} | {'naive s':>8} "
    f"{'msg/s':>9} | {'speedup':>7}"
)


def python_only(func: Callable[..., Any]) -> Callable[[], Any]:
    """``func`` run with the compiled readers switched off: the Python readers alone."""
    return lambda: func(False)


def measure(
    name: str, count: int, text: str, fast: Callable[..., Any], naive: Callable[[], Any]
) -> tuple[float, float]:
    """Print one row; return (messages/s, extra memory as a share of the text)."""
    text_bytes = len(text.encode("utf-8"))
    fast_time, summary = timed(fast)
    python_time, python_summary = timed(python_only(fast))
    naive_time, baseline = timed(naive, runs=1)
    if (summary.messages, summary.bytes) != (baseline["messages"], baseline["bytes"]):
        print(f"MISMATCH {name} {count}: {summary} vs {baseline}")
        raise SystemExit(1)
    if summary != python_summary:
        print(f"MISMATCH {name} {count}: C {summary} vs Python {python_summary}")
        raise SystemExit(1)
    share = peak_extra_bytes(fast) / text_bytes
    rate = count / fast_time
    print(
        f"{name:<8} {count:>9} {mib(text_bytes):>8} | {fast_time:>11.3f} {rate:>10,.0f} "
        f"{mib(share * text_bytes):>9} {share * 100:>5.1f}% | {python_time:>8.3f} "
        f"{count / python_time:>9,.0f} | {naive_time:>8.3f} {count / naive_time:>9,.0f} | "
        f"{naive_time / fast_time:>6.1f}x"
    )
    return rate, share


def bench_listing(path: Path, now: float | None) -> int:
    """Figures on one captured listing (a file holding what list_msg's detail would)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    clock = time.time() if now is None else now
    cpu, summary = timed(lambda: summarize(text, now=clock))
    share = peak_extra_bytes(lambda: summarize(text, now=clock)) / max(1, len(text))
    print(f"{path}: {summary.messages} messages ({summary.flavour}), {cpu:.3f} s CPU, ", end="")
    print(
        f"{summary.messages / max(cpu, 1e-9):,.0f} msg/s, extra memory {share * 100:.1f}% of text"
    )
    print(f"  frozen {summary.frozen}, bounces {summary.bounces}, held {summary.held}, ", end="")
    print(f"bytes {summary.bytes}, oldest {summary.oldest_age_seconds}, ", end="")
    print(f"unparsed lines {summary.unparsed_lines}")
    print(f"  age buckets (non-cumulative) {summary.age_buckets}")
    if summary.deferral_reasons:
        reasons = dict(zip(DEFERRAL_REASONS, summary.deferral_reasons, strict=True))
        print(f"  deferral reasons {reasons}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="Exim 10k and 100k messages only")
    parser.add_argument("--sizes", help="comma-separated Exim message counts (e.g. 10000,100000)")
    parser.add_argument("--listing", type=Path, help="measure one captured listing instead")
    parser.add_argument("--now", type=float, help="the capture's time (epoch) for --listing")
    args = parser.parse_args(argv)
    if args.listing:
        return bench_listing(args.listing, args.now)
    if args.sizes:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    else:
        sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]

    readers = list(c_readers())
    print(f"Python {sys.version.split()[0]}; median of 3 runs, CPU seconds; memory = tracemalloc")
    print(
        "C readers built: "
        + (", ".join(readers) if readers else "none (pure Python only)")
        + "; 'python' = the same summarize with the C readers switched off"
    )
    print(HEADER)
    print("-" * len(HEADER))
    verdicts: list[tuple[str, float, float, float]] = []
    for count in sizes:
        for real in (False, True):
            text = exim_listing(count, real=real)
            rate, share = measure(
                "exim " + ("real" if real else "plain"),
                count,
                text,
                lambda compiled=None, text=text: summarize(text, use_compiled=compiled),
                lambda text=text: naive_summarize(text),
            )
            if count == max(sizes):
                verdicts.append(
                    (f"Exim {'real' if real else 'plain'} {count}", rate, share, GOAL_EXIM_RATE)
                )
            del text
    now = time.time()
    pf_count = 100_000
    for real in (False, True):
        text = postfix_listing(pf_count, now, real=real)
        rate, share = measure(
            "pf " + ("real" if real else "plain"),
            pf_count,
            text,
            lambda compiled=None, text=text: summarize(text, now=now, use_compiled=compiled),
            lambda text=text: naive_postfix_summarize(text, now),
        )
        verdicts.append(
            (f"Postfix {'real' if real else 'plain'} {pf_count}", rate, share, GOAL_POSTFIX_RATE)
        )

    print(
        f"\nGoals (issue 10): Exim >= {GOAL_EXIM_RATE:,.0f} msg/s at 1M messages, Postfix >= "
        f"{GOAL_POSTFIX_RATE:,.0f} msg/s at 100k, extra memory <= 10% of the text"
    )
    for name, rate, share, goal in verdicts:
        print(
            f"  {name:<22} rate {'met' if rate >= goal else 'NOT met'} ({rate:,.0f}), "
            f"memory {'met' if share <= GOAL_MEMORY_SHARE else 'NOT met'} ({share * 100:.1f}%)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
