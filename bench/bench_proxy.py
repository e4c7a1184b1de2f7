"""The telescope-side proxy against `serve`, in one run: connection set-up, video latency,
command round trip, and the host's CPU per frame pinned to one core.

Both hosts run the same app code (`create_app`): `serve` (its own signaling socket, no
broker) and the proxy (`ProxySettings`, its signaling relayed by a broker). Each runs in its
own process pinned to core 0, one at a time beside the other idle, both connected to the same
simulated telescope (this process, core 1), which sends 1080×1920 previews at `--fps` with
frame stamps. This process is also the viewer: an aiortc peer with video and the
`control`/`telemetry` data channels.

In alternating rounds, for each host:
- **Set-up** (`--connections` times): from opening the signaling socket to the first decoded
  frame (hello, offer, answer, ICE, DTLS, the first key frame), then the peer is closed.
- **Video latency** for `--seconds`: the frame stamp's emit time (the simulator's clock) to
  the frame decoded here (the same machine's clock).
- **Command round trip**: 20 `set_gain` over the data channel, sent → `result`.
- **CPU per frame**: the host process's CPU time over the latency window divided by the frames
  the viewer decoded. On one core of this machine; a Raspberry Pi 4 core (Cortex-A72,
  1.5 GHz) is several times slower per frame: see docs/benchmarks.md.

Run: .venv/bin/python bench/bench_proxy.py [--rounds 3] [--connections 20] [--seconds 15]
     .venv/bin/python bench/bench_proxy.py --role host KIND CONFIG  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.web.signaling_client import next_message

from bench.report import cpu_model, percentile, write_section

HOST_CORE = 0
VIEWER_CORE = 1
COMMANDS = 20


# -- a host (serve or proxy) in its own process ---------------------------------------------------


async def run_host(kind: str, config: dict[str, Any]) -> None:
    from scopelink.settings import ProxySettings, ServeSettings, TelescopeTarget
    from scopelink.web.server import serving

    os.sched_setaffinity(0, {HOST_CORE})
    fields = dict(config["target"])
    if fields.get("key_pem"):
        fields["key_pem"] = fields["key_pem"].encode()
    target = TelescopeTarget(**fields)
    beside = []
    if kind == "proxy":
        from scopelink.proxy.identity import ProxyIdentity
        from scopelink.proxy.run import broker_link

        identity = ProxyIdentity(config["state_dir"])
        pairing = identity.pairing()
        assert pairing is not None, "pair the proxy first"
        beside.append(broker_link(identity, pairing))
        settings: Any = ProxySettings(telescopes=[target], broker_url=pairing.broker_url)
    else:
        settings = ServeSettings(telescopes=[target], simulator=False)
    async with serving(settings, beside=beside) as app:
        if kind == "proxy":
            from scopelink.proxy.link import LinkState

            await app.app.state.broker_link.wait_for(LinkState.ONLINE, 20)
        (telescope,) = list(app.registry)
        print(f"READY {app.base_url} {telescope.id}", flush=True)
        # Until the benchmark closes our stdin, or dies (its end of the pipe closes with it).
        await asyncio.to_thread(sys.stdin.read)


# -- the viewer -----------------------------------------------------------------------------------


class Host:
    """A host process, and how a viewer reaches it."""

    def __init__(self, kind: str, proc: subprocess.Popen[str], base_url: str, telescope: str):
        self.kind = kind
        self.proc = proc
        self.base_url = base_url
        self.telescope = telescope
        self.signaling_url = ""

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def _spawn(kind: str, config: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", "host", kind, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def start_host(kind: str, config: dict[str, Any]) -> Host:
    proc = _spawn(kind, config)
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.startswith("READY"), f"{kind} did not start: {line!r}"
    _, url, telescope = line.split()
    return Host(kind, proc, url, telescope)


class Viewer:
    """An aiortc viewer with the data channels, measuring what it decodes."""

    def __init__(self) -> None:
        from tests.web.dc_client import DcClient

        self.client = DcClient("")
        self.first_frame = asyncio.get_running_loop().create_future()
        self.latencies: list[float] | None = None
        self.frames = 0
        self.client._discard = self._consume  # type: ignore[method-assign]

    async def _consume(self, track: Any) -> None:
        from scopelink import framestamp

        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                now_ms = time.time() * 1000
                if not self.first_frame.done():
                    self.first_frame.set_result(time.perf_counter())
                self.frames += 1
                if self.latencies is not None:
                    stamp = framestamp.read(_top_of_luma(frame))
                    if stamp is not None:
                        self.latencies.append(now_ms - stamp.emit_ms)


def _top_of_luma(frame: Any) -> Any:
    """The strip of the luma plane that holds the stamp: the viewer's own cost stays small
    (no colour conversion of a 1080×1920 picture on the shared core)."""
    import numpy as np

    plane = frame.planes[0]
    rows = min(frame.height, int(frame.width * 5 / 50) + 2)
    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return luma[:rows, : frame.width]


@contextlib.asynccontextmanager
async def viewing(host: Host) -> AsyncIterator[tuple[Viewer, float]]:
    """A viewer connected to `host` through its signaling (the broker's, for the proxy); the
    set-up time in ms, socket opened → first frame decoded."""
    from websockets.asyncio.client import connect

    viewer = Viewer()
    started = time.perf_counter()
    ws = await connect(host.signaling_url, open_timeout=20)
    try:
        hello = await next_message(ws, "hello", 20)
        assert hello

        async def exchange(offer: str) -> str:
            await ws.send(json.dumps({"type": "offer", "sdp": offer}))
            return str((await next_message(ws, "answer", 20))["sdp"])

        await viewer.client.connect(exchange=exchange, hello=False)
        first = await asyncio.wait_for(viewer.first_frame, 20)
        await viewer.client.hello()
        yield viewer, (first - started) * 1000
    finally:
        await viewer.client.close()
        await ws.close()


async def measure_round(host: Host, connections: int, seconds: float) -> dict[str, Any]:
    setups = []
    for _ in range(connections):
        async with viewing(host) as (_, setup_ms):
            setups.append(setup_ms)
        await asyncio.sleep(0.2)
    async with viewing(host) as (viewer, _):
        await asyncio.sleep(2.0)  # past the first key frame and the encoder's start
        viewer.latencies = []
        frames0, cpu0, t0 = viewer.frames, host.cpu_s(), time.perf_counter()
        await asyncio.sleep(seconds)
        frames, cpu = viewer.frames - frames0, host.cpu_s() - cpu0
        wall = time.perf_counter() - t0
        latencies, viewer.latencies = viewer.latencies, None
        rtts = []
        for i in range(COMMANDS):
            t = time.perf_counter()
            ack, result = await viewer.client.run("set_gain", {"gain": 60 + i})
            assert ack["accepted"] and result.get("ok"), (ack, result)
            rtts.append((time.perf_counter() - t) * 1000)
    return {
        "setup_ms": setups,
        "latency_ms": latencies,
        "rtt_ms": rtts,
        "fps": frames / wall,
        "cpu_ms_per_frame": cpu * 1000 / max(frames, 1),
        "cpu_share": cpu / wall,
    }


# -- the run --------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    import httpx

    from scopelink.broker.app import create_broker_app
    from scopelink.embedded import simulator_target
    from scopelink.proxy.identity import ProxyIdentity
    from scopelink.proxy.pairing import pair
    from scopelink.settings import BrokerSettings
    from scopelink.simulator.simulator import Simulator, SimulatorConfig
    from scopelink.web.server import serving_app

    os.sched_setaffinity(0, {VIEWER_CORE})
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    simulator = Simulator(SimulatorConfig.ephemeral(fps=args.fps))
    await simulator.start()
    settings = BrokerSettings(state_dir=str(tmp / "broker"), insecure_http=True, instance="b")
    hosts: list[Host] = []
    try:
        async with serving_app(create_broker_app(settings)) as broker:
            async with httpx.AsyncClient(base_url=broker.base_url, timeout=20) as http:
                r = await http.post(
                    "/api/accounts", json={"name": "bench", "password": "bench-password"}
                )
                r.raise_for_status()
                token = (await http.post("/api/tokens", json={"label": "bench"})).json()["token"]
                identity = ProxyIdentity(tmp / "proxy")
                codes: asyncio.Queue[Any] = asyncio.Queue()
                pairing = asyncio.create_task(pair(broker.base_url, identity, codes.put_nowait))
                code = await codes.get()
                r = await http.post(
                    "/api/pairings/claim", json={"code": code.user_code, "name": "bench"}
                )
                r.raise_for_status()
                telescope_id = (await pairing).telescope_id
            target = simulator_target(simulator)
            config = {
                "target": {
                    "host": target.host,
                    "control_port": target.control_port,
                    "imaging_port": target.imaging_port,
                    "rtsp_port": target.rtsp_port,
                    "name": "bench",
                    "key_pem": target.key_pem.decode() if target.key_pem else None,
                },
                "state_dir": str(tmp / "proxy"),
            }
            serve = await start_host("serve", config)
            serve.signaling_url = (
                serve.base_url.replace("http://", "ws://", 1)
                + f"/api/telescopes/{serve.telescope}/signaling"
            )
            proxy = await start_host("proxy", config)
            proxy.signaling_url = (
                broker.base_url.replace("http://", "ws://", 1)
                + f"/api/telescopes/{telescope_id}/signaling?token={token}"
            )
            hosts = [serve, proxy]
            results: dict[str, list[dict[str, Any]]] = {"serve": [], "proxy": []}
            for round_ in range(args.rounds):
                for host in hosts if round_ % 2 == 0 else hosts[::-1]:
                    print(f"round {round_ + 1}: {host.kind}", flush=True)
                    results[host.kind].append(
                        await measure_round(host, args.connections, args.seconds)
                    )
            report(results, args, broker.app.state.broker.hub.traffic)
    finally:
        for host in hosts:
            if host.proc.stdin is not None:
                host.proc.stdin.close()
            host.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.proc.wait(10)
        await simulator.stop()


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), percentile(values, 90), percentile(values, 95)


def report(
    results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, traffic: Any
) -> None:
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for kind, rounds in results.items():
        setup = [v for r in rounds for v in r["setup_ms"]]
        latency = [v for r in rounds for v in r["latency_ms"]]
        rtt = [v for r in rounds for v in r["rtt_ms"]]
        cpu = [r["cpu_ms_per_frame"] for r in rounds]
        fps = [r["fps"] for r in rounds]
        s50, s90, _ = _stats(setup)
        l50, _, l95 = _stats(latency)
        c50, _, c95 = _stats(rtt)
        summary[kind] = {"setup_p50": s50, "latency_p50": l50, "rtt_p50": c50}
        label = "`serve` (its own signaling)" if kind == "serve" else "proxy (through the broker)"
        rows.append(
            f"| {label} | {s50:.0f} / {s90:.0f} ms (n={len(setup)}) | {l50:.1f} / {l95:.1f} ms "
            f"| {c50:.1f} / {c95:.1f} ms | {statistics.median(fps):.1f} "
            f"| {statistics.median(cpu):.1f} ms ({', '.join(f'{c:.1f}' for c in cpu)}) |"
        )
        print(rows[-1], flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    extra = summary["proxy"]["setup_p50"] - summary["serve"]["setup_p50"]
    relayed_kib = traffic.signaling_bytes / 1024
    lines = [
        "## The proxy against `serve` (`bench:proxy`)",
        "",
        f"`.venv/bin/python bench/bench_proxy.py --rounds {args.rounds} --connections "
        f"{args.connections} --seconds {args.seconds:g} --fps {args.fps:g}`; {when}; "
        f"{cpu_model()}, Python {platform.python_version()}.",
        "",
        "Each host in its own process pinned to one core (core 0), the other idle; the "
        "simulator and an aiortc viewer in a third process on core 1; all on loopback. "
        f"{args.rounds} rounds per host, alternating. Set-up: signaling socket opened → first "
        "frame decoded (p50 / p90). Latency: frame stamp → frame decoded by the viewer "
        "(p50 / p95). Round trip: `set_gain` over the data channel, sent → result (p50 / "
        "p95). CPU: the host process's CPU time per frame the viewer decoded (median of the "
        "rounds, then each round).",
        "",
        "| Host | Set-up p50 / p90 | Latency p50 / p95 | Command round trip p50 / p95 "
        "| Frames/s | Host CPU per frame |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Through the broker the set-up costs {extra:+.0f} ms "
        "at the median (one more hop for each signaling message, and the grant checked); "
        "after it, video and commands go peer to peer on both. The broker relayed "
        f"{traffic.signaling_messages} signaling messages ({relayed_kib:.0f} KiB) "
        "for all the proxy's connections of this run, nothing else.",
        "",
    ]
    write_section("proxy", lines)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--role", nargs=3, metavar=("ROLE", "KIND", "CONFIG"))
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.role:
        asyncio.run(run_host(arguments.role[1], json.loads(arguments.role[2])))
    else:
        asyncio.run(main(arguments))
