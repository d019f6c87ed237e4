"""The webhook in-process (ASGI transport): auth schemes, group commit, journal failure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from remediator import app as app_module
from remediator.app import authorized
from remediator.journal import JournalBusy
from remediator.settings.webhook import WebhookAuth
from tests.remediator_support import (
    am_alert,
    notification,
    post_many,
    remediator,
)


def test_bearer_and_basic_auth_compare_exactly() -> None:
    bearer = WebhookAuth(bearer_token=SecretStr("tok"))
    assert authorized("Bearer tok", bearer)
    assert not authorized("Bearer tok2", bearer) and not authorized("Basic dG9r", bearer)
    assert not authorized(None, bearer) and not authorized("", bearer)
    basic = WebhookAuth(basic_username="am", basic_password=SecretStr("pw"))
    assert authorized("Basic YW06cHc=", basic)  # am:pw
    assert not authorized("Basic YW06cHd4", basic)  # am:pwx
    assert not authorized("Basic !!!", basic)
    assert not authorized("Bearer pw", basic)
    assert authorized(None, None)


def test_concurrent_copies_of_one_episode_share_a_commit_and_still_dedupe(tmp_path: Path) -> None:
    rem = remediator(tmp_path)
    body = notification(am_alert("X", "web01"))
    responses = asyncio.run(post_many(rem, [body] * 12))
    outcomes = sorted(r.json()["results"][0]["outcome"] for r in responses)
    assert outcomes == ["dry_run"] + ["skipped_duplicate"] * 11
    assert rem.stats.notifications["accepted"] == 12


def test_journal_failure_answers_503_and_counts_it(tmp_path: Path) -> None:
    rem = remediator(tmp_path)
    rem.journal.close()
    (response,) = asyncio.run(post_many(rem, [notification(am_alert("X", "web01"))]))
    assert response.status_code == 503 and "journal" in response.json()["error"]
    assert rem.stats.notifications["journal_error"] == 1


def test_a_planning_bug_answers_500_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(app_module, "plan", broken)
    rem = remediator(tmp_path)
    good, bad = asyncio.run(post_many(rem, [notification(), notification(am_alert("X", "web01"))]))
    assert good.status_code == 200 and good.json() == {"results": []}
    assert bad.status_code == 500 and "error" in bad.json()
    assert rem.journal.list() == []


def test_a_huge_notification_is_planned_in_slices_while_healthz_answers(tmp_path: Path) -> None:
    rem = remediator(tmp_path)
    alerts = [
        {"labels": {"alertname": "X", "panel": "web01", "i": str(i)}, "startsAt": "s"}
        for i in range(10_000)
    ]
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()
    assert len(body) < app_module.MAX_BODY_BYTES
    first = notification({**alerts[0], "status": "firing"})

    async def scenario() -> tuple[httpx.Response, bool, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            big = asyncio.create_task(
                client.post("/webhook", content=body, headers={"Content-Type": "application/json"})
            )
            # Condition wait: the big notification's transaction is open and being planned.
            while not rem.journal._sliced and not big.done():
                await asyncio.sleep(0)
            assert not big.done(), "planned in one go: no slice boundary was reached"
            health = await client.get("/healthz")
            still_planning = not big.done()
            # Nothing else may join or read the open transaction meanwhile.
            with pytest.raises(JournalBusy):
                rem.journal.claim(1, 0.0)
            with pytest.raises(JournalBusy):
                rem.journal.list()
            # A copy of its first alert, sent meanwhile, is planned after it commits.
            copy = await client.post("/webhook", json=first)
            return health, still_planning, await big, copy

    health, still_planning, big, copy = asyncio.run(scenario())
    assert health.status_code == 200 and still_planning
    results = big.json()["results"]
    assert len(results) == 10_000 and results[0]["outcome"] == "dry_run"
    assert {r["outcome"] for r in results[1:]} == {"skipped_cooldown"}
    assert copy.json()["results"][0]["outcome"] == "skipped_duplicate"
    assert rem.journal.list(limit=1)[0].id == 10_001  # every alert recorded, the copy last
