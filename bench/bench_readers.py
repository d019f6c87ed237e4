"""Compiled against pure-Python readers: what a worker spends on one listing, both ways.

A listing worker (brainycp/queue/worker.py) decodes the panel's JSON answer and reads the
listing once with the top senders and recipient domains on. This measures exactly that
(``read_body``), in this process, with the compiled readers and with the Python readers
(``use_compiled=False``, the same as ``BRAINYCP_PURE_PYTHON=1``), on generated outbreaks
(bench/workloads.py) and on the real captures in tests/fixtures/real, and checks that both
give the same reading. CPU seconds, the best of ``--runs``.

    .venv/bin/python bench/bench_readers.py
    .venv/bin/python bench/bench_readers.py --exim 100000 --postfix 30000 --runs 1
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.workloads import exim_outbreak, postfix_outbreak  # noqa: E402
from brainycp.panel.answers import listing_from_body  # noqa: E402
from brainycp.queue import Reading, ReadOptions, c_readers, read_listing  # noqa: E402

REAL = REPO / "tests" / "fixtures" / "real"
OPTIONS = ReadOptions(top_senders=10, top_recipient_domains=10)


def read_capture(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8")
    with gzip.open(path.with_name(path.name + ".gz"), "rt", encoding="utf-8", newline="") as fh:
        return fh.read()


def worker_reading(body: bytes, now: float, compiled: bool) -> Reading:
    """What a worker does with a body: decode the answer, read the listing once."""
    listing = listing_from_body("bench", body)
    return read_listing(listing.detail, now, options=OPTIONS, use_compiled=compiled)


def best(runs: int, work: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.process_time()
        result = work()
        times.append(time.process_time() - started)
    return min(times), result


def listings(args: argparse.Namespace) -> list[tuple[str, str, int, float]]:
    """(name, text, messages, now) of every listing measured."""
    now = time.time()
    out = [
        (f"outbreak exim {args.exim:,}", exim_outbreak(args.exim), args.exim, now),
        (
            f"outbreak postfix {args.postfix:,}",
            postfix_outbreak(args.postfix, now),
            args.postfix,
            now,
        ),
    ]
    for flavour, name, count in (
        ("exim", "large-bp.txt", 52_000),
        ("exim", "mixed-bp.txt", 61),
        ("postfix", "large-mailq.txt", 20_000),
        ("postfix", "postfix-mailq.txt", 18),
        ("postfix", "large-postqueue-j.jsonl", 20_000),
    ):
        folder = REAL / flavour
        # Each capture's time file holds the epoch times around its listing command.
        capture_now = float((folder / f"{name.split('-')[0]}-time.txt").read_text().split()[0])
        out.append((f"real {flavour}/{name}", read_capture(folder / name), count, capture_now))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exim", type=int, default=300_000)
    parser.add_argument("--postfix", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    built = ", ".join(c_readers()) or "none"
    print(f"compiled readers built: {built}; CPU seconds, best of {args.runs}")
    print(f"{'listing':<40} {'MiB':>6} | {'compiled':>9} {'msg/s':>10} | {'python':>8} "
          f"{'msg/s':>9} | {'ratio':>5}")  # fmt: skip
    for name, text, count, now in listings(args):
        body = json.dumps({"error": 0, "detail": text}).encode()
        fast, reading = best(args.runs, lambda body=body, now=now: worker_reading(body, now, True))
        slow, python = best(args.runs, lambda body=body, now=now: worker_reading(body, now, False))
        if reading != python:
            print(f"MISMATCH on {name}: the two readers disagree")
            return 1
        if reading.summary.messages != count:
            print(f"MISMATCH on {name}: {reading.summary.messages} messages, not {count}")
            return 1
        print(
            f"{name:<40} {len(text.encode()) / 2**20:>6.1f} | {fast:>9.3f} {count / fast:>10,.0f}"
            f" | {slow:>8.3f} {count / slow:>9,.0f} | {slow / fast:>4.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
