"""Each journal under what breaks it in production: a lock wait, a frozen peer, a paused
database, a full disk. Checked each time: nothing lost, nothing recorded twice, the
health signals tell the truth, and /healthz answers within its 3 s whatever the
database does. Real PostgreSQL (tests/pg.py), a real full tmpfs, the remediator's
app in process with its bounds made short (stall 1 s, lock wait 0.3 s)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from remediator.app import Remediator
from remediator.journal import ADVISORY_LOCK, APPLICATION, Journal
from remediator.routes.health import HEALTH_TIMEOUT
from tests.journal_seams_support import (
    Client,
    Timed,
    config,
    fill,
    frozen,
    journal_backend,
    pg_journal,
    remediator_on,
    server_pids,
    small_filesystem,
    until,
)
from tests.pg import PASSWORD, Cluster, cluster
from tests.remediator_support import (
    RULES,
    TOKEN,
    am_alert,
    notification,
    remediator_cmd,
    start_sim,
    write_config,
)
from tests.support import serving, wait_until

T0 = 1_700_000_000.0
_databases = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def pg() -> Iterator[Cluster]:
    with cluster() as node:
        yield node


def fresh(pg: Cluster) -> tuple[str, str]:
    name = f"seams{next(_databases)}"
    return pg.create_database(name), name


def pg_remediator(pg: Cluster) -> tuple[str, Journal, Remediator]:
    """A fresh database (its name first), a journal on it and an in-process remediator
    on that journal whose rules only preview."""
    url, db = fresh(pg)
    journal = pg_journal(url)
    return db, journal, remediator_on(journal, config(journal_url=url, dry_run=True))


def add(j: Journal, key: str) -> int:
    return j.insert(
        rule="r", panel="web01", action="delete_frozen", outcome="succeeded", reason="",
        received_at=T0, alertname="X", fingerprint="f", starts_at="s", alert_status="firing",
        labels={}, dedupe_key=key,
    )  # fmt: skip


def state_of(pg: Cluster, database: str, j: Journal) -> list[str]:
    with pg.connect(database) as conn:
        rows = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = %s",
            (f"{APPLICATION} {j.owner}"[:63],),
        ).fetchall()
    return [r[0] for r in rows]


def hold_fleet_lock(pg: Cluster, database: str) -> psycopg.Connection[Any]:
    """Another session (a psql by hand) holding the fleet lock in an open transaction."""
    other = pg.connect(database)
    other.execute("BEGIN")
    other.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
    return other


# ------------------------------------------------------------------ PostgreSQL × lock wait


@pytest.mark.e2e
def test_a_lock_wait_that_times_out_rolls_back_and_the_next_write_works(pg: Cluster) -> None:
    """The first statement of a write (BEGIN; the fleet lock) times out: the connection
    is rolled back to idle, not left 'idle in transaction (aborted)'; the health says
    why until a write works; once the lock is free the journal writes again."""
    url, db = fresh(pg)
    j = pg_journal(url, lock_wait=0.3)
    add(j, "before")
    other = hold_fleet_lock(pg, db)
    started = time.monotonic()
    with pytest.raises(psycopg.errors.LockNotAvailable):
        add(j, "blocked")
    assert time.monotonic() - started < 3, "the lock wait was not bounded"
    assert state_of(pg, db, j) == ["idle"]
    assert "lock timeout" in j.health.reason
    j.ping()
    assert "lock timeout" in j.health.reason, "a read must not clear a failed write"
    other.execute("COMMIT")
    add(j, "after")
    assert j.health.reason == ""
    assert [r.id for r in j.list()] and len(j.list()) == 2
    other.close()
    j.close()


@pytest.mark.e2e
def test_a_replica_frozen_between_statements_loses_the_fleet_lock_within_half_its_lease(
    pg: Cluster,
) -> None:
    """A replica stops inside its transaction (a VM pause between two statements): its
    session ends after half the lease (idle_in_transaction_session_timeout), so the
    other replica writes again within the lease; the frozen one, back, rolls back
    and works on a new connection."""
    url, db = fresh(pg)
    frozen_replica, peer = pg_journal(url, lock_wait=0.3), pg_journal(url, lock_wait=0.3)
    inside, thaw = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def stuck() -> None:
        try:
            with frozen_replica.transaction():
                add(frozen_replica, "frozen")
                inside.set()
                thaw.wait(30)
                add(frozen_replica, "after-thaw")
        except psycopg.Error as exc:
            failures.append(exc)

    thread = threading.Thread(target=stuck)
    thread.start()
    assert inside.wait(10)
    started = time.monotonic()

    def peer_writes() -> bool:
        try:
            add(peer, f"peer-{time.monotonic()}")
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    wait_until(peer_writes, timeout=10, interval=0.01, what="the peer to write")
    assert time.monotonic() - started < frozen_replica.lease
    thaw.set()
    thread.join(10)
    assert failures, "the frozen replica's transaction should have been ended"
    assert frozen_replica.health.write_error
    add(frozen_replica, "next")  # a new connection
    keys = sorted(r[0] for r in _keys(pg, db))
    assert "frozen" not in keys and "after-thaw" not in keys and "next" in keys
    for j in (frozen_replica, peer):
        j.close()


def _sample(metrics: str, name: str) -> float:
    """The value of ``brainycp_remediator_<name>`` in a /metrics text."""
    for line in metrics.splitlines():
        if line.startswith(f"brainycp_remediator_{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def _keys(pg: Cluster, db: str) -> list[tuple[str]]:
    with pg.connect(db) as conn:
        return conn.execute("SELECT dedupe_key FROM actions").fetchall()


def _outcomes(pg: Cluster, db: str) -> list[str]:
    with pg.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT outcome FROM actions ORDER BY id")]


@pytest.mark.e2e
def test_a_replica_frozen_mid_statement_is_ended_by_the_peer_waiting_for_the_lock(
    pg: Cluster,
) -> None:
    """A replica frozen in the middle of sending (its statement has no sync yet: the
    server waits for its client and no idle timeout applies) would hold the lock for
    good; the peer whose lock wait times out ends that session once it has waited on
    its client for half the lease, and writes."""
    url, db = fresh(pg)
    peer = pg_journal(url, lock_wait=0.3)
    stuck = psycopg.connect(url, password=PASSWORD, application_name=f"{APPLICATION} stuck")
    stuck.execute("BEGIN")
    wire = stuck.pgconn
    wire.enter_pipeline_mode()
    wire.send_query_params(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})".encode(), None)
    wire.send_flush_request()
    wire.flush()
    with pg.connect(db) as conn:
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchone(),
            what="the stuck session to hold the lock",
        )
    started = time.monotonic()

    def peer_writes() -> bool:
        try:
            add(peer, "peer")
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    wait_until(peer_writes, timeout=10, interval=0.01, what="the peer to write")
    assert time.monotonic() - started < peer.lease
    assert backend_gone(pg, db, f"{APPLICATION} stuck")
    stuck.close()
    peer.close()


def backend_gone(pg: Cluster, db: str, application: str) -> bool:
    with pg.connect(db) as conn:
        return not conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()


# ------------------------------------------------------------------ PostgreSQL × paused


def _firing(i: int) -> dict[str, Any]:
    return notification(am_alert("Frozen", f"web{i % 4:02d}", starts_at=f"2026-01-01T00:{i:04d}Z"))


@pytest.mark.e2e
def test_a_paused_backend_is_cut_off_while_healthz_and_the_webhook_keep_answering(
    pg: Cluster,
) -> None:
    """The journal's own server process stops (SIGSTOP): nothing waits on it. /healthz,
    /metrics and every route answer within 3 s; the stalled call is cut off and the next
    ones run on a new connection, so the notification sent meanwhile is accepted once."""
    db, journal, rem = pg_remediator(pg)

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Client(rem) as client:
            assert (await client.request("POST", "/webhook", json=_firing(0))).status == 200
            with frozen(journal_backend(pg, db, journal)):
                health = await client.request("GET", "/healthz")
                webhook = await client.request("POST", "/webhook", json=_firing(1))
                after = await client.request("GET", "/healthz")
                metrics = await client.request("GET", "/metrics")
                actions = await client.request("GET", "/actions/1")
                out.update(health=health, webhook=webhook, after=after, metrics=metrics,
                           actions=actions)  # fmt: skip
        return out

    out = asyncio.run(scenario())
    assert out["health"].seconds < HEALTH_TIMEOUT, out["health"]
    assert out["webhook"].status == 200 and out["webhook"].seconds < 5, out["webhook"]
    assert out["after"].status == 200 and out["metrics"].seconds < HEALTH_TIMEOUT
    assert out["actions"].status == 200 and out["actions"].seconds < 5
    assert _sample(out["metrics"].text, 'journal_failures_total{kind="cut_off"}') >= 1
    keys = [k for (k,) in _keys(pg, db)]
    assert len(keys) == len(set(keys)) == 2
    journal.close()


@pytest.mark.e2e
def test_a_paused_server_gets_503s_in_bounded_time_then_everything_is_accepted_once(
    pg: Cluster,
) -> None:
    """The whole PostgreSQL server stops (a VM pause): /healthz answers 503 within 3 s
    naming the journal, journal_up is 0, the webhook and the operator routes answer
    JSON 503s (never a hang, never a traceback); once it runs again, the retried
    notification is accepted once and the health is back."""
    db, journal, rem = pg_remediator(pg)

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Client(rem) as client:
            with frozen(server_pids(pg)):
                out["health"] = await client.request("GET", "/healthz")
                out["webhook"] = await client.request("POST", "/webhook", json=_firing(1))
                out["metrics"] = await client.request("GET", "/metrics")
                out["pause"] = await client.request("POST", "/pause", json={"by": "ops"})
                out["manual"] = await client.request(
                    "POST", "/actions", json={"panel": "web01", "action": "delete_frozen"}
                )
                out["health2"] = await client.request("GET", "/healthz")
            out["healed"] = await until(
                "healthz 200",
                lambda: _ok(client.request("GET", "/healthz")),
            )
            out["retry"] = await client.request("POST", "/webhook", json=_firing(1))
            out["copy"] = await client.request("POST", "/webhook", json=_firing(1))
            out["metrics2"] = await client.request("GET", "/metrics")
        return out

    out = asyncio.run(scenario())
    for name in ("health", "health2", "metrics"):
        assert out[name].seconds < HEALTH_TIMEOUT, (name, out[name])
    assert out["health"].status == 503 and "journal (postgresql)" in out["health"].text
    assert "brainycp_remediator_journal_up 0.0" in out["metrics"].text
    for name in ("webhook", "pause", "manual"):
        assert out[name].status == 503, (name, out[name])
        assert '"error"' in out[name].text and "Traceback" not in out[name].text
        assert out[name].seconds < 10, (name, out[name])
    assert out["retry"].status == 200 and '"dry_run"' in out["retry"].text
    assert '"skipped_duplicate"' in out["copy"].text
    assert "brainycp_remediator_journal_up 1.0" in out["metrics2"].text
    assert _outcomes(pg, db) == ["dry_run", "skipped_duplicate"]
    journal.close()


async def _ok(request: Any) -> bool:
    return bool((await request).status == 200)


# ------------------------------------------------------------------ full disk


async def while_full(rem: Remediator, disk: Path, *, manual: bool = False) -> dict[str, Any]:
    """400 notifications, /healthz and /metrics (and with ``manual`` a manual action)
    while ``disk`` is full; then, with the space freed, the same again."""
    big = notification(*[am_alert("Frozen", f"web{i % 4:02d}", starts_at=f"s{i}",
                                  note="x" * 400) for i in range(400)])  # fmt: skip
    out: dict[str, Any] = {}
    async with Client(rem) as client:
        filler = fill(disk)
        out["webhook"] = await client.request("POST", "/webhook", json=big)
        out["health"] = await client.request("GET", "/healthz")
        out["metrics"] = await client.request("GET", "/metrics")
        if manual:
            out["manual"] = await client.request(
                "POST", "/actions", json={"panel": "web01", "action": "delete_frozen"}
            )
        filler.unlink()
        out["retry"] = await client.request("POST", "/webhook", json=big)
        out["health2"] = await client.request("GET", "/healthz")
        out["metrics2"] = await client.request("GET", "/metrics")
    return out


@pytest.mark.e2e
def test_sqlite_on_a_full_disk_says_so_everywhere_and_loses_nothing(tmp_path: Path) -> None:
    """The journal's file system fills up: webhooks get 503, and so do /healthz (naming
    the disk) and journal_up, until a write works again; POST /actions is a JSON 503,
    not a traceback; once space is freed, the retried notification is accepted once."""
    with small_filesystem(1024) as disk:
        journal = Journal(disk / "journal.sqlite")
        journal.probe_after = 0.2
        rem = remediator_on(journal, config(disk / "journal.sqlite", dry_run=True))
        out = asyncio.run(while_full(rem, disk, manual=True))
        assert out["webhook"].status == 503
        assert out["health"].status == 503 and "full" in out["health"].text
        assert out["health"].seconds < HEALTH_TIMEOUT
        assert "brainycp_remediator_journal_up 0.0" in out["metrics"].text
        assert _sample(out["metrics"].text, 'journal_failures_total{kind="write"}') >= 1
        assert out["manual"].status == 503 and "Traceback" not in out["manual"].text
        assert out["retry"].status == 200 and out["health2"].status == 200
        assert "brainycp_remediator_journal_up 1.0" in out["metrics2"].text
        rows = journal.list(limit=10_000)
        assert len(rows) == 400 and len({r.starts_at for r in rows}) == 400
        journal.close()


@pytest.mark.e2e
def test_postgresql_on_a_full_disk_says_so_everywhere_and_loses_nothing(pg: Cluster) -> None:
    """The database's tablespace (a real 4 MiB tmpfs) fills up: PostgreSQL refuses the
    writes (could not extend file: No space left on device); the replica says so in
    /healthz and journal_up until a write works again, and loses nothing."""
    with small_filesystem(4096, owner="postgres") as disk:
        name = f"seams{next(_databases)}"
        with pg.connect() as conn:
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
            conn.execute(f'CREATE DATABASE "{name}" TABLESPACE {name}')
        try:
            journal = pg_journal(pg.url(name))
            journal.probe_after = 0.2
            rem = remediator_on(journal, config(journal_url=pg.url(name), dry_run=True))
            out = asyncio.run(while_full(rem, disk))
            assert out["webhook"].status == 503
            assert out["health"].status == 503 and "No space left" in out["health"].text
            assert "brainycp_remediator_journal_up 0.0" in out["metrics"].text
            assert out["retry"].status == 200 and out["health2"].status == 200
            assert len(_keys(pg, name)) == 400
            journal.close()
        finally:
            with pg.connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f"DROP TABLESPACE IF EXISTS {name}")


# ------------------------------------------------------------------ SQLite × lock wait


def test_sqlite_locked_by_another_process_is_a_bounded_503_and_the_health_says_why(
    tmp_path: Path,
) -> None:
    """Someone holds a write lock on the journal file (sqlite3 by hand, a backup tool):
    the webhook answers 503 after the 2 s busy wait, /healthz answers within 3 s and
    names the lock, and once it is let go everything works and nothing was lost."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.probe_after = 0.2
    rem = remediator_on(journal, config(path, dry_run=True))
    other = sqlite3.connect(path, isolation_level=None)

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Client(rem) as client:
            other.execute("BEGIN IMMEDIATE")
            out["webhook"] = await client.request("POST", "/webhook", json=_firing(1))
            out["health"] = await client.request("GET", "/healthz")
            other.execute("ROLLBACK")
            out["retry"] = await client.request("POST", "/webhook", json=_firing(1))
            out["health2"] = await client.request("GET", "/healthz")
        return out

    out = asyncio.run(scenario())
    assert out["webhook"].status == 503 and out["webhook"].seconds < 5
    assert out["health"].status == 503 and "locked" in out["health"].text
    assert out["health"].seconds < HEALTH_TIMEOUT
    assert out["retry"].status == 200 and out["health2"].status == 200
    assert len(journal.list()) == 1
    other.close()
    journal.close()


# ------------------------------------------------------------------ the daemon, end to end


@pytest.mark.e2e
def test_the_daemon_on_a_full_disk_answers_503s_with_reasons_and_acts_once_afterwards(
    tmp_path: Path,
) -> None:
    """The real remediator with its SQLite journal on a real 2 MiB file system that fills
    up: the webhook and POST /actions get JSON 503s (no traceback in the log), /healthz
    says 503 and why within 3 s, journal_up is 0; once space is freed, Alertmanager's
    retry is accepted and the action runs exactly once."""
    with small_filesystem(2048) as disk:
        log = tmp_path / "remediator.log"
        alerts = [
            am_alert("BrainyCPMailFrozenMessages", "frozen", starts_at=f"s{i}", note="x" * 400)
            for i in range(300)
        ]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with (
            serving(start_sim(tmp_path, 0), log=tmp_path / "sim.log") as simulator,
            serving(remediator_cmd(write_config(
                tmp_path / "config.yml", simulator.port, None, disk / "state.sqlite", RULES,
                manual={"actions": ["delete_frozen"]},
            )), log=log) as remediator,
            httpx.Client(headers=headers, timeout=30) as http,
        ):  # fmt: skip
            sim, url = simulator.url, remediator.url
            http.post(f"{sim}/panel/frozen/_sim/pause", json={"paused": True})
            http.post(f"{sim}/panel/frozen/_sim/queue", json={"add": 3, "frozen": True})
            filler = fill(disk)
            refused = http.post(f"{url}/webhook", json=notification(*alerts))
            asked = time.monotonic()
            health = http.get(f"{url}/healthz")
            health_took = time.monotonic() - asked
            metrics = http.get(f"{url}/metrics").text
            manual = http.post(
                f"{url}/actions", json={"panel": "frozen", "action": "delete_frozen"}
            )
            filler.unlink()
            accepted = http.post(f"{url}/webhook", json=notification(*alerts))
            healthy = http.get(f"{url}/healthz")
            action_id = accepted.json()["results"][0]["action_id"]
            wait_until(
                lambda: http.get(f"{url}/actions/{action_id}").json()["outcome"] == "succeeded",
                what="the accepted action to run",
            )
            calls = [
                c["operation"] for c in http.get(f"{sim}/panel/frozen/_sim/state").json()["calls"]
            ]
        assert refused.status_code == 503 and "journal" in refused.json()["error"]
        assert health.status_code == 503 and "full" in health.text and health_took < 3
        assert "brainycp_remediator_journal_up 0.0" in metrics
        assert manual.status_code == 503 and "error" in manual.json()
        assert accepted.status_code == 200 and healthy.status_code == 200
        assert calls.count("delete_frozen_msg") == 1
        assert "Traceback" not in log.read_text()


# ------------------------------------------------------------------ outside text × journal


def _journal_of(engine: str, pg: Cluster, tmp_path: Path) -> tuple[Journal, Any]:
    if engine == "postgresql":
        url, _ = fresh(pg)
        return pg_journal(url), config(journal_url=url, dry_run=True)
    return Journal(tmp_path / "j.sqlite"), config(tmp_path / "j.sqlite", dry_run=True)


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_nul_in_alert_labels_fails_none_of_its_neighbours(
    engine: str, pg: Cluster, tmp_path: Path
) -> None:
    """A NUL in a label (PostgreSQL text cannot hold U+0000): the notification's other
    alerts are journaled with it in one 200; the label is kept exactly in the row's
    labels (JSON), and text columns hold U+FFFD on PostgreSQL; both engines answer alike."""
    journal, cfg = _journal_of(engine, pg, tmp_path)
    rem = remediator_on(journal, cfg)
    alerts = [am_alert("Frozen", "web00", starts_at="a"),
              am_alert("Frozen", "web01", starts_at="b", note="nul\x00inside"),
              am_alert("Frozen", "web\x0002", starts_at="c")]  # fmt: skip

    async def scenario() -> tuple[Timed, dict[str, Any]]:
        async with Client(rem) as client:
            webhook = await client.request("POST", "/webhook", json=notification(*alerts))
            return webhook, (await client.http.get("/actions/2")).json()

    webhook, second = asyncio.run(scenario())
    assert webhook.status == 200, webhook
    outcomes = [r["outcome"] for r in json.loads(webhook.text)["results"]]
    assert outcomes == ["dry_run", "dry_run", "rejected"]
    assert second["labels"]["note"] == "nul\x00inside"
    assert len(journal.list()) == 3 and journal.health.reason == ""
    journal.close()


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_lone_surrogate_or_a_nul_in_a_request_is_stored_not_a_500(
    engine: str, pg: Cluster, tmp_path: Path
) -> None:
    """``by`` with U+0000 and a lone surrogate (a JSON escape no database can encode):
    the manual request is journaled (U+FFFD in their place) and accepted."""
    journal, cfg = _journal_of(engine, pg, tmp_path)
    rem = remediator_on(journal, cfg)
    body = b'{"panel": "web03", "action": "delete_frozen", "by": "ops\\u0000\\ud800"}'

    async def scenario() -> Timed:
        async with Client(rem) as client:
            return await client.request(
                "POST", "/actions", content=body, headers={"Content-Type": "application/json"}
            )

    answer = asyncio.run(scenario())
    assert answer.status == 202, answer
    assert len(journal.list()) == 1 and journal.health.reason == ""
    journal.close()


# ------------------------------------------------------------------ SQLite × a file that hangs


def test_a_sqlite_call_the_file_never_answers_is_cut_off_and_the_loop_keeps_serving(
    tmp_path: Path,
) -> None:
    """A statement that gets no answer for the stall bound (here a query that runs for
    minutes, standing in for a file system that hangs) is interrupted: its caller gets
    the database's error, /healthz answered meanwhile, and the next call works."""
    journal = Journal(tmp_path / "j.sqlite")
    journal.stall = 0.5
    rem = remediator_on(journal, config(tmp_path / "j.sqlite", dry_run=True))
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT COUNT(*) FROM n WHERE i < 0"
    )

    def hang() -> None:
        with journal.transaction():
            journal.fetch_all([(endless, ())])

    async def scenario() -> tuple[BaseException | None, Timed, Timed, float]:
        async with Client(rem) as client:
            started = time.monotonic()
            stuck = asyncio.create_task(journal.call(hang))
            while not journal.busy:
                await asyncio.sleep(0.001)
            health = await client.request("GET", "/healthz")
            error = (await asyncio.gather(stuck, return_exceptions=True))[0]
            took = time.monotonic() - started
            after = await client.request("POST", "/webhook", json=_firing(1))
            return error, health, after, took

    error, health, after, took = asyncio.run(scenario())
    assert isinstance(error, sqlite3.OperationalError) and "interrupted" in str(error)
    assert took < 5 and health.seconds < HEALTH_TIMEOUT
    assert after.status == 200 and journal.health.failures["cut_off"] == 1
    journal.close()
