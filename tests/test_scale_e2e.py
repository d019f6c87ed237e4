"""A real Prometheus in multi-target mode against two exporter shards.

Prometheus discovers the panels from both replicas' ``/sd`` (the shipped job of
``deploy/prometheus-multi-target.yml``), scrapes ``/probe?target=PANEL`` for each, and
sees every panel exactly once with ``brainycp_up`` 1. A second job applies Prometheus's
own ``hashmod`` relabelling to the panel names, to hold our shard function to it.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.shard import hashmod
from tests.harness import prometheus_args, serving, serving_on_free_port
from tests.support import REPO, exporter_cmd, require_binary, sim_args, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "scale-e2e-pw"
PANELS = [f"shop-{i:02d}" for i in range(10)]
SHARDS = 2


def prometheus_config(replicas: list[int]) -> dict[str, Any]:
    shipped = yaml.safe_load((REPO / "deploy" / "prometheus-multi-target.yml").read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "brainycp-mail-exporter")
    job["http_sd_configs"] = [
        {"url": f"http://127.0.0.1:{port}/sd", "refresh_interval": "1s"} for port in replicas
    ]
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    hashmod_check = {
        "job_name": "hashmod-check",
        "scrape_interval": "1h",
        "static_configs": [
            {"targets": [f"127.0.0.1:1{i:02d}"], "labels": {"name": p}}
            for i, p in enumerate(PANELS)
        ],
        "relabel_configs": [
            {
                "source_labels": ["name"],
                "modulus": SHARDS,
                "target_label": "shard",
                "action": "hashmod",
            }
        ],
    }
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": [job, hashmod_check]}


def test_prometheus_discovers_every_panel_once_across_two_shards(tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", "apt-get install prometheus")
    args = sim_args(0, "--users", f"admin:{PASSWORD}:root")
    for panel in PANELS:
        args += ["--panel", f"{panel}:quiet:exim"]
    with ExitStack() as stack:
        sim = stack.enter_context(serving(args, log=tmp_path / "sim.log")).url
        config = write_exporter_config(tmp_path, sim)
        replicas = [
            stack.enter_context(
                serving(
                    exporter_cmd(config, "--shard", f"{i}/{SHARDS}"),
                    log=tmp_path / f"shard{i}.log",
                    env={"SIM_PW": PASSWORD},
                    cwd=REPO,
                )
            ).port
            for i in range(SHARDS)
        ]
        discovered_once_across_shards(stack, prometheus, tmp_path, replicas)


def write_exporter_config(tmp_path: Path, sim: str) -> Path:
    """The shards' one config: every panel of the simulator at ``sim``."""
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "username": "admin",
                    "password_env": "SIM_PW",
                    "labels": {"dc": "ams1"},
                },
                "panels": {p: {"url": f"{sim}/panel/{p}/api/api.php"} for p in PANELS},
                "exporter": {"interval": "1s", "list_interval": "2s"},
            }
        )
    )
    return config


def discovered_once_across_shards(
    stack: ExitStack, prometheus: str, tmp_path: Path, replicas: list[int]
) -> None:
    """Each replica's /sd lists only its own panels, together every panel once; Prometheus,
    discovering through both, scrapes every panel once."""
    prom_yml = tmp_path / "prometheus.yml"
    prom_yml.write_text(yaml.safe_dump(prometheus_config(replicas)))

    prom_args = prometheus_args(prometheus, prom_yml, tmp_path / "data")
    prom = stack.enter_context(
        serving_on_free_port(
            prom_args, log=tmp_path / "prometheus.log", ready_path="/-/ready", timeout=30
        )
    ).url

    def query(expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]  # type: ignore[no-any-return]

    # Each replica's /sd lists only its own panels; together every panel once.
    served = {
        port: [e["labels"]["panel"] for e in httpx.get(f"http://127.0.0.1:{port}/sd").json()]
        for port in replicas
    }
    assert sorted(served[replicas[0]] + served[replicas[1]]) == PANELS
    for index, port in enumerate(replicas):
        assert all(hashmod(p, SHARDS) == index for p in served[port])

    def all_up() -> list[dict[str, Any]] | None:
        result = query('brainycp_up{job="brainycp-mail-exporter"}')
        return (
            result
            if len(result) == len(PANELS) and all(r["value"][1] == "1" for r in result)
            else None
        )

    result = wait_until(all_up, timeout=45, interval=0.5, what="brainycp_up 1 for every panel")
    assert Counter(r["metric"]["panel"] for r in result) == Counter(PANELS)
    for r in result:
        # One target per panel: Prometheus's own up is per panel, scraped at the replica
        # that serves it; labels from /sd, no exported_ duplicates.
        assert r["metric"]["dc"] == "ams1"
        assert not any(k.startswith("exported_") for k in r["metric"])
        port = replicas[hashmod(r["metric"]["panel"], SHARDS)]
        assert r["metric"]["instance"] == f"127.0.0.1:{port}"
    targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    probes = [t for t in targets if t["labels"]["job"] == "brainycp-mail-exporter"]
    assert sorted(t["labels"]["panel"] for t in probes) == PANELS
    assert all("/probe?target=" in t["scrapeUrl"] for t in probes)
    per_panel_up = query('up{job="brainycp-mail-exporter"}')
    assert sorted(r["metric"]["panel"] for r in per_panel_up) == PANELS
    # Prometheus's hashmod of each name is our shard index.
    checks = [t for t in targets if t["labels"]["job"] == "hashmod-check"]
    assert len(checks) == len(PANELS)
    for t in checks:
        name = t["discoveredLabels"]["name"]
        assert int(t["labels"]["shard"]) == hashmod(name, SHARDS), name


def test_promtool_accepts_the_multi_target_config(tmp_path: Path) -> None:

    promtool = require_binary("promtool", "apt-get install prometheus")
    config = yaml.safe_load((REPO / "deploy" / "prometheus-multi-target.yml").read_text())
    config["rule_files"] = [str(REPO / "alerts" / "brainycp-mail.rules.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    # The alerts watch these job names in both modes.
    assert {"brainycp-mail-exporter", "brainycp-mail-remediator"} <= jobs
