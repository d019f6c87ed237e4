"""The operator console and the fleet view in a real browser (Debian's chromium, Playwright).

One scene of real processes (panel simulator, a hostile panel, the remediator with a
web config, the exporter) and one browser serve the whole module. Every decision taken
in the browser is checked against the journal (the JSON API) and the simulator's queue.
Every page load records the browser's requests: all of them go to the daemon itself,
and none is blocked by the Content-Security-Policy (nothing is missing from a page).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    HOSTILE_TEXT,
    USER,
    Scene,
    _EvilHandler,
    basic,
    playwright_or_skip,
    scene,
    screenshot_dir,
    serve_thread,
)
from tests.remediator_support import am_alert
from tests.support import wait_until

pytestmark = pytest.mark.e2e

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1200, "height": 900}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    with scene(tmp_path_factory.mktemp("console")) as found:
        yield found


@pytest.fixture(scope="module")
def browser(world: Scene) -> Iterator[Any]:
    sync_api = playwright_or_skip()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


class Tab:
    """A page signed in as :data:`USER`, recording every request and CSP complaint."""

    def __init__(self, browser: Any, origin: str, viewport: dict[str, int]) -> None:
        self.origin = origin
        self.context = browser.new_context(
            viewport=viewport,
            http_credentials={"username": USER, "password": "console-test-password"},
        )
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.complaints: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.complaints.append(message.text))
        self.page.on(
            "dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss())
        )

    def go(self, path: str) -> Any:
        response = self.page.goto(self.origin + path)
        assert response is not None
        return response

    def check(self) -> None:
        """Everything the pages asked for came from the daemon; nothing was refused or run."""
        foreign = [url for url in self.requests if not url.startswith(self.origin + "/")]
        assert not foreign, f"requests to elsewhere: {foreign}"
        assert not [c for c in self.complaints if "Content Security Policy" in c], self.complaints
        assert not self.dialogs, f"a script ran: {self.dialogs}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, world: Scene) -> Iterator[Tab]:
    opened = Tab(browser, world.url, DESKTOP)
    try:
        yield opened
        opened.check()
    finally:
        opened.close()


def final(world: Scene, action_id: int) -> dict[str, Any]:
    with world.api() as api:
        return wait_until(
            lambda: (
                (row := api.get(f"/actions/{action_id}").json())["outcome"]
                not in ("pending", "running")
                and row
            ),
            what=f"action {action_id} to finish",
        )


def ask(world: Scene, panel: str, sender: str) -> int:
    (result,) = world.webhook(am_alert("SenderSurge", panel, sender=sender))
    assert result["outcome"] == "awaiting_approval", result
    return int(result["action_id"])


# ------------------------------------------------------------------------------ decisions


def test_approve_from_the_link_in_the_chat_message(tab: Tab, world: Scene, shots: Path) -> None:
    world.add_mail("web01", 3, "spam@shop.example", age=600)
    world.add_mail("web01", 2, "customer@example.org")
    others = sorted(s for s in world.senders("web01") if s != "spam@shop.example")
    action_id = ask(world, "web01", "spam@shop.example")
    tab.go(f"/actions/{action_id}")  # the notification's link, opened in a browser
    page = tab.page
    assert page.url == f"{world.url}/console/actions/{action_id}"
    assert page.locator(".matching").inner_text() == "3"
    preview = page.locator("#preview").inner_text()
    assert preview.count("spam@shop.example") == 3 and "customer@example.org" not in preview
    assert "spam@shop.example" in page.locator("dl.facts").nth(1).inner_text()  # selection
    page.fill("#approve-comment", "the shop's password was stolen")
    page.screenshot(path=shots / "console-approval.png", full_page=True)
    page.click("#approve")
    assert page.locator("#done").inner_text() == "You approved this action."
    row = final(world, action_id)
    assert row["outcome"] == "succeeded"
    assert row["decision"]["by"] == USER
    assert row["decision"]["comment"] == "the shop's password was stolen"
    assert sorted(m["sender"] for m in row["messages"]) == ["spam@shop.example"] * 3
    assert sorted(world.senders("web01")) == others  # nobody else's mail was touched
    tab.page.reload()
    timeline = page.locator("#timeline").inner_text()
    assert f"approved by {USER}: the shop's password was stolen" in timeline
    assert page.locator("#touched tbody tr").count() == 3
    page.screenshot(path=shots / "console-action.png", full_page=True)


def test_deny_from_the_waiting_page(tab: Tab, world: Scene, shots: Path) -> None:
    world.add_mail("web02", 4, "newsletter@legit.example")
    action_id = ask(world, "web02", "newsletter@legit.example")
    tab.go("/console/")
    card = tab.page.locator(f"#request-{action_id}")
    assert "newsletter@legit.example" in card.inner_text()
    assert card.locator(".matching").inner_text() == "4"
    tab.page.screenshot(path=shots / "console-waiting.png", full_page=True)
    card.locator("a", has_text="Review, approve or deny").click()
    tab.page.fill("#deny-comment", "a real newsletter")
    tab.page.click("#deny")
    assert "You denied" in tab.page.locator("#done").inner_text()
    row = final(world, action_id)
    assert row["outcome"] == "denied"
    assert row["decision"] == {
        "by": USER,
        "at": row["decision"]["at"],
        "comment": "a real newsletter",
    }
    assert world.senders("web02").count("newsletter@legit.example") == 4  # nothing touched


def test_pause_then_resume(tab: Tab, world: Scene, shots: Path) -> None:
    tab.go("/console/brakes")
    page = tab.page
    page.fill("#pause-reason", "panel maintenance tonight")
    page.click("#pause")
    assert "paused" in page.locator("#done").inner_text()
    with world.api() as api:
        paused = api.get("/control").json()["paused"]
    assert paused["value"] is True and paused["changed_by"] == USER
    assert paused["reason"] == "panel maintenance tonight"
    assert "panel maintenance tonight" in page.locator("#brake-paused").inner_text()
    page.screenshot(path=shots / "console-brakes.png", full_page=True)
    # Paused, an alert's action is not started: the brake is real.
    (result,) = world.webhook(am_alert("SenderSurge", "web03", sender="x@paused.example"))
    assert result["outcome"] == "skipped_paused"
    page.click("#resume")
    with world.api() as api:
        assert api.get("/control").json()["paused"]["value"] is False
    assert page.locator("#brake-paused").count() == 0
    assert "panel maintenance tonight" in page.locator("#changes").inner_text()


def test_manual_dry_run_then_run(tab: Tab, world: Scene, shots: Path) -> None:
    world.add_mail("web03", 5, "loop@broken.example")
    world.add_mail("web03", 1, "keep@example.org")
    others = sorted(s for s in world.senders("web03") if s != "loop@broken.example")
    tab.go("/console/manual")
    page = tab.page
    page.select_option("#m-panel", "web03")
    page.select_option("#m-action", "delete_messages")
    page.fill("#m-sender", "loop@broken.example")
    page.click("#dry-run")
    result = page.locator("#preview-result")
    assert result.locator(".matching").inner_text() == "5"
    assert world.senders("web03").count("loop@broken.example") == 5  # a dry run changes nothing
    page.screenshot(path=shots / "console-manual.png", full_page=True)
    page.check("#confirm")  # the destructive confirmation the API requires
    page.click("#run")
    assert "/console/actions/" in page.url
    action_id = int(page.url.rsplit("/", 1)[1])
    row = final(world, action_id)
    assert row["outcome"] == "succeeded" and row["origin"] == "manual"
    assert row["requested_by"] == USER and row["messages_total"] == 5
    assert sorted(world.senders("web03")) == others
    with world.api() as api:
        dry = api.get("/actions", params={"outcome": "dry_run", "rule": "(manual)"}).json()
    assert dry["actions"], "the dry run is journaled too"


def test_a_run_without_the_confirmation_is_refused(world: Scene) -> None:
    world.add_mail("web03", 1, "other@broken.example")
    form = {"panel": "web03", "action": "delete_messages", "sender": "other@broken.example"}
    answer = httpx.post(f"{world.url}/console/manual/run", data=form,
                        headers={"Authorization": basic()}, timeout=10)  # fmt: skip
    assert answer.status_code == 422 and "allow_destructive" in answer.text
    assert world.senders("web03").count("other@broken.example") == 1


# ------------------------------------------------------------------------------ hostile text


def test_hostile_sender_label_and_panel_message_render_as_text(tab: Tab, world: Scene) -> None:
    sender = '"><img/src=x/onerror=alert(3)>@evil.example'
    world.add_mail("web04", 2, sender, frozen=True)
    # An alert naming that sender: the planner refuses the label, the page shows it as text.
    (refused,) = world.webhook(am_alert("SenderSurge", "web04", sender=sender))
    tab.go(f"/console/actions/{refused['action_id']}")
    page = tab.page
    assert sender in page.locator("#labels").inner_text()
    assert page.locator("main img").count() == 0
    # The queue's own sender, in a live dry run and in the record of what was deleted.
    tab.go("/console/manual")
    page.select_option("#m-panel", "web04")
    page.select_option("#m-action", "delete_frozen")
    page.click("#dry-run")
    assert page.locator("#preview").inner_text().count(sender) == 2
    page.click("#run")
    action_id = int(page.url.rsplit("/", 1)[1])
    assert final(world, action_id)["outcome"] == "succeeded"
    page.reload()
    assert page.locator("#touched").inner_text().count(sender) == 2
    assert page.locator("main img").count() == 0
    # A panel whose every answer carries markup: the live preview's failure shows it as text.
    (result,) = world.webhook(am_alert("SenderSurge", "hostile", sender="a@b.example"))
    tab.go(f"/console/actions/{result['action_id']}")
    failed = page.locator(".notice.bad").inner_text()
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in failed
    assert page.locator("main script, main img").count() == 0
    tab.go("/console/")
    assert HOSTILE_TEXT.split("\n")[0] in page.locator("main").inner_text()
    assert page.locator("main script, main img").count() == 0


# ------------------------------------------------------------------------------ cross-site


def test_a_cross_origin_post_with_valid_credentials_is_refused(browser: Any, world: Scene) -> None:
    with serve_thread(_EvilHandler) as port:
        _EvilHandler.target = world.url
        # Valid credentials on every request, as a browser that signed in before sends them.
        context = browser.new_context(extra_http_headers={"Authorization": basic()})
        try:
            page = context.new_page()
            for button, path in (("#console", "/console/pause"), ("#api", "/pause")):
                page.goto(f"http://localhost:{port}/")
                with page.expect_response(f"{world.url}{path}") as answer:
                    page.click(button)
                assert answer.value.status == 403
                assert answer.value.request.header_value("authorization") == basic()
                assert "cross-origin" in answer.value.text()
        finally:
            context.close()
    with world.api() as api:
        assert api.get("/control").json()["paused"]["value"] is False
        metrics = api.get("/metrics").text
    assert "brainycp_http_cross_origin_refused_total 2.0" in metrics


# ------------------------------------------------------------------------------ layout


def test_every_page_fits_a_375px_phone(browser: Any, world: Scene, shots: Path) -> None:
    world.add_mail("web04", 1, "a-rather-long-sender-address-for-a-phone@subdomain.example.org")
    action_id = ask(
        world, "web04", "a-rather-long-sender-address-for-a-phone@subdomain.example.org"
    )
    phone = Tab(browser, world.url, PHONE)
    try:
        for path in ("/console/", f"/console/actions/{action_id}", "/console/brakes",
                     "/console/history", "/console/manual"):  # fmt: skip
            phone.go(path)
            width = phone.page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width} px wide"
        phone.page.screenshot(path=shots / "console-phone.png", full_page=True)
        phone.check()
    finally:
        phone.close()


def test_history_filters_and_pages(tab: Tab, world: Scene) -> None:
    tab.go("/console/history?panel=web01&outcome=succeeded")
    rows = tab.page.locator("#actions tbody tr")
    assert rows.count() >= 1
    assert all("web01" in text for text in rows.all_inner_texts())
    tab.go("/console/history?since=2000-01-01T00:00&until=2000-01-02T00:00")
    assert "nothing here" in tab.page.locator("#actions").inner_text()


# ------------------------------------------------------------------------------ exporter


def test_fleet_view_sorts_and_fits_a_phone(browser: Any, world: Scene, shots: Path) -> None:
    world.add_mail("web02", 200, "bulk@example.net", frozen=True)
    fleet = Tab(browser, world.exporter, DESKTOP)
    try:
        wait_until(
            lambda: "bulk@example.net" in httpx.get(world.exporter + "/", timeout=5).text,
            what="the exporter to poll web02",
        )
        fleet.go("/?sort=queue&order=desc")
        first = fleet.page.locator("#fleet tbody tr").first.inner_text()
        assert "web02" in first and "bulk@example.net" in first
        assert "hostile" in fleet.page.locator("#fleet").inner_text()
        link = fleet.page.locator("a", has_text="dashboard").first.get_attribute("href")
        assert link == "https://grafana.example.net/d/brainycp-mail-panel?var-panel=web02"
        fleet.page.locator("#fleet thead a", has_text="Panel").click()
        fleet.page.wait_for_url("**/?sort=panel&order=asc")
        assert fleet.page.locator("#fleet tbody tr").first.inner_text().startswith("hostile")
        fleet.page.screenshot(path=shots / "exporter-fleet.png", full_page=True)
        fleet.page.set_viewport_size(PHONE)
        assert fleet.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        fleet.page.screenshot(path=shots / "exporter-fleet-phone.png", full_page=True)
        fleet.check()
    finally:
        fleet.close()
