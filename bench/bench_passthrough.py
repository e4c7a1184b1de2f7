"""The telescope's own H.264 passed through to WebRTC, against the encode paths, in one run.

A Seestar in its Moon, Sun, planet or scenery view sends H.264 over RTSP; scopelink forwards it
to every WebRTC viewer unchanged. This benchmark runs the simulator in its own process (1920×1080
H.264 at 30 fps over RTSP, or 1080×1920 Bayer previews at 30 fps in the star view) and the app in
this one, and compares at the same source rate:

- **passthrough**: the Moon view, the telescope's H.264 sent as it came;
- **re-encoded video**: the same Moon video with `webrtc_passthrough` off (decoded, then encoded
  by the full tier), what a stream that cannot pass would cost;
- **previews**: the star view's Bayer frames (debayer, stretch, full-tier encode), the encode
  path of Phase 1.

Each with 1 and 8 viewers, adaptation off so that every viewer stays on the tier it asked for (the
full tier, which is the telescope's own stream where it passes). Viewer 1 is Chromium playing the
UI's own WebRTC transport; latency is the frame stamp (the simulator's emit time) to the frame's
expected display time (`requestVideoFrameCallback`), on the shared clock. Frames shown are those
Chromium's compositor presented (`presentedFrames`), beside those the page's frame callback saw.
Viewers 2–8 are aiortc receivers in another process that receive, acknowledge (RTCP) and drop
every frame without decoding it, so the two cores stay with the server and the measuring
browser; the server's work per viewer (packetise, encrypt, send, RTCP) is the same as for a
browser. Server CPU is this process's CPU
time (the app, and Playwright's light client) over the measured window; the simulator's and the
browser's are not in it.

Run: .venv/bin/python bench/bench_passthrough.py [--sessions 3]
     .venv/bin/python bench/bench_passthrough.py --role viewers URL COUNT SECONDS  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_live_browser import CHROMIUM, CHROMIUM_ARGS, COLLECT, pct
from bench.report import cpu_model, mark, write_section

TELESCOPE = "bench"
FPS = 30.0
SECONDS = 12.0
WARMUP_S = 4.0
#: The issue's targets: passthrough latency median, frames shown, CPU against the encode path.
TARGET_P50_MS = 60.0
TARGET_FPS = 29.0
TARGET_CPU_SHARE = 1 / 5
#: (label, view mode, passthrough on)
SCENARIOS = (
    ("passthrough", "moon", True),
    ("re-encoded video", "moon", False),
    ("previews (encode path)", "star", True),
)
VIEWERS = (1, 8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def command(base_url: str, body: dict[str, Any]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        r = await http.post(f"/api/telescopes/{TELESCOPE}/commands", json=body)
        r.raise_for_status()


async def session(mode: str, passthrough: bool, viewers: int) -> dict[str, Any]:
    """One fresh simulator, app and browser: the measuring page plus `viewers - 1` receivers."""
    from playwright.async_api import async_playwright

    from scopelink.settings import ServeSettings, TelescopeTarget
    from scopelink.web.server import serving

    ports = {"control": free_port(), "imaging": free_port(), "rtsp": free_port()}
    simulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scopelink.cli", "simulate", "--no-discovery",
        "--control-port", str(ports["control"]), "--imaging-port", str(ports["imaging"]),
        "--rtsp-port", str(ports["rtsp"]), "--fps", str(FPS), "--video-fps", str(FPS),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    target = TelescopeTarget(
        host="127.0.0.1",
        control_port=ports["control"],
        imaging_port=ports["imaging"],
        rtsp_port=ports["rtsp"],
        name=TELESCOPE,
    )
    # Adaptation off: every viewer stays on the tier it asked for (the full tier, which is the
    # telescope's own stream where it passes), so the paths are compared at the same rate.
    settings = ServeSettings(
        telescopes=[target],
        simulator=False,
        webrtc_passthrough=passthrough,
        webrtc_adaptive=False,
    )
    extra: asyncio.subprocess.Process | None = None
    try:
        async with serving(settings) as app:
            pipeline = app.registry.get(TELESCOPE).pipeline
            deadline = time.monotonic() + 20
            while not app.registry.get(TELESCOPE).control.connected:
                assert time.monotonic() < deadline, "the app did not connect to the simulator"
                await asyncio.sleep(0.1)
            await command(app.base_url, {"type": "start_view", "mode": mode})
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = await browser.new_page()
                await page.goto(f"{app.base_url}/api/health")
                collecting = asyncio.ensure_future(
                    page.evaluate(COLLECT.replace('"simulator"', f'"{TELESCOPE}"'),
                                  ["webrtc", 1080, SECONDS, WARMUP_S, 0])
                )  # fmt: skip
                if viewers > 1:
                    extra = await asyncio.create_subprocess_exec(
                        sys.executable, __file__, "--role", "viewers", app.base_url,
                        str(viewers - 1), str(SECONDS + WARMUP_S + 2),
                        stdout=asyncio.subprocess.PIPE,
                    )  # fmt: skip
                await asyncio.sleep(WARMUP_S)
                peers = app.app.state.peers
                cpu0, wall0 = process_cpu_s(), time.monotonic()
                await asyncio.sleep(SECONDS - 1)
                cpu_share = (process_cpu_s() - cpu0) / (time.monotonic() - wall0)
                stats = peers.stats(TELESCOPE)
                skipped = statistics.mean(s.frames_skipped for s in stats) if stats else 0.0
                tiers = sorted({s.tier for s in stats})
                connected = sum(1 for s in stats if s.state == "connected")
                collected = await collecting
                await browser.close()
            video = pipeline.video
            decoded = video.decoded if video is not None else 0
    finally:
        receivers_cpu = 0.0
        if extra is not None:
            out, _ = await asyncio.wait_for(extra.communicate(), 30)
            receivers_cpu = float(out.decode().split()[-1]) if out.strip() else float("nan")
        simulator.terminate()
        await asyncio.wait_for(simulator.wait(), 10)
    latencies = [float(s[1]) for s in collected["samples"]]
    frames = [int(s[0]) for s in collected["samples"]]
    return {
        "latencies": latencies,
        # Frames Chromium's compositor presented over the window (what the screen got), and the
        # frames the page's frame callback saw (the latency samples): the callback runs on the
        # page's main thread and sees only the newest frame when that thread is late for a vsync.
        "shown_fps": (collected["presented"] or 0) / SECONDS,
        "seen_fps": len(latencies) / SECONDS,
        # Decoded frames the compositor replaced before a vsync showed them.
        "compositor_dropped": collected["compositorDropped"] or 0,
        # The simulator's frames over the same window, by the stamps' numbers: frames shown
        # below it were lost on the way, frames made below 30 the simulator did not make.
        "made_fps": (max(frames) - min(frames) + 1) / SECONDS if frames else 0.0,
        # Frames Chromium decoded over the window (getStats): decoded but not shown were not
        # presented by the browser.
        "decoded_fps": (collected["decoded"] or 0) / SECONDS,
        # Frames the server's track did not send a viewer (behind, or waiting for a keyframe),
        # per viewer, since it joined.
        "skipped": skipped,
        "frames": frames,
        "cpu_share": cpu_share,
        "tiers": tiers,
        "connected": connected,
        "decoded": decoded,
        "receivers_cpu": receivers_cpu,
    }


async def viewers_role(base_url: str, count: int, seconds: float) -> None:
    """`count` WebRTC receivers over WHEP that take every packet and decode nothing."""
    import httpx
    from aiortc import RTCPeerConnection, RTCSessionDescription, rtcrtpreceiver

    def drain(loop: Any, input_q: Any, output_q: Any, decode_error: Any) -> None:
        while input_q.get() is not None:
            pass
        asyncio.run_coroutine_threadsafe(output_q.put(None), loop)

    rtcrtpreceiver.decoder_worker = drain  # type: ignore[assignment]
    pcs = []
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        for _ in range(count):
            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            r = await http.post(
                f"/api/telescopes/{TELESCOPE}/whep",
                content=pc.localDescription.sdp,
                headers={"content-type": "application/sdp"},
            )
            r.raise_for_status()
            await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
            pcs.append(pc)
        cpu0, wall0 = process_cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        share = (process_cpu_s() - cpu0) / (time.monotonic() - wall0)
    for pc in pcs:
        await pc.close()
    print(f"{share:.4f}", flush=True)  # the receivers' own CPU, in share of one core


async def main(sessions: int) -> None:
    rows: list[dict[str, Any]] = []
    for label, mode, passthrough in SCENARIOS:
        for viewers in VIEWERS:
            runs = [await session(mode, passthrough, viewers) for _ in range(sessions)]
            latencies = [ms for r in runs for ms in r["latencies"]]
            row = {
                "label": label,
                "viewers": viewers,
                "p50": statistics.median(latencies) if latencies else float("nan"),
                "p95": pct(latencies, 95) if len(latencies) > 1 else float("nan"),
                "medians": [statistics.median(r["latencies"]) for r in runs if r["latencies"]],
                "shown_fps": statistics.mean(r["shown_fps"] for r in runs),
                "shown_fps_each": [r["shown_fps"] for r in runs],
                "seen_fps": statistics.mean(r["seen_fps"] for r in runs),
                "compositor_dropped": statistics.mean(r["compositor_dropped"] for r in runs),
                "made_fps": statistics.mean(r["made_fps"] for r in runs),
                "decoded_fps": statistics.mean(r["decoded_fps"] for r in runs),
                "skipped": statistics.mean(r["skipped"] for r in runs),
                "cpu": statistics.median(r["cpu_share"] for r in runs),
                "cpus": [r["cpu_share"] for r in runs],
                "tiers": sorted({t for r in runs for t in r["tiers"]}),
                "connected": min(r["connected"] for r in runs),
                "decoded": max(r["decoded"] for r in runs),
                "receivers_cpu": statistics.median(r["receivers_cpu"] for r in runs),
            }
            rows.append(row)
            print(
                f"{label}, {viewers} viewer(s): p50 {row['p50']:.1f} ms, p95 {row['p95']:.1f} ms "
                f"(sessions {', '.join(f'{m:.0f}' for m in row['medians'])}), "
                f"{row['shown_fps']:.1f} fps shown "
                f"({', '.join(f'{x:.1f}' for x in row['shown_fps_each'])}; the page's callback "
                f"saw {row['seen_fps']:.1f}, the compositor dropped "
                f"{row['compositor_dropped']:.1f} per session) of {row['decoded_fps']:.1f} "
                f"decoded by the browser and {row['made_fps']:.1f} made, "
                f"{row['skipped']:.1f} frames skipped on the server per viewer, "
                f"server CPU {row['cpu'] * 100:.1f} % "
                f"({', '.join(f'{c * 100:.0f}' for c in row['cpus'])}), tiers {row['tiers']}, "
                f"{row['connected']} connected, {row['decoded']} decoded, receivers' CPU "
                f"{row['receivers_cpu'] * 100:.0f} %",
                flush=True,
            )
    by = {(r["label"], r["viewers"]): r for r in rows}
    passed = by[("passthrough", 8)]
    reencoded = by[("re-encoded video", 8)]
    previews = by[("previews (encode path)", 8)]
    one = by[("passthrough", 1)]
    per_viewer = {
        label: (by[(label, 8)]["cpu"] - by[(label, 1)]["cpu"]) / 7 for label, _, _ in SCENARIOS
    }
    table = [
        f"| {r['label']} | {r['viewers']} | {r['p50']:.1f} ms | {r['p95']:.1f} ms | "
        f"{', '.join(f'{m:.0f}' for m in r['medians'])} ms | {r['shown_fps']:.1f} "
        f"({', '.join(f'{x:.1f}' for x in r['shown_fps_each'])}) | {r['seen_fps']:.1f} | "
        f"{r['compositor_dropped']:.1f} | {r['decoded_fps']:.1f} | {r['made_fps']:.1f} | "
        f"{r['skipped']:.1f} | "
        f"{r['cpu'] * 100:.1f} % ({', '.join(f'{c * 100:.0f}' for c in r['cpus'])}) | "
        f"{', '.join(r['tiers'])} | {r['decoded']} | {r['receivers_cpu'] * 100:.0f} % |"
        for r in rows
    ]
    verdicts = [
        f"- Passthrough latency median ≤ {TARGET_P50_MS:.0f} ms: 1 viewer {one['p50']:.1f} ms "
        f"{mark(one['p50'] <= TARGET_P50_MS)}, 8 viewers {passed['p50']:.1f} ms "
        f"{mark(passed['p50'] <= TARGET_P50_MS)}.",
        f"- Frames shown ≥ {TARGET_FPS:.0f} per s: 1 viewer {one['shown_fps']:.1f} "
        f"{mark(one['shown_fps'] >= TARGET_FPS)}, 8 viewers {passed['shown_fps']:.1f} "
        f"{mark(passed['shown_fps'] >= TARGET_FPS)}.",
        f"- Server CPU with 8 viewers at most a fifth of the encode path's at the same rate: "
        f"passthrough {passed['cpu'] * 100:.1f} % against the re-encoded video's "
        f"{reencoded['cpu'] * 100:.1f} % = **{passed['cpu'] / reencoded['cpu']:.2f}** "
        f"{mark(passed['cpu'] <= TARGET_CPU_SHARE * reencoded['cpu'])}, against the previews' "
        f"{previews['cpu'] * 100:.1f} % = **{passed['cpu'] / previews['cpu']:.2f}** "
        f"{mark(passed['cpu'] <= TARGET_CPU_SHARE * previews['cpu'])}.",
        "- Server CPU per added viewer (8 viewers less 1, over 7): "
        + ", ".join(f"{label} {share * 100:.2f} %" for label, share in per_viewer.items())
        + " of one core.",
    ]
    for line in verdicts:
        print(line)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_section(
        "passthrough",
        [
            "## RTSP passthrough: the telescope's H.264 to WebRTC unchanged, against the encode "
            "paths",
            "",
            "Reproduce: `.venv/bin/python bench/bench_passthrough.py`  ",
            f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, Debian Chromium "
            "(headless), all on one 2-core machine.",
            "",
            f"The simulator runs in its own process at {FPS:.0f} fps: 1920×1080 Constrained "
            "Baseline H.264 over RTSP in the Moon view, 1080×1920 Bayer previews in the star "
            "view. The app runs in the benchmark's process, with adaptation off (every viewer "
            "stays on the full tier, which is the telescope's stream where it passes). Viewer 1 "
            "is Chromium playing the "
            "UI's WebRTC transport (latency: the frame stamp's emit time to the frame's expected "
            "display time from `requestVideoFrameCallback`); viewers 2–8 are aiortc receivers "
            "in another process that take every packet and decode none (the server's work per "
            "viewer is the same). Server CPU is the app process's CPU time over "
            f"{SECONDS - 1:.0f} s, in share of one core; the simulator's and the browser's are "
            f"not in it. Each row pools {sessions} sessions (fresh simulator, app and browser); "
            "the session medians and CPU figures are listed. A fresh app has not read the "
            "stream's SPS yet when its first viewer arrives, so that viewer starts on the full "
            "tier (the video decoded and encoded, ~30 frames) and moves to the telescope's "
            "stream a second later; that is the passthrough rows' decoded count. The last "
            "column is the CPU of the process holding viewers 2–8 (receiving and decrypting "
            "the packets in Python), which competes with Chromium and the simulator for the "
            "same two cores. Frames shown per s is what Chromium's compositor presented over "
            "the window: the growth of `presentedFrames` in the frame callbacks' metadata, "
            "which counts every frame put on screen (the sessions' figures in brackets). The "
            "frame callback itself runs on the page's main thread at a vsync; when that thread "
            "is busy then, the callback fires once for the newest frame and the frame before "
            "it goes unseen by the page though the screen got it (the spec's reason for "
            "`presentedFrames`), so the next column, frames the page's callback saw (the "
            "latency samples), can be lower. Frames the compositor dropped: decoded frames "
            "replaced by a newer one before a vsync showed them "
            "(`getVideoPlaybackQuality().droppedVideoFrames`), per session. Frames made per s "
            "is the simulator's rate over the window, from the stamps' numbers: made below 30 "
            "is the simulator falling behind on the shared cores; frames decoded by Chromium "
            "(its `framesDecoded` over the window) above frames shown are pictures the browser "
            "decoded but did not present. Frames skipped "
            "by the server: per viewer since it joined, frames its track did not send (it was "
            "behind, or waited for a keyframe).",
            "",
            "| Path | Viewers | Latency median | Latency p95 | Each session's median | "
            "Frames shown per s (sessions) | Frames the page's callback saw per s | "
            "Frames the compositor dropped per session | "
            "Frames decoded by Chromium per s | Frames made per s | "
            "Frames skipped by the server per viewer | Server CPU (sessions) | Tiers sent | "
            "Frames decoded on the server | CPU of viewers 2–8 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *table,
            "",
            *verdicts,
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=3, help="sessions pooled per row")
    parser.add_argument("--role", choices=["viewers"], help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.role == "viewers":
        url, count, seconds = parsed.args
        asyncio.run(viewers_role(url, int(count), float(seconds)))
    else:
        started = time.monotonic()
        asyncio.run(main(parsed.sessions))
        print(f"done in {time.monotonic() - started:.0f} s")
