"""``make demo``: status lines fit 120 columns, each finished action is printed once,
and closing the terminal (SIGHUP) stops everything the demo started."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.demo import TABLE_HEAD, WIDTH, new_action_lines, panel_line
from tests.harness import start, stop
from tests.support import PYTHON, REPO, wait_until


def test_status_lines_fit_120_columns_with_the_widest_values() -> None:
    state = {
        "queue": {"messages": 999_999, "frozen": 99_999, "bounces": 9_999_999},
        "daemons": {"clamav": "unknown", "spamassassin": "stopped"},
    }
    exported = {
        ("brainycp_up", "web02"): 1.0,
        ("brainycp_mail_queue_messages", "web02"): 999_999.0,
        ("brainycp_mail_queue_frozen_messages", "web02"): 99_999.0,
    }
    lines = [
        TABLE_HEAD,
        panel_line("web02", "frozen-pileup/exim", state, exported),
        panel_line("web02", "frozen-pileup/exim", state, {}),
        panel_line("web02", "frozen-pileup/exim", None, exported),
    ]
    assert all(len(line) <= WIDTH for line in lines), [len(line) for line in lines]
    # The columns line up under the head.
    assert lines[1].index("|") == TABLE_HEAD.index("|")
    assert "999999  99999" in lines[1]


def test_each_finished_action_is_printed_once() -> None:
    printed: set[int] = set()
    running = {"id": 2, "rule": "clean-frozen", "panel": "web02", "outcome": "running"}
    done = {"id": 1, "rule": "restart-clamav", "panel": "web03", "outcome": "succeeded",
            "reason": "clamav was stopped, now running " + "x" * 200}  # fmt: skip
    first = new_action_lines([running, done], printed)
    assert len(first) == 1 and first[0].startswith("  action #1 restart-clamav on web03")
    assert len(first[0]) <= WIDTH
    assert new_action_lines([running, done], printed) == []
    finished = {**running, "outcome": "succeeded", "reason": "frozen messages 3 -> 0"}
    assert new_action_lines([finished, done], printed) == [
        "  action #2 clean-frozen on web02: succeeded (frozen messages 3 -> 0)"
    ]


def check_banner_credentials(banner: str) -> None:
    """The credentials the banner prints open the remediator's pages and its webhook."""
    found = re.search(r"curl -u (\S+):(\S+) (http://\S+/actions)", banner)
    assert found, "the banner names no credentials for the remediator's API"
    user, password, actions = found.groups()
    assert httpx.get(actions, timeout=5).status_code == 401
    assert httpx.get(actions, auth=(user, password), timeout=5).status_code == 200
    hook = re.search(r"(http://\S+/webhook) .*Authorization: Bearer (\S+?)\)", banner)
    assert hook, "the banner names no token for the webhook"
    url, token = hook.groups()
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(url, json={}, timeout=5).status_code == 401
    # Authorized: the empty body is then refused for what it is, not for who sent it.
    assert httpx.post(url, json={}, headers=headers, timeout=5).status_code == 422


@pytest.mark.e2e
def test_sighup_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    proc = start(
        [PYTHON, "-m", "tests.demo", "--no-prometheus", "--interval", "1"],
        log=log,
        cwd=REPO,
    )
    try:
        urls = wait_until(
            lambda: re.findall(r"http://127\.0\.0\.1:\d+", log.read_text()),
            timeout=60,
            what="the demo's URLs",
        )
        wait_until(lambda: "--- t+" in log.read_text(), timeout=60, what="a status line")
        for url in urls[:3]:
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        check_banner_credentials(log.read_text())
        os.kill(proc.pid, signal.SIGHUP)  # the terminal closed
        assert proc.wait(60) == 0
    finally:
        stop(proc)
    text = log.read_text()
    assert "stopped; nothing left running." in text
    for url in urls[:3]:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=2)
    status = [line for line in text.splitlines() if not line.startswith(("  ", "brainycp"))]
    assert max(len(line) for line in status) <= WIDTH, max(status, key=len)


@pytest.mark.e2e
def test_the_demo_remediator_has_a_console_user_and_prometheus_still_scrapes_it(
    tmp_path: Path,
) -> None:
    import bcrypt
    import yaml

    from brainycp.daemon.webconfig import load_web_config
    from tests.demo import CONSOLE_PASSWORD, CONSOLE_USER, Ports, Stack

    Stack(tmp_path, ports=Ports.any_free()).write_configs()  # no process is started
    web = load_web_config(tmp_path / "web.yml")
    assert bcrypt.checkpw(CONSOLE_PASSWORD.encode(), web.users[CONSOLE_USER])
    assert (tmp_path / "console.pass").stat().st_mode & 0o077 == 0
    jobs = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]
    (job,) = [j for j in jobs if j["job_name"] == "brainycp-mail-remediator"]
    assert job["basic_auth"]["username"] == CONSOLE_USER
    assert Path(job["basic_auth"]["password_file"]).read_text().strip() == CONSOLE_PASSWORD
