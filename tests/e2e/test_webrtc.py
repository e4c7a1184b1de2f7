"""The live view over WebRTC, end to end: real Chromium, the app's signaling socket, aiortc.

WebRTC is preferred where the browser has it; MJPEG takes over when it is unsupported or
chosen, and the toggle switches either way without the picture going blank.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.e2e.conftest import UI

#: The frame number decoded from the pixels shown now (lib/framestamp.js through the page hook).
SHOWN_FRAME = "() => window.scopelink.readFrameStamp()?.frame ?? null"
NEWER_FRAME = "(n) => (window.scopelink.readFrameStamp()?.frame ?? -1) > n"

#: Stamps of the next few `frame` events (decoded from the video's pixels by the transport).
FRAME_STAMPS = """(count) => new Promise((resolve) => {
  const stamps = [];
  const on = (event) => {
    stamps.push({stamp: event.detail.stamp, shownAt: event.detail.shownAt,
                 width: event.detail.width});
    if (stamps.length >= count) {
      window.scopelink.transport.removeEventListener('frame', on);
      resolve(stamps);
    }
  };
  window.scopelink.transport.addEventListener('frame', on);
})"""

#: Every 20 ms, whether a picture is on top (a shown element with a frame): recorded in the page
#: so a blank moment between two transports cannot slip between two polls of the test.
WATCH_BLANK = """() => {
  window.__blank = 0;
  window.__watch = setInterval(() => {
    const t = window.scopelink.transport;
    if (!(t.frameSize.width > 0) || !t.element.classList.contains('live-shown')) window.__blank++;
  }, 20);
}"""

NO_RTC = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for a condition on the server's side."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        await asyncio.sleep(0.05)


def count_offers(ui: UI) -> list[str]:
    """Record the SDP of every offer the running app is asked to answer (signaling and WHEP)."""
    manager = ui.app.app.state.peers
    offers: list[str] = []
    create = manager.create

    async def counting(telescope_id: str, source: Any, offer_sdp: str, **kwargs: Any) -> Any:
        offers.append(offer_sdp)
        return await create(telescope_id, source, offer_sdp, **kwargs)

    manager.create = counting
    return offers


def peers(ui: UI) -> int:
    """WebRTC peers the server holds now."""
    return len(ui.app.app.state.peers)


async def stamps_advance(ui: UI) -> None:
    """Frames keep coming and their stamps (read from the video's pixels) go up."""
    stamps = await ui.page.evaluate(FRAME_STAMPS, 6)
    frames = [s["stamp"]["frame"] for s in stamps if s["stamp"]]
    assert len(frames) >= 5, f"frames without a readable stamp: {stamps}"
    assert frames == sorted(frames) and frames[-1] > frames[0]
    shown = await ui.page.evaluate(SHOWN_FRAME)
    assert shown is not None
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown)


async def playing(ui: UI, name: str) -> None:
    await expect(ui.by("live-state")).to_have_attribute("data-state", "playing")
    await expect(ui.by("live-state")).to_contain_text(name)


async def test_the_page_plays_webrtc_and_the_stamps_in_the_video_advance(ui: UI) -> None:
    await ui.open()
    await playing(ui, "WebRTC")
    await expect(ui.by("live-video")).to_be_visible()
    await stamps_advance(ui)
    # The quality indicator: a graded dot and figures from getStats() and the stamps.
    quality = ui.by("live-quality")
    await expect(quality).to_be_visible()
    await expect(quality).to_have_attribute("data-level", "green")
    await expect(quality).to_contain_text("RTT")
    await expect(quality).to_contain_text("bit/s")
    await expect(ui.by("live-transport-toggle")).to_have_text("Use MJPEG")
    assert ui.errors == []


async def test_the_url_parameter_chooses_mjpeg(ui: UI) -> None:
    await ui.open(query="?transport=mjpeg")
    await playing(ui, "MJPEG")
    await expect(ui.by("live-canvas")).to_be_visible()
    assert await ui.page.evaluate(SHOWN_FRAME) is not None
    assert await ui.page.evaluate("() => window.scopelink.transport.kind") == "mjpeg"
    await expect(ui.by("live-transport-toggle")).to_have_text("Use WebRTC")


async def test_without_webrtc_in_the_browser_mjpeg_shows_and_the_toggle_says_why(ui: UI) -> None:
    await ui.page.add_init_script(NO_RTC)
    await ui.open()
    await playing(ui, "MJPEG")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
    await expect(ui.by("live-transport-toggle")).to_be_disabled()
    assert ui.errors == []


async def test_the_toggle_switches_both_ways_and_the_picture_never_goes_blank(
    ui: UI, screenshots: Path
) -> None:
    await ui.open(query="?transport=mjpeg")
    await playing(ui, "MJPEG")
    await ui.page.wait_for_function("() => window.scopelink.readFrameStamp() !== null")
    await ui.page.evaluate(WATCH_BLANK)

    await ui.by("live-transport-toggle").click()
    await playing(ui, "WebRTC")
    await expect(ui.by("live-video")).to_have_class("live-shown")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    assert shown is not None
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown)
    assert await ui.page.evaluate("() => localStorage.getItem('scopelink.transport')") == "webrtc"
    assert peers(ui) == 1
    await ui.page.screenshot(path=screenshots / "webrtc-desktop.png")

    await ui.by("live-transport-toggle").click()
    await playing(ui, "MJPEG")
    await expect(ui.by("live-canvas")).to_have_class("live-shown")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
    assert await ui.page.evaluate("() => window.__blank") == 0, "the picture went blank"
    # The WebRTC session was ended: no peer left on the server.
    await ui.page.wait_for_function("() => window.scopelink.transport.active.name === 'MJPEG'")
    assert ui.errors == []


async def test_the_remembered_choice_applies_on_the_next_visit(ui: UI) -> None:
    await ui.page.add_init_script("localStorage.setItem('scopelink.transport', 'mjpeg')")
    await ui.open()
    await playing(ui, "MJPEG")


async def test_on_a_phone_the_video_plays_inline(phone: UI, screenshots: Path) -> None:
    await phone.open()
    await playing(phone, "WebRTC")
    video = phone.by("live-video")
    assert await video.evaluate("(v) => v.playsInline && v.muted && v.autoplay && !v.paused")
    assert await video.evaluate("(v) => document.fullscreenElement === null")
    frame = await phone.by("live-frame").bounding_box()
    box = await video.bounding_box()
    assert frame is not None and box is not None
    assert box["width"] <= frame["width"] + 1 and box["height"] <= frame["height"] + 1
    shown = await phone.page.evaluate(SHOWN_FRAME)
    assert shown is not None
    await phone.page.wait_for_function(NEWER_FRAME, arg=shown)
    await phone.by("live-transport-toggle").tap()
    await playing(phone, "MJPEG")
    await phone.page.screenshot(path=screenshots / "webrtc-phone.png")


async def test_webrtc_that_cannot_connect_falls_back_to_mjpeg_within_seconds(ui: UI) -> None:
    # Relay-only ICE with no TURN server configured: no candidate pair can ever form, as when
    # UDP is blocked. After ~4 s without a picture the page gives up and shows MJPEG.
    await ui.open(query="?ice=relay")
    await expect(ui.by("live-state")).to_contain_text("WebRTC")
    await expect(ui.by("live-state")).to_contain_text("MJPEG", timeout=8_000)
    await playing(ui, "MJPEG")
    assert await ui.page.evaluate("() => window.scopelink.transport.fellBack")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
    # The choice is still WebRTC: the toggle offers it back.
    await expect(ui.by("live-transport-toggle")).to_have_text("Use WebRTC")


async def test_when_the_server_drops_the_peer_the_page_recovers_by_itself(ui: UI) -> None:
    await ui.open()
    await playing(ui, "WebRTC")
    manager = ui.app.app.state.peers
    [session] = manager.sessions()
    await manager.close(session.id)
    # The page notices (its data channel closes, or ICE fails), backs off and offers a new
    # session over a new signaling socket: WebRTC again, with advancing frames.
    await until(lambda: any(s.id != session.id for s in manager.sessions()), timeout=10)
    await playing(ui, "WebRTC")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
    assert await ui.page.evaluate("() => window.scopelink.transport.kind") == "webrtc"
    assert len(manager.sessions()) == 1


#: The probe's next try, in ms from now (negative: due, or no probe waiting).
PROBE_DUE_MS = "() => window.scopelink.transport.probe.retryAt - performance.now()"


async def test_refused_webrtc_falls_back_to_mjpeg_and_comes_back_by_itself(ui: UI) -> None:
    manager = ui.app.app.state.peers
    offers = count_offers(ui)
    manager.max_peers = 0  # a full server: every offer is refused with 503
    await ui.open()
    await expect(ui.by("live-state")).to_contain_text("MJPEG", timeout=15_000)
    await playing(ui, "MJPEG")
    probe = ui.by("live-webrtc-probe")
    await expect(probe).to_be_visible()
    await expect(probe).to_contain_text(re.compile(r"WebRTC unavailable · retrying in \d+ s"))
    await expect(probe).to_have_attribute("title", re.compile("no room for another viewer"))
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
    await expect(ui.by("live-transport-toggle")).to_have_text("Use WebRTC")

    # The page keeps trying in the background: a probe is refused too, and MJPEG stays up.
    before = len(offers)
    await until(lambda: len(offers) > before, timeout=20)
    await expect(probe).to_have_attribute("data-state", "waiting")
    await expect(ui.by("live-state")).to_contain_text("MJPEG")
    await ui.page.evaluate(WATCH_BLANK)

    manager.max_peers = 16
    due_s = max(0.0, await ui.page.evaluate(PROBE_DUE_MS)) / 1000
    allowed = time.monotonic()
    # The next probe (due within its backoff) connects and takes over, keeping the picture.
    await expect(ui.by("live-state")).to_contain_text("WebRTC", timeout=(due_s + 20) * 1000)
    await playing(ui, "WebRTC")
    took = time.monotonic() - allowed
    assert took < due_s + 20, f"WebRTC came back {took:.1f} s after allowed ({due_s:.1f} s due)"
    await expect(ui.by("live-video")).to_have_class("live-shown")
    await expect(probe).to_be_hidden()
    await stamps_advance(ui)
    assert await ui.page.evaluate("() => window.__blank") == 0, "the picture went blank"
    assert await ui.page.evaluate("() => window.scopelink.transport.probe.state") == "off"
    assert len(manager.sessions()) == 1
    assert ui.errors == []


async def test_mjpeg_chosen_in_the_url_never_tries_webrtc_video(ui: UI) -> None:
    """MJPEG chosen: no video is ever offered; the one connection made carries data channels
    only (commands and status), and its signaling socket is let go once the channel is open."""
    offers = count_offers(ui)
    sockets: list[Any] = []
    ui.page.on("websocket", lambda ws: sockets.append(ws))
    await ui.open(query="?transport=mjpeg")
    await playing(ui, "MJPEG")
    # As long as a fallback plus its first probe would take (4 s + at most 5 s), and more:
    # 60 source frames at 5 fps, counted on the picture shown.
    await ui.page.wait_for_function("() => window.scopelink.readFrameStamp() !== null")
    first = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(
        "(n) => (window.scopelink.readFrameStamp()?.frame ?? -1) >= n",
        arg=first + 60,
        timeout=30_000,
    )
    assert len(offers) == 1 and "m=video" not in offers[0], "the page offered WebRTC video"
    assert "m=application" in offers[0]
    assert len(sockets) == 1 and sockets[0].is_closed()
    await expect(ui.by("live-webrtc-probe")).to_be_hidden()
    assert await ui.page.evaluate("() => window.scopelink.transport.probe.state") == "off"


async def test_the_video_receiver_asks_for_no_playout_delay(ui: UI) -> None:
    await ui.open()
    await playing(ui, "WebRTC")
    target = await ui.page.evaluate(
        "() => window.scopelink.transport.active.receiver?.jitterBufferTarget"
    )
    assert target == 0


async def test_attaching_the_video_again_keeps_frames_and_their_stamps_coming(ui: UI) -> None:
    # The remedy for Chromium's held-frame state (lib/live-quality.js, HeldFrameDetector): a
    # new player on the same track, in the same session; the frame callbacks go on.
    await ui.open()
    await playing(ui, "WebRTC")
    await stamps_advance(ui)
    offers = count_offers(ui)
    await ui.page.evaluate("() => window.scopelink.transport.active.reattachVideo()")
    assert await ui.page.evaluate("() => window.scopelink.transport.active.reattachments") == 1
    await stamps_advance(ui)
    await expect(ui.by("live-state")).to_have_attribute("data-state", "playing")
    assert offers == []  # no new session
    assert ui.errors == []


async def test_the_codec_parameter_offers_only_that_codec(ui: UI) -> None:
    offers = count_offers(ui)
    await ui.open(query="?codec=h264")
    await playing(ui, "WebRTC")
    [offer] = offers
    codecs = {m.lower() for m in re.findall(r"^a=rtpmap:\d+ ([\w-]+)/", offer, re.MULTILINE)}
    assert codecs == {"h264", "rtx"}, offer


async def test_the_tier_parameter_asks_for_the_reduced_tier(ui: UI) -> None:
    """What a device that cannot keep up with the full tier at 30 fps should use."""
    await ui.open(query="?tier=reduced")
    await playing(ui, "WebRTC")
    stamps = await ui.page.evaluate(FRAME_STAMPS, 4)
    assert all(s["width"] == 540 for s in stamps), stamps
    assert [s.tier for s in ui.app.app.state.peers.stats("simulator")] == ["reduced"]
