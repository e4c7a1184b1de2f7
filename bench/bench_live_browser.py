"""Live-view latency in a real browser, MJPEG and WebRTC side by side in one run.

The app runs with its embedded simulator (1080x1920 frames). A page of the app's own origin loads
the UI's own transports: MJPEG (`ui/services/mjpeg.js`: the multipart stream parsed, each JPEG
decoded with `createImageBitmap` and drawn) and WebRTC (`ui/services/webrtc.js`: H.264 in a
`<video>`, frames reported by `requestVideoFrameCallback` at their expected display time, the stamp
read from the video's pixels). Latency is the simulator's emit time (the frame stamp) to that
moment, on the browser's wall clock. Browser and server share this machine's clock and two cores.

Run: .venv/bin/python bench/bench_live_browser.py
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.report import cpu_model, write_section
from scopelink.settings import AppSettings
from scopelink.web.server import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
SECONDS = 12.0
WARMUP_S = 3.0

COLLECT = """
async ([kind, width, seconds, warmup]) => {
  const { ApiClient } = await import("/services/api.js");
  const api = new ApiClient();
  let transport;
  if (kind === "webrtc") {
    const { WebRtcTransport } = await import("/services/webrtc.js");
    transport = new WebRtcTransport(api, { tier: width >= 1080 ? "full" : "reduced" });
  } else {
    const { MjpegTransport } = await import("/services/mjpeg.js");
    transport = new MjpegTransport(api, { width, quality: 80 });
  }
  document.body.append(transport.element);
  const samples = [];
  const start = performance.now();
  transport.addEventListener("frame", (event) => {
    const { stamp, shownAt } = event.detail;
    if (stamp && shownAt - start > warmup * 1000) {
      samples.push([stamp.frame, performance.timeOrigin + shownAt - stamp.emitMs]);
    }
  });
  transport.start("simulator");
  await new Promise((resolve) => setTimeout(resolve, (seconds + warmup) * 1000));
  transport.stop();
  return samples;
}
"""


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(kind: str, fps: float, width: int) -> dict[str, Any]:
    async with serving(AppSettings(simulator_fps=fps)) as app:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{app.base_url}/api/health")
            samples = await page.evaluate(COLLECT, [kind, width, SECONDS, WARMUP_S])
            await browser.close()
    latencies = [float(s[1]) for s in samples]
    frames = [int(s[0]) for s in samples]
    span = max(frames) - min(frames) + 1 if frames else 0
    return {
        "kind": kind,
        "fps": fps,
        "width": width,
        "shown": len(samples),
        "delivered_fps": len(samples) / SECONDS,
        "dropped": span - len(set(frames)),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": pct(latencies, 95) if len(latencies) > 1 else float("nan"),
    }


async def main() -> None:
    runs = []
    for fps in (10, 30):
        for kind, width in (("mjpeg", 540), ("mjpeg", 1080), ("webrtc", 1080)):
            result = await measure(kind, fps, width)
            runs.append(result)
            print(
                f"{kind} source {fps:.0f} fps, width {width}: "
                f"{result['delivered_fps']:.1f} fps shown, "
                f"{result['dropped']} of the source frames skipped, latency median "
                f"{result['p50']:.1f} ms, p95 {result['p95']:.1f} ms",
                flush=True,
            )
    rows = [
        f"| {'WebRTC (H.264)' if r['kind'] == 'webrtc' else 'MJPEG'} | {r['fps']:.0f} fps | "
        f"{r['width']} | {r['delivered_fps']:.1f} | {r['dropped']} | "
        f"{r['p50']:.1f} ms | {r['p95']:.1f} ms |"
        for r in runs
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_section(
        "live-browser",
        [
            "## Live view end-to-end latency in Chromium: MJPEG and WebRTC",
            "",
            "Reproduce: `.venv/bin/python bench/bench_live_browser.py`  ",
            f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, Debian Chromium "
            "(headless), all on one 2-core machine.",
            "",
            "Latency is the simulator's frame stamp (emit time) to the moment the browser shows "
            "the frame: for MJPEG when the UI's transport has decoded the JPEG "
            "(`createImageBitmap`) and drawn it; for WebRTC the frame's expected display time "
            "from `requestVideoFrameCallback`, the stamp read from the video's pixels. "
            f"{SECONDS:.0f} s per row after a {WARMUP_S:.0f} s warm-up. Source frames are "
            "1080×1920; the width is what the browser asked for (MJPEG quality 80; WebRTC the "
            "full tier).",
            "",
            "| Transport | Source rate | Width | Frames shown per s | Source frames skipped | "
            "Latency median | Latency p95 |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ],
    )


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(main())
    print(f"done in {time.monotonic() - started:.0f} s")
