"""How long one big notification holds up other requests to the remediator.

In process (the Starlette app over httpx's ASGI transport, the journal in a temp
dir, synchronous=FULL): a task asks ``/healthz`` every 10 ms while one notification
of N minimal alerts (three labels and a startsAt each; 10,000 of them fit in the
1 MiB body, typical Alertmanager alerts are bigger: about 3,100 fit) is parsed,
planned, journaled and answered. Figure: the longest gap between two ``/healthz``
answers while the big notification is in flight, and how long it took. Baseline in
the same run: every journal call made inline on the event loop, as the SQLite
journal was used before its calls moved to the journal's thread.

    .venv/bin/python bench/bench_remediator_stall.py [--alerts 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remediator.app import Remediator
from remediator.journal import Journal
from remediator.metrics import Stats
from remediator.runner import Runner
from remediator.settings.config import parse_config


def remediator(tmp: Path) -> Remediator:
    config = parse_config(
        {
            "panels": {"web01": {"url": "http://127.0.0.1:9", "username": "a", "password": "b"}},
            "remediator": {
                "insecure_no_auth": True,
                "state_file": str(tmp / "s.sqlite"),
                "rules": [
                    {"name": "preview", "matchers": ['alertname="X"'], "action": "delete_frozen",
                     "dry_run": True, "cooldown": "0s"},
                ],
                "rate_limit": {"max_actions": 1_000_000, "per": "1h"},
            },
        }
    )  # fmt: skip
    journal = Journal(config.remediator.state_file)
    stats = Stats()
    runner = Runner(journal, config.panels, {}, stats, max_concurrent=1, action_timeout=5)
    return Remediator(config, journal, runner, stats)


async def one_run(alerts: int, inline: bool) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        rem = remediator(Path(tmp))
        if inline:
            journal = rem.journal

            async def on_the_loop(fn: Any, *args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)

            async def within(seconds: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)

            journal.call = on_the_loop  # type: ignore[method-assign]
            journal.call_within = within  # type: ignore[method-assign]
        body = json.dumps(
            {
                "version": "4",
                "status": "firing",
                "alerts": [
                    {"labels": {"alertname": "X", "panel": "web01", "i": str(i)}, "startsAt": "s"}
                    for i in range(alerts)
                ],
            }
        ).encode()
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/healthz")
            started = time.perf_counter()
            big = asyncio.create_task(
                client.post("/webhook", content=body, headers={"Content-Type": "application/json"})
            )
            last, worst, answered = time.perf_counter(), 0.0, 0
            while not big.done():
                # 100 probes a second (far more than any load balancer sends); the ASGI
                # transport answers inline, in this process: asking flat out would only
                # measure how much CPU the probing takes from the journal's thread.
                await asyncio.sleep(0.01)
                await client.get("/healthz")
                now = time.perf_counter()
                worst, last, answered = max(worst, now - last), now, answered + 1
            response = await big
            took = time.perf_counter() - started
            assert response.status_code == 200, response.text
        rem.journal.close()
    return worst, took, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    args = parser.parse_args()
    print(f"one notification of {args.alerts} alerts; /healthz asked in a loop meanwhile")
    for label, inline in (("journal on the loop", True), ("journal's thread", False)):
        worst, took, answered = asyncio.run(one_run(args.alerts, inline))
        print(
            f"  {label:20s}: longest /healthz gap {worst * 1000:7.1f} ms, "
            f"{answered:4d} /healthz answered, notification answered in {took:.2f} s"
        )


if __name__ == "__main__":
    main()
