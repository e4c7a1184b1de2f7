"""Many viewers: eight WebRTC peers in one Chromium all get (nearly) every source frame.

Each page is a bare same-origin page that runs the UI's own `WebRtcTransport` for the reduced
tier (540x960: cheap to decode on a machine that also runs the server and the simulator). Each
viewer must receive (its video track delivers, decoded) at least 95 % of the source frames, by
the stamps in their pixels. What the `<video>` then shows is reported, not asserted: Chrome's
renderer shows only the newer of two frames that arrive close together, and with eight peers
on two cores one viewer now and then misses a few that way (every frame was still decoded).
The server encodes each frame once for the tier and fans the packets out to all eight peers.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from playwright.async_api import Browser, Page

from tests.e2e.conftest import RECORD_DECODED
from tests.web.conftest import RunningApp

VIEWERS = 8
#: The `app` fixture's simulator rate.
SOURCE_FPS = 5.0
WINDOW_S = 8.0
#: Every viewer must receive at least this share of the source frames of the common window.
MIN_SHARE = 0.95

#: Start a reduced-tier WebRTC transport on this page. The stamps of the frames its video track
#: delivers go to `__received`; those of the frames the transport shows (its `frame` events,
#: from `requestVideoFrameCallback`) to `__frames`.
WATCH = (
    """async () => {
  const Rtc = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Rtc {
    constructor(...args) {
      super(...args);
      window.__pc = this;
      this.addEventListener("track", (event) => {
        if (event.track.kind === "video") void recordDecoded(event.track);
      });
    }
  };
  const { ApiClient } = await import("/services/api.js");
  const { WebRtcTransport } = await import("/services/webrtc.js");
"""
    + RECORD_DECODED
    + """
  const transport = new WebRtcTransport(new ApiClient(), { tier: "reduced" });
  transport.element.style.width = "135px";  // small on screen: less to composite
  document.body.append(transport.element);
  window.__frames = [];
  window.__transport = transport;
  transport.addEventListener("frame", (event) => {
    const { stamp } = event.detail;
    if (stamp) window.__frames.push(stamp.frame);
  });
  transport.start("simulator");
}"""
)

RTC_STATS = """async () => {
  const pc = window.__pc;
  if (!pc) return null;
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      return [s.framesReceived, s.framesDecoded, s.framesDropped, s.packetsLost];
    }
  }
  return null;
}"""

#: How many frames each list holds now; then what came after that.
MARK = "() => [window.__received.length, window.__frames.length]"
SEEN = "([r, s]) => [window.__received.slice(r), window.__frames.slice(s)]"


async def viewer(browser: Browser, app: RunningApp) -> Page:
    page = await browser.new_page(viewport={"width": 320, "height": 320})
    await page.goto(f"{app.base_url}/api/health")
    await page.evaluate(WATCH)
    return page


def encoded(app: RunningApp) -> tuple[int, int]:
    """The reduced tier's encoded frames so far, and the source frame number it encoded last."""
    encoder = app.app.state.peers.encoders("simulator")["reduced"]
    latest = encoder.output.latest
    assert latest is not None and latest.value.stamp is not None
    return encoder.stats.frames_encoded, latest.value.stamp.frame


def window_shares(lists: list[list[int]]) -> tuple[int, int, list[float], list[list[int]]]:
    """The common window (latest first frame to earliest last frame of any viewer), and each
    viewer's share of its source frames and the frames it lacks."""
    first = max(min(f) for f in lists)
    last = min(max(f) for f in lists)
    window = set(range(first, last + 1))
    shares = [len(window & set(f)) / len(window) for f in lists]
    return first, last, shares, [sorted(window - set(f)) for f in lists]


async def test_eight_viewers_each_get_nearly_every_frame_encoded_once(
    app: RunningApp, browser: Browser
) -> None:
    pages = [await viewer(browser, app) for _ in range(VIEWERS)]
    try:
        # All playing: every page has shown a stamped frame.
        for page in pages:
            await page.wait_for_function("() => window.__frames.length > 0", timeout=20_000)
        marks = [await page.evaluate(MARK) for page in pages]
        encoded_before, source_before = encoded(app)
        started = time.monotonic()
        await asyncio.sleep(WINDOW_S)
        encoded_after, source_after = encoded(app)
        elapsed = time.monotonic() - started

        async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as http:
            stats = (await http.get("/api/telescopes/simulator/webrtc/peers")).json()["peers"]
        tiers = set(app.app.state.peers.encoders("simulator"))
        seen = [await page.evaluate(SEEN, mark) for page, mark in zip(pages, marks, strict=True)]
        rtc = [await page.evaluate(RTC_STATS) for page in pages]
    finally:
        for page in pages:
            await page.close()

    received = [r for r, _ in seen]
    shown = [s for _, s in seen]
    assert all(received) and all(shown), f"a viewer got no frame in {elapsed:.1f} s: {seen}"
    first, last, shares, missing = window_shares(received)
    window = last - first + 1
    assert window >= 0.8 * WINDOW_S * SOURCE_FPS, f"a window of only {window} source frames"
    # Shown: what `requestVideoFrameCallback` reported (the transport's `frame` events).
    *_, shown_shares, not_shown = window_shares(shown)
    assert min(shares) >= MIN_SHARE, (
        f"share of {window} source frames per viewer: {shares}, missing {missing}, "
        f"skipped by the server {[p['frames_skipped'] for p in stats]}, "
        f"browser [received, decoded, dropped, lost] {rtc}"
    )

    # The server holds eight connected peers, all on the reduced tier...
    assert len(stats) == VIEWERS, stats
    assert {(p["state"], p["tier"]) for p in stats} == {("connected", "reduced")}, stats
    # ...and encoded each source frame once for all of them (one encoder, not one per peer).
    assert tiers == {"reduced"}
    emitted = source_after - source_before
    done = encoded_after - encoded_before
    assert emitted > 0 and abs(done - emitted) <= 2, f"{done} encoded for {emitted} source frames"
    print(
        f"\n{VIEWERS} viewers, {elapsed:.1f} s: window {window} frames ({first}..{last}), "
        f"received {[round(s, 3) for s in shares]}, shown {[round(s, 3) for s in shown_shares]} "
        f"(not shown {[len(n) for n in not_shown]}), encoded {done} for {emitted} source frames"
    )
