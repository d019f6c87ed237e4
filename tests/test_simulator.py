"""The panel simulator: its state model on a fake clock, and the real process over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from brainycp.config.loader import parse_shared
from brainycp.config.panels import PanelConfig
from brainycp.panel.client import PanelClient
from brainycp.panel.errors import BrainyCPError
from brainycp.queue import summarize
from brainycp.simulator import render
from brainycp.simulator.state import (
    SCENARIO_TABLE,
    SCENARIOS,
    Message,
    PanelState,
    b62,
)
from tests.support import FIXTURES, serving, sim_args, wait_until

WALL = 1_800_000_000.0


class FakeClock:
    """Real seconds, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_state(
    scenario: str = "quiet", flavour: str = "exim", messages: int | None = None, seed: int = 5
) -> tuple[PanelState, FakeClock]:
    clock = FakeClock()
    state = PanelState(
        flavour=flavour,  # type: ignore[arg-type]
        scenario=SCENARIO_TABLE[scenario],
        seed=seed,
        time_scale=60.0,
        clock=clock,
        initial_messages=messages,
    )
    return state, clock


def run_for(state: PanelState, clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Advance ``seconds`` real seconds in polls ``step`` apart, like a poller would."""
    for _ in range(round(seconds / step)):
        clock.t += step
        state.advance()


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, " 0m"), (59, " 0m"), (359, " 5m"), (360, " 6m"), (85 * 60, "85m"),
     (90 * 60 + 59, "90m"), (91 * 60, " 2h"), (95 * 60, " 2h"), (5 * 3600, " 5h"),
     (50 * 3600, "50h"), (4349 * 60, "72h"), (4350 * 60, " 3d"), (4 * 86400, " 4d"),
     (12 * 86400, "12d"), (130 * 86400, "130d")],
)  # fmt: skip
def test_exim_age_column_follows_exim_thresholds(seconds: float, shown: str) -> None:
    assert render.exim_age(seconds) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [(350, "  350"), (3379, " 3.3K"), (150_600, " 147K"), (2_026_279, " 1.9M"),
     (11_500_000, "  11M")],
)  # fmt: skip
def test_exim_size_column_follows_exim_format(size: int, shown: str) -> None:
    assert render.exim_size(size) == shown


def test_exim_message_renders_like_real_exim_bp() -> None:
    fixture = (FIXTURES / "exim-bp.txt").read_text()
    message = Message(
        id="1xW6VZ-0000xw-1U",
        arrival=-360.0,
        size=364,
        sender="alice@example.org",
        recipients=("carol@example.net", "dave@example.com", "erin@example.com"),
        delivered=1,
    )
    frozen = Message("1xW6VZ-0000xy-1X", -360.0, 476, "", ("frank@example.net",), frozen=True)
    assert render.exim_message(message, 0.0) in fixture
    assert render.exim_message(frozen, 0.0) in fixture


def test_postfix_message_renders_like_real_postqueue() -> None:
    fixture = (FIXTURES / "postfix-mailq.txt").read_text()
    arrival = 1_795_588_738.0  # Wed Nov 25 06:38:58 2026 UTC
    deferred = Message("EAE211640C3", 0.0, 383, "", ("frank@example.net",))
    held = Message(
        "517C7164083", 0.0, 2_026_279, "billing@shop.example.org",
        ("accounts@example.com", "ledger@example.com"), held=True,
    )  # fmt: skip
    assert render.postfix_message(deferred, arrival) in fixture
    assert render.postfix_message(held, arrival + 84) in fixture


def test_postfix_times_are_printed_on_the_panels_clock() -> None:
    arrival = 1_795_588_738.0  # Wed Nov 25 06:38:58 2026 UTC
    assert render.postfix_arrival(arrival) == "Wed Nov 25 06:38:58 "
    assert render.postfix_arrival(arrival, ZoneInfo("Europe/Moscow")) == "Wed Nov 25 09:38:58 "
    assert render.postfix_arrival(arrival, ZoneInfo("America/New_York")) == "Wed Nov 25 01:38:58 "


@pytest.mark.parametrize("flavour", ["exim", "postfix"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_listing_parses_to_the_state_counts(scenario: str, flavour: str) -> None:
    state, clock = make_state(scenario, flavour, messages=300)
    run_for(state, clock, 40, step=4)
    summary = summarize(render.listing_text(state, WALL), now=WALL)
    assert summary.flavour == flavour
    assert summary.unparsed_lines == 0
    assert (summary.messages, summary.frozen, summary.bounces, summary.held) == (
        state.counts.messages, state.counts.frozen, state.counts.bounces, state.counts.held,
    )  # fmt: skip
    oldest = max(state.now - m.arrival for m in state.iter_messages())
    assert summary.oldest_age_seconds is not None
    assert abs(summary.oldest_age_seconds - oldest) <= 0.5 * oldest


def test_objects_listing_parses_to_the_state_counts() -> None:
    state, clock = make_state("spam-outbreak", "exim", messages=100)
    run_for(state, clock, 10)
    summary = summarize(render.listing_objects(state))
    assert (summary.messages, summary.frozen, summary.bounces) == (
        state.counts.messages, state.counts.frozen, state.counts.bounces,
    )  # fmt: skip


@pytest.mark.parametrize("flavour", ["exim", "postfix"])
def test_synthetic_listing_has_exactly_n_messages(flavour: str) -> None:
    text = render.synthetic_listing(flavour, 1003)  # type: ignore[arg-type]
    summary = summarize(text)
    assert (summary.messages, summary.unparsed_lines, summary.flavour) == (1003, 0, flavour)


def test_empty_postfix_queue_prints_mail_queue_is_empty() -> None:
    state, _ = make_state("quiet", "postfix", messages=0)
    assert render.listing_text(state, WALL) == "Mail queue is empty\n"


# ---------------------------------------------------------------- state model


def test_messages_age_on_the_simulated_clock() -> None:
    state, clock = make_state("quiet", "exim", messages=0)
    state.add_messages(1, age=0, sender="probe@example.org")
    clock.t += 90  # 90 real seconds at x60 = 90 simulated minutes
    state.advance()
    (message,) = [m for m in state.iter_messages() if m.sender == "probe@example.org"]
    assert state.now - message.arrival == pytest.approx(5400)
    assert render.exim_message(message, state.now).startswith("90m ")


def test_pause_stops_aging_and_evolution() -> None:
    state, clock = make_state("spam-outbreak")
    state.set_paused(True)
    before = (state.now, state.summary())
    clock.t += 600
    state.advance()
    assert (state.now, state.summary()) == before
    state.set_paused(False)
    clock.t += 10
    state.advance()
    assert state.now == pytest.approx(before[0] + 600)


def test_same_seed_gives_the_same_queue() -> None:
    listings = []
    for _ in range(2):
        state, clock = make_state("spam-outbreak", seed=42)
        run_for(state, clock, 5)
        listings.append(render.listing_text(state, WALL))
    assert listings[0] == listings[1]


def test_quiet_queue_stays_small_and_moves() -> None:
    state, clock = make_state("quiet")
    first = set(state.messages)
    run_for(state, clock, 120, step=5)
    assert 5 <= state.counts.messages <= 80
    assert set(state.messages) - first, "new messages arrived"
    assert first - set(state.messages), "some messages were delivered"
    assert state.counts.frozen == 0


def test_spam_outbreak_grows_to_thousands_within_a_minute() -> None:
    state, clock = make_state("spam-outbreak")
    run_for(state, clock, 60, step=5)
    assert state.counts.messages >= 2000
    assert state.counts.bounces >= 0.3 * state.counts.messages
    assert state.counts.frozen > 0


def test_frozen_pileup_first_freeze_within_ten_seconds() -> None:
    state, clock = make_state("frozen-pileup")
    assert state.counts.frozen == 0
    run_for(state, clock, 7)
    assert state.counts.frozen == 0
    run_for(state, clock, 3)
    assert state.counts.frozen == 1
    run_for(state, clock, 60)
    assert 4 <= state.counts.frozen <= 6


def test_frozen_pileup_stays_clear_for_a_minute_after_delete_frozen() -> None:
    state, clock = make_state("frozen-pileup")
    run_for(state, clock, 40)
    removed = state.delete_frozen()
    assert removed and state.counts.frozen == 0
    run_for(state, clock, 60)
    assert state.counts.frozen == 0
    run_for(state, clock, 30)
    assert state.counts.frozen >= 1


def test_clamav_crash_after_twenty_seconds_and_stays_up_after_on() -> None:
    state, clock = make_state("clamav-crash")
    run_for(state, clock, 19)
    assert state.daemons["clamav"].running
    run_for(state, clock, 2)
    assert not state.daemons["clamav"].running
    assert "failed" in render.daemon_status("clamav", state.daemons["clamav"], state, WALL)
    state.set_daemon("clamav", True)
    run_for(state, clock, 180, step=5)
    assert state.daemons["clamav"].running
    assert state.daemons["spamassassin"].running


def test_exim_lists_oldest_first_with_ids_that_encode_arrival() -> None:
    state, _ = make_state("spam-outbreak", messages=50)
    listed = list(state.iter_messages())
    arrivals = [m.arrival for m in listed]
    assert arrivals == sorted(arrivals)
    # The first six base-62 characters of an Exim id are the arrival second.
    assert listed[0].id[:6] < listed[-1].id[:6]
    assert listed[0].id[:6] == b62(int(state.sim_epoch + listed[0].arrival), 6)


def test_delete_and_reship_remove_one_message() -> None:
    state, _ = make_state("quiet", messages=10)
    first, second = list(state.messages)[:2]
    assert state.delete(first) and first not in state.messages
    assert state.reship(second) and second not in state.messages
    assert not state.delete(first)
    assert state.counts.messages == len(state.messages) == 8


def test_delete_all_empties_the_queue() -> None:
    state, _ = make_state("spam-outbreak")
    ids = state.delete_all()
    assert len(ids) == 200 and state.summary() == {
        "messages": 0, "frozen": 0, "bounces": 0, "held": 0,
    }  # fmt: skip


def test_queue_is_capped() -> None:
    state, clock = make_state("spam-outbreak")
    state.cap = 500
    run_for(state, clock, 60, step=10)
    assert state.counts.messages <= 500
    assert state.add_messages(100) == 0


def test_postfix_has_no_frozen_messages() -> None:
    state, clock = make_state("frozen-pileup", "postfix")
    state.add_messages(3, frozen=True, held=True)
    run_for(state, clock, 60)
    assert state.counts.frozen == 0 and state.counts.held == 3


def test_daemon_off_and_on() -> None:
    state, _ = make_state()
    state.set_daemon("spamassassin", False)
    text = render.daemon_status("spamassassin", state.daemons["spamassassin"], state, WALL)
    assert "Active: inactive (dead) since" in text
    state.set_daemon("spamassassin", True)
    text = render.daemon_status("spamassassin", state.daemons["spamassassin"], state, WALL)
    assert text.startswith("● spamassassin.service") and "active (running)" in text


# ---------------------------------------------------------------- the real process

USERS = "admin:admin:root,bob:pw:user"


class Sim:
    """A running simulator and helpers to call it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(timeout=30)

    def url(self, panel: str | None, path: str) -> str:
        return self.base + (f"/panel/{panel}" if panel else "") + path

    def api(
        self,
        operation: str,
        panel: str | None = None,
        *,
        user: tuple[str, str] = ("admin", "admin"),
        method: str = "POST",
        **params: str,
    ) -> httpx.Response:
        data = {"username": user[0], "password": user[1], "mailserver": "", operation: "", **params}
        url = self.url(panel, "/api/api.php")
        if method == "GET":
            return self.http.get(url, params=data)
        return self.http.post(url, data=data)

    def call(self, operation: str, panel: str | None = None, **params: str) -> dict[str, Any]:
        response = self.api(operation, panel, language="en", **params)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        answer: dict[str, Any] = response.json()
        return answer

    def control(self, method: str, what: str, panel: str | None = None, **body: Any) -> Any:
        response = self.http.request(
            method, self.url(panel, f"/_sim/{what}"), json=body if method == "POST" else None
        )
        assert response.status_code == 200, response.text
        return response.json()

    def state(self, panel: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "state", panel)
        return result


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    args = sim_args(
        0, "--users", USERS, "--seed", "7",
        "--panel", "web01", "--panel", "web02:quiet:postfix", "--panel", "pile:frozen-pileup",
    )  # fmt: skip
    with serving(args, log=log) as simulator:
        client = Sim(simulator.port)
        yield client
        client.http.close()


@pytest.fixture(autouse=False)
def clean(sim: Sim) -> Iterator[Sim]:
    for panel in ("web01", "web02"):
        sim.control("DELETE", "fault", panel)
        sim.control("POST", "pause", panel, paused=True)
        sim.control("POST", "queue", panel, add=3)
        sim.control("DELETE", "calls", panel)
    yield sim
    for panel in ("web01", "web02"):
        sim.control("DELETE", "fault", panel)


@pytest.mark.e2e
def test_version_and_help() -> None:
    import subprocess
    import sys

    from brainycp import __version__

    out = subprocess.run(
        [sys.executable, "-m", "brainycp.simulator.cli", "--version"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == f"brainycp-panel-sim {__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "brainycp.simulator.cli", "--panel", "x:nosuch"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "scenario must be one of" in bad.stderr
    zone = subprocess.run(
        [sys.executable, "-m", "brainycp.simulator.cli", "--timezone", "Mars/Olympus"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert zone.returncode == 2 and "unknown time zone 'Mars/Olympus'" in zone.stderr


@pytest.mark.e2e
def test_first_panel_is_the_default(clean: Sim) -> None:
    assert clean.state()["panel"] == "web01"
    assert clean.state("web02")["flavour"] == "postfix"
    assert clean.http.get(clean.url("nosuch", "/_sim/state")).status_code == 404


@pytest.mark.e2e
def test_list_and_count_agree_with_state(clean: Sim) -> None:
    for panel, flavour in (("web01", "exim"), ("web02", "postfix")):
        state = clean.state(panel)
        listing = clean.call("list_msg", panel)
        assert listing["error"] == 0 and "mess" in listing
        summary = summarize(listing["detail"])
        assert summary.flavour == flavour
        assert summary.messages == state["queue"]["messages"]
        assert summary.frozen == state["queue"]["frozen"]
        count = clean.call("count_msg", panel)
        assert count == {
            "error": 0, "message": "Number of messages", "detail": state["queue"]["messages"],
        }  # fmt: skip


@pytest.mark.e2e
def test_get_and_post_both_work(clean: Sim) -> None:
    by_get = clean.api("count_msg", "web01", method="GET", language="en").json()
    by_post = clean.api("count_msg", "web01", language="en").json()
    assert by_get == by_post and by_get["error"] == 0


@pytest.mark.e2e
def test_russian_unless_language_en(clean: Sim) -> None:
    russian = clean.api("count_msg", "web01").json()
    assert russian["message"] == "Количество сообщений"
    assert clean.api("count_msg", "web01", language="ru").json() == russian
    english = clean.call("count_msg", "web01")
    assert english["message"] == "Number of messages"
    assert russian["error"] == english["error"] and russian["detail"] == english["detail"]


@pytest.mark.e2e
def test_bad_credentials_answer_not_perm2_and_are_recorded(clean: Sim) -> None:
    answer = clean.api("list_msg", "web01", user=("admin", "wrong")).json()
    assert answer == {"code": 1, "message": "Not perm2"}
    (call,) = clean.state("web01")["calls"]
    assert call["operation"] == "list_msg" and call["auth"] is False
    assert "password" not in call["params"] and "username" not in call["params"]


@pytest.mark.e2e
def test_login_without_root_gets_400(clean: Sim) -> None:
    for operation in ("list_msg", "count_msg", "clamav"):
        assert clean.api(operation, "web01", user=("bob", "pw")).json()["error"] == 400


@pytest.mark.e2e
def test_missing_module_and_unknown_operation_are_errors(clean: Sim) -> None:
    url = clean.url("web01", "/api/api.php")
    no_module = clean.http.post(url, data={"username": "admin", "password": "admin"}).json()
    assert no_module["error"] not in (0, 100, 400)
    no_op = clean.http.post(
        url, data={"username": "admin", "password": "admin", "mailserver": "1"}
    ).json()
    assert no_op["error"] not in (0, 100, 400)


@pytest.mark.e2e
def test_calls_record_params_without_password(clean: Sim) -> None:
    clean.call("delete_all_msg", "web02", dellete_forse="1")
    (call,) = clean.state("web02")["calls"]
    assert call["operation"] == "delete_all_msg" and call["auth"] is True
    assert call["params"]["dellete_forse"] == "1" and call["params"]["language"] == "en"
    assert isinstance(call["at"], float)


@pytest.mark.e2e
def test_delete_frozen_on_exim_and_postfix(clean: Sim) -> None:
    clean.control("POST", "queue", "web01", add=2, frozen=True, bounce=True, age=7200)
    frozen_before = clean.state("web01")["queue"]["frozen"]
    assert frozen_before >= 2
    answer = clean.call("delete_frozen_msg", "web01")
    assert answer["error"] == 0 and "message" in answer
    assert answer["detail"].count("has been removed\n") == frozen_before
    assert clean.state("web01")["queue"]["frozen"] == 0
    assert clean.call("delete_frozen_msg", "web02")["error"] == 100


@pytest.mark.e2e
def test_controll_msg_codes_and_effects(clean: Sim) -> None:
    clean.control("POST", "queue", "web01", add=2, sender="x@example.org")
    ids = [m.id for m in _messages(clean, "web01")]
    target, other = ids[-1], ids[-2]
    assert clean.call("controll_msg", "web01", id=target, command="bounce")["error"] == 100
    assert clean.call("controll_msg", "web01", command="delete")["error"] == 101
    deleted = clean.call("controll_msg", "web01", id=target, command="delete")
    assert deleted["error"] == 0 and deleted["detail"] == f"Message {target} has been removed\n"
    assert "mess" in deleted
    again = clean.call("controll_msg", "web01", id=target, command="delete")
    expected = (FIXTURES / "exim-Mrm-missing.txt").read_text().replace("1xW6VZ-0000xy-1X", target)
    assert again["detail"] == expected
    malformed = clean.call("controll_msg", "web01", id="notanid", command="delete")
    assert malformed["detail"] == (FIXTURES / "exim-Mrm-malformed.txt").read_text()
    assert clean.call("controll_msg", "web01", id=other, command="reship")["error"] == 0
    remaining = {m.id for m in _messages(clean, "web01")}
    assert target not in remaining and other not in remaining


@pytest.mark.e2e
def test_postfix_delete_outputs_postsuper_lines(clean: Sim) -> None:
    target = _messages(clean, "web02")[0].id
    answer = clean.call("controll_msg", "web02", id=target, command="delete")
    assert answer["detail"] == f"postsuper: {target}: removed\npostsuper: Deleted: 1 message\n"
    answer = clean.call("controll_msg", "web02", id=target, command="delete")
    assert answer["detail"] == "postsuper: Deleted: 0 messages\n"


@pytest.mark.e2e
def test_delete_all_forced_only_on_postfix(clean: Sim) -> None:
    assert clean.call("delete_all_msg", "web01", dellete_forse="1")["error"] == 100
    count = clean.state("web02")["queue"]["messages"]
    answer = clean.call("delete_all_msg", "web02", dellete_forse="1")
    assert answer["error"] == 0
    assert answer["detail"] == f"postsuper: Deleted: {count} message{'s' * (count != 1)}\n"
    assert clean.call("list_msg", "web02")["error"] == 100
    assert clean.call("count_msg", "web02")["detail"] == 0
    clean.control("POST", "queue", "web02", add=3)
    answer = clean.call("delete_all_msg", "web01")
    assert answer["error"] == 0 and "has been removed" in answer["detail"]
    assert clean.call("list_msg", "web01") == {"error": 100, "mess": "Mail queue is empty"}
    clean.control("POST", "queue", "web01", add=5)


@pytest.mark.e2e
def test_services_status_on_off(clean: Sim) -> None:
    for daemon in ("clamav", "spamassassin"):
        off = clean.call(daemon, "web01", command="off")
        assert off["error"] == 0 and "inactive (dead)" in off["detail"]
        assert clean.state("web01")["daemons"][daemon] == "stopped"
        status = clean.call(daemon, "web01", command="status")
        assert "Active: inactive (dead) since" in status["detail"] and "mess" in status
        on = clean.call(daemon, "web01", command="on")
        assert "Active: active (running) since" in on["detail"]
        assert clean.state("web01")["daemons"][daemon] == "running"
        assert clean.call(daemon, "web01", command="restart")["error"] == 100
    clean.control("POST", "daemon", "web01", clamav="stopped")
    status = clean.call("clamav", "web01", command="status")["detail"]
    assert status.startswith("● clamav-daemon.service - Clam AntiVirus userspace daemon\n")
    assert "inactive (dead)" in status
    clean.control("POST", "daemon", "web01", clamav="running")


@pytest.mark.e2e
def test_panels_are_isolated(clean: Sim) -> None:
    before = clean.state("web02")["queue"]
    clean.control("POST", "queue", "web01", add=4)
    clean.call("clamav", "web01", command="off")
    assert clean.state("web02")["queue"] == before
    assert clean.state("web02")["daemons"]["clamav"] == "running"
    assert all(c["operation"] != "clamav" for c in clean.state("web02")["calls"])
    clean.call("clamav", "web01", command="on")


@pytest.mark.e2e
def test_frozen_pileup_panel_freezes_quickly(sim: Sim) -> None:
    wait_until(lambda: sim.state("pile")["queue"]["frozen"] > 0, timeout=15, what="a frozen msg")


@pytest.mark.e2e
def test_control_api_rejects_bad_input(clean: Sim) -> None:
    for what, body in (("fault", {"status": "x"}), ("fault", {"nope": 1}),
                       ("queue", {"add": -1}), ("daemon", {"clamav": "up"})):  # fmt: skip
        response = clean.http.post(clean.url("web01", f"/_sim/{what}"), json=body)
        assert response.status_code == 400 and "error" in response.json()


# ---------------------------------------------------------------- faults


@pytest.mark.e2e
def test_fault_status_502_with_html(clean: Sim) -> None:
    clean.control("POST", "fault", "web01", status=502)
    response = clean.api("count_msg", "web01")
    assert response.status_code == 502 and response.text.startswith("<html>")


@pytest.mark.e2e
def test_fault_html_truncated_empty(clean: Sim) -> None:
    clean.control("POST", "fault", "web01", html=True, times=1)
    response = clean.api("count_msg", "web01")
    assert response.status_code == 200 and response.text.startswith("<br />")
    assert clean.api("count_msg", "web01").json()["error"] == 0  # times=1 used up
    clean.control("POST", "fault", "web01", truncated_json=True, times=1)
    body = clean.api("list_msg", "web01").content
    with pytest.raises(ValueError):
        json.loads(body)
    assert body.startswith(b'{"error":0')
    clean.control("POST", "fault", "web01", empty_body=True, times=1)
    response = clean.api("count_msg", "web01")
    assert response.status_code == 200 and response.content == b""


@pytest.mark.e2e
def test_fault_applies_only_to_listed_operations(clean: Sim) -> None:
    clean.control("POST", "fault", "web01", status=503, operations=["list_msg"])
    assert clean.api("count_msg", "web01").status_code == 200
    assert clean.api("list_msg", "web01").status_code == 503


@pytest.mark.e2e
def test_fault_close_connection_drops_without_an_answer(clean: Sim) -> None:
    clean.control("POST", "fault", "web01", close_connection=True, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(clean.url("web01", "/api/api.php"), data={"count_msg": ""}, timeout=10)
    assert clean.api("count_msg", "web01").status_code == 200


@pytest.mark.e2e
def test_fault_latency(clean: Sim) -> None:
    clean.control("POST", "fault", "web01", latency=1.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(clean.url("web01", "/api/api.php"), data={"count_msg": ""}, timeout=0.3)


@pytest.mark.e2e
def test_fault_listing_of_a_million_messages(clean: Sim) -> None:
    clean.control("POST", "fault", "web01", listing_messages=1_000_000, operations=["list_msg"])
    with clean.http.stream(
        "POST",
        clean.url("web01", "/api/api.php"),
        data={"username": "admin", "password": "admin", "mailserver": "", "list_msg": ""},
    ) as response:
        assert response.status_code == 200
        size = int(response.headers["content-length"])
        head = b""
        total = 0
        for chunk in response.iter_bytes():
            if len(head) < 400:
                head += chunk[:400]
            total += len(chunk)
    assert total == size > 50_000_000
    text = head.decode()
    assert text.startswith('{"error":0,"mess":')
    first = json.loads('"' + text.split('"detail":"', 1)[1].split("\\n\\n", 1)[0] + '"')
    assert first == " 5m   350 1xW6VZ-000000-1S <alice@example.org>\n          bob@example.net"
    assert clean.call("count_msg", "web01")["error"] == 0  # other operations unaffected


# ---------------------------------------------------------------- PanelClient over real HTTP


def panel_config(sim: Sim, panel: str, **overrides: Any) -> PanelConfig:
    settings = {
        "url": sim.url(panel, "/api/api.php"),
        "username": "admin",
        "password": "admin",
        **overrides,
    }
    return parse_shared({"panels": {panel: settings}}).panels[panel]


def with_client(config: PanelConfig, use: Callable[[PanelClient], Any]) -> Any:
    async def go() -> Any:
        async with PanelClient(config) as client:
            return await use(client)

    return asyncio.run(go())


def _messages(sim: Sim, panel: str) -> list[Any]:
    from brainycp.queue import iter_messages

    return list(iter_messages(sim.call("list_msg", panel)["detail"]))


@pytest.mark.e2e
def test_client_every_operation(clean: Sim) -> None:
    config = panel_config(clean, "web01")
    clean.control("POST", "queue", "web01", add=2, frozen=True)

    async def use(client: PanelClient) -> dict[str, Any]:
        listing = await client.list_msg()
        ids = [m.id for m in summarize_ids(listing.detail)]
        return {
            "listing": listing,
            "count": await client.count_msg(),
            "frozen": await client.delete_frozen_msg(),
            "delete": await client.controll_msg(ids[0], "delete"),
            "reship": await client.controll_msg(ids[1], "reship"),
            "off": await client.clamav("off"),
            "on": await client.spamassassin("on"),
            "status": await client.service("clamav", "status"),
            "start": await client.clamav("on"),
            "all": await client.delete_all_msg(),
            "empty": await client.list_msg(),
        }

    out = with_client(config, use)
    assert not out["listing"].empty and out["count"] > 0
    assert out["frozen"].applicable and "has been removed" in out["frozen"].output
    assert "has been removed" in out["delete"].output
    assert out["off"].state == "stopped" and out["status"].state == "stopped"
    assert out["on"].state == "running" and out["start"].state == "running"
    assert out["all"].applicable and out["empty"].empty
    clean.control("POST", "queue", "web01", add=5)

    postfix = with_client(panel_config(clean, "web02"), lambda c: c.delete_frozen_msg())
    assert postfix.applicable is False


def summarize_ids(detail: Any) -> list[Any]:
    from brainycp.queue import iter_messages

    return list(iter_messages(detail))


def _reason(config: PanelConfig, use: Callable[[PanelClient], Any]) -> BrainyCPError:
    with pytest.raises(BrainyCPError) as info:
        with_client(config, use)
    return info.value


@pytest.mark.e2e
def test_client_error_reasons(clean: Sim) -> None:
    good = panel_config(clean, "web01")
    assert (
        _reason(panel_config(clean, "web01", password="nope"), lambda c: c.count_msg()).reason
        == "auth"
    )
    bob = panel_config(clean, "web01", username="bob", password="pw")
    assert _reason(bob, lambda c: c.count_msg()).reason == "permission"
    forced = _reason(good, lambda c: c.delete_all_msg(force=True))
    assert forced.reason == "api_error" and getattr(forced, "code", None) == 100

    clean.control("POST", "fault", "web01", status=502, times=1)
    error = _reason(good, lambda c: c.count_msg())
    assert error.reason == "http_status" and getattr(error, "status_code", None) == 502
    for fault in ({"html": True}, {"truncated_json": True}, {"empty_body": True}):
        clean.control("POST", "fault", "web01", times=1, **fault)
        assert _reason(good, lambda c: c.count_msg()).reason == "not_json", fault
    clean.control("POST", "fault", "web01", close_connection=True, times=1)
    assert _reason(good, lambda c: c.delete_frozen_msg()).reason == "connect"
    clean.control("POST", "fault", "web01", latency=2.0, times=1)
    quick = panel_config(clean, "web01", timeout="0.3s")
    assert _reason(quick, lambda c: c.count_msg()).reason == "timeout"
    clean.control("POST", "fault", "web01", listing_messages=20_000, times=1)
    small = panel_config(clean, "web01", max_response_bytes=100_000)
    assert _reason(small, lambda c: c.list_msg()).reason == "too_large"


@pytest.fixture(scope="module")
def norelay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    log = tmp_path_factory.mktemp("sim") / "norelay.log"
    args = sim_args(0, "--no-relay", "--flavour", "postfix", "--detail-format", "lines")
    with serving(args, log=log) as simulator:
        client = Sim(simulator.port)
        yield client
        client.http.close()


@pytest.mark.e2e
def test_reship_without_relay_answers_102(norelay: Sim) -> None:
    target = _messages(norelay, "default")[0].id
    answer = norelay.call("controll_msg", id=target, command="reship")
    assert answer["error"] == 102
    error = _reason(panel_config(norelay, "default"), lambda c: c.controll_msg(target, "reship"))
    assert error.reason == "api_error" and getattr(error, "code", None) == 102


@pytest.mark.e2e
def test_detail_format_lines(norelay: Sim) -> None:
    detail = norelay.call("list_msg")["detail"]
    assert isinstance(detail, list) and detail[0].startswith("-Queue ID-")
    assert summarize(detail).messages == norelay.state()["queue"]["messages"]


@pytest.mark.e2e
def test_many_panels_with_latency_concurrently(tmp_path: Path) -> None:
    args = sim_args(0, "--panels", "1000", "--latency", "0.05")
    with serving(args, log=tmp_path / "sim.log") as simulator:
        port = simulator.port

        async def go() -> list[int]:
            limits = httpx.Limits(max_connections=1000)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                calls = [
                    client.post(
                        f"http://127.0.0.1:{port}/panel/panel{i:04d}/api/api.php",
                        data={
                            "username": "admin",
                            "password": "admin",
                            "mailserver": "",
                            "count_msg": "",
                        },
                    )
                    for i in range(1, 1001)
                ]
                answers = await asyncio.gather(*calls)
                return [r.json()["error"] for r in answers]

        assert asyncio.run(go()) == [0] * 1000
