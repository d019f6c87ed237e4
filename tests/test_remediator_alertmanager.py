"""A real Alertmanager delivers to the real remediator, which acts on a simulated panel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
import yaml

from remediator.payload import fingerprint
from tests.remediator_support import PYTHON, RULES, TOKEN, Env, start_sim, write_config
from tests.support import free_port, require_binary, running, wait_until

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e


def test_alertmanager_notification_lands_as_an_action_on_the_panel(tmp_path: Path) -> None:
    alertmanager = require_binary("prometheus-alertmanager", "apt install prometheus-alertmanager")
    sim_port, port, am_port = free_port(), free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "config.yml", sim_port, port, tmp_path / "s.sqlite", RULES)
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
    am_args = [
        alertmanager,
        f"--config.file={am_config}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    ]
    am = f"http://127.0.0.1:{am_port}"
    with (
        running(
            start_sim(tmp_path, sim_port), log=tmp_path / "sim.log", ready_url=f"{sim}/healthz"
        ),
        running(
            [PYTHON, "-m", "remediator.cli", "--config", str(config)],
            log=tmp_path / "remediator.log",
            ready_url=f"{url}/healthz",
        ),
        running(am_args, log=tmp_path / "am.log", ready_url=f"{am}/-/ready", timeout=30),
    ):
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
