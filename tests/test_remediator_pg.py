"""The PostgreSQL journal with a real PostgreSQL (throwaway cluster, see tests/pg.py):
the journal itself, then real remediator replicas sharing it."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from brainycp.config.errors import ConfigError
from remediator.journal import SCHEMA_VERSION, Batch, Journal
from remediator.payload import Alert, fingerprint
from remediator.planner import Settings, dedupe_key, first_matching_rule, plan
from remediator.settings.config import parse_config
from remediator.settings.rules import CircuitBreaker, RateLimit, Rule
from tests.fleet_support import (
    FLEET_PANELS,
    episode,
    fleet,
    send_to_every_replica,
    tcp_ports,
)
from tests.pg import PASSWORD, Cluster, cluster
from tests.remediator_support import TOKEN, am_alert, notification
from tests.support import PYTHON, wait_until

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def pg() -> Iterator[Cluster]:
    with cluster() as node:
        yield node


_databases = iter(range(1, 10_000))


def fresh_db(pg: Cluster) -> str:
    return pg.create_database(f"journal{next(_databases)}")


def journal(url: str, **kw: Any) -> Journal:
    j = Journal.postgres(url, PASSWORD, **kw)
    j.migrate()
    return j


def add(j: Journal, key: str, action: str = "delete_frozen", **kw: Any) -> int:
    fields: dict[str, Any] = dict(
        rule="r", panel="web01", action=action, outcome="pending", reason="", received_at=T0,
        alertname="X", fingerprint="f", starts_at="s", alert_status="firing", labels={},
        dedupe_key=key,
    )  # fmt: skip
    fields.update(kw)
    return j.insert(**fields)


# ---------------------------------------------------------------------------- the journal


@pytest.mark.e2e
def test_schema_is_created_once_versioned_and_a_newer_one_is_refused(pg: Cluster) -> None:
    url = fresh_db(pg)
    j = Journal.postgres(url, PASSWORD)
    assert j.migrate() == 0 and j.migrate() == SCHEMA_VERSION
    a = add(j, "k")
    with pg.connect(url.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT version FROM brainycp_schema").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE brainycp_schema SET version = version + 1")
    with pytest.raises(Exception, match="newer than this remediator knows"):
        Journal.postgres(url, PASSWORD).migrate()
    assert j.get(a) is not None and j.labels(a) == {}
    j.close()


@pytest.mark.e2e
def test_rows_read_back_the_same_as_with_sqlite(pg: Cluster, tmp_path: Path) -> None:
    """Same calls, same answers on both engines (the SQL is shared; types must be too)."""
    answers = []
    for j in (journal(fresh_db(pg)), Journal(tmp_path / "s.sqlite")):
        first = add(j, "A", received_at=T0 + 0.123456, labels={"panel": "web01"})
        add(j, "B", outcome="skipped_cooldown", received_at=T0 + 5)
        j.cancel([first], "resolved", T0 + 6)
        second = add(j, "C", received_at=T0 + 7)
        assert j.claim(second, T0 + 8)
        assert j.finish(second, "succeeded", "done", T0 + 9)
        answers.append(
            (
                [r.as_json() for r in j.list()],
                j.episode_last("A"),
                j.last_accepted("r", "web01"),
                j.accepted_since(T0),
                j.labels(first),
                j.prune(T0 + 100),
            )
        )
        j.close()
    assert answers[0] == answers[1]


def _decisions(j: Journal, batched: bool, seed: int) -> list[tuple[str, str, int | None]]:
    """A seeded stream of firing alerts (repeats, reruns, cooldowns, the rate limit),
    planned in groups the way the webhook does; returns each decision and row id."""
    rng = random.Random(seed)
    rules = [
        Rule.model_validate(r)
        for r in (
            {"name": "a", "matchers": ['alertname="A"'], "action": "delete_frozen",
             "cooldown": 30},
            {"name": "b", "matchers": ['alertname="B"'], "action": "delete_frozen",
             "cooldown": 0, "rerun_after": 20, "max_runs_per_episode": 2},
            {"name": "c", "matchers": ['alertname="C"'], "action": "delete_frozen",
             "cooldown": 5, "dry_run": True},
        )
    ]  # fmt: skip
    settings = Settings(
        rules=rules, panels={"web01", "web02", "web03"},
        rate_limit=RateLimit(max_actions=12, per=100),
        circuit_breaker=CircuitBreaker(max_panels=2, window=8),
    )  # fmt: skip
    out: list[tuple[str, str, int | None]] = []
    now = T0
    for _ in range(60):
        now += rng.choice((0.5, 3, 11))
        group = []
        for _ in range(rng.randint(1, 8)):
            labels = {"alertname": rng.choice("ABCX"), "panel": rng.choice(("web01", "web02",
                      "web03", "nope"))}  # fmt: skip
            group.append(Alert("firing", labels, {}, f"s{rng.randint(0, 6)}", "", "",
                               fingerprint(labels)))  # fmt: skip
        with j.transaction():
            if batched:
                keys, pairs = [], set()
                for a in group:
                    rule = first_matching_rule(rules, a.labels)
                    if rule is not None:
                        keys.append(dedupe_key(rule.name, a))
                        pairs.add((rule.name, a.labels["panel"]))
                unit: Journal | Batch = j.batch(keys, sorted(pairs), len(group), now - 100, 12)
            else:
                unit = j
            for a in group:
                d = plan(a, settings, unit, now)
                row = None
                if d.open_circuit:
                    unit.set_control("circuit_open", True, "breaker", d.reason, now)
                if d.record and d.rule is not None:
                    row = unit.insert(
                        rule=d.rule.name, panel=d.panel, action=d.rule.action,
                        outcome=d.outcome, reason=d.reason, received_at=now,
                        alertname=a.alertname, fingerprint=a.fingerprint,
                        starts_at=a.starts_at, alert_status=a.status, labels=dict(a.labels),
                        dedupe_key=d.dedupe_key,
                    )  # fmt: skip
                out.append((d.outcome, d.reason, row))
            unit.flush()
        if rng.random() < 0.3:
            j.set_control("circuit_open", False, "test", "", now)
        for r in j.list(outcome="pending", limit=1000):
            if rng.random() < 0.7:
                j.claim(r.id, now)
                j.finish(r.id, rng.choice(("succeeded", "failed")), "", now)
    j.close()
    # Row ids are compared by creation order (a PostgreSQL sequence leaves gaps).
    order = {row: n for n, row in enumerate(r for _, _, r in out if r is not None)}
    return [
        (o, re.sub(r"action (\d+)", lambda m: f"action #{order[int(m[1])]}", why),
         None if row is None else order[row])
        for o, why, row in out
    ]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [1, 2])
def test_batched_planning_decides_exactly_like_the_journal(
    pg: Cluster, tmp_path: Path, seed: int
) -> None:
    """The PostgreSQL webhook plans a group commit from a Batch (reads up front, rows
    queued): every decision, reason and row id must match planning on the journal."""
    reference = _decisions(Journal(tmp_path / "direct.sqlite", owner="o"), False, seed)
    outcomes = Counter(o for o, _, _ in reference)
    assert {"pending", "skipped_duplicate", "skipped_cooldown", "skipped_rate_limit",
            "dry_run", "rejected", "skipped_circuit_open", "skipped_exhausted"} <= set(outcomes), (
        outcomes
    )  # fmt: skip
    assert _decisions(Journal(tmp_path / "batch.sqlite", owner="o"), True, seed) == reference
    assert _decisions(journal(fresh_db(pg), owner="o"), True, seed) == reference


@pytest.mark.e2e
def test_a_claim_waits_while_another_action_runs_on_the_same_panel(pg: Cluster) -> None:
    url = fresh_db(pg)
    a, b = journal(url), journal(url)
    first, second = add(a, "k1"), add(b, "k2", action="restart_service")
    other_panel = add(b, "k3", panel="web02")
    assert a.claim(first, T0)
    assert not b.claim(second, T0 + 1) and b.waits_for_panel(second)
    assert b.claim(other_panel, T0 + 1)  # another panel is free
    assert a.finish(first, "succeeded", "", T0 + 2)
    assert b.claim(second, T0 + 3)
    for j in (a, b):
        j.close()


@pytest.mark.e2e
def test_one_open_row_per_episode_is_enforced_by_the_database(pg: Cluster) -> None:
    j = journal(fresh_db(pg))
    add(j, "same")
    with pytest.raises(Exception, match="actions_one_open"):
        add(j, "same")
    # A finished episode may run again (rerun_after): only open rows are unique.
    add(j, "again", outcome="succeeded")
    add(j, "again", outcome="succeeded")
    j.close()


@pytest.mark.e2e
def test_an_expired_lease_is_taken_over_by_exactly_one_replica(pg: Cluster) -> None:
    url = fresh_db(pg)
    dead = journal(url, lease=10)
    frozen = add(dead, "k1")
    # Another panel: on a shared journal one panel runs one action at a time.
    delete = add(dead, "k2", action="delete_messages", panel="web02")
    assert dead.claim(frozen, T0) and dead.claim(delete, T0)
    alive = [journal(url, lease=10) for _ in range(4)]
    # Still leased: nobody takes it.
    assert all(j.take_over(T0 + 5) == ([], []) for j in alive)
    results: dict[int, tuple[list[int], list[int]]] = {}
    barrier = threading.Barrier(len(alive))

    def race(n: int) -> None:
        barrier.wait()
        results[n] = alive[n].take_over(T0 + 11)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(alive))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [([], [])] * 3 + [([frozen], [delete])]
    winner = next(alive[n] for n, r in results.items() if r != ([], []))
    assert winner.get(frozen).outcome == "pending"  # type: ignore[union-attr]
    assert winner.get(delete).outcome == "interrupted"  # type: ignore[union-attr]
    # The dead replica's late finish is refused: the row is no longer its own.
    assert not dead.finish(frozen, "succeeded", "", T0 + 12)
    assert winner.claim(frozen, T0 + 12) and winner.finish(frozen, "succeeded", "", T0 + 13)
    # Renewal keeps a lease alive.
    kept = add(winner, "k3", received_at=T0 + 20)
    assert winner.renew([kept], T0 + 29) == 1
    assert all(j.take_over(T0 + 35) == ([], []) for j in alive)
    for j in (dead, *alive):
        j.close()


@pytest.mark.e2e
def test_replicas_deciding_at_once_hold_the_rate_limit_fleet_wide(pg: Cluster) -> None:
    """Under the advisory lock, "count, then insert" of two replicas never interleaves."""
    url = fresh_db(pg)
    replicas = [journal(url) for _ in range(4)]
    limit = 5
    accepted: list[int] = []
    barrier = threading.Barrier(len(replicas))

    def decide(j: Journal, n: int) -> None:
        barrier.wait()
        for i in range(10):
            with j.transaction():
                if j.accepted_since(T0 - 1) < limit:
                    accepted.append(add(j, f"{n}-{i}"))

    threads = [threading.Thread(target=decide, args=(j, n)) for n, j in enumerate(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == limit
    for j in replicas:
        j.close()


@pytest.mark.e2e
def test_the_journal_reconnects_after_the_database_restarts(tmp_path: Path) -> None:
    with cluster() as node:
        j = journal(fresh_db(node))
        add(j, "before")
        node.stop()
        with pytest.raises(Exception):  # noqa: B017 - any psycopg error
            j.ping()
        with pytest.raises(Exception):  # noqa: B017
            add(j, "while-down")
        node.start()
        add(j, "after")
        assert sorted(r.rule for r in j.list()) == ["r", "r"]
        j.close()


def test_journal_config_keys_and_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "pg.pw"
    secret.write_text("s3cret-pg\n")
    base: dict[str, Any] = {
        "panels": {"web01": {"url": "http://h:8002", "username": "a", "password": "b"}},
        "remediator": {"insecure_no_auth": True},
    }
    assert parse_config(base).remediator.journal is None
    url = "postgresql://remediator@db.example:5432/brainycp"
    short = parse_config({**base, "remediator": {"insecure_no_auth": True, "journal": url}})
    assert short.remediator.journal is not None and short.remediator.journal.url == url
    full = parse_config(
        {**base, "remediator": {"insecure_no_auth": True, "journal": {
            "url": url, "password_file": str(secret), "lease": "10s"}}}
    )  # fmt: skip
    settings = full.remediator.journal
    assert settings is not None and settings.lease == 10
    assert settings.password is not None and settings.password.get_secret_value() == "s3cret-pg"
    assert "s3cret-pg" not in repr(full)
    for bad, problem in (
        ("postgresql://remediator:hunter2@db/x", "password_file"),
        ("postgresql://remediator@db/x?sslmode=require&password=hunter2", "'password'"),
        ("postgresql://remediator@db/x?PASSWORD=hunter2", "'PASSWORD'"),
        ("postgresql://remediator@db/x?sslpassword=hunter2", "'sslpassword'"),
        ("mysql://db/x", "postgresql://"),
        ("postgresql://remediator@db", "name the database"),
        ({"url": url, "lease": "1s"}, "from 2s"),
        ({"url": url, "password_file": str(tmp_path / "missing")}, "cannot read"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config({**base, "remediator": {"insecure_no_auth": True, "journal": bad}})
        text = "\n".join(info.value.errors)
        assert text.startswith("remediator.journal") and problem in text, text
        assert "hunter2" not in text


# ---------------------------------------------------------------------------- replicas


@pytest.mark.e2e
@pytest.mark.parametrize(("replicas", "episodes"), [(2, 200), (3, 200)])
def test_replicas_run_each_episode_exactly_once(
    pg: Cluster, tmp_path: Path, replicas: int, episodes: int
) -> None:
    copies = 3
    with fleet(pg, tmp_path, replicas) as f:
        answers = send_to_every_replica(f, episodes, copies)
        assert all(status == 200 for status, _ in answers), Counter(s for s, _ in answers)
        outcomes = Counter(body["results"][0]["outcome"] for _, body in answers)
        assert outcomes == {
            "pending": episodes,
            "skipped_duplicate": episodes * (replicas * copies - 1),
        }

        def finished() -> bool:
            return all(row[2] not in ("pending", "running") for row in f.rows())

        wait_until(finished, timeout=60, what="every accepted action to finish")
        rows = f.rows()
        runs = [r for r in rows if r[2] == "skipped_nothing_to_do"]
        assert len(runs) == episodes and len({r[1] for r in runs}) == episodes
        # Exactly one panel call per episode: delete_frozen on an empty queue lists it once.
        assert f.listings() == episodes


@pytest.mark.e2e
def test_a_killed_replicas_actions_are_taken_over_once_by_the_rules(
    pg: Cluster, tmp_path: Path
) -> None:
    with fleet(pg, tmp_path, 3, lease="3s") as f:
        # p01: restart_service (idempotent) whose first call hangs; p02: a selection
        # delete (not idempotent) whose message call hangs. Both sent to replica 0 only.
        f.sim_post("p01", "daemon", {"clamav": "stopped"})
        f.sim_post("p01", "fault", {"latency": 60, "operations": ["clamav"], "times": 1})
        f.sim_post("p02", "queue", {"add": 2, "bounce": True, "age": 7200})
        f.sim_post("p02", "fault", {"latency": 60, "operations": ["controll_msg"]})
        headers = {"Authorization": f"Bearer {TOKEN}"}
        sent = []
        for alertname, i in (("ClamAVDown", 1), ("Bounces", 2)):
            r = httpx.post(f"{f.urls[0]}/webhook", json=episode(i, alertname), headers=headers)
            assert r.status_code == 200
            sent.append(r.json()["results"][0]["action_id"])
        restart, delete = sent
        wait_until(
            lambda: (
                ("clamav", "status") in f.calls("p01")
                and ("controll_msg", "delete") in f.calls("p02")
            ),
            what="both actions in flight on replica 0",
        )
        owner = {row[0]: row for row in f.rows()}[restart][3]
        os.killpg(f.procs[0].pid, signal.SIGKILL)
        f.procs[0].wait(10)
        httpx.delete(f"{f.sim}/panel/p01/_sim/calls").raise_for_status()
        httpx.delete(f"{f.sim}/panel/p02/_sim/calls").raise_for_status()

        def final(action_id: int) -> tuple[Any, ...] | None:
            row = {row[0]: row for row in f.rows()}[action_id]
            return row if row[2] not in ("pending", "running") else None

        done = wait_until(lambda: final(restart), timeout=30, what="the restart to be taken over")
        assert done[2] == "succeeded" and done[3] != owner
        # Exactly once: one full restart sequence, run by one replica.
        assert f.calls("p01") == [
            ("clamav", "status"), ("clamav", "off"), ("clamav", "on"), ("clamav", "status"),
        ]  # fmt: skip
        took = [log for log in f.logs[1:] if f"action {restart} (" in log.read_text()]
        assert len(took) == 1
        interrupted = wait_until(lambda: final(delete), what="the delete to be interrupted")
        assert interrupted[2] == "interrupted"
        assert not any(op == "controll_msg" for op, _ in f.calls("p02"))


@pytest.mark.e2e
def test_database_down_during_a_burst_503_then_everything_accepted_once(
    tmp_path: Path,
) -> None:
    with cluster() as node, fleet(node, tmp_path, 2, lease="3s") as f:
        total = 400
        status: dict[int, int] = {}
        refused = Counter[int]()
        stop_sending = threading.Event()

        def alertmanager() -> None:
            """Send each episode to a replica, retrying 503s like Alertmanager does."""
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(headers=headers, timeout=30) as client:
                for i in range(total):
                    while not stop_sending.is_set():
                        url = f.urls[i % 2]
                        try:
                            r = client.post(f"{url}/webhook", json=episode(i))
                        except httpx.HTTPError:
                            continue
                        if r.status_code == 200:
                            status[i] = r.json()["results"][0]["action_id"]
                            break
                        assert r.status_code == 503, r.text
                        refused[i] += 1
                        stop_sending.wait(0.05)  # Alertmanager's retry interval, scaled down

        sender = threading.Thread(target=alertmanager)
        sender.start()
        try:
            wait_until(lambda: len(status) >= 100, timeout=60, what="100 accepted")
            node.stop()
            wait_until(lambda: refused, what="a 503 while the database is down")
            for url in f.urls:
                health = httpx.get(f"{url}/healthz", timeout=10)
                assert health.status_code == 503 and "journal (postgresql)" in health.text
                metrics = httpx.get(f"{url}/metrics", timeout=10).text
                assert "brainycp_remediator_journal_up 0.0" in metrics
            accepted_while_down = len(status)
            wait_until(lambda: sum(refused.values()) >= 20, what="20 refusals")
            assert len(status) <= accepted_while_down + 2  # in flight when it stopped
            node.start()
            sender.join(120)
            assert not sender.is_alive()
        finally:
            stop_sending.set()
            sender.join(10)
        assert sorted(status) == list(range(total))
        for url in f.urls:
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200

        def settled() -> list[tuple[Any, ...]] | None:
            rows = f.rows()
            return rows if all(r[2] not in ("pending", "running") for r in rows) else None

        # Nothing lost: every 200 has its row, one per episode; actions whose claim failed
        # while the database was down were taken over once their lease expired.
        rows = wait_until(settled, timeout=60, what="every action to finish")
        assert sorted(r[0] for r in rows) == sorted(status.values())
        assert len({r[1] for r in rows}) == total
        assert Counter(r[2] for r in rows) == {"skipped_nothing_to_do": total}
        assert f.listings() == total


@pytest.mark.e2e
def test_a_replica_on_postgresql_reloads_keeps_its_web_config_and_serves_run(
    pg: Cluster, tmp_path: Path
) -> None:
    """PostgreSQL mode keeps what SQLite mode has: SIGHUP reloads, --web.config.file guards
    the state endpoints, and `run` reaches the replica with a web-config user; with nobody
    answering, `run` refuses to act alone on the shared journal."""
    hashed = bcrypt.hashpw(b"ops-pw", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"ops": hashed}}))
    password = tmp_path / "ops.pw"
    password.write_text("ops-pw\n")
    password.chmod(0o600)
    with fleet(pg, tmp_path, 1, extra_args=("--web.config.file", str(web))) as f:
        url, proc = f.urls[0], f.procs[0]
        assert httpx.get(f"{url}/actions", timeout=10).status_code == 401
        assert httpx.get(f"{url}/actions", auth=("ops", "ops-pw"), timeout=10).status_code == 200

        def reloaded_at() -> float:
            text = httpx.get(f"{url}/metrics", auth=("ops", "ops-pw"), timeout=10).text
            for line in text.splitlines():
                if line.startswith("brainycp_config_last_reload_success_timestamp_seconds "):
                    return float(line.split()[1])
            raise AssertionError("no reload timestamp")

        before = reloaded_at()
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: reloaded_at() > before, what="the SIGHUP reload")
        assert proc.poll() is None, "SIGHUP must not end a PostgreSQL replica"

        config = str(tmp_path / "replica0.yml")
        run = [PYTHON, "-m", "remediator.cli", "run", "--config", config, "--panel", "p00"]
        run += ["--action", "delete_frozen", "--url", url]
        as_ops = subprocess.run(
            [*run, "--user", "ops", "--password-file", str(password)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert as_ops.returncode == 0, as_ops.stdout + as_ops.stderr
        assert json.loads(as_ops.stdout)["outcome"] == "skipped_nothing_to_do"
        # The webhook token is not a web-config user: refused by the daemon's gate.
        as_token = subprocess.run(run, capture_output=True, text=True, timeout=120)
        assert as_token.returncode == 1, as_token.stdout + as_token.stderr
        assert "ops-pw" not in as_ops.stdout + as_ops.stderr
    alone = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert alone.returncode == 1
    assert "with a PostgreSQL journal" in alone.stderr


@pytest.mark.e2e
def test_replicas_act_on_one_panel_one_action_at_a_time(pg: Cluster, tmp_path: Path) -> None:
    """Two episodes for the same panel, each sent to a different replica: the second
    action waits until the first has finished, as one process's panel lock would."""
    with fleet(pg, tmp_path, 2) as f:
        f.sim_post("p03", "daemon", {"clamav": "stopped"})
        f.sim_post("p03", "queue", {"add": 3, "frozen": True})
        f.sim_post("p03", "fault", {"latency": 1.0, "operations": ["clamav", "list_msg"]})
        headers = {"Authorization": f"Bearer {TOKEN}"}
        ids = []
        for url, (alertname, i) in zip(f.urls, (("Frozen", 3), ("ClamAVDown", 3)), strict=True):
            r = httpx.post(f"{url}/webhook", json=episode(i, alertname), headers=headers)
            assert r.status_code == 200, r.text
            ids.append(r.json()["results"][0]["action_id"])

        def finished() -> list[tuple[Any, ...]] | None:
            with f.pg.connect(f.db) as conn:
                rows = conn.execute(
                    "SELECT id, outcome, started_at, finished_at, lease_owner FROM actions"
                    " WHERE id = ANY(%s) ORDER BY started_at",
                    (ids,),
                ).fetchall()
            return rows if all(r[1] not in ("pending", "running") for r in rows) else None

        first, second = wait_until(finished, timeout=60, what="both actions finished")
        assert {first[1], second[1]} == {"succeeded"}, (first, second)
        assert first[4] != second[4], "each replica ran the action it accepted"
        assert second[2] >= first[3], f"the two actions overlapped on p03: {first} {second}"


@pytest.mark.e2e
def test_a_frozen_replica_holding_the_fleet_lock_stops_no_one_for_longer_than_its_lease(
    pg: Cluster, tmp_path: Path
) -> None:
    """Replica 0 is frozen (SIGSTOP, as a VM pause) while its group commit holds the
    fleet lock. Replica 1 keeps answering /healthz within 3 s, and accepts notifications
    again within the lease: the frozen replica's session ends (it waited on its replica
    for more than half the lease). Thawed, replica 0 answers its notification 503
    (rolled back: Alertmanager retries), serves again, and nothing is recorded twice."""
    rules = [{"name": "preview", "matchers": ['alertname="Preview"'],
              "action": "delete_frozen", "dry_run": True, "cooldown": "0s"}]  # fmt: skip
    with fleet(pg, tmp_path, 2, lease="4s", rules=rules) as f:
        frozen, peer = f.procs[0], f.urls[1]
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def holds_lock() -> bool:
            """Replica 0's own connection (known by its client port) holds the fleet lock."""
            with f.pg.connect(f.db) as conn:
                ports = conn.execute(
                    "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                ).fetchall()
            return any(port in tcp_ports(frozen.pid) for (port,) in ports)

        big_answers: list[int] = []
        for attempt in range(20):
            big = notification(
                *[am_alert("Preview", FLEET_PANELS[i % 20], starts_at=f"big{attempt}-{i}")
                  for i in range(3000)]
            )  # fmt: skip
            sender = threading.Thread(
                target=lambda body=big: big_answers.append(
                    httpx.post(f"{f.urls[0]}/webhook", json=body, headers=headers,
                               timeout=120).status_code
                )
            )  # fmt: skip
            sender.start()
            wait_until(holds_lock, timeout=30, interval=0.002, what="replica 0 holding the lock")
            os.kill(frozen.pid, signal.SIGSTOP)
            if holds_lock():
                break
            os.kill(frozen.pid, signal.SIGCONT)  # it committed in between: try again
            sender.join(120)
        else:
            pytest.fail("replica 0 was never frozen while holding the lock")
        stopped = time.monotonic()
        try:
            accepted_at = None
            slowest_health = 0.0
            n = 0
            while accepted_at is None:
                asked = time.monotonic()
                health = httpx.get(f"{peer}/healthz", timeout=10)
                slowest_health = max(slowest_health, time.monotonic() - asked)
                n += 1
                answer = httpx.post(f"{peer}/webhook", headers=headers, timeout=30,
                                    json=episode(n, "Preview"))  # fmt: skip
                if answer.status_code == 200:
                    accepted_at = time.monotonic() - stopped
                else:
                    assert answer.status_code == 503, answer.text
                assert time.monotonic() - stopped < 30, "replica 1 never recovered"
                assert health.status_code in (200, 503)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert accepted_at < 4.0, f"replica 1 accepted again only after {accepted_at:.1f}s"
        assert slowest_health < 3.0, f"replica 1's /healthz took {slowest_health:.1f}s"
        sender.join(120)
        assert big_answers[-1] == 503  # its transaction was ended: nothing half-written
        wait_until(lambda: httpx.get(f"{f.urls[0]}/healthz", timeout=5).status_code == 200,
                   what="replica 0 healthy again")  # fmt: skip
        again = httpx.post(f"{f.urls[0]}/webhook", headers=headers, json=episode(999, "Preview"))
        assert again.status_code == 200, again.text
        rows = f.rows()
        keys = [r[1] for r in rows if r[2] == "dry_run"]
        assert len(keys) == len(set(keys))
        assert not any(k.split("\x1f")[2].startswith(f"big{attempt}-") for k in keys)
