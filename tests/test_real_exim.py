"""The whole loop on a real Exim queue: simulator ``--mta exim``, exporter, remediator.

A throwaway Exim (Debian's exim4-daemon-light binary, own configuration, spool and log
under a temporary directory, no daemon) holds frozen and unfrozen messages. Its
configuration routes every address to ``:defer:``, so no delivery attempt, forced ones
included, ever reaches a transport: nothing can leave the machine (docs/simulator.md).
The truth comes from Exim's own tools (``exim -bpc``, ``exiqgrep``), never from our parser.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from brainycp.simulator.app import User
from brainycp.simulator.mta import (
    CommandFailed,
    EximCommands,
    EximPanelApp,
    is_exim_id,
    run_command,
)
from tests.exim_support import (
    EximQueue,
    temporary_queue,
)
from tests.remediator_support import am_alert, notification, remediator_cmd
from tests.support import (
    REPO,
    exporter_cmd,
    require_binary,
    serving,
    sim_args,
    wait_until,
)

PASSWORD = "real-exim-pw"
TOKEN = "real-exim-webhook-token-77"


@pytest.fixture
def queue() -> Iterator[EximQueue]:
    with temporary_queue() as exim_queue:
        yield exim_queue


def fill(queue: EximQueue) -> dict[str, list[str]]:
    """Three plain messages, one bounce, three frozen ones (one a bounce); ids by kind."""
    plain = [
        queue.submit("alice@example.org", "bob@example.net"),
        queue.submit("billing@shop.example.org", "accounts@example.com", "ledger@example.com"),
        queue.submit("newsletter@lists.example.com", "bob@example.net", body="x" * 5000),
    ]
    bounce = [queue.submit("", "grace@example.com")]
    frozen = [
        queue.submit("", "frank@example.net"),
        queue.submit("backup@storage.example.org", "archive@example.com"),
        queue.submit("", "spammer@bogus.example"),
    ]
    result = queue.run("-Mf", *frozen)
    assert result.returncode == 0, result.stderr
    assert queue.frozen_ids() == set(frozen)
    return {"plain": plain, "bounce": bounce, "frozen": frozen}


# ------------------------------------------------------------------ the Exim configuration


@pytest.mark.e2e
def test_forced_delivery_defers_locally_and_the_message_stays(queue: EximQueue) -> None:
    message = queue.submit("alice@example.org", "bob@example.net", "root@localhost")
    frozen = queue.submit("", "frank@example.net")
    assert queue.run("-Mf", frozen).returncode == 0
    for forced in (message, frozen):
        result = queue.run("-M", forced)
        assert result.returncode == 0, result.stderr
    assert sorted(queue.ids()) == sorted([message, frozen])
    # The router deferred every address; no transport ran, nothing was delivered.
    log = queue.mainlog() or result.stderr
    assert re.search(rf"{message} == bob@example.net R=defer_everything defer", log), log
    assert " T=" not in log and " => " not in log and " -> " not in log, log
    assert "** " not in log, log  # no address failed (so no bounce was made either)


# ------------------------------------------------------------------ the simulator's panel


def api(base: str, operation: str, **extra: str) -> dict[str, Any]:
    form = {"username": "admin", "password": PASSWORD, "mailserver": "1", operation: "1"}
    form["language"] = "en"
    response = httpx.post(f"{base}/api/api.php", data={**form, **extra}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def sim(queue: EximQueue, tmp_path: Path) -> Iterator[str]:
    args = sim_args(0, "--mta", "exim", "--users", f"admin:{PASSWORD}:root")
    args += ["--exim", queue.exim, "--exiqgrep", queue.exiqgrep, "--exim-config", str(queue.config)]
    with serving(args, log=tmp_path / "sim.log") as simulator:
        yield simulator.url


@pytest.mark.e2e
def test_panel_answers_from_the_real_queue(queue: EximQueue, sim: str) -> None:
    assert api(sim, "list_msg")["error"] == 100  # empty queue: not a failure
    assert api(sim, "count_msg") == {"error": 0, "message": "Number of messages", "detail": 0}
    ids = fill(queue)
    listing = api(sim, "list_msg")
    assert listing["error"] == 0 and listing["detail"] == queue.run("-bp").stdout
    assert api(sim, "count_msg")["detail"] == queue.count() == 7

    victim = ids["plain"][0]
    deleted = api(sim, "controll_msg", command="delete", id=victim)
    assert deleted["error"] == 0 and f"Message {victim} has been removed" in deleted["detail"]
    assert victim not in queue.ids() and queue.count() == 6

    reshipped = api(sim, "controll_msg", command="reship", id=ids["frozen"][1])
    assert reshipped["error"] == 0
    assert ids["frozen"][1] in queue.ids()  # forced, deferred, still queued (and unfrozen)
    assert queue.frozen_ids() == {ids["frozen"][0], ids["frozen"][2]}

    forced = api(sim, "delete_all_msg", dellete_forse="1")
    assert forced["error"] == 100 and queue.count() == 6
    everything = api(sim, "delete_all_msg")
    assert everything["error"] == 0 and everything["detail"].count("has been removed") == 6
    assert queue.count() == 0 and api(sim, "list_msg")["error"] == 100


@pytest.mark.e2e
def test_panel_refuses_bad_ids_and_logins(queue: EximQueue, sim: str) -> None:
    kept = queue.submit("alice@example.org", "bob@example.net")
    for hostile in ("-bp", "--help", f"{kept} -Mrm", f"{kept};rm", "../x", "1xW6VZ-0000xu"):
        answer = api(sim, "controll_msg", command="delete", id=hostile)
        assert answer["error"] == 0
        assert answer["detail"] == f"exim: malformed message id {hostile} after -Mrm option\n"
    assert api(sim, "controll_msg", command="delete")["error"] == 101
    assert api(sim, "controll_msg", command="purge", id=kept)["error"] == 100
    assert queue.ids() == [kept]
    wrong = httpx.post(
        f"{sim}/api/api.php",
        data={"username": "admin", "password": "nope", "mailserver": "1", "delete_all_msg": "1"},
    )
    assert wrong.json() == {"code": 1, "message": "Not perm2"}
    by_login = {"login": "admin", "pass": PASSWORD, "mailserver": "1", "count_msg": "1"}
    assert httpx.post(f"{sim}/api/api.php", data=by_login).json()["detail"] == 1
    assert queue.ids() == [kept]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40))
def test_only_exact_exim_ids_reach_a_command_line(tmp_path_factory: Any, text: str) -> None:
    # A stand-in "exim" records its argv, so we see exactly what would have run.
    record = tmp_path_factory.getbasetemp() / "argv.txt"
    fake = tmp_path_factory.getbasetemp() / "fake-exim"
    if not fake.exists():
        fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {record}\n')
        fake.chmod(0o755)
    record.write_text("")
    app = EximPanelApp(EximCommands(exim=str(fake), timeout=10), {"admin": User("pw", "root")})
    for command in ("delete", "reship"):
        params = {"mailserver": "1", "controll_msg": "1", "command": command, "id": text}
        answer = asyncio.run(app.answer(params, "controll_msg", app.users["admin"], True))
        assert answer["error"] in (0, 101)
    ran = record.read_text().split("\n")[:-1]
    if is_exim_id(text.strip()):
        assert ran == ["-Mrm", text.strip(), "-M", text.strip()]
    else:
        assert ran == []


def test_exim_id_shapes() -> None:
    for good in ("1xW6VZ-0000xu-1S", "16VDhn-000000001bo-D342"):
        assert is_exim_id(good)
    for bad in ("1xW6VZ-0000xu-1S\n", " 1xW6VZ-0000xu-1S", "1xW6VZ-0000xu-1", "-xW6VZ-0000xu-1S",
                "16VDhn-00000001bo-D342", "1xW6VZ-0000xü-1S", "1xW6VZ_0000xu_1S"):  # fmt: skip
        assert not is_exim_id(bad)


@pytest.mark.e2e
def test_a_command_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; exec sleep 600"
    with pytest.raises(CommandFailed, match=r"timed out after 0\.3s"):
        asyncio.run(run_command(["sh", "-c", script], 0.3))
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ------------------------------------------------------------------ the whole loop


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def queue_metrics(base: str) -> tuple[float | None, float | None]:
    samples = metrics(base)
    label = (("panel", "mx"),)
    return (
        samples.get(("brainycp_mail_queue_messages", label)),
        samples.get(("brainycp_mail_queue_frozen_messages", label)),
    )


@pytest.mark.e2e
def test_frozen_alert_empties_the_frozen_part_of_a_real_queue(
    queue: EximQueue, sim: str, tmp_path: Path
) -> None:
    ids = fill(queue)
    unfrozen = set(ids["plain"] + ids["bounce"])
    # The truth, from Exim's own tools.
    assert (queue.count(), queue.frozen_count()) == (7, 3)

    secret = tmp_path / "panel.pw"
    secret.write_text(PASSWORD + "\n")
    token = tmp_path / "webhook.token"
    token.write_text(TOKEN + "\n")
    config = {
        "defaults": {"username": "admin", "password_file": str(secret), "timeout": "20s"},
        "panels": {"mx": {"url": f"{sim}/api/api.php"}},
        "exporter": {"interval": "1s", "list_interval": "1s"},
        "remediator": {
            "auth": {"bearer_token_file": str(token)},
            "state_file": str(tmp_path / "state.sqlite"),
            "action_timeout": "60s",
            "rules": [
                {
                    "name": "clean-frozen",
                    "matchers": ['alertname="BrainyCPMailFrozenMessages"'],
                    "action": "delete_frozen",
                }
            ],
        },
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    with (
        serving(exporter_cmd(path), log=tmp_path / "exporter.log", cwd=REPO) as exporter_daemon,
        serving(
            remediator_cmd(path), log=tmp_path / "remediator.log", cwd=REPO
        ) as remediator_daemon,
    ):
        exporter, remediator = exporter_daemon.url, remediator_daemon.url
        wait_until(
            lambda: queue_metrics(exporter) == (queue.count(), queue.frozen_count()),
            timeout=30,
            what="the exporter to show exim -bpc (7) and exiqgrep -z -c (3)",
        )
        body = notification(am_alert("BrainyCPMailFrozenMessages", "mx"))
        response = httpx.post(
            f"{remediator}/webhook",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        assert result["rule"] == "clean-frozen"

        def final() -> dict[str, Any] | None:
            rows = httpx.get(
                f"{remediator}/actions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
            ).json()["actions"]
            row = next(a for a in rows if a["id"] == result["action_id"])
            return row if row["outcome"] not in ("pending", "running") else None

        action = wait_until(final, timeout=60, what="the delete_frozen action to finish")
        assert action["outcome"] == "succeeded", action
        # The real queue: no frozen message, every other message still there.
        assert queue.frozen_ids() == set()
        assert set(queue.ids()) == unfrozen
        wait_until(
            lambda: queue_metrics(exporter) == (4, 0),
            timeout=30,
            what="the exporter to show 4 messages, 0 frozen",
        )


@pytest.mark.e2e
def test_a_failing_exim_is_a_failed_call_not_an_empty_queue(tmp_path: Path) -> None:
    exim = require_binary("exim", "apt-get install exim4-daemon-light") or ""
    broken = tmp_path / "broken.conf"
    broken.write_text("no_such_option = 1\n")
    app = EximPanelApp(
        EximCommands(exim=exim, config=str(broken), timeout=10), {"admin": User("pw", "root")}
    )
    for operation in ("list_msg", "count_msg"):
        params = {"mailserver": "1", operation: "1"}
        with pytest.raises(CommandFailed, match=f"exim -bp{'c' if 'count' in operation else ''} "):
            asyncio.run(app.answer(params, operation, app.users["admin"], True))


def test_login_style_decides_which_credential_pair_counts(tmp_path: Path) -> None:
    from brainycp.simulator.cli import build_mta_app, build_parser

    exim = shutil.which("exim") or "/bin/true"
    for style, accepted, refused in (
        ("username", ("username", "password"), ("login", "pass")),
        ("login", ("login", "pass"), ("username", "password")),
    ):
        args = build_parser().parse_args(
            ["--mta", "exim", "--exim", exim, "--exiqgrep", "/bin/true", "--login-style", style,
             "--users", "admin:pw:root"]
        )  # fmt: skip
        app = build_mta_app(args)
        assert app.authorised({accepted[0]: "admin", accepted[1]: "pw"}) is not None
        assert app.authorised({refused[0]: "admin", refused[1]: "pw"}) is None
        assert app.authorised({accepted[0]: "admin", accepted[1]: "wrong"}) is None
    both = build_mta_app(
        build_parser().parse_args(["--mta", "exim", "--exim", exim, "--exiqgrep", "/bin/true"])
    )
    assert both.authorised({"login": "admin", "pass": "admin"}) is not None
    assert both.authorised({"username": "admin", "password": "admin"}) is not None
