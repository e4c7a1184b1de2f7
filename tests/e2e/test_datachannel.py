"""The page over the data channel, end to end: Chromium, the app, the simulator."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser, Request, expect

from tests.e2e.conftest import DESKTOP, UI, open_ui
from tests.e2e.netns import BrowserNetns

CHANNEL_OPEN = "() => window.scopelink.link.open('simulator') !== null"
ACTIVE = "window.scopelink.transport.active"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition on the server's side."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        await asyncio.sleep(0.05)


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
        await expect(other.by("control-note")).to_have_text("Control was handed to you.")
        await expect(ui.by("control-holder")).to_contain_text("you watch")
        await expect(ui.by("control-note")).to_have_text("You handed control to another page.")
        telescope = ui.app.simulator.telescope
        start = telescope.focuser
        await other.by("focus-out-large").click()
        await expect(other.by("focus-position")).to_have_text(str(start + 100))


async def test_once_the_channel_is_open_the_socket_closes_and_the_channel_renegotiates(
    ui: UI,
) -> None:
    """The tab keeps no signaling socket: once the data channel is open the session is let go
    from it, and a new session (another tier) is negotiated over the channel, with the picture
    and the status going on throughout."""
    sockets: list[Any] = []
    ui.page.on("websocket", lambda ws: sockets.append(ws))
    manager = ui.app.app.state.peers
    await ui.open("", "?transport=webrtc")
    await ui.page.wait_for_function(CHANNEL_OPEN, timeout=15_000)
    await ui.page.wait_for_function(f"{ACTIVE}.signalingVia === 'channel'", timeout=10_000)
    await ui.page.wait_for_function(f"{ACTIVE}.signalingState === 'closed'")
    assert len(sockets) == 1
    await until(lambda: sockets[0].is_closed())
    [first] = manager.sessions()
    assert first.stats().tier == "full"

    # Status keeps coming and commands keep working with no socket open.
    position = ui.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    start = int(await position.text_content() or "0")
    await ui.by("focus-out-large").click()
    await expect(position).to_have_text(str(start + 100))

    # Another tier: a new session over the channel; the old one closes once the new one is up.
    await ui.page.evaluate(f"{ACTIVE}.setTier('reduced')")
    await ui.page.wait_for_function(f"{ACTIVE}.renewals === 1", timeout=15_000)
    await until(lambda: [s.id for s in manager.sessions()] != [first.id], timeout=10)
    [second] = manager.sessions()
    assert second.stats().tier == "reduced"
    assert len(sockets) == 1, "no socket was opened for it"
    assert await ui.page.evaluate("window.scopelink.telemetry.transport.via") == "channel"
    assert await ui.page.evaluate("window.scopelink.transport.state") == "playing"
    frame = await ui.page.evaluate("() => window.scopelink.readFrameStamp()?.frame ?? -1")
    await ui.page.wait_for_function(
        "(n) => (window.scopelink.readFrameStamp()?.frame ?? -1) > n", arg=frame
    )
    await ui.by("focus-in-large").click()
    await expect(position).to_have_text(str(start))
    assert not ui.errors, ui.errors


async def test_with_mjpeg_a_connection_of_data_channels_only_carries_commands_and_status(
    ui: UI,
) -> None:
    """MJPEG shows the picture; commands and status still go over a data channel, on a
    connection with no video. Switching to WebRTC moves the channel to the video's connection
    (the channel-only one closes), and back again."""
    manager = ui.app.app.state.peers
    await ui.open("", "?transport=mjpeg")
    await ui.page.wait_for_function(CHANNEL_OPEN, timeout=15_000)
    requests: list[str] = []
    ui.page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    await until(lambda: [s.stats().tier for s in manager.sessions()] == ["none"])
    await expect(ui.by("live-state")).to_contain_text("MJPEG")
    await ui.page.wait_for_function("window.scopelink.link.standaloneState === 'connected'")
    position = ui.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    start = int(await position.text_content() or "0")
    await ui.by("focus-out-large").click()
    await expect(position).to_have_text(str(start + 100))
    assert ui.app.simulator.telescope.focuser == start + 100
    assert await ui.page.evaluate("window.scopelink.telemetry.transport.via") == "channel"
    used = [r for r in requests if "/api/" in r and ("/commands" in r or "/events" in r)]
    assert not used, f"REST or SSE was used beside the open channel: {used}"

    # To WebRTC: the video's connection takes the channel; the channel-only one goes.
    await ui.by("live-transport-toggle").click()
    await expect(ui.by("live-state")).to_contain_text("WebRTC")
    await until(lambda: [s.stats().tier for s in manager.sessions()] == ["full"], timeout=15)
    await ui.page.wait_for_function("window.scopelink.link.standaloneState === 'idle'")
    await ui.by("focus-in-large").click()
    await expect(position).to_have_text(str(start))

    # And back: a channel-only connection again once the video's is gone.
    await ui.by("live-transport-toggle").click()
    await expect(ui.by("live-state")).to_contain_text("MJPEG")
    await until(lambda: [s.stats().tier for s in manager.sessions()] == ["none"], timeout=15)
    await ui.page.wait_for_function(CHANNEL_OPEN, timeout=15_000)
    await ui.by("focus-out-large").click()
    await expect(position).to_have_text(str(start + 100))
    used = [r for r in requests if "/api/" in r and "/commands" in r]
    assert not used, f"a command went over REST: {used}"
    assert not ui.errors, ui.errors


async def test_when_the_network_drops_commands_wait_and_each_runs_once_by_its_rule(
    netns: BrowserNetns, netns_ui: UI
) -> None:
    """The browser's link goes down (its own network namespace): a command given before the
    page noticed is kept by the channel and sent again; those given after wait in the queue,
    shown with their rule; a move is refused at once. The link comes back: each runs once."""
    ui = netns_ui
    await ui.open("", "?transport=webrtc")
    await ui.page.wait_for_function(CHANNEL_OPEN, timeout=20_000)
    await ui.page.wait_for_function(f"{ACTIVE}.signalingVia === 'channel'", timeout=15_000)
    telescope = ui.app.simulator.telescope
    position = ui.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    before = telescope.focuser
    assert telescope.wheel != 2 and not telescope.settings.get("heater_enable")
    moves: list[tuple[float, float, float]] = []
    speed_move = telescope.mount.speed_move

    def recorded(angle_deg: float, speed: float, dur_s: float) -> None:
        if speed > 0 and dur_s > 0:
            moves.append((angle_deg, speed, dur_s))
        speed_move(angle_deg, speed, dur_s)

    telescope.mount.speed_move = recorded  # type: ignore[method-assign]

    netns.link_down()
    # Given before the page can know: the channel keeps it and sends it again.
    await ui.by("lp-filter").click()
    await ui.page.wait_for_function(f"!({CHANNEL_OPEN[6:]})", timeout=20_000)
    await expect(ui.by("connection-pill")).not_to_have_text("Live")
    # Given after: queued, each with its rule, or refused.
    await ui.by("focus-out-large").click()
    queued = ui.by("queued-command")
    await expect(queued.last).to_contain_text(
        "focus (delta 100): waiting for the connection; sent if it returns within 60 s"
    )
    await ui.by("dew-heater").click()
    await expect(queued.last).to_contain_text("waiting for the connection; sent when it returns")
    await ui.by("move-up").click()
    await expect(ui.by("motion-error")).to_contain_text("a move is never sent late")
    assert telescope.wheel != 2 and telescope.focuser == before, "nothing got through"

    netns.link_up()
    await ui.page.wait_for_function(CHANNEL_OPEN, timeout=30_000)
    await until(lambda: telescope.wheel == 2, timeout=15)
    await until(lambda: telescope.focuser == before + 100, timeout=20)
    await until(lambda: telescope.settings.get("heater_enable") is True, timeout=10)
    for entry in range(await queued.count()):
        await expect(queued.nth(entry)).to_contain_text("sent when the connection came back")
    await expect(position).to_have_text(str(before + 100))
    await expect(ui.by("lp-filter")).to_have_attribute("aria-checked", "true")
    await expect(ui.by("connection-pill")).to_have_text("Live")
    await asyncio.sleep(1.0)
    assert telescope.focuser == before + 100, "the step ran once"
    assert moves == [], "the move was never made"


async def test_a_connection_is_renewed_before_its_turn_credentials_expire(
    browser: Browser,
) -> None:
    """TURN credentials expire, and a relayed connection loses its relay when they do: the page
    negotiates a new connection with fresh credentials over the data channel a margin before,
    and the picture goes on."""
    from scopelink.settings import ServeSettings
    from scopelink.web.server import serving

    # Credentials valid 305 s: the renewal is due 5 min before, so at the 10 s floor.
    settings = ServeSettings(
        simulator_fps=5.0,
        turn_urls=["turn:127.0.0.1:9?transport=tcp"],  # nothing listens: gathering fails fast
        turn_secret="test-secret",
        turn_ttl_s=305,
    )
    async with serving(settings) as app, open_ui(browser, app, viewport=DESKTOP) as ui:
        await ui.open("", "?transport=webrtc")
        await ui.page.wait_for_function(CHANNEL_OPEN, timeout=15_000)
        first = app.app.state.peers.sessions()[0].id
        await ui.page.wait_for_function(f"{ACTIVE}.renewals === 1", timeout=30_000)
        await until(lambda: [s.id for s in app.app.state.peers.sessions()] != [first], timeout=10)
        frame = await ui.page.evaluate("() => window.scopelink.readFrameStamp()?.frame ?? -1")
        await ui.page.wait_for_function(
            "(n) => (window.scopelink.readFrameStamp()?.frame ?? -1) > n", arg=frame
        )
