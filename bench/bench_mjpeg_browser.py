"""MJPEG end-to-end latency in a real browser: simulator frame stamp -> frame decoded in Chromium.

The app runs with its embedded simulator (1080x1920 frames). A page of the app's own origin loads
the UI's MJPEG transport (`ui/services/mjpeg.js`), which parses the multipart stream, decodes each
JPEG with `createImageBitmap` and draws it; each drawn frame's stamp (the simulator's emit time,
from the part's `X-Frame-Stamp` header) is compared with the browser's wall clock at that moment.
Browser and server share this machine's clock and its two cores.

Run: .venv/bin/python bench/bench_mjpeg_browser.py
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

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
async ([width, seconds, warmup]) => {
  const { ApiClient } = await import("/services/api.js");
  const { MjpegTransport } = await import("/services/mjpeg.js");
  const transport = new MjpegTransport(new ApiClient(), { width, quality: 80 });
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


async def measure(fps: float, width: int) -> dict[str, float]:
    async with serving(AppSettings(simulator_fps=fps)) as app:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{app.base_url}/api/health")
            samples = await page.evaluate(COLLECT, [width, SECONDS, WARMUP_S])
            await browser.close()
    latencies = [float(s[1]) for s in samples]
    frames = [int(s[0]) for s in samples]
    span = max(frames) - min(frames) + 1 if frames else 0
    return {
        "fps": fps,
        "width": width,
        "shown": len(samples),
        "delivered_fps": len(samples) / SECONDS,
        "dropped": span - len(set(frames)),
        "p50": statistics.median(latencies),
        "p95": pct(latencies, 95),
    }


async def main() -> None:
    runs = []
    for fps, width in ((10, 540), (10, 1080), (30, 540), (30, 1080)):
        result = await measure(fps, width)
        runs.append(result)
        print(
            f"source {fps:.0f} fps, JPEG width {width}: {result['delivered_fps']:.1f} fps shown, "
            f"{result['dropped']} of the source frames skipped, latency median "
            f"{result['p50']:.1f} ms, p95 {result['p95']:.1f} ms",
            flush=True,
        )
    rows = [
        f"| {r['fps']:.0f} fps | {r['width']} | {r['delivered_fps']:.1f} | {r['dropped']} | "
        f"{r['p50']:.1f} ms | {r['p95']:.1f} ms |"
        for r in runs
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_section(
        "mjpeg-browser",
        [
            "## MJPEG end-to-end latency in Chromium (the baseline WebRTC must beat)",
            "",
            "Reproduce: `.venv/bin/python bench/bench_mjpeg_browser.py`  ",
            f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, Debian Chromium "
            "(headless), all on one 2-core machine.",
            "",
            "Latency is the simulator's frame stamp (emit time) to the moment the UI's MJPEG "
            "transport has decoded the JPEG (`createImageBitmap`) and drawn it to its canvas, "
            f"over {SECONDS:.0f} s after a {WARMUP_S:.0f} s warm-up. Source frames are 1080×1920; "
            "the JPEG width is what the browser asked for (quality 80).",
            "",
            "| Source rate | JPEG width | Frames shown per s | Source frames skipped | "
            "Latency median | Latency p95 |",
            "|---|---|---|---|---|---|",
            *rows,
        ],
    )


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(main())
    print(f"done in {time.monotonic() - started:.0f} s")
