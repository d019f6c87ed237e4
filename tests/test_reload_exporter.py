"""Reload of the real exporter process: SIGHUP and POST /-/reload apply a new panel set
(added panels polled, removed ones gone, changed ones changed, unchanged ones untouched),
and a bad config changes nothing but the reload metrics."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.shard import in_shard
from tests.support import exporter_cmd, secret_file, serving, sim_args, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "panel-pw"
USER, USER_PASSWORD = "prom", "scrape-pw"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    args = sim_args(0, "--users", f"admin:{PASSWORD}:root", "--panels", "4")
    with serving(args, log=log) as simulator:
        yield simulator.url


def panel(sim: str, index: int, password_file: Path, **extra: Any) -> dict[str, Any]:
    return {
        "url": f"{sim}/panel/panel{index + 1:04d}/api/api.php",
        "username": "admin",
        "password_file": str(password_file),
        **extra,
    }


def scrape(port: int, auth: tuple[str, str] | None = (USER, USER_PASSWORD)) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def up(samples: Samples) -> dict[str, float]:
    return {dict(k[1])["panel"]: v for k, v in samples.items() if k[0] == "brainycp_up"}


def last_success(samples: Samples, name: str) -> float | None:
    labels = (("operation", "count_msg"), ("panel", name))
    return samples.get(("brainycp_poll_last_success_timestamp_seconds", labels))


def test_sighup_and_post_reload_apply_a_new_panel_set(sim: str, tmp_path: Path) -> None:
    good = tmp_path / "good.pass"
    good.write_text(PASSWORD + "\n")
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-it\n")
    for secret in (good, wrong):
        secret.chmod(0o600)
    hashed = bcrypt.hashpw(USER_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
    config_path = tmp_path / "config.yml"

    def write_config(panels: dict[str, Any], **exporter: Any) -> None:
        exporter = {"interval": "1s", "list_interval": "0", **exporter}
        config_path.write_text(yaml.safe_dump({"panels": panels, "exporter": exporter}))

    # keep: never changes; changed: its password file changes; gone: removed later.
    write_config(
        {
            "keep": panel(sim, 0, good, interval="1h"),
            "changed": panel(sim, 1, good),
            "gone": panel(sim, 2, good),
        }
    )
    args = exporter_cmd(config_path, "--web.config.file", str(web))
    log = tmp_path / "exporter.log"
    with serving(args, log=log, ready_path=None) as served:
        port, proc = served.port, served.proc
        first = wait_until(
            lambda: (s := scrape(port)) and up(s) == {"keep": 1, "changed": 1, "gone": 1} and s,
            what="the three panels polled",
        )
        kept_success = last_success(first, "keep")
        assert kept_success is not None
        assert first[("brainycp_config_last_reload_successful", ())] == 1

        # 1. SIGHUP: add one, remove one, change one's credentials.
        write_config(
            {
                "keep": panel(sim, 0, good, interval="1h"),
                "changed": panel(sim, 1, wrong),
                "added": panel(sim, 3, good),
            }
        )
        os.kill(proc.pid, signal.SIGHUP)
        after = wait_until(
            lambda: (s := scrape(port)) and up(s) == {"keep": 1, "changed": 0, "added": 1} and s,
            what="the new panel set in /metrics",
        )
        assert proc.poll() is None, "SIGHUP must not end the exporter"
        assert not any(dict(k[1]).get("panel") == "gone" for k in after)
        auth_errors = (("operation", "count_msg"), ("panel", "changed"), ("reason", "auth"))
        assert after[("brainycp_poll_errors_total", auth_errors)] >= 1
        # The unchanged panel (polled hourly) kept its state: no new poll, same value.
        assert last_success(after, "keep") == kept_success
        assert after[("brainycp_config_last_reload_successful", ())] == 1
        reloaded_at = after[("brainycp_config_last_reload_success_timestamp_seconds", ())]

        # 2. POST /-/reload needs the web config's users.
        reload_url = f"http://127.0.0.1:{port}/-/reload"
        assert httpx.post(reload_url, timeout=10).status_code == 401
        assert httpx.post(reload_url, auth=(USER, "wrong"), timeout=10).status_code == 401
        assert httpx.get(reload_url, auth=(USER, USER_PASSWORD), timeout=10).status_code == 405

        # 3. A config that fails validation changes nothing and says why, one line each.
        config_path.write_text(
            "panels:\n  keep:\n    url: http://127.0.0.1:0\n    url: http://x\n"
            "exporter:\n  interval: soon\n"
        )
        refused = httpx.post(reload_url, auth=(USER, USER_PASSWORD), timeout=30)
        assert refused.status_code == 400
        body = refused.json()
        assert body["status"] == "error"
        assert body["errors"] == [
            "panels.keep.url: appears twice in the same mapping (lines 3 and 4);"
            " YAML would silently keep only the last"
        ]
        still = scrape(port)
        assert up(still) == {"keep": 1, "changed": 0, "added": 1}
        assert still[("brainycp_config_last_reload_successful", ())] == 0
        assert still[("brainycp_config_last_reload_success_timestamp_seconds", ())] == reloaded_at
        text = log.read_text()
        assert "reload (/-/reload): panels.keep.url: appears twice" in text
        assert "still running with the previous config" in text

        # 4. Fixed again over HTTP: the credentials change back, the metric recovers.
        write_config(
            {
                "keep": panel(sim, 0, good, interval="1h"),
                "changed": panel(sim, 1, good),
                "added": panel(sim, 3, good),
            }
        )
        ok = httpx.post(reload_url, auth=(USER, USER_PASSWORD), timeout=30)
        assert ok.status_code == 200 and ok.json() == {"status": "success"}
        final = wait_until(
            lambda: (s := scrape(port)) and up(s) == {"keep": 1, "changed": 1, "added": 1} and s,
            what="the changed panel back up",
        )
        assert final[("brainycp_config_last_reload_successful", ())] == 1
        assert last_success(final, "keep") == kept_success
    assert "exporter stopped" in log.read_text()


def test_reload_over_http_is_refused_without_a_web_config(sim: str, tmp_path: Path) -> None:
    secret = secret_file(tmp_path / "pw", PASSWORD)
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump({"panels": {"keep": panel(sim, 0, secret)}}))
    with serving(exporter_cmd(config_path), log=tmp_path / "log") as served:
        port = served.port
        refused = httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=10)
        assert refused.status_code == 403
        assert "SIGHUP" in refused.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200


def test_a_reload_moves_panels_between_shards_unless_the_command_line_pins_it(
    sim: str, tmp_path: Path
) -> None:
    """Changing exporter.shard in the file re-splits the fleet at SIGHUP; --shard wins."""
    secret = secret_file(tmp_path / "panel.pass", PASSWORD + "\n")
    names = [f"web{i:02d}" for i in range(12)]
    config_path = tmp_path / "config.yml"

    def write_config(shard: str) -> None:
        # Each reload also relabels the panels: labels follow the file like the shard.
        panels = {
            name: panel(sim, i % 4, secret, labels={"dc": f"dc-{shard[0]}"})
            for i, name in enumerate(names)
        }
        exporter = {"interval": "1h", "list_interval": "0", "shard": shard}
        config_path.write_text(yaml.safe_dump({"panels": panels, "exporter": exporter}))

    def served(port: int) -> set[str]:
        entries = httpx.get(f"http://127.0.0.1:{port}/sd", timeout=10).json()
        return {entry["labels"]["panel"] for entry in entries}

    def expected(index: int, count: int) -> set[str]:
        return {name for name in names if in_shard(name, (index, count))}

    assert expected(0, 2) and expected(1, 2), "the names must split across two shards"
    write_config("0/1")
    follows = exporter_cmd(config_path)
    pinned = exporter_cmd(config_path, "--shard", "1/3")
    with (
        serving(follows, log=tmp_path / "follows.log") as following,
        serving(pinned, log=tmp_path / "pinned.log") as pinning,
    ):
        port, proc = following.port, following.proc
        pinned_port, pinned_proc = pinning.port, pinning.proc
        assert served(port) == set(names)
        assert served(pinned_port) == expected(1, 3)
        for shard, (index, count) in (("0/2", (0, 2)), ("1/2", (1, 2))):
            write_config(shard)
            for pid in (proc.pid, pinned_proc.pid):
                os.kill(pid, signal.SIGHUP)
            wait_until(lambda i=index, c=count: served(port) == expected(i, c), what=shard)
            info = (("count", str(count)), ("index", str(index)))
            samples = scrape(port, auth=None)
            assert samples[("brainycp_exporter_shard_info", info)] == 1
            panel_info = {
                dict(k[1])["panel"]: dict(k[1])["dc"]
                for k in samples
                if k[0] == "brainycp_panel_info"
            }
            assert panel_info == dict.fromkeys(expected(index, count), f"dc-{index}")
            # The replica started with --shard keeps its shard through the same reloads.
            wait_until(
                lambda: (
                    scrape(pinned_port, auth=None)[
                        ("brainycp_config_last_reload_success_timestamp_seconds", ())
                    ]
                    > 0
                ),
                what="the pinned replica reloaded",
            )
            assert served(pinned_port) == expected(1, 3)
