"""Benchmark of the imaging path: simulator render + send on one core, client receive + decode.

    .venv/bin/python bench/bench_imaging.py [--seconds 8] [--no-docs]

The simulator runs in its own process pinned to one core (os.sched_setaffinity before any
import that starts threads), and the reader/client runs in another process pinned to another
core, so the simulator's figures are what one core can do. Results are printed and written to
the `bench:imaging` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT))

from bench.report import cpu_model, emit, mark, percentile, pin, replace_section  # noqa: E402

BEGIN = "<!-- bench:imaging -->"
END = "<!-- /bench:imaging -->"
COMMAND = ".venv/bin/python bench/bench_imaging.py"
FPS = 30.0
RENDER_TARGET_MS = 15.0
DECODE_TARGET_MS = 15.0


# -- roles, each run in its own pinned process --------------------------------------------------


def role_server(args: argparse.Namespace) -> None:
    """Measure rendering alone, then serve at FPS and report what one core sustained."""
    pin(args.core)
    import asyncio
    import resource

    from scopelink.simulator.faults import Faults
    from scopelink.simulator.imaging_server import ImagingServer
    from scopelink.simulator.scene import Scene
    from scopelink.simulator.starfield import StarField

    scene = Scene(ra_hours=18.0, dec_deg=-29.0)  # towards the galactic centre: the most stars
    field = StarField(seed=0)
    field.render_mosaic(scene, 0, 0)
    render_ms = []
    for frame in range(1, 101):
        started = time.perf_counter()
        field.render_mosaic(scene, frame, int(time.time() * 1000))
        render_ms.append((time.perf_counter() - started) * 1000)

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    async def serve() -> dict[str, Any]:
        server = ImagingServer("127.0.0.1", 0, lambda: scene, lambda: None, Faults(), fps=FPS)
        await server.start()
        print(f"PORT {server.port}", flush=True)
        while server.stats.frames_sent == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # warm-up: caches, socket buffers
        sent0, cpu0, wall0 = server.stats.frames_sent, cpu(), time.monotonic()
        await asyncio.sleep(args.seconds)
        sent1, cpu1, wall1 = server.stats.frames_sent, cpu(), time.monotonic()
        skipped = server.stats.frames_skipped
        await server.stop()
        wall = wall1 - wall0
        return {
            "sent_fps": (sent1 - sent0) / wall,
            "cpu_share": (cpu1 - cpu0) / wall,
            "skipped": skipped,
        }

    result = asyncio.run(serve())
    result["render_median_ms"] = percentile(render_ms, 50)
    result["render_p95_ms"] = percentile(render_ms, 95)
    result["cores"] = sorted(os.sched_getaffinity(0))
    emit(result)


def role_reader(args: argparse.Namespace) -> None:
    """A bare, fast reader: counts whole preview frames and their arrival rate."""
    pin(args.core)
    sock = socket.create_connection(("127.0.0.1", args.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.sendall(b'{"id":21,"method":"begin_streaming"}\r\n')
    buf = bytearray(64 << 20)
    view = memoryview(buf)

    def read_exactly(n: int) -> bool:
        got = 0
        while got < n:
            k = sock.recv_into(view[got:n])
            if k == 0:
                return False
            got += k
        return True

    arrivals: list[float] = []
    while read_exactly(80):
        length = struct.unpack_from(">I", buf, 6)[0]
        frame_id = buf[15]
        if not read_exactly(length):
            break
        if frame_id == 21 and length > 1000:
            arrivals.append(time.monotonic())
    # Skip the warm-up second the server also skips.
    window = [t for t in arrivals if t >= arrivals[0] + 1.0] if arrivals else []
    fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
    emit({"frames": len(arrivals), "received_fps": fps})


def role_client(args: argparse.Namespace) -> None:
    """The real ImagingClient: receive, decode and debayer every preview frame it can."""
    pin(args.core)
    import asyncio

    from scopelink import framestamp
    from scopelink.seestar.imaging import ImagingClient

    async def run() -> dict[str, Any]:
        client = ImagingClient("127.0.0.1", args.port)
        await client.connect(timeout=10)
        await client.begin_streaming()
        seq = 0
        total_ms: list[float] = []
        receive_ms: list[float] = []
        decode_ms: list[float] = []
        latency_ms: list[float] = []
        warmup_until = time.monotonic() + 1.0
        while True:
            try:
                item = await asyncio.wait_for(client.frames.next(seq), 1.0)
            except TimeoutError:
                if client.connected:
                    continue
                break  # the simulator ends the run by going away
            now_ms = time.time() * 1000
            seq = item.seq
            frame = item.value
            if time.monotonic() < warmup_until:
                continue
            receive_ms.append(frame.receive_s * 1000)
            decode_ms.append(frame.decode_s * 1000)
            total_ms.append((frame.receive_s + frame.decode_s) * 1000)
            assert frame.rgb is not None
            stamp = framestamp.read(frame.rgb[:200])
            if stamp is not None:
                latency_ms.append(now_ms - stamp.emit_ms)
        stats = client.stats
        await client.close()
        return {
            "frames": len(total_ms),
            "total_median_ms": percentile(total_ms, 50),
            "total_p95_ms": percentile(total_ms, 95),
            "receive_median_ms": percentile(receive_ms, 50),
            "decode_median_ms": percentile(decode_ms, 50),
            "decode_p95_ms": percentile(decode_ms, 95),
            "latency_median_ms": percentile(latency_ms, 50),
            "latency_p95_ms": percentile(latency_ms, 95),
            "skipped": stats.frames_skipped,
            "received": stats.frames_received,
        }

    emit(asyncio.run(run()))


# -- orchestration -----------------------------------------------------------------------------


def spawn(role: str, core: int, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--role", role, "--core", str(core), *extra]
    # Pin before exec as well, so every thread the child ever starts inherits the one core.
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: pin(core),
    )


def wait_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("PORT "):
            return int(line.split()[1])
    raise RuntimeError("simulator did not start")


def result_of(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    out, _ = proc.communicate(timeout=120)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"no result from {proc.args}")


def run_pair(client_role: str, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    client_core = cores[1] if len(cores) > 1 else cores[0]
    server = spawn("server", server_core, "--seconds", str(seconds))
    port = wait_port(server)
    client = spawn(client_role, client_core, "--port", str(port))
    server_result = result_of(server)
    client_result = result_of(client)
    return server_result, client_result


def versions() -> str:
    import cv2
    import numpy

    python = platform.python_version()
    return f"Python {python}, numpy {numpy.__version__}, OpenCV {cv2.__version__}"


def section(sim: dict[str, Any], reader: dict[str, Any], client: dict[str, Any]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    capacity = sim["sent_fps"] / sim["cpu_share"] if sim["cpu_share"] > 0 else float("inf")
    return "\n".join(
        [
            BEGIN,
            "## Imaging: simulator render + send, client receive + decode",
            "",
            f"Reproduce: `{COMMAND}`  ",
            f"Run: {now} on {cpu_model()}, {versions()}.",
            "",
            "Frames are 1080×1920 16-bit GRBG Bayer (4,147,200 bytes) over loopback. The simulator",
            "process is pinned to one core; the reader and the client run pinned to another core.",
            "",
            "| Measure | Result | Target |",
            "|---|---|---|",
            f"| Simulator render, one frame (median / p95) | {sim['render_median_ms']:.1f} / "
            f"{sim['render_p95_ms']:.1f} ms | ≤ {RENDER_TARGET_MS:.0f} ms "
            f"{mark(sim['render_median_ms'] <= RENDER_TARGET_MS)} |",
            f"| Simulator render + send at fps={FPS:.0f}, one core: frames received by a bare "
            f"reader | {reader['received_fps']:.1f} fps | ≥ {FPS:.0f} fps "
            f"{mark(reader['received_fps'] >= FPS - 0.5)} |",
            f"| Simulator CPU use at that rate (its core) | {sim['cpu_share'] * 100:.0f} % "
            f"(≈ {capacity:.0f} fps if CPU use scaled linearly) | < 100 % |",
            f"| Client receive + decode + debayer per preview frame (median / p95) | "
            f"{client['total_median_ms']:.1f} / {client['total_p95_ms']:.1f} ms | median ≤ "
            f"{DECODE_TARGET_MS:.0f} ms {mark(client['total_median_ms'] <= DECODE_TARGET_MS)} |",
            f"| … of which receive (header to last byte), median | "
            f"{client['receive_median_ms']:.1f} ms | |",
            f"| … of which decode + debayer (median / p95) | {client['decode_median_ms']:.1f} / "
            f"{client['decode_p95_ms']:.1f} ms | |",
            f"| Frame stamp emit → decoded frame in the consumer (median / p95) | "
            f"{client['latency_median_ms']:.1f} / {client['latency_p95_ms']:.1f} ms | |",
            f"| Client frames decoded / skipped (latest wins) | {client['frames']} / "
            f"{client['skipped']} | |",
            "",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--role", choices=["server", "reader", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        return role_server(args)
    if args.role == "reader":
        return role_reader(args)
    if args.role == "client":
        return role_client(args)

    print(f"(a) simulator on one core, {FPS:.0f} fps, bare reader, {args.seconds:g} s ...")
    sim, reader = run_pair("reader", args.seconds)
    print(f"    render median {sim['render_median_ms']:.2f} ms, p95 {sim['render_p95_ms']:.2f} ms")
    print(
        f"    received {reader['received_fps']:.2f} fps; simulator sent {sim['sent_fps']:.2f} fps "
        f"using {sim['cpu_share'] * 100:.0f} % of its core"
    )
    print(f"(b) ImagingClient receive + decode + debayer, {args.seconds:g} s ...")
    _, client = run_pair("client", args.seconds)
    print(
        f"    per frame median {client['total_median_ms']:.2f} ms, p95 {client['total_p95_ms']:.2f}"
        f" ms (receive {client['receive_median_ms']:.2f}, decode {client['decode_median_ms']:.2f})"
    )
    print(
        f"    emit -> decoded latency median {client['latency_median_ms']:.1f} ms, "
        f"p95 {client['latency_p95_ms']:.1f} ms; {client['frames']} frames, "
        f"{client['skipped']} skipped"
    )
    if not args.no_docs:
        replace_section(section(sim, reader, client), BEGIN, END)
        print(f"wrote the imaging section of {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
