"""Benchmark of the frame pipeline and MJPEG: stretch and JPEG cost, server CPU per viewer count.

    .venv/bin/python bench/bench_pipeline.py [--seconds 8] [--no-docs]

Three measurements, each in its own process pinned to a core (os.sched_setaffinity):

- cost: the pipeline's work on one 1080x1920 simulator frame (linked auto-stretch + stamp read,
  JPEG encodes at the default and the full width), on one core, and again on every core (the
  stretch's lookup runs in bands on parallel threads: the latency a frame waits);
- server: a simulator process (10 fps) and an app process (registry + frame pipeline + the MJPEG
  router on uvicorn, on its own core) serve 1, then 8 concurrent MJPEG viewers in a third
  process; the app's CPU time over wall time comes from /proc/<pid>/stat, and each viewer
  records bytes, parts and the stamp emit -> part received latency.

Results are printed and written to the `bench:pipeline` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT))

from bench.report import cpu_model, emit, mark, percentile, pin, replace_section  # noqa: E402

BEGIN = "<!-- bench:pipeline -->"
END = "<!-- /bench:pipeline -->"
COMMAND = ".venv/bin/python bench/bench_pipeline.py"
FPS = 10.0
PROCESS_TARGET_MS = 15.0
VIEWER_COUNTS = (1, 8)
WARMUP_S = 1.5


# -- roles, each run in its own pinned process --------------------------------------------------


def role_cost(args: argparse.Namespace) -> None:
    """Time the pipeline's per-frame work on real simulator frames (core -1: on every core)."""
    if args.core >= 0:
        pin(args.core)
    import cv2

    from scopelink.media.display import read_stamp
    from scopelink.seestar.frames import FrameKind, ImagingFrame
    from scopelink.seestar.imaging_protocol import FrameHeader
    from scopelink.services.frame_pipeline import auto_stretch, encode_jpeg, render_display
    from scopelink.simulator.scene import Scene
    from scopelink.simulator.starfield import StarField

    field = StarField(seed=0)
    scene = Scene(ra_hours=18.0, dec_deg=-29.0)  # towards the galactic centre: the most stars
    frames = []
    for number in range(1, 9):
        mosaic = field.render_mosaic(scene, number, int(time.time() * 1000))
        rgb = cv2.cvtColor(mosaic, cv2.COLOR_BayerGRBG2RGB)
        rgb.flags.writeable = False
        header = FrameHeader(length=rgb.nbytes, frame_id=21, width=1080, height=1920)
        frames.append(ImagingFrame(header, FrameKind.PREVIEW, rgb, time.monotonic()))

    def timed(fn: Any, rounds: int) -> list[float]:
        fn(0)
        out = []
        for i in range(rounds):
            started = time.perf_counter()
            fn(i)
            out.append((time.perf_counter() - started) * 1000)
        return out

    process = timed(lambda i: render_display(frames[i % len(frames)]), 80)
    stretch = timed(lambda i: auto_stretch(frames[i % len(frames)].rgb), 80)
    stamp = timed(lambda i: read_stamp(frames[i % len(frames)].rgb), 80)
    displays = [render_display(f) for f in frames]
    result: dict[str, Any] = {
        "process": [percentile(process, 50), percentile(process, 95)],
        "stretch": [percentile(stretch, 50), percentile(stretch, 95)],
        "stamp": [percentile(stamp, 50), percentile(stamp, 95)],
    }
    for width in (540, 1080):
        times = timed(lambda i, w=width: encode_jpeg(displays[i % 8].rgb8, w, 80), 80)
        size = len(encode_jpeg(displays[0].rgb8, width, 80))
        result[f"jpeg{width}"] = [percentile(times, 50), percentile(times, 95), size]
    emit(result)


def role_sim(args: argparse.Namespace) -> None:
    """The simulated telescope at FPS on its own core, until killed."""
    pin(args.core)
    import asyncio

    from scopelink.simulator.simulator import Simulator, SimulatorConfig

    async def run() -> None:
        sim = Simulator(SimulatorConfig.ephemeral(fps=FPS))
        await sim.start()
        if sim.key_pem is not None:
            sim.write_key(Path(args.key))
        print(f"PORTS {sim.control.port} {sim.imaging.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def role_app(args: argparse.Namespace) -> None:
    """Registry + frame pipeline + MJPEG router on uvicorn, connected to the simulator."""
    pin(args.core)
    import asyncio
    import logging

    import uvicorn
    from fastapi import FastAPI

    from scopelink.services.registry import TelescopeRegistry
    from scopelink.settings import ServeSettings, TelescopeTarget
    from scopelink.web.listen import listening_socket
    from scopelink.web.mjpeg import router

    logging.basicConfig(level=logging.WARNING)
    key = Path(args.key)
    target = TelescopeTarget(
        host="127.0.0.1",
        control_port=args.control_port,
        imaging_port=args.imaging_port,
        name="bench",
        key_pem=key.read_bytes() if key.exists() and key.stat().st_size else None,
    )
    settings = ServeSettings(telescopes=[target], simulator=False)

    async def run() -> None:
        registry = TelescopeRegistry(settings)
        await registry.start()
        app = FastAPI()
        app.state.registry = registry
        app.state.settings = settings
        app.include_router(router)
        sock = listening_socket("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        await registry.get("bench").imaging.wait_connected(10)
        print(f"PORT {sock.getsockname()[1]}", flush=True)
        # stdin closing is the signal to report and stop.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        pipeline = registry.get("bench").pipeline
        stats = pipeline.stats
        await registry.stop()
        server.should_exit = True
        await serving
        emit(
            {
                "frames_processed": stats.frames_processed,
                "frames_skipped": stats.frames_skipped,
                "jpeg_encodes": stats.jpeg_encodes,
                "median_process_ms": stats.median_process_ms,
            }
        )

    asyncio.run(run())


def role_viewers(args: argparse.Namespace) -> None:
    """`--viewers` concurrent MJPEG readers; START / END mark the measured window."""
    pin(args.core)
    import asyncio

    import httpx

    url = f"http://127.0.0.1:{args.port}/api/telescopes/bench/stream.mjpeg"
    delimiter = b"\r\n--frame"

    async def viewer(index: int, stats: list[dict[str, Any]], window: dict[str, float]) -> None:
        record: dict[str, Any] = {"bytes": 0, "parts": 0, "latency_ms": [], "frames": []}
        stats[index] = record
        buf = bytearray()
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("GET", url, params={"width": args.width, "quality": 80}) as response,
        ):
            async for data in response.aiter_raw():
                now = time.monotonic()
                counting = window["start"] <= now < window["end"]
                if counting:
                    record["bytes"] += len(data)
                buf += data
                while True:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        break
                    head = bytes(buf[:head_end]).decode("ascii", "replace")
                    length = int(re.search(r"Content-Length: (\d+)", head)[1])  # type: ignore[index]
                    stop = head_end + 4 + length + len(delimiter)
                    if len(buf) < stop:
                        break
                    stamp = re.search(r"X-Frame-Stamp: (\d+);(\d+)", head)
                    del buf[:stop]
                    if counting and stamp is not None:
                        record["parts"] += 1
                        record["frames"].append(int(stamp[1]))
                        record["latency_ms"].append(time.time() * 1000 - int(stamp[2]))
                if now >= window["end"]:
                    return

    async def run() -> list[dict[str, Any]]:
        stats: list[dict[str, Any]] = [{} for _ in range(args.viewers)]
        now = time.monotonic()
        window = {"start": now + WARMUP_S, "end": now + WARMUP_S + args.seconds}
        tasks = [asyncio.create_task(viewer(i, stats, window)) for i in range(args.viewers)]
        await asyncio.sleep(WARMUP_S)
        print("START", flush=True)
        await asyncio.sleep(args.seconds)
        print("END", flush=True)
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        return stats

    stats = asyncio.run(run())
    latencies = [ms for record in stats for ms in record["latency_ms"]]
    emit(
        {
            "viewers": args.viewers,
            "fps": [record["parts"] / args.seconds for record in stats],
            "bytes_per_s": [record["bytes"] / args.seconds for record in stats],
            "latency_median_ms": percentile(latencies, 50),
            "latency_p95_ms": percentile(latencies, 95),
        }
    )


# -- orchestration -----------------------------------------------------------------------------


def spawn(role: str, core: int, *extra: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """Run `role` in a child process pinned to `core` (-1: on every core this process has)."""
    command = [sys.executable, __file__, "--role", role, "--core", str(core), *extra]
    return subprocess.Popen(
        command,
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=(lambda: pin(core)) if core >= 0 else None,
    )


def read_until(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"{proc.args} ended before printing {prefix}")


def result_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    line = read_until(proc, "RESULT ")
    proc.wait(timeout=30)
    return dict(json.loads(line[len("RESULT ") :]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_viewers(port: int, app_pid: int, viewers: int, seconds: float, core: int) -> dict:
    proc = spawn(
        "viewers", core, "--port", str(port), "--viewers", str(viewers),
        "--seconds", str(seconds), "--width", "540",
    )  # fmt: skip
    read_until(proc, "START")
    cpu0, wall0 = cpu_seconds(app_pid), time.monotonic()
    read_until(proc, "END")
    cpu1, wall1 = cpu_seconds(app_pid), time.monotonic()
    result = result_line(proc)
    result["app_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
    return result


def measure_idle(app_pid: int, seconds: float) -> float:
    cpu0, wall0 = cpu_seconds(app_pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(app_pid) - cpu0) / (time.monotonic() - wall0)


def run_server(seconds: float) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    cores = sorted(os.sched_getaffinity(0))
    other = cores[0]
    app_core = cores[1] if len(cores) > 1 else cores[0]
    with tempfile.TemporaryDirectory() as tmp:
        key = str(Path(tmp) / "key.pem")
        sim = spawn("sim", other, "--key", key)
        try:
            control, imaging = read_until(sim, "PORTS ").split()[1:]
            app = spawn(
                "app", app_core, "--key", key, "--control-port", control,
                "--imaging-port", imaging, stdin=subprocess.PIPE,
            )  # fmt: skip
            port = int(read_until(app, "PORT ").split()[1])
            idle = measure_idle(app.pid, 2.0)
            runs = []
            for viewers in VIEWER_COUNTS:
                runs.append(measure_viewers(port, app.pid, viewers, seconds, other))
                time.sleep(3.0)  # past the linger: the next run starts from a stopped stream
            assert app.stdin is not None
            app.stdin.close()
            app_result = result_line(app)
        finally:
            sim.kill()
            sim.wait()
    return idle, runs, app_result


def versions() -> str:
    import cv2
    import numpy
    import uvicorn

    return (
        f"Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"OpenCV {cv2.__version__}, uvicorn {uvicorn.__version__}"
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def section(cost: dict[str, Any], idle: float, runs: list[dict[str, Any]]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    process, stretch, stamp = cost["process"], cost["stretch"], cost["stamp"]
    wide = cost["all_cores"]
    j540, j1080 = cost["jpeg540"], cost["jpeg1080"]
    header = "| Measure | " + " | ".join(f"{r['viewers']} viewer(s)" for r in runs) + " |"
    rule = "|---|" + "---|" * len(runs)

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    return "\n".join(
        [
            BEGIN,
            "## Frame pipeline and MJPEG",
            "",
            f"Reproduce: `{COMMAND}`  ",
            f"Run: {now} on {cpu_model()}, {versions()}.",
            "",
            "### Per frame (1080×1920 simulator frame; one core unless the row says otherwise)",
            "",
            "| Measure | Median | p95 | Target |",
            "|---|---|---|---|",
            f"| Pipeline processing: linked auto-stretch + stamp read | {process[0]:.1f} ms | "
            f"{process[1]:.1f} ms | ≤ {PROCESS_TARGET_MS:.0f} ms "
            f"{mark(process[0] <= PROCESS_TARGET_MS)} |",
            f"| … of which the stretch (stats on every 4th pixel, 16-bit LUT) | "
            f"{stretch[0]:.1f} ms | {stretch[1]:.1f} ms | |",
            f"| … of which the stamp read (top band only) | {stamp[0]:.1f} ms | "
            f"{stamp[1]:.1f} ms | |",
            f"| Pipeline processing on all {wide['cores']} cores (the lookup in bands, one per "
            f"core): what a frame waits | {wide['process'][0]:.1f} ms | "
            f"{wide['process'][1]:.1f} ms | |",
            f"| … of which the stretch | {wide['stretch'][0]:.1f} ms | "
            f"{wide['stretch'][1]:.1f} ms | |",
            f"| JPEG encode, width 540 (default) q80, incl. INTER_AREA resize | {j540[0]:.1f} ms "
            f"| {j540[1]:.1f} ms | {j540[2] / 1000:.0f} kB per frame |",
            f"| JPEG encode, full width 1080 q80 | {j1080[0]:.1f} ms | {j1080[1]:.1f} ms | "
            f"{j1080[2] / 1000:.0f} kB per frame |",
            "",
            f"### Server with concurrent MJPEG viewers ({FPS:.0f} fps, width 540, q80)",
            "",
            "Three processes: the simulator and the viewers (httpx) share one core; the app",
            "(registry, imaging client, frame pipeline, MJPEG router on uvicorn, listening socket",
            "from `mjpeg.listening_socket`) has the other. App CPU is its process CPU time over",
            "wall time (/proc/<pid>/stat), all threads, including receiving and debayering the",
            f"telescope's frames; with no viewer (stream stopped) it is {idle * 100:.1f} %.",
            "Latency is frame stamp emit (simulator) → part fully received by an httpx client on",
            "the same machine; the browser-side latency (image decoded in Chromium) is measured",
            "separately.",
            "",
            header,
            rule,
            row("App CPU (share of one core)", lambda r: f"{r['app_cpu_share'] * 100:.1f} %"),
            row(
                "Delivered fps per viewer (mean, min)",
                lambda r: f"{_mean(r['fps']):.1f}, {min(r['fps']):.1f}",
            ),
            row(
                "Bandwidth per viewer (mean)",
                lambda r: f"{_mean(r['bytes_per_s']) / 1000:.0f} kB/s",
            ),
            row(
                "MJPEG latency, emit → received (median / p95)",
                lambda r: f"{r['latency_median_ms']:.1f} / {r['latency_p95_ms']:.1f} ms",
            ),
            "",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    roles = ["cost", "sim", "app", "viewers"]
    parser.add_argument("--role", choices=roles, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--control-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--imaging-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--viewers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=540, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None:
        {"cost": role_cost, "sim": role_sim, "app": role_app, "viewers": role_viewers}[args.role](
            args
        )
        return

    cores = sorted(os.sched_getaffinity(0))
    print("(a) pipeline cost per 1080x1920 frame, one core ...")
    cost = result_line(spawn("cost", cores[-1]))
    print(
        f"    process median {cost['process'][0]:.2f} ms, p95 {cost['process'][1]:.2f} ms "
        f"(stretch {cost['stretch'][0]:.2f}, stamp {cost['stamp'][0]:.2f})"
    )
    print(f"(a') the same on all {len(cores)} cores ...")
    wide = result_line(spawn("cost", -1))
    cost["all_cores"] = {
        "cores": len(cores),
        "process": wide["process"],
        "stretch": wide["stretch"],
    }
    print(
        f"    process median {wide['process'][0]:.2f} ms, p95 {wide['process'][1]:.2f} ms "
        f"(stretch {wide['stretch'][0]:.2f})"
    )
    for width in (540, 1080):
        median, p95, size = cost[f"jpeg{width}"]
        print(f"    JPEG {width} q80: median {median:.2f} ms, p95 {p95:.2f} ms, {size} bytes")
    counts = " and ".join(str(n) for n in VIEWER_COUNTS)
    print(f"(b) app serving {counts} MJPEG viewers at {FPS:.0f} fps, {args.seconds:g} s each ...")
    idle, runs, app = run_server(args.seconds)
    print(f"    app CPU with no viewer: {idle * 100:.1f} %")
    for r in runs:
        print(
            f"    {r['viewers']} viewer(s): app CPU {r['app_cpu_share'] * 100:.1f} %, "
            f"fps/viewer {_mean(r['fps']):.2f} (min {min(r['fps']):.2f}), "
            f"{_mean(r['bytes_per_s']) / 1000:.0f} kB/s per viewer, latency median "
            f"{r['latency_median_ms']:.1f} ms, p95 {r['latency_p95_ms']:.1f} ms"
        )
    print(
        f"    pipeline: {app['frames_processed']} frames processed, {app['frames_skipped']} "
        f"skipped, {app['jpeg_encodes']} JPEG encodes"
    )
    if not args.no_docs:
        replace_section(section(cost, idle, runs), BEGIN, END)
        print(f"wrote the pipeline section of {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
