"""Bandwidth per viewer and picture quality in Chromium: MJPEG and WebRTC side by side in one run.

    .venv/bin/python bench/bench_quality.py [--window 10] [--no-docs]

One app (in this process, its built-in simulator at 1080×1920, 10 fps) and one Chromium. Each
setting gets one viewer alone, a warm-up, then a measuring window:

- MJPEG: the page reads `stream.mjpeg` itself (fetch + the UI's `lib/multipart.js`) and counts
  the body bytes it receives; a kept part is decoded as the UI does (`createImageBitmap`) and
  drawn to a canvas.
- WebRTC: the UI's own `WebRtcTransport` plays the tier in a `<video>`; bytes are `getStats()`'s
  inbound-rtp `bytesReceived + headerBytesReceived`; a kept frame is drawn to a canvas in
  `requestVideoFrameCallback`. The full tier is swept in one session by `set_bitrate()` on its
  running encoder, as the adaptation would move it: its default first, then lower rates (x264
  reconfigured in place), then a higher one (a new context). Adaptation stays off.

Kept frames are the ones whose stamp number is a multiple of `EVERY` (one a second): the page reads
the stamp from the pixels it drew and sends the canvas back as PNG; this process keeps the
pipeline's display frame (`DisplayFrame.rgb8`) of those stamps only, in a bounded dict. Both are
compared at the shown size (the reference resized with INTER_AREA, as both encoders scale) on
luma, PSNR and SSIM (bench/picture_quality.py), without the stamp band at the top.

Results are printed and written to the `bench:quality` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import platform
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_live_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from bench.picture_quality import luma, psnr, ssim  # noqa: E402
from bench.report import cpu_model, mark, percentile, write_section  # noqa: E402
from scopelink import framestamp  # noqa: E402
from scopelink.seestar.latest import SlotClosedError  # noqa: E402
from scopelink.services.frame_pipeline import FramePipeline  # noqa: E402
from scopelink.settings import AppSettings  # noqa: E402
from scopelink.web.server import RunningApp, serving  # noqa: E402
from scopelink.webrtc.encoder import FULL, REDUCED, TierEncoder  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_quality.py"
TELESCOPE = "simulator"
FPS = 10.0
#: Frames whose stamp number is a multiple of this are compared: one a second at 10 fps.
EVERY = 10
#: Discarded after a viewer starts or a bitrate changes: more than one GOP (2 s), so the window
#: starts after a keyframe encoded at the new rate.
WARMUP_S = 3.0
WINDOW_S = 10.0
#: MJPEG (width, quality); the app's default quality comes first, then others to compare.
MJPEG_DEFAULT_QUALITY = AppSettings().mjpeg_quality
MJPEG_SETTINGS = (
    (1080, MJPEG_DEFAULT_QUALITY),
    (1080, 60),
    (1080, 90),
    (540, MJPEG_DEFAULT_QUALITY),
)
#: The full tier's sweep, in the order it runs: the default, lower ones, then higher.
FULL_BITRATES = (FULL.bitrate, 2_000_000, 1_000_000, 500_000, 8_000_000)
REDUCED_BITRATES = (REDUCED.bitrate, 500_000)
#: Blur (Gaussian sigma, px) that takes the sky noise out of a reference, for scale.
SMOOTH_SIGMA = 1.5
#: The claim: at equal or better quality, WebRTC uses at most this share of MJPEG's bandwidth.
MAX_SHARE = 0.25

#: Installs `window.bench` on a page of the app's origin: start one viewer, count what arrives,
#: keep the frames whose stamp number is a multiple of `every` as PNG.
SETUP = """
async ([every]) => {
  const { ApiClient } = await import("/services/api.js");
  const { WebRtcTransport } = await import("/services/webrtc.js");
  const { parseStampHeader } = await import("/services/mjpeg.js");
  const { readFrameStamp, readFrameStampFrom, UNITS } = await import("/lib/framestamp.js");
  const { boundaryOf, MultipartParser } = await import("/lib/multipart.js");
  const api = new ApiClient();
  let pc = null;
  const Rtc = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Rtc {
    constructor(...args) {
      super(...args);
      pc = this;
    }
  };
  const state = { capturing: false, captures: [], unread: 0, bytes: 0, shown: 0, stop: null };

  // Draw a shown frame whole at its own size and read the stamp from those very pixels; keep the
  // canvas (as a PNG, encoded off the main thread) when it is the frame we were told it is.
  const keep = (source, width, height, frame) => {
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, width, height);
    const band = Math.min(height, Math.ceil((4 * width) / UNITS) + 2);
    const stamp = readFrameStamp(ctx.getImageData(0, 0, width, band));
    if (!stamp || stamp.frame !== frame) {
      state.unread += 1;
      return;
    }
    if (state.captures.some((c) => c.frame === frame)) return;
    state.captures.push({ frame, png: canvas.convertToBlob({ type: "image/png" }) });
  };

  const webrtc = (tier) => {
    const transport = new WebRtcTransport(api, { tier });
    const video = transport.element;
    document.body.append(video);
    let live = true;
    const onFrame = (_now, meta) => {
      if (!live) return;
      state.shown += 1;
      if (state.capturing) {
        const stamp = readFrameStampFrom(video, meta.width, meta.height);
        if (stamp && stamp.frame % every === 0) keep(video, meta.width, meta.height, stamp.frame);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    transport.start("simulator");
    state.stop = () => {
      live = false;
      transport.stop();
      video.remove();
    };
    state.counters = async () => {
      for (const s of (await pc.getStats()).values()) {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          return { bytes: s.bytesReceived + s.headerBytesReceived, frames: s.framesDecoded,
                   ms: s.timestamp };
        }
      }
      return { bytes: 0, frames: 0, ms: performance.timeOrigin + performance.now() };
    };
  };

  const mjpeg = async (width, quality) => {
    const abort = new AbortController();
    const url = api.url("/api/telescopes/simulator/stream.mjpeg", { width, quality });
    const response = await fetch(url, { signal: abort.signal, cache: "no-store" });
    const parser = new MultipartParser(boundaryOf(response.headers.get("content-type")));
    const reader = response.body.getReader();
    const show = async (part, frame) => {
      const bitmap = await createImageBitmap(new Blob([part.body], { type: "image/jpeg" }));
      keep(bitmap, bitmap.width, bitmap.height, frame);
      bitmap.close();
    };
    void (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        state.bytes += value.length;
        for (const part of parser.push(value)) {
          state.shown += 1;
          const stamp = parseStampHeader(part.headers.get("x-frame-stamp"));
          if (state.capturing && stamp && stamp.frame % every === 0) void show(part, stamp.frame);
        }
      }
    })().catch(() => undefined);  // aborted by stop()
    state.stop = () => abort.abort();
    state.counters = async () => ({ bytes: state.bytes, frames: state.shown,
                                    ms: performance.timeOrigin + performance.now() });
  };

  const dataUrl = (blob) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });

  window.bench = {
    webrtc,
    mjpeg,
    shown: () => state.shown,
    begin: async () => {
      state.captures = [];
      state.unread = 0;
      state.capturing = true;
      return state.counters();
    },
    end: async () => {
      state.capturing = false;
      const counters = await state.counters();
      return { ...counters, captures: state.captures.length, unread: state.unread };
    },
    capture: async (i) => [state.captures[i].frame, await dataUrl(await state.captures[i].png)],
    stop: () => state.stop(),
  };
}
"""


# -- references ---------------------------------------------------------------------------------


class References:
    """The pipeline's display frames whose stamp number is a multiple of `every`, newest `keep`."""

    def __init__(self, pipeline: FramePipeline, every: int, keep: int) -> None:
        self.pipeline = pipeline
        self.every = every
        self.keep = keep
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, frame: int) -> np.ndarray | None:
        return self._frames.get(frame)

    async def follow(self) -> None:
        """Keep up with the pipeline (and its new slot after a restart) until cancelled."""
        while True:
            slot = self.pipeline.frames
            seen = 0
            try:
                while True:
                    item = await slot.next(seen)
                    seen = item.seq
                    stamp = item.value.stamp
                    if stamp is not None and stamp.frame % self.every == 0:
                        self._frames[stamp.frame] = item.value.rgb8  # shared, read-only: no copy
                        while len(self._frames) > self.keep:
                            self._frames.popitem(last=False)
            except SlotClosedError:
                while self.pipeline.frames is slot:
                    await asyncio.sleep(0.1)


# -- scoring ------------------------------------------------------------------------------------


def stamp_band_rows(width: int) -> int:
    """Rows left out at the top: the stamp cells (y < 3u) and a margin, to a 16-row boundary.

    The hard black/white cells are no part of the picture; the 16-row boundary also takes the
    8×8 JPEG blocks and 16×16 macroblocks they ring in. (Measured: leaving them in moves median
    PSNR by less than 0.1 dB; `Score.psnr_whole` reports it every run.)
    """
    return math.ceil(4 * width / framestamp.UNITS / 16) * 16


@dataclass(frozen=True, slots=True)
class Score:
    psnr: float
    ssim: float
    #: PSNR over the whole frame, stamp band included: shows what leaving it out changes.
    psnr_whole: float


def score(reference: np.ndarray, shown: np.ndarray) -> Score:
    """Quality of `shown` (RGB as the browser drew it) against the pipeline's `reference` frame."""
    height, width = shown.shape[:2]
    if reference.shape[:2] != (height, width):
        reference = cv2.resize(reference, (width, height), interpolation=cv2.INTER_AREA)
    ref_y, shown_y = luma(reference), luma(shown)
    top = stamp_band_rows(width)
    return Score(
        psnr=psnr(ref_y[top:], shown_y[top:]),
        ssim=ssim(ref_y[top:], shown_y[top:]),
        psnr_whole=psnr(ref_y, shown_y),
    )


def decode_png(data_url: str) -> np.ndarray:
    """RGB pixels of a `data:image/png;base64,...` URL."""
    raw = base64.b64decode(data_url.split(",", 1)[1])
    bgr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("the page sent a PNG that does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One setting's measurements."""

    transport: str
    setting: str
    #: MJPEG quality or WebRTC target bitrate, for the verdict.
    knob: int
    shown_size: str = ""
    kbps: float = math.nan
    fps: float = math.nan
    #: Bytes per frame received: the cost of a frame whatever rate got through.
    frame_bytes: float = math.nan
    scores: list[Score] = field(default_factory=list)
    #: Kept frames whose stamp the page could not read again from the whole frame it drew.
    unread: int = 0
    #: Kept frames with no reference left, or whose PNG did not carry the stamp claimed.
    unmatched: int = 0
    #: The references scored against themselves blurred (no coding): what losing the noise costs.
    smoothed: list[Score] = field(default_factory=list)

    def stat(self, name: str, q: float, of: str = "scores") -> float:
        values = [getattr(s, name) for s in getattr(self, of)]
        return percentile(values, q) if values else math.nan


def smooth(reference: np.ndarray) -> np.ndarray:
    """The reference with its pixel noise blurred away, and nothing else done to it."""
    return cv2.GaussianBlur(reference, (0, 0), SMOOTH_SIGMA)


async def measure(
    page: Page, refs: References, row: Row, window_s: float, *, calibrate: bool = False
) -> Row:
    """Count what arrives over the window; score the kept frames against their references.

    `calibrate` also scores the references against `smooth()` of themselves.
    """
    before = await page.evaluate("bench.begin()")
    await asyncio.sleep(window_s)
    after = await page.evaluate("bench.end()")
    seconds = (after["ms"] - before["ms"]) / 1000
    row.kbps = (after["bytes"] - before["bytes"]) * 8 / seconds / 1000
    frames = after["frames"] - before["frames"]
    row.fps = frames / seconds
    row.frame_bytes = (after["bytes"] - before["bytes"]) / frames if frames else math.nan
    row.unread = after["unread"]
    pairs = []
    for i in range(after["captures"]):
        frame, url = await page.evaluate("i => bench.capture(i)", i)
        reference = refs.get(frame)
        shown = decode_png(url)
        # The stamp again, read here from the PNG: a capture is what it claims to be.
        stamp = framestamp.read(shown)
        if reference is None or stamp is None or stamp.frame != frame:
            row.unmatched += 1
            continue
        pairs.append((reference, shown))
        row.shown_size = f"{shown.shape[1]}×{shown.shape[0]}"
    # In a worker thread: the app shares this event loop and keeps streaming meanwhile.
    row.scores = await asyncio.to_thread(lambda: [score(r, s) for r, s in pairs])
    if calibrate:
        row.smoothed = await asyncio.to_thread(lambda: [score(r, smooth(r)) for r, _ in pairs])
    print(
        f"{row.transport} {row.shown_size} {row.setting}: {row.kbps:,.0f} kbit/s, "
        f"{row.fps:.1f} fps, PSNR {row.stat('psnr', 50):.2f} dB "
        f"(whole frame {row.stat('psnr_whole', 50):.2f}), SSIM {row.stat('ssim', 50):.4f}, "
        f"{len(row.scores)} frames compared, {row.unread} not read back, "
        f"{row.unmatched} without reference",
        flush=True,
    )
    return row


async def viewer_page(browser: Browser, app: RunningApp) -> Page:
    page = await browser.new_page()
    await page.goto(f"{app.base_url}/api/health")
    await page.evaluate(SETUP, [EVERY])
    return page


async def playing(page: Page) -> None:
    await page.wait_for_function("() => bench.shown() > 0", timeout=30_000)


async def mjpeg_rows(
    browser: Browser, app: RunningApp, refs: References, window_s: float
) -> list[Row]:
    rows = []
    for i, (width, quality) in enumerate(MJPEG_SETTINGS):
        page = await viewer_page(browser, app)
        await page.evaluate("([w, q]) => bench.mjpeg(w, q)", [width, quality])
        await playing(page)
        await asyncio.sleep(WARMUP_S)
        default = " (default)" if quality == MJPEG_DEFAULT_QUALITY else ""
        row = Row("MJPEG", f"quality {quality}{default}", quality)
        rows.append(await measure(page, refs, row, window_s, calibrate=i == 0))
        await page.evaluate("bench.stop()")
        await page.close()
    return rows


async def webrtc_rows(
    browser: Browser,
    app: RunningApp,
    refs: References,
    tier: str,
    bitrates: tuple[int, ...],
    window_s: float,
) -> list[Row]:
    page = await viewer_page(browser, app)
    await page.evaluate("t => bench.webrtc(t)", tier)
    await playing(page)
    encoder: TierEncoder = app.app.state.peers.encoders(TELESCOPE)[tier]
    rows = []
    for bitrate in bitrates:
        encoder.set_bitrate(bitrate)
        await asyncio.sleep(WARMUP_S)
        row = Row(f"WebRTC {tier}", f"{bitrate / 1e6:g} Mbit/s", bitrate)
        rows.append(await measure(page, refs, row, window_s))
    await page.evaluate("bench.stop()")
    await page.close()
    return sorted(rows, key=lambda r: r.knob)


async def run(window_s: float) -> list[Row]:
    async with serving(AppSettings(simulator_fps=FPS)) as app:
        # Bitrates are the sweep's to set; a policy moving peers between tiers would spoil it.
        app.app.state.peers.adaptive = False
        pipeline = app.registry.get(TELESCOPE).pipeline
        refs = References(pipeline, EVERY, keep=2 * math.ceil(window_s * FPS / EVERY) + 8)
        follower = asyncio.create_task(refs.follow(), name="bench-references")
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                rows = await mjpeg_rows(browser, app, refs, window_s)
                rows += await webrtc_rows(browser, app, refs, "full", FULL_BITRATES, window_s)
                rows += await webrtc_rows(browser, app, refs, "reduced", REDUCED_BITRATES, window_s)
                await browser.close()
        finally:
            follower.cancel()
    return rows


# -- verdict and report -------------------------------------------------------------------------


def as_good(row: Row, baseline: Row) -> bool:
    """Median PSNR and median SSIM both at least the baseline's."""
    return row.stat("psnr", 50) >= baseline.stat("psnr", 50) and row.stat(
        "ssim", 50
    ) >= baseline.stat("ssim", 50)


def verdict(rows: list[Row], mjpeg_width: int, webrtc: str) -> tuple[str, bool]:
    """The lowest WebRTC bitrate at least as good as MJPEG at `mjpeg_width` and default quality."""
    baseline = next(
        r
        for r in rows
        if r.transport == "MJPEG"
        and r.knob == MJPEG_DEFAULT_QUALITY
        and r.shown_size.startswith(f"{mjpeg_width}×")
    )
    candidates = sorted((r for r in rows if r.transport == webrtc), key=lambda r: r.knob)
    match = next((r for r in candidates if as_good(r, baseline)), None)
    what = f"MJPEG {baseline.shown_size} quality {baseline.knob} ({baseline.kbps:,.0f} kbit/s)"
    if match is None:
        missed = f"no {webrtc} bitrate of the sweep reached the quality of {what}"
        return f"{missed} {mark(False)}", False
    share = match.kbps / baseline.kbps
    ok = share <= MAX_SHARE
    return (
        f"the lowest {webrtc} bitrate at least as good as {what} is {match.setting}: "
        f"{match.kbps:,.0f} kbit/s, **{share:.1%}** of MJPEG's bandwidth "
        f"(per frame {match.frame_bytes / baseline.frame_bytes:.1%}; limit {MAX_SHARE:.0%}) "
        f"{mark(ok)}"
    ), ok


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| Transport | Shown size | Setting | kbit/s per viewer | Frames/s received | "
        "kB per frame | PSNR median / p5 | SSIM median / p5 | Frames compared |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.transport} | {r.shown_size} | {r.setting} | {r.kbps:,.0f} | {r.fps:.1f} | "
            f"{r.frame_bytes / 1000:,.0f} | "
            f"{r.stat('psnr', 50):.2f} / {r.stat('psnr', 5):.2f} dB | "
            f"{r.stat('ssim', 50):.4f} / {r.stat('ssim', 5):.4f} | {len(r.scores)} |"
        )
    return lines


def calibration(rows: list[Row]) -> str:
    """What smoothing the noise away, and nothing else, scores on the same references."""
    row = next(r for r in rows if r.smoothed)
    return (
        f"the references blurred (Gaussian σ {SMOOTH_SIGMA:g} px), with no coding at all, score "
        f"PSNR {row.stat('psnr', 50, 'smoothed'):.2f} dB and SSIM "
        f"{row.stat('ssim', 50, 'smoothed'):.4f} (medians over {len(row.smoothed)} frames)"
    )


def report(rows: list[Row], window_s: float) -> None:
    full, _ = verdict(rows, 1080, "WebRTC full")
    reduced, _ = verdict(rows, 540, "WebRTC reduced")
    whole = [r.stat("psnr_whole", 50) - r.stat("psnr", 50) for r in rows]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_section(
        "quality",
        [
            "## Bandwidth per viewer and picture quality: MJPEG and WebRTC",
            "",
            f"Reproduce: `{COMMAND}`  ",
            f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, Debian Chromium "
            "(headless), all on one 2-core machine.",
            "",
            f"One app with its simulator (1080×1920, {FPS:.0f} fps) and one Chromium; each "
            f"setting has one viewer alone, {WARMUP_S:.0f} s of warm-up, then {window_s:.0f} s "
            "measured. Bandwidth is what reaches the page: for MJPEG the body bytes of "
            "`stream.mjpeg` read by `fetch`, for WebRTC `getStats()` inbound-rtp "
            "`bytesReceived + headerBytesReceived` (RTP payload and headers; neither counts "
            "IP/UDP/TCP headers). The full tier is swept in one session by `set_bitrate()` on "
            f"its running encoder: its default {FULL.bitrate / 1e6:g} Mbit/s first, lower rates "
            "reconfigured in place as the adaptation would, 8 Mbit/s last (a new context); "
            "adaptation off.",
            "",
            f"Quality: every frame whose stamp number is a multiple of {EVERY} is drawn by the "
            "page at its own size (WebRTC in `requestVideoFrameCallback`, MJPEG after "
            "`createImageBitmap`), its stamp read from those pixels, and compared with the "
            "pipeline's display frame of the same stamp (resized with INTER_AREA to the shown "
            "size, as both encoders do): luma (BT.601), PSNR and SSIM (Gaussian 11×11, σ 1.5; "
            "`bench/picture_quality.py`). The stamp band at the top (the cells and a margin, "
            "to a 16-row boundary: 96 rows at 1080 wide, 48 at 540) is left out, as its hard "
            "black/white cells are no part of the picture; with it, median PSNR moves by only "
            f"{min(whole):+.2f} to {max(whole):+.2f} dB, so the choice does not decide the "
            "verdict. Frames/s received counts the JPEG parts (MJPEG) or frames decoded "
            "(WebRTC); a busy machine skips frames (latest wins), which lowers kbit/s but not "
            "kB per frame.",
            "",
            *table(rows),
            "",
            f"The claim: at equal or better quality (median PSNR and median SSIM), WebRTC uses at "
            f"most {MAX_SHARE:.0%} of MJPEG's bandwidth.  ",
            f"Full tier against MJPEG at 1080 wide: {full}.  ",
            f"Reduced tier against MJPEG at 540 wide: {reduced}.",
            "",
            f"For scale: {calibration(rows)}. The simulator's sky is mostly pixel noise that "
            "changes every frame; a picture that smooths it away loses PSNR and SSIM however "
            "well it keeps the stars.",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds measured")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    rows = asyncio.run(run(args.window))
    for line in table(rows):
        print(line)
    for mjpeg_width, webrtc in ((1080, "WebRTC full"), (540, "WebRTC reduced")):
        print(verdict(rows, mjpeg_width, webrtc)[0])
    print(f"For scale: {calibration(rows)}.")
    if not args.no_docs:
        report(rows, args.window)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"done in {time.monotonic() - started:.0f} s")
