"""``/metrics`` of 1,000 panels with and without gzip (``Accept-Encoding: gzip``).

The exporter's state is filled the real way, in this process: its own
:class:`exporter.poller.Poller` polls 1,000 simulated panels (the simulator app over an
in-process ASGI transport, so no sockets and no latency). Then the exporter's full app
(reload gate, basic-auth layer, gzip) answers ``--scrapes`` scrapes each way through an
in-process ASGI transport; the figures are the body size on the wire and the median
time per scrape, i.e. the rendering plus, with gzip, the compression.

    .venv/bin/python bench/bench_metrics_gzip.py
    .venv/bin/python bench/bench_metrics_gzip.py --panels 300 --scrapes 20
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brainycp.daemon import responses  # noqa: E402
from brainycp.daemon.reload import Reloader  # noqa: E402
from brainycp.simulator.cli import build_app as build_sim  # noqa: E402
from brainycp.simulator.cli import build_parser as sim_parser  # noqa: E402
from exporter.cli import build_app, web_holder  # noqa: E402
from exporter.poller import Poller, initial_state  # noqa: E402
from exporter.settings import parse_config  # noqa: E402


async def measure(panels: int, scrapes: int) -> None:
    sim = build_sim(sim_parser().parse_args(["--panels", str(panels), "--users", "a:b:root"]))
    config = parse_config(
        {
            "defaults": {"username": "a", "password": "b"},
            "panels": {
                f"panel{i:04d}": {"url": f"http://sim/panel/panel{i:04d}/api/api.php"}
                for i in range(1, panels + 1)
            },
            "exporter": {"max_concurrency": 64},
        }
    )
    state = initial_state(config)
    poller = Poller(config, state, transport_factory=lambda _: httpx.ASGITransport(sim))
    started = time.perf_counter()
    ok = await poller.poll_once()
    polled = time.perf_counter() - started
    await poller.aclose()
    app = build_app(state, Reloader(lambda: []), web_holder(None))
    transport = httpx.ASGITransport(app)
    results: dict[str, tuple[float, int, int]] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
        for label, encoding in (("identity", "identity"), ("gzip", "gzip")):
            timings, wire, text = [], 0, 0
            for _ in range(scrapes):
                t0 = time.perf_counter()
                async with client.stream(
                    "GET", "/metrics", headers={"Accept-Encoding": encoding}
                ) as response:
                    raw = b"".join([chunk async for chunk in response.aiter_raw()])
                timings.append(time.perf_counter() - t0)
                assert response.status_code == 200
                assert (response.headers.get("content-encoding") == "gzip") == (label == "gzip")
                wire = len(raw)
                text = int(response.headers.get("content-length", wire))
            if label == "gzip":
                text = len(gzip.decompress(raw))
            results[label] = (statistics.median(timings), wire, text)
    print(
        f"/metrics of {panels} panels (all polls ok: {ok}; filled in {polled:.1f} s), "
        f"median of {scrapes} scrapes, zlib level {responses.GZIP_LEVEL}"
    )
    print("| Accept-Encoding | bytes on the wire | text | time per scrape |")
    print("|---|---|---|---|")
    for label, (median, wire, text) in results.items():
        print(
            f"| {label} | {wire / 1024:,.0f} KiB | {text / 1024:,.0f} KiB "
            f"| {median * 1000:.0f} ms |"
        )
    plain, packed = results["identity"], results["gzip"]
    print(
        f"gzip: {plain[1] / packed[1]:.1f}x smaller, "
        f"{(packed[0] - plain[0]) * 1000:+.0f} ms per scrape"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--level", type=int, help="zlib level to try (default: the exporter's)")
    args = parser.parse_args()
    if args.level is not None:
        responses.GZIP_LEVEL = args.level
    asyncio.run(measure(args.panels, args.scrapes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
