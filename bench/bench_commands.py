"""Commands and telemetry in the page: the data channel against REST and SSE, in one run.

Chromium pages of the app's UI, its embedded simulator. In alternating rounds a fresh page
is opened with its live view on WebRTC (its data channel open: commands and status over it)
or on MJPEG with `?datachannel=off` (commands over REST, status over server-sent events).

- **Command round trip**: the page sends `set_gain` through its command port (what a control
  does) and the time to the promise settling with the result is taken on the page's clock;
  split at the simulated telescope receiving the request (click → simulator receives →
  result shown, on the machine's shared clock); beside it, the time from sending to the
  telescope answering (the app's `ControlClient` saw the answer).
- **Telemetry**: the simulated telescope emits a `PiStatus` event with a new temperature; the
  time from the emit to the page's status source (`TelemetryService`) delivering it.

Run: .venv/bin/python bench/bench_commands.py [--rounds 6] [--per-round 40]
"""

from __future__ import annotations

import argparse
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

from bench.bench_live_browser import CHROMIUM, CHROMIUM_ARGS, pct
from bench.report import cpu_model, mark, write_section
from scopelink.settings import ServeSettings
from scopelink.web.server import serving

#: The issue's target: the data channel's command round trip p50 on loopback, and not slower
#: than REST's.
TARGET_P50_MS = 10.0
CHANNEL_OPEN = "() => window.scopelink.link.open('simulator') !== null"
CLIENT_ID = "bench-commands-page"
#: The page of each path.
PAGES = {"datachannel": "/?transport=webrtc", "rest": "/?transport=mjpeg&datachannel=off"}

#: In the page: `count` commands one after another; each one's round trip in ms, and the epoch
#: ms it was sent.
COMMANDS = """
async ([count, base]) => {
  const out = [];
  for (let i = 0; i < count; i++) {
    const sentAt = performance.timeOrigin + performance.now();
    const t0 = performance.now();
    await window.scopelink.commands.send("simulator", {type: "set_gain", gain: (base + i) % 400});
    out.push([performance.now() - t0, sentAt]);
    await new Promise((r) => setTimeout(r, 30));
  }
  return out;
}
"""
#: In the page: resolve with the epoch ms when the status source shows `temperature`.
WATCH = """
(temperature) => new Promise((resolve) => {
  const telemetry = window.scopelink.telemetry;
  const look = () => {
    if (telemetry.telescope?.power?.temperature_c === temperature) {
      telemetry.removeEventListener("telescope", look);
      resolve(performance.timeOrigin + performance.now());
    }
  };
  telemetry.addEventListener("telescope", look);
})
"""


async def round_of(
    browser: Any, app: Any, via: str, per_round: int, base: int
) -> dict[str, list[float]]:
    page = await browser.new_page()
    # Every page is the same client, so the control lease it took stays its own.
    await page.add_init_script(f"sessionStorage.setItem('scopelink.client-id', '{CLIENT_ID}')")
    try:
        return await _round_on(page, app, via, per_round, base)
    finally:
        await page.close()


async def _round_on(
    page: Any, app: Any, via: str, per_round: int, base: int
) -> dict[str, list[float]]:
    await page.goto(app.base_url + PAGES[via])
    if via == "datachannel":
        await page.wait_for_function(CHANNEL_OPEN, timeout=20_000)
    else:
        await page.wait_for_function(
            "() => window.scopelink.telemetry.transport.via === 'fallback' && "
            "window.scopelink.telemetry.state === 'live'",
            timeout=20_000,
        )
    await asyncio.sleep(1.0)
    assert (await page.evaluate(CHANNEL_OPEN)) == (via == "datachannel")
    answered: list[float] = []
    received: list[float] = []
    session = app.registry.get("simulator")
    telescope = app.simulator.telescope
    unsubscribe = session.control.on_done(
        lambda method, _: (
            answered.append(time.time() * 1000) if method == "set_control_value" else None
        )
    )
    handle = telescope.handle

    def receiving(method: str, params: Any, conn: Any) -> Any:
        if method == "set_control_value":
            received.append(time.time() * 1000)
        return handle(method, params, conn)

    telescope.handle = receiving
    try:
        pairs = await page.evaluate(COMMANDS, [per_round, base])
    finally:
        unsubscribe()
        del telescope.handle  # the class's method again
    round_trips = [ms for ms, _ in pairs]
    to_telescope = [a - sent for (_, sent), a in zip(pairs, answered, strict=False)]
    to_simulator = [r - sent for (_, sent), r in zip(pairs, received, strict=True)]
    back = [sent + ms - r for (ms, sent), r in zip(pairs, received, strict=True)]
    telemetry: list[float] = []
    for i in range(per_round // 4):
        temperature = 20.0 + base / 1000 + i / 100
        watcher = asyncio.ensure_future(page.evaluate(WATCH, temperature))
        await asyncio.sleep(0.05)
        emitted = time.time() * 1000
        telescope.emit("PiStatus", temp=temperature)
        shown = await asyncio.wait_for(watcher, 10)
        telemetry.append(shown - emitted)
        await asyncio.sleep(0.1)
    return {
        "round_trips": round_trips,
        "to_simulator": to_simulator,
        "back": back,
        "to_telescope": to_telescope,
        "telemetry": telemetry,
    }


async def main(rounds: int, per_round: int) -> None:
    keys = ("round_trips", "to_simulator", "back", "to_telescope", "telemetry")
    pooled: dict[str, dict[str, list[float]]] = {
        via: {key: [] for key in keys} for via in ("datachannel", "rest")
    }
    medians: dict[str, list[float]] = {"datachannel": [], "rest": []}
    async with serving(ServeSettings(simulator_fps=2.0, command_rate=1000.0)) as app:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for n in range(rounds):
                for via in ("datachannel", "rest") if n % 2 == 0 else ("rest", "datachannel"):
                    got = await round_of(browser, app, via, per_round, base=10 + n * 50)
                    for key, values in got.items():
                        pooled[via][key] += values
                    medians[via].append(statistics.median(got["round_trips"]))
                    print(
                        f"round {n + 1} {via}: round trip p50 "
                        f"{statistics.median(got['round_trips']):.1f} ms, telemetry p50 "
                        f"{statistics.median(got['telemetry']):.1f} ms",
                        flush=True,
                    )
            await browser.close()

    def figures(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ms | {pct(values, 95):.1f} ms"

    rows = []
    for via, label in (("datachannel", "data channel"), ("rest", "REST / SSE")):
        p = pooled[via]
        rows.append(
            f"| {label} | {figures(p['round_trips'])} | "
            f"{', '.join(f'{m:.1f}' for m in medians[via])} ms | {figures(p['to_simulator'])} | "
            f"{figures(p['back'])} | {figures(p['to_telescope'])} | "
            f"{figures(p['telemetry'])} | {len(p['round_trips'])} / {len(p['telemetry'])} |"
        )
    dc, rest = pooled["datachannel"]["round_trips"], pooled["rest"]["round_trips"]
    dc50, rest50 = statistics.median(dc), statistics.median(rest)
    dct, sset = pooled["datachannel"]["telemetry"], pooled["rest"]["telemetry"]
    verdicts = [
        f"- Data channel command round trip p50 ≤ {TARGET_P50_MS:.0f} ms: {dc50:.1f} ms "
        f"{mark(dc50 <= TARGET_P50_MS)}; not slower than REST ({rest50:.1f} ms) "
        f"{mark(dc50 <= rest50)}.",
        f"- Telemetry event → page, p50: data channel {statistics.median(dct):.1f} ms, SSE "
        f"{statistics.median(sset):.1f} ms.",
    ]
    for line in [*rows, *verdicts]:
        print(line)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_section(
        "commands",
        [
            "## Commands and telemetry in the page: the data channel against REST and SSE",
            "",
            f"Reproduce: `.venv/bin/python bench/bench_commands.py --rounds {rounds} "
            f"--per-round {per_round}`  ",
            f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, Debian Chromium "
            "(headless), all on one 2-core machine (loopback).",
            "",
            "Pages of the UI, the app's embedded simulator. In alternating rounds a fresh page "
            "has its live view on WebRTC (the data channel open: commands and status over it) "
            "or on MJPEG with `?datachannel=off` (commands over REST, status over SSE). Round "
            "trip: the page's command port sends `set_gain` (as a control does) → the promise "
            "settles with the result, on the page's clock, split where the simulator receives "
            "the request (click → simulator, simulator → shown; shared clock). To the "
            "telescope: sent → the app saw the telescope's answer. Telemetry: the simulator "
            "emits `PiStatus` with a new temperature → the page's status source has it. "
            f"{rounds} rounds of {per_round} commands and {per_round // 4} events per "
            "transport, pooled; each round's median is listed.",
            "",
            "| Path | Round trip p50 | p95 | Each round's p50 | Click → simulator p50 | p95 | "
            "Simulator → shown p50 | p95 | To the telescope p50 | p95 | "
            "Telemetry event → page p50 | p95 | Commands / events |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *verdicts,
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=40)
    parsed = parser.parse_args()
    started = time.monotonic()
    asyncio.run(main(parsed.rounds, parsed.per_round))
    print(f"done in {time.monotonic() - started:.0f} s")
