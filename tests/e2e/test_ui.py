"""The browser UI, end to end: what a user sees and does, against the app and its simulator."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from scopelink.simulator.mount import MotionKind
from tests.conftest import sky_at
from tests.e2e.conftest import UI, Relay

#: The frame number decoded from the pixels shown now (lib/framestamp.js through the page hook).
SHOWN_FRAME = "() => window.scopelink.readFrameStamp()?.frame ?? null"
NEWER_FRAME = "(n) => (window.scopelink.readFrameStamp()?.frame ?? -1) > n"

#: On the next frame shown: the stamp the server sent in the part's header, and the stamp read
#: back from the pixels just drawn (they must agree: the JS decoder is a port of framestamp.py).
STAMP_PAIR = """() => new Promise((resolve) => window.scopelink.transport.addEventListener(
  'frame',
  (event) => resolve({header: event.detail.stamp, pixels: window.scopelink.readFrameStamp()}),
  {once: true}))"""

#: The picture shown now: its frame number, a digest of its pixels below the stamp, and how many
#: stars it shows (local maxima of a 3×3 box mean, clearly above the sky background).
PICTURE = """() => {
  const canvas = document.querySelector('[data-testid=live-canvas]');
  const top = Math.ceil(canvas.width * 4 / 50) + 2;
  const {data, width, height} =
      canvas.getContext('2d').getImageData(0, top, canvas.width, canvas.height - top);
  const lum = new Float32Array(width * height);
  let digest = 0;
  for (let i = 0; i < lum.length; i++) {
    lum[i] = (data[4 * i] + data[4 * i + 1] + data[4 * i + 2]) / 3;
    digest = (digest * 31 + data[4 * i + 1]) % 1000000007;
  }
  const box = new Float32Array(width * height);
  for (let y = 1; y < height - 1; y++) for (let x = 1; x < width - 1; x++) {
    let sum = 0;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) sum += lum[(y + dy) * width + x + dx];
    }
    box[y * width + x] = sum / 9;
  }
  const median = Array.from(lum).sort((a, b) => a - b)[lum.length >> 1];
  const around = [-1, 1, -width, width, -width - 1, -width + 1, width - 1, width + 1];
  let stars = 0;
  for (let y = 2; y < height - 2; y++) for (let x = 2; x < width - 2; x++) {
    const v = box[y * width + x];
    if (v >= median + 10 && around.every((d) => box[y * width + x + d] <= v)) stars++;
  }
  return {frame: window.scopelink.readFrameStamp()?.frame ?? null, digest, stars};
}"""

#: Visible controls smaller than a fingertip (44 × 44 CSS px), by test id or text.
SMALL_CONTROLS = """() => [...document.querySelectorAll(
    'button, select, input, [role=tab], [role=switch], [role=option]')]
  .filter((el) => el.getClientRects().length && !el.closest('dialog:not([open])'))
  .map((el) => [el, el.getBoundingClientRect()])
  .filter(([, r]) => r.width < 44 || r.height < 44)
  .map(([el, r]) => `${el.dataset.testid || el.textContent.trim()} ${r.width}x${r.height}`)"""


async def picture(ui: UI) -> dict[str, Any]:
    return await ui.page.evaluate(PICTURE)


async def next_picture(ui: UI, after: dict[str, Any]) -> dict[str, Any]:
    await ui.page.wait_for_function(NEWER_FRAME, arg=after["frame"])
    return await picture(ui)


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for a condition on the simulator's side (the page is not the only witness)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the simulator"
        await asyncio.sleep(0.05)


async def test_page_loads_without_errors_and_the_live_picture_updates(
    ui: UI, screenshots: Path
) -> None:
    await ui.open(query="?transport=mjpeg")
    await expect(ui.by("live-state")).to_have_attribute("data-state", "playing")
    first = await ui.page.evaluate(SHOWN_FRAME)
    assert first is not None, "the picture shown carries no readable frame stamp"
    await ui.page.wait_for_function(NEWER_FRAME, arg=first)
    pair = await asyncio.wait_for(ui.page.evaluate(STAMP_PAIR), 10)
    assert pair["pixels"] == pair["header"] and pair["header"]["frame"] > first
    await ui.page.wait_for_function(
        "() => parseFloat(document.querySelector('[data-testid=live-fps]').textContent) >= 2"
    )
    await expect(ui.by("live-state")).to_contain_text("MJPEG")
    await expect(ui.by("connection-pill")).to_have_text("Live")
    await expect(ui.by("connection-banner")).to_be_hidden()
    await ui.page.screenshot(path=screenshots / "desktop.png")
    assert ui.errors == []


async def test_goto_by_name_slews_and_ends_tracking_at_the_target(ui: UI) -> None:
    telescope = ui.app.simulator.telescope
    telescope.mount.slew_rate_deg_s = 30.0  # long enough to watch it move
    telescope.focuser = telescope.focus_best  # sharp stars, so the picture can be judged
    await ui.open(query="?transport=mjpeg")
    await ui.by("goto-search").fill("M 81")
    result = ui.page.locator('[data-testid=goto-result][data-name="M 81"]')
    await expect(result).to_be_visible()
    # M 81 is circumpolar at the simulator's 52° N: always above the horizon.
    await expect(result.get_by_test_id("goto-result-alt")).to_have_text(re.compile(r"↑ \d+°"))
    await result.click()
    await expect(ui.by("goto-choice-name")).to_have_text("M 81")
    await ui.by("goto-go").click()

    await expect(ui.by("status-motion")).to_have_text("Slewing")
    await expect(ui.by("operation-kind")).to_have_text("Go to")
    # The live picture keeps coming, and changes, while the mount slews.
    before = await picture(ui)
    during = await next_picture(ui, before)
    assert during["digest"] != before["digest"]
    await expect(ui.by("status-motion")).to_have_text("Slewing")
    # A second goto meanwhile is refused, and the reason shows next to the Go button.
    await ui.by("goto-go").click()
    await expect(ui.by("goto-error")).to_contain_text("in progress")

    await expect(ui.by("operation-kind")).to_have_text("Go to · done", timeout=30_000)
    await expect(ui.by("status-tracking")).to_have_text("On")
    await expect(ui.by("status-target")).to_have_text("M 81")
    await expect(ui.by("status-motion")).to_have_text("Idle")
    await expect(ui.by("live-target")).to_have_text("M 81")
    # At the target, the picture shows a star field.
    await ui.page.wait_for_function(f"() => ({PICTURE})().stars >= 8", polling=250)


async def test_park_asks_first_and_then_ends_parked(ui: UI) -> None:
    await ui.open()
    ra, dec = sky_at(ui.app.simulator, alt_deg=40.0, az_deg=180.0)
    await ui.by("goto-tab-coords").click()
    await ui.by("goto-ra").fill(f"{ra:.4f}")
    await ui.by("goto-dec").fill(f"{dec:.3f}")
    await expect(ui.by("goto-coords-preview")).to_contain_text("RA ")
    await ui.by("goto-go").click()
    await expect(ui.by("operation-kind")).to_have_text("Go to · done", timeout=30_000)
    await expect(ui.by("status-motion")).to_have_text("Idle")

    await ui.by("park").click()
    await expect(ui.by("park-dialog")).to_be_visible()
    await ui.by("park-cancel").click()
    await expect(ui.by("park-dialog")).to_be_hidden()
    assert not ui.app.simulator.telescope.mount.parked, "cancel must not park"

    await ui.by("park").click()
    await ui.by("park-confirm").click()
    await expect(ui.by("operation-kind")).to_have_text("Park · done", timeout=30_000)
    await expect(ui.by("status-motion")).to_have_text("Parked")
    await expect(ui.by("status-tracking")).to_have_text("Off")


async def test_focus_steps_move_the_focuser_and_autofocus_completes(ui: UI) -> None:
    await ui.open()
    position = ui.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    start = int(await position.text_content() or "0")
    await ui.by("focus-out-large").click()
    await expect(position).to_have_text(str(start + 100))
    await ui.by("focus-in-small").click()
    await expect(position).to_have_text(str(start + 90))
    await expect(ui.by("status-focuser")).to_contain_text(f"{start + 90} / ")

    await ui.by("autofocus").click()
    await expect(ui.by("autofocus")).to_have_text("Stop autofocus")
    await expect(ui.by("operation-kind")).to_have_text("Autofocus · done", timeout=30_000)
    await expect(ui.by("autofocus")).to_have_text("Autofocus")
    await expect(position).to_have_text(str(ui.app.simulator.telescope.focus_best))


async def test_the_filter_and_heater_switches_show_what_the_telescope_says(ui: UI) -> None:
    await ui.open()
    telescope = ui.app.simulator.telescope
    lp, heater = ui.by("lp-filter"), ui.by("dew-heater")
    await expect(lp).to_have_attribute("aria-checked", "false")
    await lp.click()
    await until(lambda: telescope.wheel == 2)
    await expect(lp).to_have_attribute("aria-checked", "true")
    await heater.click()
    await expect(heater).to_have_attribute("aria-checked", "true")
    assert telescope.settings["heater_enable"] is True
    # Changed behind the page's back (another client, the telescope's own app): it follows.
    telescope.settings["heater_enable"] = False
    await ui.app.registry.get("simulator").commands.set_lp_filter(False)
    await expect(lp).to_have_attribute("aria-checked", "false")
    await expect(heater).to_have_attribute("aria-checked", "false")


async def test_holding_an_arrow_moves_the_mount_and_letting_go_stops_it(ui: UI) -> None:
    await ui.open()
    mount = ui.app.simulator.telescope.mount
    await ui.by("move-right").scroll_into_view_if_needed()
    box = await ui.by("move-right").bounding_box()
    assert box is not None
    await ui.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await ui.page.mouse.down()
    await expect(ui.by("move-right")).to_have_attribute("aria-pressed", "true")
    await until(lambda: mount.motion is MotionKind.MOVE)
    # Held longer than one move lasts (1 s): the repeated moves keep it going.
    await asyncio.sleep(1.5)
    assert mount.motion is MotionKind.MOVE
    await ui.page.mouse.up()
    # Stopped by the release, well before the last move would have run out by itself.
    await until(lambda: mount.motion is MotionKind.NONE, timeout=0.7)
    await expect(ui.by("move-right")).to_have_attribute("aria-pressed", "false")
    await expect(ui.by("motion-error")).to_be_hidden()


async def test_a_telescope_that_vanishes_is_shown_as_such_and_recovers(ui: UI) -> None:
    await ui.open()
    banner = ui.by("connection-banner")
    await expect(banner).to_be_hidden()
    faults = ui.app.simulator.faults
    faults.stall(3)
    faults.drop()

    await expect(banner).to_be_visible()
    await expect(banner).to_have_attribute("data-kind", "telescope")
    await expect(banner).to_contain_text("Simulator")
    await expect(ui.by("status-link")).not_to_have_text("Connected")
    await expect(ui.a_command).to_be_disabled()

    await expect(banner).to_be_hidden(timeout=30_000)
    await expect(ui.by("status-link")).to_have_text("Connected")
    await expect(ui.a_command).to_be_enabled()
    # The picture comes back as well.
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
    log = ui.by("event-log")
    await expect(log).to_contain_text("Telescope link reconnecting")
    await expect(log).to_contain_text("Telescope link connected")


async def test_telescopes_can_be_added_by_host_and_removed(ui: UI) -> None:
    await ui.open()
    await ui.by("telescopes-manage").click()
    dialog = ui.by("telescopes-dialog")
    await expect(dialog).to_be_visible()
    await expect(ui.by("telescope-item")).to_have_count(1)
    # Nothing answers on this port: the telescope is added and keeps trying to connect.
    await ui.by("telescope-host").fill("127.0.0.1")
    await ui.by("telescope-name").fill("Backyard")
    await ui.by("telescope-add").click()
    await expect(dialog).to_be_hidden()
    select = ui.by("telescope-select")
    await expect(select).to_have_value("backyard")
    await expect(ui.by("connection-banner")).to_contain_text("Backyard")
    await expect(ui.a_command).to_be_disabled()

    await ui.by("telescopes-manage").click()
    remove = ui.page.get_by_role("button", name="Remove Backyard")
    await remove.click()
    await expect(remove).to_have_text("Really remove?")
    await remove.click()
    await expect(ui.by("telescope-item")).to_have_count(1)
    await ui.by("telescopes-close").click()
    await expect(select).to_have_value("simulator")
    await expect(ui.by("status-link")).to_have_text("Connected")


async def test_on_a_phone_the_picture_comes_first_and_everything_fits_a_finger(
    phone: UI, screenshots: Path
) -> None:
    await phone.open()
    page = phone.page
    await expect(phone.by("live-state")).to_have_attribute("data-state", "playing")
    live = await phone.by("live-frame").bounding_box()
    status = await phone.by("status-panel").bounding_box()
    assert live is not None and status is not None
    assert live["y"] < 100, "the picture is the first thing under the header"
    assert live["y"] + live["height"] <= status["y"], "the panels come after the picture"
    # As large as it fits at its own aspect ratio: the screen's width, or for the portrait
    # preview the height limit (70 % of the screen), with no letterbox inside the box.
    assert live["width"] >= 390 - 2 * 14 or live["height"] >= 0.7 * 844 - 2, "as large as fits"
    assert abs(live["width"] / live["height"] - 1080 / 1920) < 0.02, "the picture's own shape"
    assert await page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    assert await page.evaluate(SMALL_CONTROLS) == []
    await page.screenshot(path=screenshots / "phone.png")

    # Controls far down the page are reachable and respond to a tap.
    position = phone.by("focus-position")
    await expect(position).to_have_text(re.compile(r"^\d+$"))
    start = int(await position.text_content() or "0")
    await phone.by("focus-out-small").tap()
    await expect(position).to_have_text(str(start + 10))
    await phone.by("goto-search").tap()
    await page.keyboard.type("M 42")
    await expect(page.locator('[data-testid=goto-result][data-name="M 42"]')).to_be_visible()
    assert await page.evaluate(SMALL_CONTROLS) == []
    assert await page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    await page.screenshot(path=screenshots / "phone-full.png", full_page=True)


async def test_when_scopelink_goes_away_the_banner_says_so_and_clears_on_recovery(
    ui: UI, relay: Relay
) -> None:
    await ui.open(f"http://127.0.0.1:{relay.port}")
    banner = ui.by("connection-banner")
    relay.sever()
    # scopelink gone takes its WebRTC sessions along (the relay carries only TCP): the data
    # channel closes too.
    await ui.app.app.state.peers.close_all()
    await ui.page.wait_for_function("() => window.scopelink.link.open('simulator') === null")
    await expect(banner).to_have_attribute("data-kind", "backend")
    await expect(banner).to_contain_text("scopelink")
    await expect(ui.by("connection-pill")).not_to_have_text("Live")
    # A command meanwhile waits in the queue, shown with what will happen to it; one more is
    # given and cancelled.
    telescope = ui.app.simulator.telescope
    before = telescope.focuser
    await ui.by("focus-out-small").click()
    queued = ui.by("queued-command")
    await expect(queued.first).to_contain_text("focus (delta 10): waiting for the connection")
    await ui.by("focus-out-large").click()
    await expect(queued).to_have_count(2)
    await ui.by("queued-cancel").nth(1).click()
    await expect(queued.nth(1)).to_contain_text("cancelled: never sent")

    relay.restore()
    await expect(queued.first).to_contain_text("sent when the connection came back")
    await until(lambda: telescope.focuser == before + 10)
    await asyncio.sleep(0.5)
    assert telescope.focuser == before + 10, "the queued step ran once, the cancelled one never"
    await expect(banner).to_be_hidden()
    await expect(ui.by("connection-pill")).to_have_text("Live")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
