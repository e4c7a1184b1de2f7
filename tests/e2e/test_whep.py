"""A plain WHEP page in Chromium: no app UI, just `RTCPeerConnection`, `fetch` and the WHEP URL.

The page offers one recvonly video transceiver, limited by `setCodecPreferences` to one codec,
waits for its ICE gathering (so the offer carries its candidates), POSTs the offer and applies
the answer. Every decoded frame's stamp is read from its pixels (`MediaStreamTrackProcessor`).
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page

from tests.e2e.conftest import RECORD_DECODED
from tests.web.conftest import RunningApp

#: Offer (in `only` that codec, a mime type) and watch; resolves to the WHEP answer's status.
WATCH = (
    """async (only) => {"""
    + RECORD_DECODED
    + """
  const pc = new RTCPeerConnection();
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
  transceiver.setCodecPreferences(codecs.filter((c) => c.mimeType === only));
  pc.addEventListener("track", (event) => void recordDecoded(event.track));
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
  const response = await fetch("/api/telescopes/simulator/whep", {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  if (response.status !== 201) {
    pc.close();
    return { status: response.status, problem: JSON.parse(body) };
  }
  window.__pc = pc;
  window.__session = response.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  return { status: response.status };
}"""
)

#: The codec the browser's inbound video uses now, by its stats.
INBOUND_CODEC = """async () => {
  const stats = new Map();
  (await window.__pc.getStats()).forEach((s) => stats.set(s.id, s));
  const inbound = [...stats.values()].find((s) => s.type === "inbound-rtp" && s.kind === "video");
  return inbound && inbound.codecId ? stats.get(inbound.codecId).mimeType : null;
}"""


async def plain_page(browser: Browser, app: RunningApp) -> Page:
    page = await browser.new_page(viewport={"width": 320, "height": 320})
    await page.goto(f"{app.base_url}/api/health")  # same origin as the WHEP URL
    return page


async def test_a_plain_whep_page_limited_to_vp8_shows_frames_whose_stamps_advance(
    app: RunningApp, browser: Browser
) -> None:
    page = await plain_page(browser, app)
    try:
        answered: dict[str, Any] = await page.evaluate(WATCH, "video/VP8")
        assert answered["status"] == 201, answered
        await page.wait_for_function("() => window.__received.length >= 6", timeout=20_000)
        received: list[int] = await page.evaluate("() => window.__received")
        assert received == sorted(received) and received[-1] > received[0], received
        assert await page.evaluate(INBOUND_CODEC) == "video/VP8"
        (peer,) = app.app.state.peers.stats("simulator")
        assert peer.codec == "vp8" and peer.state == "connected"
        deleted = await page.evaluate(
            "async () => (await fetch(window.__session, { method: 'DELETE' })).status"
        )
        assert deleted == 200
    finally:
        await page.close()


async def test_a_plain_whep_page_with_neither_h264_nor_vp8_is_told_why(
    app: RunningApp, browser: Browser
) -> None:
    page = await plain_page(browser, app)
    try:
        answered: dict[str, Any] = await page.evaluate(WATCH, "video/VP9")
    finally:
        await page.close()
    assert answered["status"] == 400, answered
    assert "no codec this server sends (H264, VP8); it offers VP9" in answered["problem"]["detail"]
    assert len(app.app.state.peers) == 0
