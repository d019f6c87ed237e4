"""The exporter logs a panel's failure when it starts and its recovery with the count of
failed polls in between, not one line per failed poll."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from brainycp.simulator.cli import build_app, build_parser
from exporter.poller import Poller, initial_state
from exporter.settings import parse_config


def test_a_failing_panel_is_logged_when_it_fails_and_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = build_app(build_parser().parse_args(["--panels", "1", "--users", "a:b:root"]))
    config = parse_config(
        {
            "panels": {
                "web01": {
                    "url": "http://sim/panel/panel0001/api/api.php",
                    "username": "a",
                    "password": "b",
                    "daemons": [],
                }
            }
        }
    )

    async def scenario() -> list[bool]:
        control = httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="http://sim")
        poller = Poller(
            config, initial_state(config), transport_factory=lambda _: httpx.ASGITransport(sim)
        )
        fault = {"status": 502, "times": 4, "operations": ["count_msg"]}
        response = await control.post("/panel/panel0001/_sim/fault", json=fault)
        assert response.status_code == 200, response.text
        results = [await poller.poll_status("web01") for _ in range(6)]
        await poller.aclose()
        await control.aclose()
        return results

    with caplog.at_level(logging.DEBUG, logger="exporter.poller"):
        results = asyncio.run(scenario())
    assert results == [False, False, False, False, True, True]
    lines = [
        (r.levelname, r.getMessage(), getattr(r, "failed_polls", None))
        for r in caplog.records
        if r.name == "exporter.poller" and r.levelno >= logging.INFO
    ]
    assert lines == [("WARNING", "poll failing", None), ("INFO", "poll recovered", 4)]
