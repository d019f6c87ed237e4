"""What an operator feels during a spam outbreak: the exporter as a process, big listings.

A bench panel (bench/listing_panel.py, its own process) serves a 300,000-message Exim
listing and a 100,000-message Postfix listing (bench/workloads.py: one dominant sender,
30,000 others, 3,000 recipient domains, multi-recipient messages, delivered recipients,
UTF-8, frozen bounces, Postfix deferral reasons). The exporter runs with
``top_senders: 10`` and ``top_recipient_domains: 10``, twice in the same run: the code of
this tree ("after") and the code of ``--before`` (default 377b4be, the commit before the
one-pass readers), unpacked with ``git archive`` into a temporary directory, its C readers
built with gcc like setup.py would.

For each, measured:

- **CPU per list poll**: one panel at a time, ``list_interval: 5s``, no scrapes; the
  exporter's CPU (its process, its worker processes) between consecutive ``list_msg``
  requests, the median of ``--polls`` polls, as messages per CPU second;
- **/metrics latency**: both panels polled every 5 s while a client scrapes ``/metrics``
  every 100 ms for ``--seconds``: p50, p99 and the worst, in milliseconds;
- **peak RSS**: the exporter's VmHWM (plus its workers') against the listing size.

    .venv/bin/python bench/bench_outbreak.py
    .venv/bin/python bench/bench_outbreak.py --exim 100000 --postfix 30000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.workloads import exim_outbreak, postfix_outbreak  # noqa: E402
from tests.harness import running  # noqa: E402
from tests.support import free_port  # noqa: E402

GOAL_EXIM_RATE = 500_000.0
GOAL_POSTFIX_RATE = 300_000.0
GOAL_P99_MS = 50.0
GOAL_WORST_MS = 500.0
MIB = 1024 * 1024


@dataclass
class Figures:
    rates: dict[str, float]
    """Messages per CPU second of a list poll, per panel."""
    shares: dict[str, float]
    """The exporter process's own share of that CPU (the rest is its workers'), per panel."""
    alone: dict[str, tuple[int, int, int]]
    """Peak RSS (as ``rss``) with that panel alone, per panel."""
    latencies: list[float]
    """Seconds of each /metrics scrape."""
    failed_scrapes: int
    rss: tuple[int, int, int]
    """Peak RSS in bytes: all processes at once (sampled), the exporter's and its workers'
    own peaks (summed)."""


def old_tree(commit: str, into: Path) -> tuple[Path, str]:
    """The code of ``commit`` under ``into``, its C readers built; and how they were built."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    gcc = shutil.which("gcc")
    sources = sorted((into / "brainycp").glob("_*scan.c"))
    if gcc is None or not sources:
        return into, "pure Python (no gcc)" if sources else "pure Python"
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for source in sources:
        target = source.with_name(source.stem + suffix)
        command = [gcc, "-shared", "-fPIC", "-O2", f"-I{include}", str(source), "-o", str(target)]
        subprocess.run(command, check=True)
    return into, "C readers built with gcc -O2"


def write_config(path: Path, panel_port: int, panels: list[str], **exporter: Any) -> None:
    config = {
        "defaults": {"username": "bench", "password": "bench", "timeout": "60s"},
        "panels": {
            name: {"url": f"http://127.0.0.1:{panel_port}/panel/{name}/api/api.php"}
            for name in panels
        },
        "exporter": {
            "interval": "60s",
            "list_interval": "5s",
            "top_senders": 10,
            "top_recipient_domains": 10,
            **exporter,
        },
    }
    path.write_text(yaml.safe_dump(config))


def peak_rss(pid: int) -> tuple[int, int]:
    """VmHWM of ``pid`` and the sum of its child processes' VmHWM, in bytes."""

    def hwm(process: int) -> int:
        for line in Path(f"/proc/{process}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children += [int(c) for c in (task / "children").read_text().split()]
    return hwm(pid), sum(hwm(child) for child in children)


def tree_rss(pid: int) -> int:
    """VmRSS of ``pid`` and its child processes now, in bytes."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(c) for c in (task / "children").read_text().split()]
    total = 0
    for process in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class RssSampler:
    """The highest RSS of a process and its children at the same moment, sampled every
    5 ms in a thread (per-process peaks added up would count moments that never met)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, tree_rss(self.pid))

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class Exporter:
    """An exporter process of ``tree`` on a config; its pid for the panel to watch."""

    def __init__(self, tree: Path, config: Path, log: Path, pure: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        if pure:
            env["BRAINYCP_PURE_PYTHON"] = "1"
        args = [sys.executable, "-m", "exporter.cli", "--config", str(config)]
        args += ["--listen", f"127.0.0.1:{self.port}", "--log-level", "warning"]
        self.context = running(args, log=log, env=env, cwd=tree, ready_url=f"{self.url}/healthz")


def list_requests(panel: str) -> dict[str, list[list[float]]]:
    lists: dict[str, list[list[float]]] = httpx.get(f"{panel}/stats", timeout=10).json()["lists"]
    return lists


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cpu_per_poll(
    tree: Path, tmp: Path, panel: str, panel_port: int, name: str, polls: int, pure: bool = False
) -> tuple[float, float, tuple[int, int, int]]:
    """Median exporter CPU seconds between consecutive list_msg requests of one panel, the
    exporter process's own share of it, and the peak RSS (exporter, workers)."""
    config = tmp / f"{name}.yml"
    write_config(config, panel_port, [name])
    exporter = Exporter(tree, config, tmp / f"{name}{'-pure' if pure else ''}.log", pure)
    with exporter.context as process, RssSampler(process.pid) as sampler:
        httpx.post(f"{panel}/watch/{process.pid}", timeout=5).raise_for_status()
        # The first poll starts workers and warms caches; count from the second request.
        samples = wait_for(
            lambda: len(s := list_requests(panel)[name]) >= polls + 2 and s,
            timeout=30 + 10 * polls,
            what=f"{polls + 2} list polls of {name}",
        )
        rss = (sampler.peak, *peak_rss(process.pid))
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(samples[1:])]
    total = statistics.median(step[1] for step in steps)
    own = statistics.median(step[0] for step in steps)
    return total, own / total, rss


async def scrape_every(url: str, seconds: float, every: float) -> tuple[list[float], int]:
    """Scrape ``url`` on a fixed schedule; each scrape's latency, and the failed ones."""
    latencies: list[float] = []
    failed = 0
    async with httpx.AsyncClient(timeout=30) as client:
        start = time.perf_counter()

        async def one() -> None:
            nonlocal failed
            began = time.perf_counter()
            try:
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError:
                failed += 1
            latencies.append(time.perf_counter() - began)

        tasks = []
        for tick in range(int(seconds / every)):
            delay = start + tick * every - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, failed


def under_scrapes(tree: Path, tmp: Path, panel: str, panel_port: int, seconds: float) -> Figures:
    config = tmp / "both.yml"
    write_config(config, panel_port, ["exim", "postfix"])
    exporter = Exporter(tree, config, tmp / "both.log")
    with exporter.context as process, RssSampler(process.pid) as sampler:
        httpx.post(f"{panel}/watch/{process.pid}", timeout=5).raise_for_status()
        wait_for(
            lambda: all(len(v) >= 2 for v in list_requests(panel).values()),
            timeout=60,
            what="two list polls of each panel",
        )
        latencies, failed = asyncio.run(scrape_every(f"{exporter.url}/metrics", seconds, 0.1))
        rss = (sampler.peak, *peak_rss(process.pid))
    return Figures({}, {}, {}, latencies, failed, rss)


def measure(
    tree: Path, tmp: Path, panel: str, port: int, sizes: dict[str, int], args: argparse.Namespace
) -> Figures:
    tmp.mkdir()
    figures = under_scrapes(tree, tmp, panel, port, args.seconds)
    for name, messages in sizes.items():
        cpu, share, rss = cpu_per_poll(tree, tmp, panel, port, name, args.polls)
        figures.rates[name], figures.shares[name], figures.alone[name] = messages / cpu, share, rss
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def table(
    results: dict[str, Figures], listing_bytes: dict[str, int], pure: dict[str, float]
) -> str:
    rows = [
        "| | before | after | goal |",
        "|---|---|---|---|",
    ]

    def row(label: str, values: list[str], goal: str) -> None:
        rows.append(f"| {label} | " + " | ".join(values) + f" | {goal} |")

    order = [results["before"], results["after"]]
    goals = {"exim": GOAL_EXIM_RATE, "postfix": GOAL_POSTFIX_RATE}
    for name, goal in goals.items():
        row(
            f"{name.capitalize()} list poll: msg per CPU second (exporter's own share)",
            [f"{f.rates[name] / 1e6:.2f}M ({f.shares[name]:.0%})" for f in order],
            f">= {goal / 1e6:.1f}M",
        )
    for name, rate in pure.items():
        after = results["after"].rates[name]
        row(
            f"{name.capitalize()} list poll without the compiled readers (BRAINYCP_PURE_PYTHON=1)",
            ["", f"{rate / 1e6:.2f}M ({after / rate:.1f}x slower)"],
            "compiled >= 3x faster",
        )
    for label, share in (("p50", 0.5), ("p99", 0.99)):
        row(
            f"/metrics {label} (ms), both panels polled every 5 s",
            [f"{percentile(f.latencies, share) * 1000:.1f}" for f in order],
            f"<= {GOAL_P99_MS:g}" if label == "p99" else "",
        )
    row("/metrics worst (ms)", [f"{max(f.latencies) * 1000:.0f}" for f in order], "<= 500")
    row("failed scrapes", [str(f.failed_scrapes) for f in order], "0")

    def rss(peaks: tuple[int, int, int]) -> str:
        at_once, exporter, workers = (peak / MIB for peak in peaks)
        return f"{at_once:.0f} ({exporter:.0f} + {workers:.0f})"

    for name in goals:
        size = listing_bytes[name]
        row(
            f"peak RSS, {name} alone (MiB): all at once (exporter + workers' own peaks)",
            [rss(f.alone[name]) for f in order],
            f"<= {(3 * size + 150 * MIB) / MIB:.0f} (3 x {size / MIB:.0f} MiB + 150)",
        )
    both = sum(listing_bytes.values())
    row(
        "peak RSS, both panels (MiB)",
        [rss(f.rss) for f in order],
        f"<= {(3 * both + 150 * MIB) / MIB:.0f} (3 x {both / MIB:.0f} MiB + 150)",
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exim", type=int, default=300_000, help="Exim listing messages")
    parser.add_argument("--postfix", type=int, default=100_000, help="Postfix listing messages")
    parser.add_argument("--before", default="377b4be", help="the commit to compare with")
    parser.add_argument("--polls", type=int, default=4, help="list polls per CPU figure")
    parser.add_argument("--seconds", type=float, default=30.0, help="scraping time")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="brainycp-outbreak-"))
    try:
        now = time.time()
        listings = {
            "exim": exim_outbreak(args.exim),
            "postfix": postfix_outbreak(args.postfix, now),
        }
        sizes = {"exim": args.exim, "postfix": args.postfix}
        listing_bytes = {name: len(text.encode()) for name, text in listings.items()}
        for name, text in listings.items():
            (tmp / f"{name}.txt").write_text(text, encoding="utf-8")
        del listings
        before, built = old_tree(args.before, tmp / "before")
        print(f"before: {args.before} ({built}); after: {REPO}", flush=True)
        for name, size in listing_bytes.items():
            print(f"{name}: {sizes[name]:,} messages, {size / MIB:.1f} MiB of listing", flush=True)
        port = free_port()
        panel = f"http://127.0.0.1:{port}"
        serve = [sys.executable, str(REPO / "bench" / "listing_panel.py")]
        serve += ["--listen", f"127.0.0.1:{port}"]
        for name in sizes:
            serve += ["--listing", f"{name}={tmp / f'{name}.txt'}:{sizes[name]}"]
        results: dict[str, Figures] = {}
        pure: dict[str, float] = {}
        with running(serve, log=tmp / "panel.log", ready_url=f"{panel}/healthz", timeout=120):
            for label, tree in (("before", before), ("after", REPO)):
                print(f"measuring {label} ...", flush=True)
                results[label] = measure(tree, tmp / f"run-{label}", panel, port, sizes, args)
            print("measuring after without the compiled readers ...", flush=True)
            for name, messages in sizes.items():
                cpu, _, _ = cpu_per_poll(REPO, tmp / "run-after", panel, port, name, 3, pure=True)
                pure[name] = messages / cpu
        print()
        print(table(results, listing_bytes, pure))
        print(json.dumps({k: {"rates": v.rates, "alone": v.alone} for k, v in results.items()}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
