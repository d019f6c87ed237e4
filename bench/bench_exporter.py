"""Benchmark the exporter against 1,000 simulated panels with 50 ms of latency each.

One simulator process serves all panels (``--panels 1000 --latency 0.05``, panels
``panel0001``... under ``/panel/<name>/api/api.php``). Measured:

- one full poll cycle (count_msg + both daemon statuses of every panel, concurrently per
  panel, ``max_concurrency`` panels in flight), run in this process with the exporter's own
  :class:`exporter.poller.Poller`, against the ideal ``panels x latency / max_concurrency``
  (median of ``--cycles``), and the CPU time the poller used in it (when that nears the
  wall time, the cycle is CPU-bound, not latency-bound);
- in the same run, alternating with it, the same cycle over httpx's own transport
  (httpcore, h11, anyio) as the baseline;
- for information, a cycle with ``list_msg`` added (two jobs per panel, so twice the
  ideal), and the time to create the panel clients;
- the real exporter process (``python -m exporter.cli``) after every panel was polled:
  the median time of 20 ``/metrics`` scrapes, the body size, and its RSS (VmRSS).

    .venv/bin/python bench/bench_exporter.py
    .venv/bin/python bench/bench_exporter.py --panels 300 --latency 0.05 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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

from brainycp.config.panels import PanelConfig  # noqa: E402
from exporter.poller import Poller, TransportFactory, initial_state  # noqa: E402
from exporter.settings import parse_config  # noqa: E402
from tests.support import free_port, running  # noqa: E402

PASSWORD = "bench-pw"
GOAL_CYCLE_RATIO = 1.5
GOAL_SCRAPE_SECONDS = 0.100
GOAL_RSS_BYTES = 150 * 1024**2


def config_data(sim_port: int, panels: int, concurrency: int, **exporter: Any) -> dict[str, Any]:
    return {
        "defaults": {"username": "admin", "password_env": "BENCH_PW", "timeout": "30s"},
        "panels": {
            f"panel{i:04d}": {"url": f"http://127.0.0.1:{sim_port}/panel/panel{i:04d}/api/api.php"}
            for i in range(1, panels + 1)
        },
        "exporter": {"max_concurrency": concurrency, **exporter},
    }


def httpx_transport(_panel: PanelConfig) -> httpx.AsyncBaseTransport:
    """The baseline: httpx's own transport (httpcore, h11, anyio), as before PanelTransport."""
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=4))


async def one_cycle(
    data: dict[str, Any], with_list: bool, transport: TransportFactory | None = None
) -> tuple[float, float, bool]:
    """Wall time, this process's CPU time and success of one poll of every panel."""
    config = parse_config(data)
    poller = Poller(config, initial_state(config), transport_factory=transport)
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        if with_list:
            ok = await poller.poll_once()
        else:
            results = await asyncio.gather(*(poller.poll_status(n) for n in config.panels))
            ok = all(results)
        return time.perf_counter() - started, time.process_time() - cpu, ok
    finally:
        await poller.aclose()


async def client_setup(data: dict[str, Any]) -> float:
    """Seconds to create the poller with one client per panel (SSL contexts included)."""
    config = parse_config(data)
    started = time.perf_counter()
    poller = Poller(config, initial_state(config))
    elapsed = time.perf_counter() - started
    await poller.aclose()
    return elapsed


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def row(name: str, figure: str, goal: str, met: bool | None) -> str:
    verdict = "-" if met is None else ("met" if met else "NOT met")
    return f"| {name:<38} | {figure:>22} | {goal:>16} | {verdict:>7} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=3, help="status cycles per transport")
    args = parser.parse_args()
    os.environ["BENCH_PW"] = PASSWORD
    tmp = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    sim_port, exp_port = free_port(), free_port()
    with contextlib.ExitStack() as processes:
        processes.enter_context(
            running(
                [sys.executable, "-m", "brainycp.simulator.cli", "--listen",
                 f"127.0.0.1:{sim_port}", "--users", f"admin:{PASSWORD}:root",
                 "--panels", str(args.panels), "--latency", str(args.latency),
                 "--log-level", "warning"],
                log=tmp / "sim.log", ready_url=f"http://127.0.0.1:{sim_port}/healthz",
                timeout=60, cwd=REPO,
            )
        )  # fmt: skip
        ideal = args.panels * args.latency / args.concurrency
        data = config_data(sim_port, args.panels, args.concurrency)
        # A first, unmeasured cycle warms up both processes. Every cycle uses new clients and
        # so new connections, as polls a minute apart do (keep-alive ends after 5 s).
        asyncio.run(one_cycle(data, with_list=False))
        # Alternate ours and the baseline so both see the same machine noise.
        ours, base = [], []
        for _ in range(args.cycles):
            ours.append(asyncio.run(one_cycle(data, with_list=False)))
            base.append(asyncio.run(one_cycle(data, with_list=False, transport=httpx_transport)))
        status_cycle = statistics.median(c[0] for c in ours)
        status_cpu = statistics.median(c[1] for c in ours)
        status_ok = all(c[2] for c in ours + base)
        base_cycle = statistics.median(c[0] for c in base)
        base_cpu = statistics.median(c[1] for c in base)
        full_cycle, _, full_ok = asyncio.run(one_cycle(data, with_list=True))
        setup = asyncio.run(client_setup(data))

        daemon_data = config_data(
            sim_port, args.panels, args.concurrency, interval="60s", list_interval="60s",
            listen=f"127.0.0.1:{exp_port}",
        )  # fmt: skip
        config = tmp / "exporter.yaml"
        config.write_text(yaml.safe_dump(daemon_data))
        base = f"http://127.0.0.1:{exp_port}"
        exporter = processes.enter_context(
            running(
                [sys.executable, "-m", "exporter.cli", "--config", str(config),
                 "--log-level", "warning"],
                log=tmp / "exporter.log", ready_url=f"{base}/healthz", timeout=60, cwd=REPO,
            )
        )  # fmt: skip
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                text = client.get(f"{base}/metrics").text
                done = text.count('brainycp_poll_success{operation="list_msg"')
                if done >= args.panels and text.count("brainycp_up{") >= args.panels:
                    break
                time.sleep(0.5)
            else:
                raise SystemExit("the exporter did not poll every panel within 120s")
            timings, size = [], 0
            for _ in range(args.scrapes):
                started = time.perf_counter()
                body = client.get(f"{base}/metrics").content
                timings.append(time.perf_counter() - started)
                size = len(body)
        scrape = statistics.median(timings)
        rss = rss_bytes(exporter.pid)
        series = sum(1 for line in body.decode().splitlines() if line and line[0] != "#")

    print(
        f"exporter bench: {args.panels} panels, {args.latency * 1000:g} ms latency, "
        f"max_concurrency {args.concurrency}, {os.cpu_count()} CPUs"
    )
    print(row("measure", "figure", "goal", None).replace("|       - |", "| verdict |"))
    print(f"|{'-' * 40}|{'-' * 24}|{'-' * 18}|{'-' * 9}|")
    print(row("ideal cycle (panels x latency / conc.)", f"{ideal:.2f} s", "", None))
    print(
        row(
            f"status cycle, median of {args.cycles}",
            f"{status_cycle:.2f} s ({status_cycle / ideal:.2f}x)",
            f"<= {GOAL_CYCLE_RATIO}x ideal",
            status_cycle <= GOAL_CYCLE_RATIO * ideal and status_ok,
        )
    )
    requests = args.panels * 3
    print(
        row(
            "  exporter CPU in that cycle",
            f"{status_cpu:.2f} s ({status_cpu / requests * 1000:.2f} ms/req)",
            "",
            None,
        )
    )
    print(
        row(
            "  baseline: httpx's own transport",
            f"{base_cycle:.2f} s ({base_cycle / ideal:.2f}x)",
            "",
            None,
        )
    )
    print(
        row(
            "  baseline CPU in that cycle",
            f"{base_cpu:.2f} s ({base_cpu / requests * 1000:.2f} ms/req)",
            "",
            None,
        )
    )
    print(
        row(
            "  ours vs baseline (cycle, CPU)",
            f"{status_cycle / base_cycle:.2f}x, {status_cpu / base_cpu:.2f}x",
            "",
            None,
        )
    )
    print(row(f"creating {args.panels} panel clients", f"{setup:.2f} s", "", None))
    # With list_msg each panel runs two jobs (status and list), each holding one of the
    # max_concurrency slots for at least one latency: the ideal doubles.
    full_ideal = 2 * ideal
    print(
        row(
            "full cycle + list_msg, 2 jobs/panel",
            f"{full_cycle:.2f} s ({full_cycle / full_ideal:.2f}x)",
            f"ideal {full_ideal:.2f} s",
            None,
        )
    )
    print(
        row(
            f"/metrics median of {args.scrapes}",
            f"{scrape * 1000:.1f} ms",
            f"<= {GOAL_SCRAPE_SECONDS * 1000:g} ms",
            scrape <= GOAL_SCRAPE_SECONDS,
        )
    )
    print(row("/metrics size", f"{size / 1024:.0f} KiB, {series} s.", "", None))
    print(
        row(
            "exporter RSS (VmRSS)",
            f"{rss / 1024**2:.0f} MiB",
            f"<= {GOAL_RSS_BYTES / 1024**2:g} MiB",
            rss <= GOAL_RSS_BYTES,
        )
    )
    if not (status_ok and full_ok):
        print("some polls failed: see the logs in", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
