"""The Moon, Sun, planet and scenery views in a real Chromium: the telescope's own H.264 goes to
the page unchanged over WebRTC (no encoder runs on the server), MJPEG still works, and the star
view's previews come back when the view returns to the stars."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from scopelink.webrtc.encoder import TierEncoder
from scopelink.webrtc.passthrough import SOURCE_TIER
from tests.e2e.conftest import UI
from tests.e2e.netns import BrowserNetns
from tests.e2e.test_network import latencies, median_ms, open_webrtc, until_peer
from tests.e2e.test_webrtc import FRAME_STAMPS, playing, until

SCOPE = "simulator"
#: Below the simulator's 6 Mbit/s video, above what the reduced tier needs.
CAP_KBIT = 1500

COMMAND = """(body) => fetch('/api/telescopes/simulator/commands', {
  method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body),
}).then((r) => r.status)"""


async def command(ui: UI, **body: Any) -> None:
    assert await ui.page.evaluate(COMMAND, body) == 200


async def frames(ui: UI, count: int = 8) -> list[dict[str, Any]]:
    """The next `count` frames the page shows: their stamps and widths."""
    shown = await ui.page.evaluate(FRAME_STAMPS, count)
    return [s for s in shown if s["stamp"]]


def encoded_frames(ui: UI) -> int:
    """Frames the server's tier encoders have encoded for the simulator, all tiers together."""
    tiers = ui.app.app.state.peers.encoders(SCOPE).values()
    return sum(t.stats.frames_encoded for t in tiers if isinstance(t, TierEncoder))


def pipeline(ui: UI) -> Any:
    return ui.app.app.state.registry.get(SCOPE).pipeline


async def moon_passed_through(ui: UI) -> None:
    """Start the Moon view; wait until every peer sends the telescope's own stream."""
    await command(ui, type="start_view", mode="moon")
    peers = ui.app.app.state.peers
    await until(
        lambda: (
            peers.sessions(SCOPE)
            and all(s.stats().tier == SOURCE_TIER for s in peers.sessions(SCOPE))
        ),
        timeout=20,
    )


async def test_the_moon_plays_over_webrtc_as_the_telescope_sent_it(ui: UI) -> None:
    await ui.open()
    await playing(ui, "WebRTC")
    stars = await frames(ui)
    assert stars and all(f["width"] == 1080 for f in stars)  # the portrait preview

    await moon_passed_through(ui)
    # Until the switch to the telescope's stream, the full tier showed the decoded video, scaled.
    await ui.page.wait_for_function(
        "() => window.scopelink.transport.frameSize.width === 1920", timeout=10_000
    )
    encoded = encoded_frames(ui)
    video = pipeline(ui).video
    decoded = video.decoded
    moon = await frames(ui, 30)
    numbers = [f["stamp"]["frame"] for f in moon]
    assert len(numbers) >= 25 and numbers == sorted(numbers) and numbers[-1] > numbers[0]
    assert all(f["width"] == 1920 for f in moon)  # the telescope's landscape video
    # Passed through: while the page showed 30 frames of it, nothing was encoded or decoded.
    assert encoded_frames(ui) == encoded and video.decoded == decoded
    await expect(ui.by("live-state")).to_have_attribute("data-state", "playing")

    await command(ui, type="start_view", mode="star")
    await until(lambda: pipeline(ui).passthrough is None, timeout=10)
    await until(lambda: not video.running, timeout=10)  # the RTSP session is let go
    await ui.page.wait_for_function(
        "() => window.scopelink.transport.frameSize.width === 1080", timeout=20_000
    )
    back = await frames(ui)
    assert back and all(f["width"] == 1080 for f in back)
    assert ui.errors == []


async def test_mjpeg_shows_the_moon_decoded_once_on_the_server(ui: UI) -> None:
    await ui.open(query="?transport=mjpeg")
    await playing(ui, "MJPEG")
    await command(ui, type="start_view", mode="moon")
    # Landscape: the telescope's video, decoded on the server and sent as JPEGs.
    await ui.page.wait_for_function(
        "() => { const s = window.scopelink.transport.frameSize; return s.width > s.height; }",
        timeout=20_000,
    )
    moon = await frames(ui, 6)
    numbers = [f["stamp"]["frame"] for f in moon]
    assert len(numbers) >= 5 and numbers == sorted(numbers) and numbers[-1] > numbers[0]
    assert pipeline(ui).video.decoded > 0
    assert ui.errors == []


async def test_behind_a_rate_cap_the_moon_comes_through_the_reduced_tier(
    netns: BrowserNetns, netns_ui: UI
) -> None:
    """The telescope's bitrate is its own: a viewer whose link cannot carry it is moved to the
    reduced tier, encoded on the server from the decoded video, and back when the link can."""
    ui = netns_ui
    log: list[str] = []
    ids: set[str] = set()

    def on(tier: str) -> Any:
        return lambda peer: ids.add(peer["id"]) or peer["tier"] == tier

    await open_webrtc(ui)
    await command(ui, type="start_view", mode="moon")
    before = await until_peer(ui, on(SOURCE_TIER), 20, log)
    assert before["bitrate_bps"] > 1_000_000, before  # the simulator's 1080p30 stream

    netns.rate_cap(CAP_KBIT)  # server → browser
    await until_peer(ui, on("reduced"), timeout=20, log=log)
    await latencies(ui, 3)  # settle on the lower rate
    seen = await latencies(ui, 6)
    frames = [frame for frame, _ in seen]
    # The picture flows (at least 2.5 fps, as the star view's rate-cap test asks; a loaded
    # 2-core machine also decodes 1080p30 and encodes the reduced tier here).
    assert len(frames) >= 15, f"too few frames behind the cap: {seen}\n" + "\n".join(log)
    assert frames == sorted(frames), f"stamps went back: {frames}"
    assert median_ms([s for s in seen[-len(seen) // 3 :]]) < 1000, "\n".join(log[-20:])
    assert pipeline(ui).video.decoded > 0  # the reduced tier is made from decoded frames

    netns.lift_rate_cap()
    await until_peer(ui, on(SOURCE_TIER), timeout=45, log=log)
    # When the cap lands, the telescope's 6 Mbit/s keeps queueing until the track has moved
    # down at a keyframe; on a loaded machine the page may judge that a freeze and connect
    # once more (its own recovery). More than once is a fault.
    assert len(ids) <= 2, "the page connected more than once more:\n" + "\n".join(log[-30:])
