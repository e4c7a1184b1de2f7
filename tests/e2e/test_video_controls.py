"""The video views' controls in Chromium: the Moon view brings the zoom (which changes the
telescope's picture) and recording, the picture keeps its own aspect ratio in either view, and
the page says how the telescope's video reaches it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from playwright.async_api import expect

from tests.e2e.conftest import UI
from tests.e2e.test_webrtc import playing

#: The live frame's box and the picture's own size, as the page lays them out.
LAYOUT = """() => {
  const box = document.querySelector('[data-testid=live-frame]').getBoundingClientRect();
  const size = window.scopelink.transport.frameSize;
  return {box: box.width / box.height, picture: size.width / size.height, width: size.width};
}"""


async def layout(ui: UI, width: int) -> dict[str, Any]:
    """The layout once the page shows pictures `width` wide and its box has followed them."""
    await ui.page.wait_for_function(
        f"() => window.scopelink.transport.frameSize.width === {width}", timeout=20_000
    )
    orientation = "landscape" if width == 1920 else "portrait"
    await expect(ui.by("live-frame")).to_have_attribute("data-orientation", orientation)
    return await ui.page.evaluate(LAYOUT)


def moon_coverage(jpeg: bytes) -> float:
    """The share of the picture the Moon's bright disc covers (the stamp band left out)."""
    gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return float((gray[gray.shape[0] // 10 :] > 70).mean())


async def snapshot(ui: UI) -> bytes:
    async with httpx.AsyncClient(base_url=ui.app.base_url, timeout=20) as http:
        r = await http.get("/api/telescopes/simulator/snapshot.jpg")
        assert r.status_code == 200
        return r.content


async def test_the_moon_view_zooms_records_and_shows_its_landscape_picture(
    ui: UI, screenshots: Path
) -> None:
    await ui.open()
    await playing(ui, "WebRTC")
    # The star view: portrait previews in a portrait box; no zoom, recording explains why not.
    star = await layout(ui, 1080)
    assert abs(star["box"] - 1080 / 1920) < 0.02 and abs(star["picture"] - 1080 / 1920) < 0.01
    await expect(ui.by("zoom")).to_be_hidden()
    await expect(ui.by("record")).to_be_disabled()
    await expect(ui.by("video-reason")).to_contain_text("need a Moon, Sun, planet or scenery view")

    await ui.by("view-mode").select_option("moon")
    await ui.by("view-start").click()
    await expect(ui.by("zoom")).to_be_visible(timeout=20_000)
    moon = await layout(ui, 1920)
    assert abs(moon["box"] - 16 / 9) < 0.03 and abs(moon["picture"] - 16 / 9) < 0.01
    await expect(ui.by("live-frame")).to_have_attribute("data-orientation", "landscape")
    await expect(ui.by("live-delivery")).to_contain_text("passed through")
    await expect(ui.by("video-stream")).to_contain_text("H.264")
    await expect(ui.by("video-stream")).to_contain_text("1920×1080")

    # Zoom: the telescope's setting, the telemetry, the control and the picture all follow.
    await expect(ui.by("zoom-1")).to_have_attribute("aria-checked", "true")
    wide = moon_coverage(await snapshot(ui))
    await ui.by("zoom-2").click()
    await expect(ui.by("zoom-2")).to_have_attribute("aria-checked", "true")
    await expect(ui.by("zoom-1")).to_have_attribute("aria-checked", "false")
    assert ui.app.simulator.telescope.settings["rtsp_roi_index"] == 1
    await ui.page.wait_for_function("() => window.scopelink.telemetry.telescope.view.zoom === 2")
    # A snapshot may be the last decoded frame for a moment (it is "fresh" for 2 s): ask until
    # one is newer than the zoom.
    close = wide
    for _ in range(40):
        close = moon_coverage(await snapshot(ui))
        if close > 1.5 * wide:
            break
        await asyncio.sleep(0.25)
    assert close > 1.5 * wide, (wide, close)

    # Recording: the state shows (time, then frames), and stopping ends it.
    await ui.by("record").click()
    await expect(ui.by("record")).to_have_text("Stop recording")
    await expect(ui.by("recording-indicator")).to_be_visible()
    await expect(ui.by("live-recording")).to_contain_text("REC")
    # Frames are counted on the telescope; the server's poll brings the count while it records.
    await expect(ui.by("recording-status")).to_have_text(
        re.compile(r"^Recording 0:0\d · [1-9]\d* frames$"), timeout=10_000
    )
    await expect(ui.by("live-recording")).to_have_text(re.compile(r"^REC 0:0\d · [1-9]"))
    await expect(ui.by("recording-status")).to_contain_text("Recording 0:02", timeout=10_000)
    await ui.page.screenshot(path=screenshots / "moon.png")  # docs/images/ui-moon.png
    await ui.by("record").click()
    await expect(ui.by("recording-status")).to_contain_text("Saved on the telescope")
    await expect(ui.by("recording-indicator")).to_be_hidden()
    await expect(ui.by("live-recording")).to_be_hidden()

    # Back to the stars: portrait again, and the video controls step aside.
    await ui.by("view-mode").select_option("star")
    await ui.by("view-start").click()
    await expect(ui.by("zoom")).to_be_hidden(timeout=20_000)
    back = await layout(ui, 1080)
    assert abs(back["box"] - 1080 / 1920) < 0.02
    await expect(ui.by("live-delivery")).to_be_hidden()
    assert ui.errors == []


async def test_recording_refused_by_the_telescope_shows_the_reason(ui: UI) -> None:
    await ui.open(query="?transport=mjpeg")
    await ui.by("view-mode").select_option("moon")
    await ui.by("view-start").click()
    await expect(ui.by("record")).to_be_enabled(timeout=20_000)
    await expect(ui.by("live-delivery")).to_contain_text("decoded for MJPEG")
    # The telescope leaves its video stage without a word reaching us (a lost event), so the
    # page still offers recording, and the telescope refuses it with its bare 207.
    ui.app.simulator.telescope.view.stage = "ContinuousExposure"
    await ui.by("record").click()
    error = ui.by("video-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("recording needs a Moon, Sun, planet or scenery view")
