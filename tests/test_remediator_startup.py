"""Start-up safety of the real remediator process: one process per journal, a busy port."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from brainycp.daemon.listener import listen_socket
from remediator.journal import Journal
from tests.harness import taken_port
from tests.remediator_support import (
    RULES,
    TOKEN,
    am_alert,
    notification,
    only_result,
    remediator_cmd,
    slow_delete_scene,
    write_config,
)
from tests.support import ANY_PORT, PYTHON, running, serving, wait_until


@pytest.mark.e2e
def test_a_second_remediator_on_the_same_journal_refuses_to_start(tmp_path: Path) -> None:
    with (
        slow_delete_scene(tmp_path) as (env, args),
        running(args, log=tmp_path / "first.log", ready_url=f"{env.url}/healthz"),
    ):
        result = only_result(
            env.post(notification(am_alert("BrainyCPMailBouncesPiling", "bounce")))
        )
        wait_until(
            lambda: env.action(result["action_id"])["outcome"] == "running",
            what="the delete to be in flight",
        )
        # Same journal on another port (say, a --listen override started by mistake).
        second = subprocess.run(
            [*args, *ANY_PORT],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 1
        assert "another remediator is using it" in second.stderr
        # The live instance's in-flight action was not touched by a second recovery.
        assert env.action(result["action_id"])["outcome"] == "running"


@pytest.mark.e2e
def test_a_busy_port_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    with taken_port() as port:
        config = write_config(tmp_path / "config.yml", 1, port, tmp_path / "s.sqlite", RULES)
        out = subprocess.run(
            [PYTHON, "-m", "remediator.cli", "--config", str(config)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.e2e
def test_pathological_json_gets_4xx_not_500(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yml", 1, None, tmp_path / "s.sqlite", RULES)
    with serving(remediator_cmd(config), log=tmp_path / "remediator.log") as served:
        url = served.url
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        good = notification(am_alert("NoRuleForThis", "frozen"))
        surrogate = json.dumps(good).replace('"frozen"', '"fro\\udc00zen"', 1)
        with httpx.Client(headers=headers, timeout=10) as client:
            deep = client.post(f"{url}/webhook", content=b"[" * 200_000)
            lone = client.post(f"{url}/webhook", content=surrogate.encode())
        assert deep.status_code == 400 and "error" in deep.json()
        assert lone.status_code == 422 and "Unicode" in lone.json()["error"]
    assert "Traceback" not in (tmp_path / "remediator.log").read_text()


def test_the_listening_socket_gives_connections_tcp_nodelay() -> None:
    """Without TCP_NODELAY every webhook answer (head and body written apart) waits ~40 ms."""

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = listen_socket("127.0.0.1", 0)
        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            result = await asyncio.wait_for(seen, 10)
            writer.close()
        return result

    assert asyncio.run(accepted_nodelay()) != 0


@pytest.mark.e2e
def test_old_journal_rows_are_pruned_at_start(tmp_path: Path) -> None:
    """The default retention is 90 days; the newest run of each episode always stays."""
    state = tmp_path / "s.sqlite"
    long_ago = time.time() - 200 * 86400
    journal = Journal(state)
    common = dict(
        rule="clean-frozen", panel="frozen", action="delete_frozen", reason="", alertname="X",
        fingerprint="f", starts_at="s", alert_status="firing", labels={}, dedupe_key="K",
    )  # fmt: skip
    old_run = journal.insert(outcome="succeeded", received_at=long_ago, **common)  # type: ignore[arg-type]
    last_run = journal.insert(outcome="succeeded", received_at=long_ago + 1, **common)  # type: ignore[arg-type]
    repeat = journal.insert(outcome="skipped_duplicate", received_at=long_ago + 2, **common)  # type: ignore[arg-type]
    journal.close()
    config = write_config(tmp_path / "config.yml", 1, None, state, RULES)
    with serving(remediator_cmd(config), log=tmp_path / "remediator.log") as served:
        url = served.url
        rows = httpx.get(
            f"{url}/actions",
            params={"limit": 100},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).json()
    ids = {row["id"] for row in rows["actions"]}
    assert last_run in ids and old_run not in ids and repeat not in ids
    assert "journal: pruned 2 rows older than 90d" in (tmp_path / "remediator.log").read_text()


@pytest.mark.e2e
def test_a_corrupt_journal_is_refused_at_start_with_exit_2_and_left_untouched(
    tmp_path: Path,
) -> None:
    state = tmp_path / "s.sqlite"
    journal = Journal(state)
    for n in range(300):
        journal.insert(
            rule="r", panel="frozen", action="delete_frozen", outcome="dry_run", reason="x" * 200,
            received_at=float(n), alertname="X", fingerprint="f", starts_at=str(n),
            alert_status="firing", labels={}, dedupe_key=str(n),
        )  # fmt: skip
    journal.close()
    with open(state, "r+b") as handle:
        handle.seek(4096 * 5)
        handle.write(b"\xa5" * 4096 * 3)
    before = state.read_bytes()
    config = write_config(tmp_path / "config.yml", 1, None, state, RULES)
    out = subprocess.run(
        remediator_cmd(config), capture_output=True, text=True, timeout=30
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert f"journal {state}: corrupt" in out.stderr and f"mv {state} {state}.bad" in out.stderr
    assert "Traceback" not in out.stderr
    assert state.read_bytes() == before
