"""Listings are read off the event loop, in worker processes: what the exporter's poller
and the remediator see of that (brainycp/queue/worker.py).

Stub workers (``python -c``) stand in where a reading must stall or die on cue: they read
the job and then wait, or abort. No test waits on a clock: stalls are released by stopping
the worker, and waits are conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from brainycp.queue import ReadOptions
from brainycp.queue.worker import ListingReaders, ReadingFailed, ReadJob
from exporter.app import create_app
from exporter.poller import Poller, initial_state
from exporter.settings import Config, parse_config

# Every test here starts a process (the in-process tier, make test-fast, skips them).
pytestmark = pytest.mark.e2e

EXIM = "".join(
    f" {i % 50:2d}m   350 1xW6VZ-{i:06d}-1S <sender{i % 3}@example.org>\n"
    f"          rcpt{i}@dest{i % 4}.example.net\n\n"
    for i in range(2000)
)


def body(detail: str = EXIM) -> bytes:
    return json.dumps({"error": 0, "detail": detail}).encode()


def stalling_worker(mark: Path) -> list[str]:
    """A worker that takes a job, says so in ``mark``, and never answers."""
    code = (
        "import sys; sys.stdin.buffer.read(8); "
        f"open({str(mark)!r}, 'w').close(); sys.stdin.buffer.read()"
    )
    return [sys.executable, "-c", code]


def aborting_worker() -> list[str]:
    """A worker that dies (SIGABRT) on its first job, as a crashing reader would."""
    return [sys.executable, "-c", "import os, sys; sys.stdin.buffer.read(8); os.abort()"]


async def until(condition: Any, deadline: float = 20.0) -> None:
    stop = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < stop, "condition not met in time"
        await asyncio.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: the readers reap their workers.
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().split(")")[1].split()[0] != "Z"


# ------------------------------------------------------------------ the readers alone


def test_a_reading_runs_in_another_process_and_gives_the_summary_and_tops() -> None:
    readers = ListingReaders(1)

    async def run() -> Any:
        job = ReadJob("p", time.time(), None, ReadOptions(top_senders=2, top_recipient_domains=1))
        return await readers.read(job, body())

    try:
        reading = asyncio.run(run())
        [pid] = readers.worker_pids()
    finally:
        readers.close()
    assert pid != os.getpid()
    assert reading.summary.messages == 2000
    assert reading.top_senders == (("sender0@example.org", 667), ("sender1@example.org", 667))
    assert reading.top_recipient_domains == (("dest0.example.net", 500),)


def test_panel_errors_in_the_answer_come_back_as_the_clients_own_errors() -> None:
    readers = ListingReaders(1)

    async def run(answer: bytes) -> BaseException:
        with pytest.raises(Exception) as caught:
            await readers.read(ReadJob("p", time.time()), answer)
        return caught.value

    try:
        html = asyncio.run(run(b"<html>oops</html>"))
        denied = asyncio.run(run(b'{"error": 400}'))
        code = asyncio.run(run(b'{"error": 5, "mess": "no"}'))
    finally:
        readers.close()
    assert (type(html).__name__, html.reason, html.detail) == (  # type: ignore[attr-defined]
        "PanelNotJSON",
        "not_json",
        "HTML (17 bytes)",
    )
    assert type(denied).__name__ == "PanelPermissionError"
    assert (type(code).__name__, code.code) == ("PanelAPIError", 5)  # type: ignore[attr-defined]


def test_a_worker_that_dies_fails_its_reading_and_the_next_one_gets_a_new_worker() -> None:
    readers = ListingReaders(1, command=aborting_worker())

    async def run() -> ReadingFailed:
        with pytest.raises(ReadingFailed) as caught:
            await readers.read(ReadJob("p", time.time()), body())
        return caught.value

    try:
        first, second = asyncio.run(run()), asyncio.run(run())
    finally:
        readers.close()
    assert (first.reason, first.detail) == ("internal", "the reader process was killed by SIGABRT")
    assert second.reason == "internal" and readers.started == 2


def test_a_reading_past_its_deadline_stops_its_worker(tmp_path: Path) -> None:
    mark = tmp_path / "taken"
    readers = ListingReaders(1, deadline=0.5, command=stalling_worker(mark))

    async def run() -> ReadingFailed:
        with pytest.raises(ReadingFailed) as caught:
            await readers.read(ReadJob("p", time.time()), body())
        return caught.value

    try:
        failed = asyncio.run(run())
    finally:
        readers.close()
    assert (failed.reason, failed.detail) == ("bad_detail", "reading the listing took over 0.5s")
    assert mark.exists() and readers.worker_pids() == []


# ------------------------------------------------------------------ through the poller


def sample(text: str, series: str) -> float:
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(series + " ")]
    return float(value)


def one_panel(**exporter: Any) -> Config:
    os.environ.setdefault("BRAINYCP_TEST_PW", "pw")
    return parse_config(
        {
            "defaults": {"username": "a", "password_env": "BRAINYCP_TEST_PW", "timeout": "5s"},
            "panels": {
                name: {"url": f"http://127.0.0.1:9/panel/{name}/api/api.php"}
                for name in ("web01", "web02")
            },
            "exporter": {"top_senders": 2, **exporter},
        }
    )


class Panels:
    """Every panel answers the Exim listing above; list_msg answers wait for ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.listing_in_flight = 0
        self.most_listings = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
        if form.get("list_msg") == "1":
            self.listing_in_flight += 1
            self.most_listings = max(self.most_listings, self.listing_in_flight)
            try:
                await self.gate.wait()
            finally:
                self.listing_in_flight -= 1
            return httpx.Response(200, content=body())
        if form.get("count_msg") == "1":
            return httpx.Response(200, content=b'{"error": 0, "detail": "2000"}')
        return httpx.Response(200, content=b'{"error": 0, "detail": "active (running)"}')


def test_scrapes_answer_while_a_reading_runs_and_see_the_last_good_values(
    tmp_path: Path,
) -> None:
    """A reading that has not finished leaves /metrics answering, with the values of the
    last reading; removing the panel at reload cancels the reading and stops its worker."""
    config = one_panel()
    panels = Panels()
    mark = tmp_path / "taken"
    good = ListingReaders(1)
    stalling = ListingReaders(1, command=stalling_worker(mark))

    async def run() -> None:
        state = initial_state(config)
        transport = httpx.MockTransport(panels.handle)
        poller = Poller(config, state, transport_factory=lambda _p: transport, readers=good)
        app = httpx.AsyncClient(
            transport=httpx.ASGITransport(create_app(state)), base_url="http://x"
        )
        try:
            assert await poller.poll_list("web01")
            before = state.panels["web01"].summary
            assert before is not None and before.messages == 2000
            poller.readers = stalling
            poll = asyncio.create_task(poller.poll_list("web01"))
            await until(mark.exists)
            [pid] = stalling.worker_pids()
            for _ in range(5):  # the loop is free: scrapes answer with the last values
                scraped = await app.get("/metrics")
                assert scraped.status_code == 200
                assert (
                    sample(scraped.text, 'brainycp_mail_queue_size_bytes{panel="web01"}') == 700000
                )
            assert state.panels["web01"].summary is before
            poller.apply(_without(config, "web01"))
            await until(poll.done)
            assert poll.cancelled()  # and nothing of it was stored
            await until(lambda: not alive(pid))
            assert "web01" not in state.panels
        finally:
            await app.aclose()
            await poller.aclose()

    try:
        asyncio.run(run())
    finally:
        good.close()
        stalling.close()


def _without(config: Config, name: str) -> Config:
    panels = {k: v for k, v in config.panels.items() if k != name}
    return dataclasses.replace(config, panels=panels)


def test_a_crashing_reader_marks_only_its_panel_down_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = one_panel()
    panels = Panels()

    async def run(crashing: ListingReaders) -> Any:
        state = initial_state(config)
        transport = httpx.MockTransport(panels.handle)
        poller = Poller(config, state, transport_factory=lambda _p: transport, readers=crashing)
        try:
            ok = await poller.poll_once()
        finally:
            await poller.aclose()
        return ok, state

    with closing(ListingReaders(1, command=aborting_worker())) as crashing:
        ok, state = asyncio.run(run(crashing))
    assert ok is False
    for name in ("web01", "web02"):
        panel = state.panels[name]
        assert panel.operations["list_msg"].errors == {"internal": 1}
        assert panel.operations["count_msg"].success and panel.queue_messages == 2000
    assert any(r.message == "the listing reader failed" for r in caplog.records)


def test_listings_fetched_or_read_at_once_are_bounded() -> None:
    """Each listing can be max_response_bytes: a fleet-wide outbreak must not hold all of
    them at once. With one worker, at most four list polls fetch or read at a time."""
    config = parse_config(
        {
            "defaults": {"username": "a", "password": "b", "timeout": "5s"},
            "panels": {
                f"p{i}": {"url": f"http://127.0.0.1:9/panel/p{i}/api/api.php"} for i in range(9)
            },
        }
    )
    panels = Panels()

    async def run(readers: ListingReaders) -> Any:
        panels.gate.clear()
        state = initial_state(config)
        transport = httpx.MockTransport(panels.handle)
        poller = Poller(config, state, transport_factory=lambda _p: transport, readers=readers)
        polls = [asyncio.create_task(poller.poll_list(name)) for name in config.panels]
        await until(lambda: panels.listing_in_flight == 4)
        for _ in range(20):
            await asyncio.sleep(0)
        assert panels.listing_in_flight == 4
        panels.gate.set()
        results = await asyncio.gather(*polls)
        await poller.aclose()
        return results, state

    with closing(ListingReaders(1)) as readers:
        results, state = asyncio.run(run(readers))
    assert all(results) and panels.most_listings == 4
    assert all(p.summary and p.summary.messages == 2000 for p in state.panels.values())


def test_workers_leave_with_the_daemon() -> None:
    readers = ListingReaders(2)

    async def run() -> None:
        job = ReadJob("p", time.time())
        await asyncio.gather(readers.read(job, body()), readers.read(job, body()))

    asyncio.run(run())
    pids = readers.worker_pids()
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    readers.close()
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(ReadingFailed):
        asyncio.run(readers.read(ReadJob("p", time.time()), body()))


def test_signals_to_the_process_group_leave_the_workers_to_the_daemon() -> None:
    """Ctrl-C, a hang-up or systemd's stop signal the whole group: the daemon stops its
    workers itself, so a reading in flight does not die with a failure in the log."""
    readers = ListingReaders(1)
    try:
        asyncio.run(readers.read(ReadJob("p", time.time()), body("")))
        [pid] = readers.worker_pids()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(pid, signum)
        reading = asyncio.run(readers.read(ReadJob("p", time.time()), body()))
        assert reading.summary.messages == 2000 and readers.worker_pids() == [pid]
    finally:
        readers.close()
    assert not alive(pid)


@pytest.mark.e2e
def test_the_remediator_keeps_answering_while_an_action_reads_a_big_queue(
    tmp_path: Path,
) -> None:
    """A delete_messages action on a 300,000-message queue: while its worker decodes and
    reads the listing, /healthz and /webhook answer at once (the old remediator read the
    listing on its event loop, for seconds)."""
    from tests.remediator_support import TOKEN, am_alert, notification, only_result, remediator_cmd
    from tests.remediator_support import write_config as remediator_config
    from tests.support import serving, sim_args

    rules = [
        {"name": "contain", "matchers": ['alertname="Spam"'], "action": "delete_messages",
         "select": {"sender": "nobody-sends-this@example.invalid"}},
    ]  # fmt: skip
    sim_cmd = sim_args(0, "--panel", "big:quiet:exim", "--messages", "0")
    with serving(sim_cmd, log=tmp_path / "sim.log") as simulator:
        sim = simulator.url
        config = remediator_config(
            tmp_path / "c.yml", simulator.port, None, tmp_path / "s.sqlite", rules, panels=("big",)
        )
        fault = {"listing_messages": 300_000, "operations": ["list_msg"]}
        httpx.post(f"{sim}/panel/big/_sim/fault", json=fault).raise_for_status()
        remediator = remediator_cmd(config)
        with serving(remediator, log=tmp_path / "rem.log") as served:
            url = served.url
            client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            action = only_result(
                client.post(f"{url}/webhook", json=notification(am_alert("Spam", "big")))
            )["action_id"]
            waits, during = [], 0
            while True:
                row = client.get(f"{url}/actions/{action}").json()
                if row["outcome"] not in ("pending", "running"):
                    break
                began = time.perf_counter()
                assert client.get(f"{url}/healthz").status_code == 200
                other = notification(am_alert("Unmatched", "big", starts_at=str(during)))
                assert client.post(f"{url}/webhook", json=other).status_code == 200
                waits.append(time.perf_counter() - began)
                during += row["outcome"] == "running"
            client.close()
    assert row["outcome"] == "skipped_nothing_to_do", row
    assert during >= 3, "the reading was too quick to watch"
    assert max(waits) < 0.5, waits  # the old remediator: 1.3 s
