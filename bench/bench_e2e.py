"""Time from the first frozen message to the alert resolving, split into its stages.

Runs the demo configuration (tests.demo.Stack: simulator, exporter,
remediator, real Prometheus and Alertmanager) and watches panel web02
(frozen-pileup). Each stage boundary is observed by polling the part that
knows it every 100 ms, so every figure carries up to ~0.1 s of observation
error; the configured intervals are printed beside the measurements so the
two can be compared.

    .venv/bin/python bench/bench_e2e.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.demo import Stack, Timing

PANEL = "web02"
ALERT = "BrainyCPMailFrozenMessages"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll every 100 ms; return the monotonic time at which ``predicate`` first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return time.monotonic()
        except Exception:  # a part not answering yet counts as "not yet"
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:g}s")


def frozen_in_prometheus(stack: Stack) -> float:
    data = stack.get_json(
        f"{stack.url('prometheus')}/api/v1/query"
        f"?query=brainycp_mail_queue_frozen_messages%7Bpanel%3D%22{PANEL}%22%7D"
    )
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else -1.0


def alert_state(stack: Stack) -> str | None:
    for alert in stack.get_json(f"{stack.url('prometheus')}/api/v1/alerts")["data"]["alerts"]:
        if alert["labels"].get("alertname") == ALERT and alert["labels"].get("panel") == PANEL:
            return str(alert["state"])
    return None


def one_run(timing: Timing) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="brainycp-bench-e2e-"))
    stack = Stack(workdir, timing=timing)
    try:
        stack.start()
        # Start from a clean panel: no frozen messages, then watch for the first one.
        wait_for(lambda: stack.sim_state(PANEL)["queue"]["messages"] >= 0, 30, "simulator")
        t_frozen = wait_for(lambda: stack.sim_state(PANEL)["queue"]["frozen"] > 0, 120, "frozen")
        t_seen = wait_for(lambda: frozen_in_prometheus(stack) > 0, 60, "frozen in Prometheus")
        t_pending = wait_for(lambda: alert_state(stack) is not None, 60, "alert pending")
        t_firing = wait_for(lambda: alert_state(stack) == "firing", 120, "alert firing")
        t_webhook = wait_for(
            lambda: any(
                a["rule"] == "clean-frozen" and a["panel"] == PANEL for a in stack.actions(limit=50)
            ),
            60,
            "webhook received",
        )
        t_acted = wait_for(
            lambda: any(
                a["rule"] == "clean-frozen"
                and a["panel"] == PANEL
                and a["outcome"] in ("succeeded", "unverified")
                for a in stack.actions(limit=50)
            ),
            60,
            "action finished",
        )
        t_rescraped = wait_for(lambda: frozen_in_prometheus(stack) == 0, 60, "zero in Prometheus")
        t_resolved = wait_for(lambda: alert_state(stack) is None, 60, "alert resolved")
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "poll + scrape (frozen -> seen by Prometheus)": t_seen - t_frozen,
        "rule evaluation (seen -> pending)": t_pending - t_seen,
        "for (pending -> firing)": t_firing - t_pending,
        "group_wait + send (firing -> webhook)": t_webhook - t_firing,
        "action (webhook -> verified)": t_acted - t_webhook,
        "next poll + scrape (action -> zero seen)": t_rescraped - t_acted,
        "resolve (zero seen -> alert gone)": t_resolved - t_rescraped,
        "TOTAL first frozen -> resolved": t_resolved - t_frozen,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for binary in ("prometheus", "prometheus-alertmanager"):
        if not shutil.which(binary):
            print(f"{binary} is not installed: apt-get install prometheus prometheus-alertmanager")
            return 2
    timing = Timing()
    print(
        f"demo configuration: exporter interval {timing.poll_interval}, list_interval "
        f"{timing.list_interval}, scrape {timing.scrape_interval}, evaluation "
        f"{timing.evaluation_interval}, group_wait {timing.group_wait}; alert `for` from "
        "alerts/ demo thresholds"
    )
    runs = [one_run(timing) for _ in range(args.runs)]
    width = max(len(k) for k in runs[0])
    print(f"\n{'stage':<{width}}  " + "  ".join(f"run {i + 1:>2}" for i in range(len(runs)))
          + ("   median" if len(runs) > 1 else ""))  # fmt: skip
    for key in runs[0]:
        values = [r[key] for r in runs]
        row = f"{key:<{width}}  " + "  ".join(f"{v:6.1f}s" for v in values)
        if len(runs) > 1:
            row += f"  {statistics.median(values):6.1f}s"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
