"""The page over the data channel, end to end: Chromium, the app, the simulator."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Request, expect

from tests.e2e.conftest import DESKTOP, UI, open_ui

CHANNEL_OPEN = "() => window.scopelink.link.open('simulator') !== null"


async def test_the_controls_and_the_status_go_over_the_data_channel(ui: UI) -> None:
    await ui.open("", "?transport=webrtc")
    await ui.page.wait_for_function(CHANNEL_OPEN, timeout=15_000)
    requests: list[str] = []

    def seen(request: Request) -> None:
        requests.append(f"{request.method} {request.url}")

    ui.page.on("request", seen)
    telescope = ui.app.simulator.telescope
    position = ui.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    start = int(await position.text_content() or "0")
    await ui.by("focus-out-large").click()
    await expect(position).to_have_text(str(start + 100))  # the status came back too
    assert telescope.focuser == start + 100
    await ui.by("lp-filter").click()
    await expect(ui.by("lp-filter")).to_have_attribute("aria-checked", "true")
    assert telescope.wheel == 2
    rest = [r for r in requests if "/commands" in r or "/events" in r]
    assert not rest, f"REST or SSE was used while the data channel was open: {rest}"
    assert await ui.page.evaluate("window.scopelink.telemetry.transport.via") == "channel"
    assert not ui.errors, ui.errors


async def test_four_tabs_on_one_host_all_get_live_status_and_video(ui: UI) -> None:
    """Each tab holds one peer connection (video, commands, status) instead of three HTTP
    streams, so the browser's six connections per host are not used up."""
    await ui.open("", "?transport=webrtc")
    pages = [ui.page]
    for _ in range(3):
        page = await ui.context.new_page()
        await page.goto(ui.app.base_url + "/?transport=webrtc")
        pages.append(page)
    for page in pages:
        await expect(page.get_by_test_id("status-link")).to_have_text("Connected")
        await page.wait_for_function(CHANNEL_OPEN, timeout=20_000)
        first = await page.wait_for_function(
            "() => window.scopelink.readFrameStamp()?.frame ?? null", timeout=20_000
        )
        frame = await first.json_value()
        await page.wait_for_function(
            "(n) => (window.scopelink.readFrameStamp()?.frame ?? -1) > n", arg=frame
        )
    # A change shows in every tab.
    position = ui.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    start = int(await position.text_content() or "0")
    await ui.by("focus-out-large").click()
    for page in pages:
        await expect(page.get_by_test_id("focus-position")).to_have_text(str(start + 100))
    for page in pages[1:]:
        await page.close()


async def test_two_browsers_contend_for_control_and_hand_it_over(ui: UI, browser: Browser) -> None:
    async with open_ui(browser, ui.app, viewport=DESKTOP) as other:
        for page in (ui, other):
            await page.open("", "?transport=webrtc")
            await page.page.wait_for_function(CHANNEL_OPEN, timeout=15_000)
            await expect(page.by("control-holder")).to_have_text("Nobody controls the telescope.")
        await ui.by("control-take").click()
        await expect(ui.by("control-holder")).to_have_text("You control the telescope.")
        await expect(other.by("control-holder")).to_have_text(
            "another page controls the telescope; you watch."
        )
        # The watcher's command is refused, with the reason next to the control.
        await other.by("focus-out-large").click()
        await expect(other.by("focus-error")).to_contain_text("controls this telescope")
        # It asks; the holder is asked and hands over.
        await other.by("control-ask").click()
        await expect(other.by("control-holder")).to_contain_text("you asked for control")
        await expect(ui.by("control-holder")).to_contain_text("asks for control")
        await ui.by("control-grant").click()
        await expect(other.by("control-holder")).to_have_text("You control the telescope.")
        await expect(ui.by("control-holder")).to_contain_text("you watch")
        telescope = ui.app.simulator.telescope
        start = telescope.focuser
        await other.by("focus-out-large").click()
        await expect(other.by("focus-position")).to_have_text(str(start + 100))
