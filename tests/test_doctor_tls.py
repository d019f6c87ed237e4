"""The doctor's fix lines for panel-call reasons, in process, against scripted servers."""

from __future__ import annotations

from brainycp.config import parse_config
from brainycp.doctor import Doctor, Report
from tests.panel_support import Script, always, run, serving


def _doctor_against(script: Script, *, tls: bool = False) -> Report:
    async def go() -> Report:
        async with serving(script, tls=tls) as server:
            settings = {"url": server.url, "username": "u", "password": "pw-x"}
            panel = parse_config({"panels": {"p": settings}}).panels["p"]
            return await Doctor(panel).run()

    return run(go())


def test_a_panel_answering_malformed_http_fails_login_as_protocol_with_its_fix() -> None:
    report = _doctor_against(always(b"HELLO THERE\r\n\r\n", close=True))
    (login,) = [c for c in report.checks if c.name == "login"]
    assert login.ok is False
    assert login.detail.startswith("protocol: ") and "status line" in login.detail
    assert "panels.p.url" in login.fix and "HTTP/1.1" in login.fix
