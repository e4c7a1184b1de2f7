"""The S30's wide-angle camera in Chromium: a picture-in-picture in a corner of the live view,
live (its frame stamps advance), hidden on request and then not streamed at all, the choice
remembered; an S50 has neither the inset nor its button, and nothing asks for its wide camera."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Request, expect

from tests.e2e.conftest import UI
from tests.e2e.test_ui import until
from tests.e2e.test_webrtc import playing

#: On the inset's next frame: the stamp the server sent in the part's header, and the stamp read
#: back from the inset's pixels (the simulator stamps the wide camera's frames too).
WIDE_STAMP_PAIR = """() => new Promise((resolve) => window.scopelink.wide.addEventListener(
  'frame',
  (event) => resolve({header: event.detail.stamp, pixels: window.scopelink.wide.readFrameStamp()}),
  {once: true}))"""

#: The inset's box and the live frame's, and the inset picture's own size.
INSET_LAYOUT = """() => {
  const rect = (id) => document.querySelector(`[data-testid=${id}]`).getBoundingClientRect();
  const inset = rect('wide-inset');
  const frame = rect('live-frame');
  const size = window.scopelink.wide.frameSize;
  return {
    inset: {left: inset.left, right: inset.right, top: inset.top, bottom: inset.bottom,
            width: inset.width, height: inset.height},
    frame: {left: frame.left, right: frame.right, top: frame.top, bottom: frame.bottom,
            width: frame.width, height: frame.height},
    picture: size,
  };
}"""

#: The inset has taken its picture's aspect ratio.
INSET_FOLLOWS_PICTURE = """() => {
  const {width, height} = window.scopelink.wide.frameSize;
  const inset = document.querySelector('[data-testid=wide-inset]');
  return width > 0 && inset.style.getPropertyValue('--inset-aspect') === `${width} / ${height}`;
}"""

#: The main picture's stamp has moved `n` frames on: a clock made of what the page shows.
MAIN_ADVANCED = "([from, n]) => (window.scopelink.readFrameStamp()?.frame ?? -1) >= from + n"
MAIN_FRAME = "() => window.scopelink.readFrameStamp()?.frame ?? -1"


def wide_requests(ui: UI) -> list[str]:
    """Every URL the page requests from the wide camera, from now on."""
    urls: list[str] = []

    def seen(request: Request) -> None:
        if "camera=wide" in request.url:
            urls.append(request.url)

    ui.page.on("request", seen)
    return urls


async def main_frames_pass(ui: UI, n: int) -> None:
    """Wait until the main picture has shown `n` more frames (about n / 5 s at 5 fps)."""
    await ui.page.wait_for_function(MAIN_FRAME)
    start = await ui.page.evaluate(MAIN_FRAME)
    await ui.page.wait_for_function(MAIN_ADVANCED, arg=[start, n], timeout=20_000)


def wide_viewers(ui: UI) -> int:
    return ui.app.registry.get("simulator").camera("wide").pipeline.viewers


async def test_an_s30_shows_its_wide_camera_live_in_a_corner(s30_ui: UI, screenshots: Path) -> None:
    ui = s30_ui
    requests = wide_requests(ui)
    await ui.open()
    await playing(ui, "WebRTC")  # the main view is as it always was
    await expect(ui.by("status-model")).to_have_text("Seestar S30")
    await expect(ui.by("wide-inset")).to_be_visible()
    await expect(ui.by("wide-state")).to_have_attribute("data-state", "playing")
    await expect(ui.by("wide-state")).to_have_text("Wide · live")
    await expect(ui.by("wide-toggle")).to_have_text("Hide wide")

    # Live: the stamps advance, and the pixels shown carry the stamp the header announced.
    first = await ui.page.evaluate(WIDE_STAMP_PAIR)
    second = await ui.page.evaluate(WIDE_STAMP_PAIR)
    assert first["header"] is not None and second["header"]["frame"] > first["header"]["frame"]
    assert second["pixels"] == second["header"]
    # Small: asked at 400 px over MJPEG, once, for the inset.
    assert all("width=400" in url for url in requests) and len(requests) == 1
    assert (await ui.page.evaluate("() => window.scopelink.wide.frameSize.width")) == 400

    # A corner of the live view at its own aspect ratio, over the main picture.
    await ui.page.wait_for_function(INSET_FOLLOWS_PICTURE)
    box = await ui.page.evaluate(INSET_LAYOUT)
    inset, frame, size = box["inset"], box["frame"], box["picture"]
    assert frame["left"] < inset["left"] and inset["right"] <= frame["right"]
    assert frame["top"] < inset["top"] and inset["bottom"] <= frame["bottom"]
    assert inset["right"] > frame["right"] - 12  # the right-hand corner
    assert 0.15 < inset["width"] / frame["width"] <= 0.27
    assert abs(inset["width"] / inset["height"] - size["width"] / size["height"]) < 0.02

    # The main picture stays as good as without the inset.
    await expect(ui.by("live-quality")).to_have_attribute("data-level", "green", timeout=15_000)
    await ui.page.screenshot(path=screenshots / "wide-pip.png")  # docs/images/ui-wide-pip.png
    assert not ui.errors, ui.errors


async def test_hiding_the_wide_inset_stops_its_stream_and_is_remembered(s30_ui: UI) -> None:
    ui = s30_ui
    await ui.open()
    await expect(ui.by("wide-state")).to_have_attribute("data-state", "playing")
    await until(lambda: wide_viewers(ui) == 1)

    await ui.by("wide-toggle").click()
    await expect(ui.by("wide-inset")).to_be_hidden()
    await expect(ui.by("wide-toggle")).to_have_text("Show wide")
    assert await ui.page.evaluate("() => window.scopelink.wide.state") == "idle"
    await until(lambda: wide_viewers(ui) == 0)  # the server's stream closed
    requests = wide_requests(ui)
    await main_frames_pass(ui, 10)  # ~2 s: no retry, no reconnect
    assert requests == []
    assert wide_viewers(ui) == 0

    # Remembered: a reload keeps it hidden and asks nothing of the wide camera.
    await ui.page.reload()
    await expect(ui.by("status-link")).to_have_text("Connected")
    await expect(ui.by("wide-toggle")).to_have_text("Show wide")
    await expect(ui.by("wide-inset")).to_be_hidden()
    await main_frames_pass(ui, 10)
    assert requests == []

    await ui.by("wide-toggle").click()
    await expect(ui.by("wide-inset")).to_be_visible()
    await expect(ui.by("wide-state")).to_have_attribute("data-state", "playing")
    assert len(requests) == 1
    assert not ui.errors, ui.errors


async def test_an_s50_has_no_wide_camera_inset_or_control(ui: UI) -> None:
    requests = wide_requests(ui)
    await ui.open()
    await playing(ui, "WebRTC")
    await expect(ui.by("status-model")).to_have_text("Seestar S50")
    await main_frames_pass(ui, 10)
    await expect(ui.by("wide-inset")).to_be_hidden()
    await expect(ui.by("wide-toggle")).to_be_hidden()
    assert await ui.page.evaluate("() => window.scopelink.wide.state") == "idle"
    assert requests == []
    assert not ui.errors, ui.errors
