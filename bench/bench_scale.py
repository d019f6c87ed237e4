"""Scale-out bench (issue 13), one section per part.

Exporter part: ``--panels`` simulated panels (default 10,000, 50 ms latency each) split
across ``--shards`` exporter shards (default 4) by the ``hashmod`` of their names, on this
machine. The panels are served by ``--sims`` simulator processes. Measured:

- each shard's status poll cycle (count_msg and both daemon statuses of each of its
  panels, ``max_concurrency`` panels in flight), all shards at once, each in its own
  process with the exporter's :class:`~exporter.poller.Poller`, against its ideal
  ``shard panels x latency / max_concurrency`` (goal: within 1.5x), and the CPU time a
  panel-poll costs;
- the real exporter processes (``--shard i/N``) after every panel was polled: RSS per
  replica (VmRSS), ``/probe?target=`` median latency over random panels (goal < 5 ms)
  and ``/sd`` median latency.

    .venv/bin/python bench/bench_scale.py
    .venv/bin/python bench/bench_scale.py --panels 2000 --shards 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.support: the same process harness the tests use

from brainycp.config import parse_config  # noqa: E402
from exporter.poller import Poller, initial_state  # noqa: E402
from exporter.shard import hashmod, shard_config  # noqa: E402
from tests.support import free_port, running  # noqa: E402

PASSWORD = "bench-pw"
GOAL_CYCLE_RATIO = 1.5
GOAL_PROBE_SECONDS = 0.005


def row(name: str, figure: str, goal: str = "", met: bool | None = None) -> str:
    verdict = "-" if met is None else ("met" if met else "NOT met")
    return f"| {name:<40} | {figure:>26} | {goal:>14} | {verdict:>7} |"


def header() -> None:
    print(row("measure", "figure", "goal").replace("|       - |", "| verdict |"))
    print(f"|{'-' * 42}|{'-' * 28}|{'-' * 16}|{'-' * 9}|")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ============================================================================ exporter part


def exporter_config(
    sim_ports: list[int], panels: int, concurrency: int, **exporter: Any
) -> dict[str, Any]:
    """``panels`` panels spread over the simulators, each serving ``panel0001``..."""
    per_sim = -(-panels // len(sim_ports))
    entries = {}
    for i in range(panels):
        sim, local = divmod(i, per_sim)
        name = f"s{sim}-panel{local + 1:04d}"
        entries[name] = {
            "url": f"http://127.0.0.1:{sim_ports[sim]}/panel/panel{local + 1:04d}/api/api.php"
        }
    return {
        "defaults": {
            "username": "admin",
            "password_env": "BENCH_PW",
            "timeout": "60s",
            "labels": {"dc": "bench"},
        },
        "panels": entries,
        "exporter": {"max_concurrency": concurrency, **exporter},
    }


def _shard_cycles(
    data: dict[str, Any], index: int, count: int, cycles: int, barrier: Any, out: Any
) -> None:
    """In a child process: warm up, then ``cycles`` status cycles of shard ``index``."""
    os.environ["BENCH_PW"] = PASSWORD
    config = shard_config(parse_config(data), (index, count))

    async def one() -> tuple[float, float, bool]:
        poller = Poller(config, initial_state(config))
        try:
            cpu = time.process_time()
            started = time.perf_counter()
            results = await asyncio.gather(*(poller.poll_status(n) for n in config.panels))
            return time.perf_counter() - started, time.process_time() - cpu, all(results)
        finally:
            await poller.aclose()

    asyncio.run(one())
    runs = []
    for _ in range(cycles):
        barrier.wait()  # every shard's cycle starts together, as on a real fleet
        runs.append(asyncio.run(one()))
    out.put((index, len(config.panels), runs))


def exporter_part(args: argparse.Namespace, tmp: Path) -> bool:
    print(
        f"\n## exporter: {args.panels} panels, {args.shards} shards, "
        f"{args.latency * 1000:g} ms latency, max_concurrency {args.concurrency}, "
        f"{args.sims} simulators, {os.cpu_count()} CPUs\n"
    )
    per_sim = -(-args.panels // args.sims)
    sim_ports = [free_port() for _ in range(args.sims)]
    ok_all = True
    with contextlib.ExitStack() as processes:
        for i, port in enumerate(sim_ports):
            processes.enter_context(
                running(
                    [sys.executable, "-m", "brainycp.simulator.cli", "--listen",
                     f"127.0.0.1:{port}", "--users", f"admin:{PASSWORD}:root",
                     "--panels", str(per_sim), "--latency", str(args.latency),
                     "--log-level", "warning"],
                    log=tmp / f"sim{i}.log", ready_url=f"http://127.0.0.1:{port}/healthz",
                    timeout=300, cwd=REPO,
                )
            )  # fmt: skip
        data = exporter_config(sim_ports, args.panels, args.concurrency)

        # --- poll cycles, every shard in its own process, at the same time
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(args.shards), ctx.Queue()
        workers = [
            ctx.Process(
                target=_shard_cycles, args=(data, i, args.shards, args.cycles, barrier, out)
            )
            for i in range(args.shards)
        ]
        for w in workers:
            w.start()
        results = sorted(out.get(timeout=3600) for _ in workers)
        for w in workers:
            w.join()
        header()
        for index, served, runs in results:
            ideal = served * args.latency / args.concurrency
            cycle = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            ok = all(r[2] for r in runs)
            ok_all &= ok
            met = cycle <= GOAL_CYCLE_RATIO * ideal and ok
            print(
                row(
                    f"shard {index}/{args.shards}: {served} panels, cycle",
                    f"{cycle:.2f} s ({cycle / ideal:.2f}x of {ideal:.2f})",
                    f"<= {GOAL_CYCLE_RATIO}x ideal",
                    met,
                )
            )
            print(
                row(
                    "  CPU per panel-poll (3 requests)",
                    f"{cpu / served * 1000:.2f} ms ({cpu:.2f} s total)",
                )
            )

        # Every panel-poll is 3 requests: the rate the simulators kept up. When it is far
        # below shards x max_concurrency x 3 / latency, the simulators (not the exporter)
        # set the cycle time.
        longest = max(statistics.median(r[0] for r in runs) for _, _, runs in results)
        wanted = args.shards * args.concurrency * 3 / args.latency
        print(
            row(
                "panel requests/s served (all shards)",
                f"{args.panels * 3 / longest:.0f} (ideal {wanted:.0f})",
            )
        )

        # --- the real replicas, after every panel was polled
        ports = [free_port() for _ in range(args.shards)]
        replicas = []
        config_path = tmp / "exporter.yaml"
        config_path.write_text(
            yaml.safe_dump({**data, "exporter": {**data["exporter"], "interval": "600s",
                                                 "list_interval": "600s"}})
        )  # fmt: skip
        for i, port in enumerate(ports):
            replicas.append(
                processes.enter_context(
                    running(
                        [sys.executable, "-m", "exporter.cli", "--config", str(config_path),
                         "--shard", f"{i}/{args.shards}", "--listen", f"127.0.0.1:{port}",
                         "--log-level", "warning"],
                        log=tmp / f"exporter{i}.log", env={"BENCH_PW": PASSWORD},
                        ready_url=f"http://127.0.0.1:{port}/healthz", timeout=300, cwd=REPO,
                    )
                )
            )  # fmt: skip
        served = {
            i: sum(1 for n in data["panels"] if hashmod(n, args.shards) == i)
            for i in range(args.shards)
        }
        deadline = time.monotonic() + 900
        with httpx.Client(timeout=30) as client:
            for i, port in enumerate(ports):
                while True:
                    text = client.get(f"http://127.0.0.1:{port}/metrics").text
                    polled = text.count('brainycp_poll_success{operation="list_msg"')
                    if polled >= served[i] and text.count("brainycp_up{") >= served[i]:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"shard {i} did not poll its panels in time")
                    time.sleep(1)
            rng = random.Random(1)
            probe_times: list[float] = []
            sd_times: list[float] = []
            names = list(data["panels"])
            for _ in range(args.probes):
                name = rng.choice(names)
                port = ports[hashmod(name, args.shards)]
                started = time.perf_counter()
                response = client.get(f"http://127.0.0.1:{port}/probe", params={"target": name})
                probe_times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            for _ in range(20):
                for port in ports:
                    started = time.perf_counter()
                    entries = client.get(f"http://127.0.0.1:{port}/sd").json()
                    sd_times.append(time.perf_counter() - started)
                    assert entries
        for i, proc in enumerate(replicas):
            print(
                row(
                    f"replica {i}/{args.shards} RSS ({served[i]} panels)",
                    f"{rss_bytes(proc.pid) / 1024**2:.0f} MiB",
                )
            )
        probe = statistics.median(probe_times)
        p90 = statistics.quantiles(probe_times, n=10)[-1]
        print(
            row(
                f"/probe median of {args.probes}",
                f"{probe * 1000:.2f} ms (p90 {p90 * 1000:.2f})",
                f"< {GOAL_PROBE_SECONDS * 1000:g} ms",
                probe < GOAL_PROBE_SECONDS,
            )
        )
        print(row("/sd median (whole shard list)", f"{statistics.median(sd_times) * 1000:.1f} ms"))
    return ok_all


# ============================================================================ remediator part
# (added by the remediator-on-PostgreSQL work: notifications/s with 2 replicas on
# PostgreSQL beside 1 on SQLite, in the same run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--sims", type=int, default=2, help="simulator processes")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=2, help="measured cycles per shard")
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--part", choices=("all", "exporter"), default="all")
    args = parser.parse_args()
    os.environ["BENCH_PW"] = PASSWORD
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    ok = True
    if args.part in ("all", "exporter"):
        ok &= exporter_part(args, tmp)
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("some polls failed: see the logs in", tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
