"""Benchmark of WebRTC media: encode cost per tier and codec, server CPU for 1 vs 8 aiortc peers.

    .venv/bin/python bench/bench_webrtc_encode.py [--seconds 8] [--no-docs]

- encode: per-frame time (scale + RGB->I420 + encode) of `scopelink.webrtc.encoder` on real
  1080x1920 simulator display frames, for the full (1080x1920) and reduced (540x960) tiers: libx264
  with the chosen preset and one alternative, and VP8 (libvpx, `scopelink.webrtc.vp8`), in this
  process.
- peers: this process publishes those frames at 10 fps into one full-tier `TierEncoder` and
  serves 1, then 8 aiortc peers (`EncodedVideoTrack`, H.264 forced); the receiving peers run in
  a child process (they decode, which must not count). This process's CPU time over wall time is
  the server's cost; encode once means 8 peers cost little more than 1.

Results are printed and written to the `bench:webrtc-encode` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import cpu_model, emit, mark, percentile, write_section  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_webrtc_encode.py"
FPS = 10.0
PEER_COUNTS = (1, 8)
ALTERNATIVE_PRESET = "superfast"
CPU_RATIO_LIMIT = 1.5
WARMUP_S = 2.0


# -- frames -----------------------------------------------------------------------------------


async def simulator_frames(
    count: int, prepare: Callable[[Any], Awaitable[None]] | None = None
) -> list[Any]:
    """`count` consecutive display frames from a real simulator through the frame pipeline
    (`prepare(simulator)` first, if given: to point the mount, say)."""
    from scopelink.seestar.imaging import ImagingClient
    from scopelink.services.frame_pipeline import FramePipeline
    from scopelink.simulator.simulator import Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig.ephemeral(fps=FPS))
    await sim.start()
    if prepare is not None:
        await prepare(sim)
    imaging = ImagingClient(sim.host, sim.imaging.port)
    await imaging.connect(timeout=5)
    pipeline = FramePipeline(imaging)
    await pipeline.start()
    frames = []
    try:
        async with pipeline.viewer():
            seq = 0
            while len(frames) < count:
                item = await asyncio.wait_for(pipeline.frames.next(seq), 10)
                seq = item.seq
                frames.append(item.value)
    finally:
        await pipeline.stop()
        await imaging.close()
        await sim.stop()
    return frames


# -- encode cost --------------------------------------------------------------------------------


def encode_cost(frames: list[Any]) -> list[dict[str, Any]]:
    from scopelink.webrtc.encoder import (
        FULL,
        PRESET,
        REDUCED,
        VIDEO_CLOCK_HZ,
        Codec,
        open_codec,
        open_tier_codec,
    )
    from scopelink.webrtc.encoder import _encode_frame as encode_frame
    from scopelink.webrtc.vp8 import CPU_USED

    rows = []
    for tier in (FULL, REDUCED):
        size = tier.size_for(frames[0].width, frames[0].height)
        for name in (f"H.264 {PRESET}", f"H.264 {ALTERNATIVE_PRESET}", f"VP8 cpu-used {CPU_USED}"):
            if name.startswith("VP8"):
                # The context a VP8 TierEncoder opens: its settings, the tier's bitrate.
                codec = open_tier_codec(Codec.VP8, tier, size, tier.bitrate)
            else:
                codec = open_codec(tier, size, tier.bitrate, name.split()[-1])
            times, sizes = [], []
            for i, frame in enumerate(frames * 2):
                pts = round(i / FPS * VIDEO_CLOCK_HZ)
                data, _, elapsed = encode_frame(codec, frame.rgb8, size, pts, False, tier.bitrate)
                if i >= 5:  # the first frames include x264's start-up
                    times.append(elapsed * 1000)
                    sizes.append(len(data))
            rows.append(
                {
                    "tier": tier.name,
                    "size": f"{size[0]}x{size[1]}",
                    "codec": name,
                    "p50": percentile(times, 50),
                    "p95": percentile(times, 95),
                    "kbps": sum(sizes) * 8 * FPS / len(sizes) / 1000,
                    "bitrate": tier.bitrate,
                }
            )
    return rows


# -- peers --------------------------------------------------------------------------------------


async def serve_peers(frames: list[Any], peers: int, seconds: float) -> dict[str, Any]:
    """Fan one encoder out to `peers` aiortc peers in a child process; this process's CPU share."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from scopelink.media.latest import LatestValue
    from scopelink.webrtc.encoder import FULL, TierEncoder
    from scopelink.webrtc.track import EncodedVideoTrack

    source: LatestValue[Any] = LatestValue()
    encoder = TierEncoder(FULL, source)
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--role", "receivers",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    connections, tracks = [], []
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "H264"]

    async def publish() -> None:
        from dataclasses import replace

        i = 0
        while True:
            frame = frames[i % len(frames)]
            source.publish(replace(frame, received=time.monotonic()))
            i += 1
            await asyncio.sleep(1 / FPS)

    player = asyncio.create_task(publish())
    try:
        for _ in range(peers):
            pc = RTCPeerConnection()
            track = EncodedVideoTrack(encoder)
            pc.addTransceiver(track, direction="sendonly").setCodecPreferences(h264)
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
            child.stdin.write((json.dumps(offer) + "\n").encode())
            await child.stdin.drain()
            answer = json.loads(await child.stdout.readline())
            await pc.setRemoteDescription(RTCSessionDescription(**answer))
            connections.append(pc)
            tracks.append(track)
        await asyncio.sleep(WARMUP_S)
        sent_before = sum(t.stats.frames_sent for t in tracks)
        encoded_before = encoder.stats.frames_encoded
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        sent = sum(t.stats.frames_sent for t in tracks) - sent_before
        encoded = encoder.stats.frames_encoded - encoded_before
        child.stdin.write(b"stop\n")
        await child.stdin.drain()
        line = (await child.stdout.readline()).decode()
        received = json.loads(line.removeprefix("RESULT "))
    finally:
        player.cancel()
        for pc in connections:
            await pc.close()
        await encoder.close()
        if child.returncode is None:
            child.kill()
        await child.wait()
    return {
        "peers": peers,
        "cpu": cpu / wall,
        "encoded_fps": encoded / wall,
        "sent_fps_per_peer": sent / wall / peers,
        "received": received["frames"],
        "median_encode_ms": encoder.stats.median_encode_ms,
    }


def role_receivers() -> None:
    """Child: answer each offer on stdin with a receiving peer; count decoded frames until stop."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        counts: list[int] = []
        peers = []
        readers: list[asyncio.Task[None]] = []

        def consume(track: Any, slot: int) -> None:
            async def run() -> None:
                while True:
                    await track.recv()
                    counts[slot] += 1

            readers.append(asyncio.ensure_future(run()))

        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "stop":
                break
            pc = RTCPeerConnection()
            slot = len(counts)
            counts.append(0)
            pc.on("track", lambda track, slot=slot: consume(track, slot))
            await pc.setRemoteDescription(RTCSessionDescription(**json.loads(line)))
            await pc.setLocalDescription(await pc.createAnswer())
            answer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
            print(json.dumps(answer), flush=True)
            peers.append(pc)
        emit({"frames": counts})
        for pc in peers:
            await pc.close()

    asyncio.run(main())


# -- report -------------------------------------------------------------------------------------


def report(cost: list[dict[str, Any]], runs: list[dict[str, Any]], seconds: float) -> list[str]:
    one, many = runs[0], runs[-1]
    ratio = many["cpu"] / one["cpu"]
    lines = [
        "## WebRTC media: encode once per tier, fan out to peers",
        "",
        f"Machine: {cpu_model()}. Reproduce: `{COMMAND}`.",
        "",
        "Per-frame encode (scale INTER_AREA + cv2 RGB->I420 + libx264 Baseline zerolatency, or "
        "libvpx VP8 real-time) on real simulator display frames, 1080x1920 source, rate control "
        f"planned at {FPS:g} fps:",
        "",
        "| tier | size | codec / speed | p50 ms | p95 ms | kbit/s out (target) |",
        "|---|---|---|---|---|---|",
    ]
    for row in cost:
        lines.append(
            f"| {row['tier']} | {row['size']} | {row['codec']} | {row['p50']:.1f} | "
            f"{row['p95']:.1f} | {row['kbps']:.0f} ({row['bitrate'] // 1000}) |"
        )
    lines += [
        "",
        f"Server process CPU (encode + fan-out + aiortc packetise/SRTP/send), full tier at "
        f"{FPS:g} fps, {seconds:g} s after {WARMUP_S:g} s warm-up; receivers in another process:",
        "",
        "| peers | CPU (of one core) | encoded fps | sent fps per peer | frames decoded per peer |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['peers']} | {run['cpu'] * 100:.1f} % | {run['encoded_fps']:.1f} | "
            f"{run['sent_fps_per_peer']:.1f} | {min(run['received'])}–{max(run['received'])} |"
        )
    lines += [
        "",
        f"CPU ratio 8 peers : 1 peer = **{ratio:.2f}×** (limit {CPU_RATIO_LIMIT}×) "
        f"{mark(ratio <= CPU_RATIO_LIMIT)}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--role", choices=["receivers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "receivers":
        role_receivers()
        return

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        frames = await simulator_frames(30)
        cost = encode_cost(frames)
        runs = [await serve_peers(frames, n, args.seconds) for n in PEER_COUNTS]
        return cost, runs

    cost, runs = asyncio.run(run())
    lines = report(cost, runs, args.seconds)
    print("\n".join(lines))
    if not args.no_docs:
        write_section("webrtc-encode", lines)


if __name__ == "__main__":
    main()
