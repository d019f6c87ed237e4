"""A real Alertmanager delivers to the real remediator, which acts on a simulated panel."""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml

from remediator.payload import fingerprint
from tests.remediator_support import RULES, TOKEN, Env, remediator_cmd, start_sim, write_config
from tests.support import (
    alertmanager_args,
    require_binary,
    serving,
    serving_on_free_port,
    wait_until,
)

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e


def test_alertmanager_notification_lands_as_an_action_on_the_panel(tmp_path: Path) -> None:
    alertmanager = require_binary("prometheus-alertmanager", "apt install prometheus-alertmanager")
    with ExitStack() as stack:
        simulator = stack.enter_context(serving(start_sim(tmp_path, 0), log=tmp_path / "sim.log"))
        config = write_config(
            tmp_path / "config.yml", simulator.port, None, tmp_path / "s.sqlite", RULES
        )
        remediator = stack.enter_context(
            serving(remediator_cmd(config), log=tmp_path / "remediator.log")
        )
        alertmanager_sends_to(stack, alertmanager, tmp_path, simulator.url, remediator.url)


def alertmanager_sends_to(
    stack: ExitStack, alertmanager: str, tmp_path: Path, sim: str, url: str
) -> None:
    """Alertmanager routing to the remediator at ``url``: an alert posted to it restarts
    ClamAV on the simulator's panel svc, through the remediator's rule."""
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "brainycp-remediator",
                    "group_by": ["alertname", "panel"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "brainycp-remediator",
                        "webhook_configs": [
                            {
                                "url": f"{url}/webhook",
                                "send_resolved": True,
                                "max_alerts": 0,
                                "http_config": {
                                    "authorization": {
                                        "type": "Bearer",
                                        "credentials_file": str(tmp_path / "webhook.token"),
                                    }
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )

    am_args = alertmanager_args(alertmanager, am_config, tmp_path / "am-data")
    am = stack.enter_context(
        serving_on_free_port(am_args, log=tmp_path / "am.log", ready_path="/-/ready", timeout=30)
    ).url
    env = Env(sim, url, httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}), tmp_path)
    env.sim_post("svc", "pause", {"paused": True})
    env.sim_post("svc", "daemon", {"clamav": "stopped"})
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    alert = {
        "labels": {"alertname": "BrainyCPClamAVDown", "panel": "svc", "severity": "critical"},
        "annotations": {"summary": "ClamAV is down on svc"},
        "startsAt": now,
        "generatorURL": "http://prometheus.example/graph",
    }
    httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
    wait_until(
        lambda: env.state("svc")["daemons"]["clamav"] == "running",
        timeout=30,
        what="Alertmanager -> remediator -> restart on the panel",
    )
    rows = env.client.get(f"{url}/actions", params={"rule": "restart-clamav"}).json()
    (row,) = rows["actions"]
    assert row["alert"]["alertname"] == "BrainyCPClamAVDown"
    # Our fallback fingerprint is Alertmanager's own.
    assert row["alert"]["fingerprint"] == fingerprint(alert["labels"])
    assert [c for c in env.calls("svc") if c[0] == "clamav"] == [
        ("clamav", "status"), ("clamav", "off"), ("clamav", "on"), ("clamav", "status"),
    ]  # fmt: skip
    env.client.close()
