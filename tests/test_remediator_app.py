"""The webhook in-process (ASGI transport): auth schemes, group commit, journal failure."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from remediator.routes import webhook as app_module
from remediator.routes.common import authorized
from remediator.routes.health import HEALTH_TIMEOUT
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


def test_a_huge_notification_is_journaled_off_the_loop_while_healthz_answers(
    tmp_path: Path,
) -> None:
    """A 10,000-alert notification is planned and committed on the journal's thread: the
    loop answers /healthz meanwhile (within its 3 s bound, and 200: the journal is busy,
    not down); a read and a copy sent meanwhile see the committed batch, never half."""
    rem = remediator(tmp_path)
    alerts = [
        {"labels": {"alertname": "X", "panel": "web01", "i": str(i)}, "startsAt": "s"}
        for i in range(10_000)
    ]
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()
    assert len(body) < app_module.MAX_BODY_BYTES
    first = notification({**alerts[0], "status": "firing"})

    async def scenario() -> tuple[
        httpx.Response, float, bool, httpx.Response, httpx.Response, httpx.Response
    ]:
        transport = httpx.ASGITransport(app=rem.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            big = asyncio.create_task(
                client.post("/webhook", content=body, headers={"Content-Type": "application/json"})
            )
            # Condition wait: the big notification's transaction runs on the journal's thread.
            while not rem.journal.busy and not big.done():
                await asyncio.sleep(0.001)
            assert not big.done(), "the batch ended before it could be watched"
            asked = time.monotonic()
            health = await client.get("/healthz")
            took = time.monotonic() - asked
            still_planning = not big.done()
            newest, copy = await asyncio.gather(
                client.get("/actions", params={"limit": 1}),
                client.post("/webhook", json=first),
            )
            return health, took, still_planning, await big, newest, copy

    health, took, still_planning, big, newest, copy = asyncio.run(scenario())
    assert health.status_code == 200 and still_planning and took < HEALTH_TIMEOUT
    results = big.json()["results"]
    assert len(results) == 10_000 and results[0]["outcome"] == "dry_run"
    assert {r["outcome"] for r in results[1:]} == {"skipped_cooldown"}
    assert newest.json()["actions"][0]["id"] >= 10_000  # the whole batch, or more
    assert copy.json()["results"][0]["outcome"] == "skipped_duplicate"
    assert rem.journal.list(limit=1)[0].id == 10_001  # every alert recorded, the copy last


def test_the_documented_number_of_alerts_that_fit_in_the_body_is_what_fits() -> None:
    """docs/remediation.md says how many alerts fit in the 1 MiB body; measured here on
    Alertmanager's own (compact) encoding: typical alerts (3 labels, a summary, the
    generator URL) and bare ones (2 labels, nothing else)."""

    def fitting(alert: Callable[[int], dict[str, object]]) -> int:
        low, high = 1, 100_000
        while low < high:
            middle = (low + high + 1) // 2
            body = json.dumps(notification(*map(alert, range(middle))), separators=(",", ":"))
            low, high = (
                (middle, high)
                if len(body.encode()) <= app_module.MAX_BODY_BYTES
                else (low, middle - 1)
            )
        return low

    typical = fitting(lambda i: am_alert("BrainyCPMailFrozenMessages", f"web{i:04d}"))
    bare = fitting(
        lambda i: {"status": "firing", "startsAt": "2026-11-25T08:00:00.000Z",
                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "annotations": {},
                   "fingerprint": "1f5dbc7c7cd88a88",
                   "labels": {"alertname": "BrainyCPMailFrozenMessages", "panel": f"web{i:04d}"}}
    )  # fmt: skip
    docs = (Path(__file__).parent.parent / "docs" / "remediation.md").read_text()
    sentence = " ".join(docs.split("(about ", 1)[1].split(")", 1)[0].split())
    assert f"{round(typical, -2):,} typical" in sentence, (typical, sentence)
    assert f"{round(bare, -2):,} bare" in sentence, (bare, sentence)
    assert "10,000" not in sentence
