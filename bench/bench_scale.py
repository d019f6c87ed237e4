"""Scale-out bench (issue 13), one section per part.

Exporter part: ``--panels`` simulated panels (default 10,000, 50 ms latency each) split
across ``--shards`` exporter shards (default 4) by the ``hashmod`` of their names, on this
machine. The panels are served by ``--sims`` panel-server processes: ``--panel-server fast``
(default; ``bench/fastpanel.py``, raw asyncio, canned contract-correct answers, a
fraction of the simulator's CPU a request, so the exporter and not its panel emulator is
measured) or ``sim`` (the full simulator, 0.7 to 1.3 ms of CPU a request: on a small
machine it, not the exporter, sets the cycle time). Measured:

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
    .venv/bin/python bench/bench_scale.py --part remediator --notifications 4000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.support: the same process harness the tests use

from bench.bench_remediator import body as webhook_body  # noqa: E402
from bench.bench_remediator import cpu_seconds  # noqa: E402
from exporter.poller import Poller, initial_state  # noqa: E402
from exporter.settings import parse_config  # noqa: E402
from exporter.shard import hashmod, shard_config  # noqa: E402
from tests.pg import cluster  # noqa: E402
from tests.support import free_port, read_answer, running  # noqa: E402

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

    async def one() -> tuple[float, float, bool, int]:
        poller = Poller(config, initial_state(config))
        try:
            cpu = time.process_time()
            started = time.perf_counter()
            results = await asyncio.gather(*(poller.poll_status(n) for n in config.panels))
            elapsed, used = time.perf_counter() - started, time.process_time() - cpu
            # The answers were verified (count and daemon states parsed and stored): a
            # panel server answering junk fails the polls, never gives a fake-good figure.
            good = sum(
                1
                for n, ok in zip(config.panels, results, strict=True)
                if ok
                and poller.state.panels[n].queue_messages is not None
                and len(poller.state.panels[n].daemon_states) == len(config.panels[n].daemons)
            )
            return elapsed, used, all(results), good
        finally:
            await poller.aclose()

    asyncio.run(one())
    runs = []
    for _ in range(cycles):
        barrier.wait()  # every shard's cycle starts together, as on a real fleet
        runs.append(asyncio.run(one()))
    out.put((index, len(config.panels), runs))


def exporter_part(args: argparse.Namespace, tmp: Path) -> bool:
    server = "full simulator (uvicorn+Starlette)" if args.panel_server == "sim" else "fastpanel"
    print(
        f"\n## exporter: {args.panels} panels, {args.shards} shards, "
        f"{args.latency * 1000:g} ms latency, max_concurrency {args.concurrency}, "
        f"panel server {args.panel_server} ({server}) x {args.sims}, "
        f"{os.cpu_count()} CPUs\n"
    )
    per_sim = -(-args.panels // args.sims)
    sim_ports = [free_port() for _ in range(args.sims)]
    ok_all = True
    panel_servers: list[Any] = []
    with contextlib.ExitStack() as processes:
        for i, port in enumerate(sim_ports):
            if args.panel_server == "sim":
                command = [sys.executable, "-m", "brainycp.simulator.cli", "--log-level", "warning"]
            else:
                command = [sys.executable, str(REPO / "bench" / "fastpanel.py")]
            command += ["--listen", f"127.0.0.1:{port}", "--users", f"admin:{PASSWORD}:root",
                        "--panels", str(per_sim), "--latency", str(args.latency)]  # fmt: skip
            panel_servers.append(processes.enter_context(
                running(
                    command, log=tmp / f"sim{i}.log",
                    ready_url=f"http://127.0.0.1:{port}/healthz", timeout=300, cwd=REPO,
                )
            ))  # fmt: skip
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
        server_cpu = sum(cpu_seconds(p.pid) for p in panel_servers)
        for w in workers:
            w.start()
        results = sorted(out.get(timeout=3600) for _ in workers)
        for w in workers:
            w.join()
        # Warm-up and measured cycles: every panel-poll is 3 requests.
        server_cpu = sum(cpu_seconds(p.pid) for p in panel_servers) - server_cpu
        server_requests = args.panels * 3 * (args.cycles + 1)
        header()
        for index, served, runs in results:
            ideal = served * args.latency / args.concurrency
            cycle = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            ok = all(r[2] for r in runs) and all(r[3] == served for r in runs)
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
                    "  panels polled OK, worst cycle",
                    f"{min(r[3] for r in runs)} of {served}",
                    "all",
                    ok,
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

        print(
            row(
                f"panel server ({args.panel_server}) CPU per request",
                f"{server_cpu / server_requests * 1e6:.0f} us ({server_cpu:.1f} s total)",
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
            for i, port in enumerate(ports):
                text = client.get(f"http://127.0.0.1:{port}/metrics").text
                up = [line for line in text.splitlines() if line.startswith("brainycp_up{")]
                down = sum(1 for line in up if not line.endswith((" 1.0", " 1")))
                ok_all &= len(up) == served[i] and down == 0
                print(
                    row(
                        f"replica {i}/{args.shards}: brainycp_up 1",
                        f"{len(up) - down} of {served[i]} panels",
                        "all",
                        len(up) == served[i] and down == 0,
                    )
                )
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

TOKEN = "bench-token"
REMEDIATOR_PANELS = [f"panel{i:04d}" for i in range(1, 17)]
GOAL_PG_RATE = 500.0
PYTHON = sys.executable


def body(panel: str, starts_at: str) -> bytes:
    """One encoded ``BenchDry`` webhook (the payload of ``bench_remediator``)."""
    return json.dumps(webhook_body("BenchDry", panel, starts_at)).encode()


async def _sender(url: str, bodies: list[bytes], outcomes: Counter[str]) -> None:
    """POST ``bodies`` in turn on one keep-alive connection; count each answer's outcome."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for data in bodies:
            writer.write(
                f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            head, answer = await read_answer(reader)
            if not head.startswith(b"HTTP/1.1 200"):
                outcomes[f"http {head.split()[1].decode()}"] += 1
            else:
                outcomes[json.loads(answer)["results"][0]["outcome"]] += 1
    finally:
        writer.close()


def blast(jobs: dict[str, list[bytes]], senders: int) -> tuple[float, Counter[str]]:
    """Send each URL's bodies over ``senders`` connections per URL, all at once."""
    outcomes: Counter[str] = Counter()

    async def main() -> None:
        await asyncio.gather(
            *(
                _sender(url, bodies[n::senders], outcomes)
                for url, bodies in jobs.items()
                for n in range(senders)
            )
        )

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started, outcomes


def remediator_config(
    path: Path, sim: str, port: int, journal: dict[str, Any] | None, state: Path
) -> None:
    remediator: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "auth": {"bearer_token_file": str(path.parent / "token")},
        "state_file": str(state),
        "max_concurrent_actions": 16,
        "rate_limit": {"max_actions": 1000000, "per": "1h"},
        "rules": [
            {"name": "bench-dry", "matchers": ['alertname="BenchDry"'],
             "action": "delete_frozen", "dry_run": True, "cooldown": 0},
        ],
    }  # fmt: skip
    if journal is not None:
        remediator["journal"] = journal
    config = {
        "defaults": {"username": "admin", "password_file": str(path.parent / "pw")},
        "panels": {p: {"url": f"{sim}/panel/{p}/api/api.php"} for p in REMEDIATOR_PANELS},
        "remediator": remediator,
    }
    path.write_text(yaml.safe_dump(config))


def remediator_part(args: argparse.Namespace) -> bool:
    """Run the remediator part and print its rows; False when an answer was wrong."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-remediator-"))
    (tmp / "pw").write_text("admin\n")
    (tmp / "token").write_text(TOKEN + "\n")
    sim_port = free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    n = args.notifications
    with ExitStack() as stack:
        pg = stack.enter_context(cluster(fsync=True))
        db = pg.create_database("bench")
        journal = {"url": db, "password_file": str(pg.password_file)}
        sim_cmd = [PYTHON, "-m", "brainycp.simulator.cli", "--listen", f"127.0.0.1:{sim_port}"]
        sim_cmd += ["--panels", str(len(REMEDIATOR_PANELS)), "--log-level", "warning"]
        stack.enter_context(running(sim_cmd, log=tmp / "sim.log", ready_url=f"{sim}/healthz"))
        for panel in REMEDIATOR_PANELS:
            httpx.post(f"{sim}/panel/{panel}/_sim/pause", json={"paused": True})
        urls, procs = {}, {}
        for name, jconf in (("pg0", journal), ("pg1", journal), ("sqlite", None)):
            port = free_port()
            config = tmp / f"{name}.yml"
            remediator_config(config, sim, port, jconf, tmp / f"{name}.sqlite")
            url = f"http://127.0.0.1:{port}"
            procs[name] = stack.enter_context(
                running(
                    [PYTHON, "-m", "remediator.cli", "--config", str(config), "--log-level",
                     "warning"],
                    log=tmp / f"{name}.log",
                    ready_url=f"{url}/healthz",
                    timeout=60,
                )
            )  # fmt: skip
            urls[name] = url

        def episodes(tag: str) -> list[bytes]:
            return [
                body(REMEDIATOR_PANELS[i % len(REMEDIATOR_PANELS)], f"2026-01-01T{tag}:{i:08d}Z")
                for i in range(n)
            ]

        def cpu(names: list[str]) -> float:
            return sum(cpu_seconds(procs[name].pid) for name in names)

        # Warm-up (connections, prepared statements), not measured.
        blast({urls["pg0"]: episodes("w0")[:200], urls["pg1"]: episodes("w1")[:200]}, 4)
        blast({urls["sqlite"]: episodes("w2")[:200]}, 4)

        before = cpu(["sqlite"])
        wall, sq = blast({urls["sqlite"]: episodes("s")}, args.senders)
        sqlite_rate = sq["dry_run"] / wall
        sqlite_cpu = (cpu(["sqlite"]) - before) / n * 1000

        both = episodes("p")
        before = cpu(["pg0", "pg1"])
        wall, spread = blast({urls["pg0"]: both[0::2], urls["pg1"]: both[1::2]}, args.senders)
        pg_rate = spread["dry_run"] / wall
        pg_cpu = (cpu(["pg0", "pg1"]) - before) / n * 1000

        ha = episodes("h")
        wall, pair = blast({urls["pg0"]: ha, urls["pg1"]: ha}, args.senders)
        ha_requests = (pair["dry_run"] + pair["skipped_duplicate"]) / wall
        ha_episodes = pair["dry_run"] / wall
        exactly_once = pair == Counter({"dry_run": n, "skipped_duplicate": n})

    print(
        f"\nremediator: {n} distinct episodes per phase, {args.senders} keep-alive senders "
        f"per replica, {os.cpu_count()} cores shared by senders, replicas, simulator and "
        "PostgreSQL (fsync on); dry-run rule: every notification planned and journaled\n"
    )
    header()
    print(row("1 replica, SQLite: accepted /s", f"{sqlite_rate:.0f}", "baseline"))
    print(
        row(
            "2 replicas, PostgreSQL: accepted /s",
            f"{pg_rate:.0f} ({pg_rate / sqlite_rate:.2f}x SQLite)",
            f">= {GOAL_PG_RATE:g}",
            pg_rate >= GOAL_PG_RATE,
        )
    )
    print(row("HA pair (each to both): requests /s", f"{ha_requests:.0f}"))
    print(row("HA pair: episodes accepted /s", f"{ha_episodes:.0f}"))
    print(row("HA pair: each episode accepted once", str(exactly_once), "True", exactly_once))
    print(row("CPU per notification, SQLite", f"{sqlite_cpu:.2f} ms"))
    print(row("CPU per notification, 2 PG replicas", f"{pg_cpu:.2f} ms"))
    problems = {k: v for c in (sq, spread) for k, v in c.items() if k != "dry_run"}
    if problems:
        print(f"(answers other than 200/dry_run: {problems})")
    return not problems and exactly_once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument(
        "--sims", type=int, default=None, help="panel-server processes (default: sim 2, fast 1)"
    )
    parser.add_argument(
        "--panel-server",
        choices=("fast", "sim"),
        default="fast",
        help="exporter part: bench/fastpanel.py (default) or the full simulator",
    )
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=2, help="measured cycles per shard")
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--notifications", type=int, default=4000, help="remediator part")
    parser.add_argument("--senders", type=int, default=8, help="remediator part, per replica")
    parser.add_argument("--part", choices=("all", "exporter", "remediator"), default="all")
    args = parser.parse_args()
    if args.sims is None:
        args.sims = 2 if args.panel_server == "sim" else 1
    os.environ["BENCH_PW"] = PASSWORD
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    ok = True
    if args.part in ("all", "exporter"):
        ok &= exporter_part(args, tmp)
    if args.part in ("all", "remediator"):
        ok &= remediator_part(args)
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("some polls failed: see the logs in", tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
