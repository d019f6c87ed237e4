"""The SQLite journal: durability settings, state transitions, recovery after a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from remediator import journal as journal_module
from remediator.journal import SCHEMA_VERSION, Journal, JournalError
from remediator.journal.schema import SQLITE_TYPES

T0 = 1_700_000_000.0


def add(j: Journal, action: str = "delete_frozen", outcome: str = "pending", **kw: object) -> int:
    fields: dict[str, object] = dict(
        rule="r", panel="web01", action=action, outcome=outcome, reason="", received_at=T0,
        alertname="X", fingerprint="f", starts_at="s", alert_status="firing", labels={},
        dedupe_key=f"k{action}{outcome}{kw.get('received_at', '')}",
    )  # fmt: skip
    fields.update(kw)
    return j.insert(**fields)  # type: ignore[arg-type]


def test_journal_uses_wal_and_full_sync(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state" / "r.sqlite")
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_rows_survive_reopen_and_list_newest_first_with_filters(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    j = Journal(path)
    first = add(j)
    second = add(j, outcome="skipped_cooldown", panel="web02")
    j.close()
    j = Journal(path)
    assert [r.id for r in j.list()] == [second, first]
    assert [r.id for r in j.list(panel="web02")] == [second]
    assert [r.id for r in j.list(outcome="pending")] == [first]
    assert j.list(limit=1)[0].id == second
    row = j.get(first)
    assert row is not None and row.as_json()["alert"] == {
        "alertname": "X", "fingerprint": "f", "starts_at": "s", "status": "firing",
    }  # fmt: skip


def test_claim_fails_once_cancelled() -> None:
    j = Journal(":memory:")
    a = add(j)
    assert j.cancel([a], "resolved", T0) == [a]
    assert not j.claim(a, T0)
    assert j.cancel([a], "resolved", T0) == []


def test_a_failed_transaction_leaves_nothing_half_recorded() -> None:
    j = Journal(":memory:")
    with pytest.raises(RuntimeError), j.transaction():
        add(j)
        raise RuntimeError("boom")
    assert j.list() == []


def test_recover_reruns_what_never_started_and_interrupts_only_what_did() -> None:
    j = Journal(":memory:")
    frozen = add(j, "delete_frozen")
    restart = add(j, "restart_service")
    j.claim(restart, T0)
    delete = add(j, "delete_messages")
    j.claim(delete, T0)
    reship = add(j, "reship_messages")  # accepted, never claimed: no panel call was sent
    nuke = add(j, "delete_all")
    j.claim(nuke, T0)
    done = add(j, "delete_all", outcome="dry_run")
    to_run, interrupted = j.recover(T0 + 10)
    assert to_run == [frozen, restart, reship] and interrupted == [delete, nuke]
    for action_id in to_run:
        row = j.get(action_id)
        assert row is not None and row.outcome == "pending" and row.started_at is None
    assert j.get(restart).reason == "resumed after a restart"  # type: ignore[union-attr]
    assert j.get(delete).outcome == "interrupted"  # type: ignore[union-attr]
    assert j.get(done).outcome == "dry_run"  # type: ignore[union-attr]


def test_claim_is_fsynced_before_the_first_panel_call(tmp_path: Path) -> None:
    j = Journal(tmp_path / "r.sqlite")
    a = add(j, "delete_all")
    levels = []
    j._db.set_trace_callback(lambda sql: levels.append(sql) if "synchronous" in sql else None)
    assert j.claim(a, T0)
    # No switch to synchronous=NORMAL around the claim: it commits at FULL.
    assert levels == []
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    j.unclaim(a)
    row = j.get(a)
    assert row is not None and row.outcome == "pending" and row.started_at is None


def test_counting_rows_drive_cooldown_and_rate_limit() -> None:
    j = Journal(":memory:")
    add(j, received_at=T0)
    add(j, outcome="skipped_cooldown", received_at=T0 + 5)
    add(j, outcome="rejected", received_at=T0 + 6)
    assert j.last_accepted("r", "web01") == T0
    assert j.accepted_since(T0 - 1) == 1
    assert j.accepted_since(T0) == 0


def test_prune_drops_old_finished_rows_but_keeps_what_decisions_read() -> None:
    j = Journal(":memory:")
    day = 86400.0
    first_run = add(j, outcome="succeeded", dedupe_key="A", received_at=T0)
    last_run = add(j, outcome="succeeded", dedupe_key="A", received_at=T0 + 10)
    duplicate = add(j, outcome="skipped_duplicate", dedupe_key="A", received_at=T0 + 20)
    other = add(j, outcome="failed", dedupe_key="B", received_at=T0 + 30)
    stuck = add(j, outcome="pending", dedupe_key="C", received_at=T0 + 40)
    recent = add(j, outcome="skipped_cooldown", dedupe_key="D", received_at=T0 + 100 * day)

    assert j.prune(T0 + 90 * day) == 2  # first_run and duplicate
    left = {r.id for r in j.list(limit=100)}
    assert left == {last_run, other, stuck, recent}
    assert first_run not in left and duplicate not in left
    # A long-firing alert repeated after the prune is still seen as handled.
    episode = j.episode_last("A")
    assert episode is not None and episode.action_id == last_run
    assert j.prune(T0 + 90 * day) == 0


def test_retention_must_outlive_cooldowns_and_the_rate_limit() -> None:
    from brainycp.config.errors import ConfigError
    from remediator.settings.config import parse_config

    base = {
        "panels": {"web01": {"url": "http://h:8002", "username": "a", "password": "b"}},
        "remediator": {"insecure_no_auth": True},
    }
    assert parse_config(base).remediator.journal_retention == 90 * 86400
    for retention, problem in (("2h", "at least 1d"), ("1d", "shorter than the longest cooldown")):
        data = {**base, "remediator": {
            "insecure_no_auth": True, "journal_retention": retention,
            "rate_limit": {"max_actions": 5, "per": "2d"},
        }}  # fmt: skip
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        key = "remediator.journal_retention: "
        assert any(e.startswith(key) and problem in e for e in info.value.errors), info.value.errors
    keep = {**base, "remediator": {"insecure_no_auth": True, "journal_retention": 0}}
    assert parse_config(keep).remediator.journal_retention == 0


# ------------------------------------------------------------------ an unfit journal file


def filled(path: Path, rows: int = 300) -> Journal:
    j = Journal(path)
    for n in range(rows):
        add(j, outcome="dry_run", reason="x" * 200, dedupe_key=str(n), labels={"a": "b" * 100})
    j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return j


def smash_pages(path: Path, page: int = 6) -> None:
    """Three pages of garbage from 1-based ``page`` on (default: in the actions b-tree)."""
    with open(path, "r+b") as handle:
        handle.seek(4096 * (page - 1))
        handle.write(bytes(range(256)) * 48)


def test_a_new_journal_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "state" / "r.sqlite"
    j = Journal(path)
    add(j)
    for name in (path, Path(f"{path}-wal")):
        assert name.stat().st_mode & 0o777 == 0o600, name
    assert j._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"PK\x03\x04 definitely a zip file" * 100, "not an SQLite database (bad header)"),
        (b"SQLite format 3\x00" + b"\xff" * 200, "cannot be read (file is not a database)"),
    ],
)
def test_an_unfit_file_is_refused_untouched_with_the_command_to_move_it_aside(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(content)
    with pytest.raises(JournalError) as info:
        Journal(path)
    message = str(info.value)
    assert problem in message and f"mv {path} {path}.bad" in message
    assert path.read_bytes() == content


def test_a_corrupt_page_is_found_at_start_and_the_file_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    filled(path).close()
    smash_pages(path)
    before = path.read_bytes()
    with pytest.raises(JournalError) as info:
        Journal(path)
    assert "corrupt (PRAGMA quick_check: " in str(info.value) and ".recover" in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before


def test_a_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    j = Journal(path)
    j._db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    j.close()
    with pytest.raises(JournalError, match="written by a newer brainycp-mail"):
        Journal(path)


def test_a_journal_from_before_versioning_keeps_its_rows_and_gets_a_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.sqlite"
    old = sqlite3.connect(path)
    for statement in journal_module.MIGRATIONS[0]:  # version 1: the schema before versioning
        old.execute(statement.format(**SQLITE_TYPES))
    old.execute(
        "INSERT INTO actions (rule, panel, action, outcome, received_at, fingerprint, "
        "starts_at, alert_status, dedupe_key) VALUES "
        "('r', 'web01', 'delete_frozen', 'succeeded', 1, 'f', 's', 'firing', 'k')"
    )
    old.commit()
    old.close()
    path.chmod(0o644)  # as the old remediator created it
    j = Journal(path)
    assert [r.outcome for r in j.list()] == ["succeeded"]
    assert j._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert path.stat().st_mode & 0o777 == 0o600


def test_another_sqlite_database_is_not_taken_for_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE invoices (id INTEGER)")
    other.commit()
    other.close()
    with pytest.raises(JournalError, match="not a brainycp-mail journal"):
        Journal(path)


def test_actions_on_a_page_corrupted_while_running_is_a_json_503(tmp_path: Path) -> None:
    from tests.remediator_support import remediator

    rem = remediator(tmp_path)
    journal = rem.journal
    for n in range(300):
        add(journal, outcome="dry_run", reason="x" * 200, dedupe_key=str(n))
    journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = journal._db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'actions'"
    ).fetchone()
    smash_pages(tmp_path / "s.sqlite", root)  # the table's root: every read of it fails
    # Another writer makes this connection drop its page cache, as any later change would.
    poke = sqlite3.connect(tmp_path / "s.sqlite")
    poke.execute("CREATE TABLE poke (x)")
    poke.commit()
    poke.close()

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/actions", params={"limit": 10000})

    response = asyncio.run(get())
    assert response.status_code == 503
    assert "journal cannot be read" in response.json()["error"]
