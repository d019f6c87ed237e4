"""The console and the fleet view in process: sign-in, cross-origin refusal, headers,
content negotiation, escaping and the fleet's sorting (the browser tests run the same
pages in chromium: tests/test_console_browser.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from brainycp.config.errors import ConfigError
from brainycp.daemon.crossorigin import cross_origin_reason
from brainycp.daemon.htmlpages import CONTENT_SECURITY_POLICY
from brainycp.daemon.webconfig import WebConfig
from exporter.fleet import FleetView
from exporter.settings import parse_config
from exporter.state import ExporterState, PanelState
from remediator.console.auth import wants_html
from remediator.serve import Lifecycle
from tests.remediator_support import am_alert, notification, remediator

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
ALICE = "Basic " + base64.b64encode(b"alice:wonderland").decode()
WEB = WebConfig(path="web.yml", users={"alice": bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4))})


def headers(**named: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in named.items()]


@pytest.mark.parametrize(
    ("method", "sent", "refused"),
    [
        ("POST", {}, False),  # curl, Alertmanager, the CLI: no browser headers
        ("POST", {"Sec-Fetch-Site": "same-origin", "Host": "r:9864"}, False),
        (
            "POST",
            {"Sec-Fetch-Site": "cross-site", "Origin": "http://r:9864", "Host": "r:9864"},
            True,
        ),
        ("POST", {"Sec-Fetch-Site": "same-site"}, True),
        ("POST", {"Sec-Fetch-Site": "none"}, True),
        ("POST", {"Origin": "http://r:9864", "Host": "r:9864"}, False),
        ("POST", {"Origin": "https://r", "Host": "r:443"}, False),
        ("POST", {"Origin": "http://evil.example", "Host": "r:9864"}, True),
        ("POST", {"Origin": "http://r:9865", "Host": "r:9864"}, True),
        ("POST", {"Origin": "null", "Host": "r:9864"}, True),
        ("POST", {"Origin": "https://console.example.net", "Host": "10.0.0.5:9864"}, False),
        ("DELETE", {"Origin": "http://evil.example"}, True),
        ("GET", {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, False),
    ],
)
def test_cross_origin_reason(method: str, sent: dict[str, str], refused: bool) -> None:
    trusted = ["https://console.example.net/"]  # the external URL, behind a proxy
    reason = cross_origin_reason(method, headers(**sent), trusted)
    assert (reason is not None) == refused, reason


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.9, application/json;q=0.9", True),
        ("text/html;q=x", False),
    ],
)
def test_only_a_browser_is_sent_to_the_pages(accept: str, html: bool) -> None:
    assert wants_html({"headers": headers(Accept=accept)}) is html


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    rem = remediator(tmp_path)
    yield Lifecycle(rem, None, None, WEB).app()
    rem.journal.close()


def run(app: Any, *calls: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r:9864") as client:
            return [await client.request(m, p, **kw) for m, p, kw in calls]

    return asyncio.run(go())


def test_a_web_user_signs_in_and_pages_carry_the_security_headers(app: Any) -> None:
    web = app
    auth = {"Authorization": ALICE}
    pages = ["/console/", "/console/brakes", "/console/history", "/console/manual"]
    answers = run(web, *(("GET", p, {"headers": auth}) for p in pages))
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "script-src" not in answer.text
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "signed in as <strong>alice</strong>" in answer.text
        assert "<script" not in answer.text
    (wrong,) = run(web, ("GET", "/console/", {"auth": ("alice", "rabbit")}))
    assert wrong.status_code == 401 and "Basic" in wrong.headers["www-authenticate"]


def test_without_web_users_the_console_refuses_even_where_the_api_is_open(
    tmp_path: Path,
) -> None:
    rem = remediator(tmp_path)  # insecure_no_auth: the JSON API takes anyone
    web = Lifecycle(rem, None, None, None).app()
    page, pause, api = run(
        web,
        ("GET", "/console/", {}),
        ("POST", "/console/pause", {"data": {"reason": "x"}}),
        ("GET", "/control", {}),
    )
    assert page.status_code == 403 and "basic_auth_users" in page.text
    assert pause.status_code == 403
    assert api.status_code == 200 and api.json()["paused"]["value"] is False
    rem.journal.close()


def test_a_post_from_another_origin_is_refused_before_anything_changes(app: Any) -> None:
    web = app
    evil = {"Authorization": ALICE, "Origin": "http://evil.example"}
    own = {"Authorization": ALICE, "Origin": "http://r:9864"}
    refused, api_refused, paused, control = run(
        web,
        ("POST", "/console/pause", {"headers": evil, "data": {"reason": "gotcha"}}),
        ("POST", "/pause", {"headers": evil, "json": {"by": "mallory"}}),
        ("POST", "/console/pause", {"headers": own, "data": {"reason": "maintenance"}}),
        ("GET", "/control", {"headers": {"Authorization": ALICE}}),
    )
    assert refused.status_code == 403 and "cross-origin" in refused.json()["error"]
    assert api_refused.status_code == 403
    assert paused.status_code == 303 and paused.headers["location"] == "/console/brakes?done=paused"
    state = control.json()["paused"]
    assert state["value"] is True and state["changed_by"] == "alice"
    assert state["reason"] == "maintenance"


def test_the_notification_link_opens_the_page_and_api_clients_keep_json(app: Any) -> None:
    web = app
    auth = {"Authorization": ALICE}
    first = run(web, ("POST", "/webhook", {"json": notification(am_alert("X", "web01"))}))[0]
    action_id = first.json()["results"][0]["action_id"]
    browser, client, index = run(
        web,
        ("GET", f"/actions/{action_id}", {"headers": {**auth, "Accept": BROWSER}}),
        ("GET", f"/actions/{action_id}", {"headers": auth}),
        ("GET", "/", {"headers": {**auth, "Accept": BROWSER}}),
    )
    assert browser.status_code == 303
    assert browser.headers["location"] == f"/console/actions/{action_id}"
    assert browser.headers["vary"] == "Accept"
    assert client.status_code == 200 and client.json()["id"] == action_id
    assert index.status_code == 303 and index.headers["location"] == "/console/"


def test_no_secret_and_no_raw_outside_text_on_any_page(app: Any) -> None:
    web = app
    hostile = "<b>x</b>\"'&\n<script>alert(1)</script>"
    alert = am_alert("X", "web01", note=hostile)
    (answer,) = run(web, ("POST", "/webhook", {"json": notification(alert)}))
    action_id = answer.json()["results"][0]["action_id"]
    auth = {"Authorization": ALICE}
    run(web, ("POST", "/pause", {"headers": auth, "json": {"by": "alice", "comment": hostile}}))
    pages = ["/console/", f"/console/actions/{action_id}", "/console/brakes", "/console/history"]
    for page in run(web, *(("GET", p, {"headers": auth}) for p in pages)):
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text and "<b>x</b>" not in page.text
        assert "wonderland" not in page.text and "$2b$" not in page.text
    detail = run(web, ("GET", f"/console/actions/{action_id}", {"headers": auth}))[0].text
    assert "&lt;b&gt;x&lt;/b&gt;&#34;&#39;&amp;" in detail


# ------------------------------------------------------------------------------ fleet view


def panel(name: str, queue: int | None, *, failed: str = "", at: float = 990.0) -> PanelState:
    state = PanelState(name=name, labels=(("dc", "<east>"),))
    if queue is not None:
        state.record_success("count_msg", at, 0.1)
        state.queue_messages = queue
    if failed:
        state.record_failure("count_msg", at, 0.1, "api_error", failed)
    return state


def test_fleet_sorts_on_the_server_unknown_last_and_escapes_panel_text() -> None:
    state = ExporterState.for_panels(
        [panel("a", 5), panel("b", 50), panel("c", None), panel("d", 7, failed="<i>boom</i>")],
        grafana_url="https://grafana.example.net",
    )
    view = FleetView(state, clock=lambda: 1000.0)
    _, rows = view.render("queue", "desc")
    assert [r.name for r in rows] == ["b", "d", "a", "c"]
    _, rows = view.render("queue", "asc")
    assert [r.name for r in rows] == ["a", "d", "b", "c"]

    async def page() -> httpx.Response:
        from exporter.app import create_app

        transport = httpx.ASGITransport(app=create_app(state, clock=lambda: 1000.0))
        async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
            return await client.get("/", params={"sort": "queue", "order": "desc"})

    html = asyncio.run(page()).text
    assert "api_error (&lt;i&gt;boom&lt;/i&gt;)" in html and "<i>boom" not in html
    assert "dc=&lt;east&gt;" in html
    assert 'href="https://grafana.example.net/d/brainycp-mail-panel?var-panel=b"' in html
    assert html.index("<strong>b</strong>") < html.index("<strong>a</strong>")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("grafana.example.net", "http:// or https://"),
        ("https://admin:secret@grafana.example.net", "credentials"),
        ("https://grafana.example.net/?orgId=1", "without ?query"),
        ("https://grafana.example.net/a b", "spaces"),
        ("https://grafana.example.net:99999", "not a URL"),
    ],
)
def test_grafana_url_is_validated(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"panels": {}, "exporter": {"grafana_url": value}})
    text = "\n".join(caught.value.errors)
    assert "exporter.grafana_url" in text and problem in text


def test_grafana_url_loses_its_trailing_slash() -> None:
    panels = {"web01": {"url": "http://127.0.0.1:9", "username": "a", "password": "b"}}
    config = parse_config({"panels": panels, "exporter": {"grafana_url": "https://g.example/"}})
    assert config.exporter.grafana_url == "https://g.example"
