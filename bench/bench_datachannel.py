"""Many data-channel-only clients: server CPU, command round trip, nothing lost or doubled.

The simulator runs in its own process; the app runs in this one. `CLIENTS` aiortc clients, in
`PROCESSES` other processes, each open a data-channel-only peer connection over WHEP, say hello,
send a `ping` every 0.5 s (the keepalive a lease holder sends) and a `stop` command every second
(`stop` is the one command the control lease lets every client send) for `SECONDS`. Meanwhile
this process puts a position change into the telescope's telemetry 10 times a second, so every
client is sent telemetry at 10 Hz.

Measured: the app process's CPU over the window (share of one core); each command's round trip
(sent → its `result` arrived, on the client's clock); every command's ack and result counted
(exactly one each is "nothing lost or doubled"); every telemetry delta counted per client, and
any `seq` seen twice.

Run: .venv/bin/python bench/bench_datachannel.py [--clients 50] [--sessions 3]
     .venv/bin/python bench/bench_datachannel.py --role clients URL COUNT SECONDS  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_live_browser import pct
from bench.bench_passthrough import free_port, process_cpu_s
from bench.report import cpu_model, write_section

TELESCOPE = "bench"
SECONDS = 20.0
WARMUP_S = 3.0
PROCESSES = 5
TELEMETRY_HZ = 10.0


# -- the clients' side ------------------------------------------------------------------------


async def one_client(base_url: str, seconds: float) -> dict[str, Any]:
    import httpx
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    control = pc.createDataChannel("control")
    telemetry = pc.createDataChannel("telemetry", ordered=False, maxRetransmits=0)
    sent: dict[str, float] = {}
    acks: dict[str, int] = {}
    results: dict[str, int] = {}
    rtts: list[float] = []
    seqs: list[int] = []
    welcome = asyncio.Event()

    def on_control(raw: str | bytes) -> None:
        message = json.loads(raw)
        kind = message["type"]
        if kind == "welcome":
            welcome.set()
        elif kind == "ack":
            acks[message["id"]] = acks.get(message["id"], 0) + 1
        elif kind == "result":
            results[message["id"]] = results.get(message["id"], 0) + 1
            if message["id"] in sent:
                rtts.append((time.perf_counter() - sent[message["id"]]) * 1000)

    counting = False

    def on_telemetry(raw: str | bytes) -> None:
        message = json.loads(raw)
        if message["kind"] == "delta" and counting:
            seqs.append(message["seq"])

    control.on("message", on_control)
    telemetry.on("message", on_telemetry)
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(
            f"/api/telescopes/{TELESCOPE}/whep",
            content=pc.localDescription.sdp,
            headers={"content-type": "application/sdp"},
        )
        r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    while control.readyState != "open":
        await asyncio.sleep(0.02)
    client_id = secrets.token_hex(8)
    control.send(json.dumps({"v": 1, "type": "hello", "client_id": client_id}))
    await asyncio.wait_for(welcome.wait(), 20)
    await asyncio.sleep(WARMUP_S)
    counting = True
    end = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < end:
        if tick % 2 == 0:
            command_id = secrets.token_hex(8)
            sent[command_id] = time.perf_counter()
            control.send(json.dumps({"v": 1, "type": "command", "id": command_id, "name": "stop"}))
        control.send(json.dumps({"v": 1, "type": "ping", "t": 0}))
        tick += 1
        await asyncio.sleep(0.5)
    counting = False
    await asyncio.sleep(2.0)  # the last results
    await pc.close()
    return {
        "commands": len(sent),
        "acked_once": sum(1 for i in sent if acks.get(i) == 1),
        "answered_once": sum(1 for i in sent if results.get(i) == 1),
        "doubled": sum(1 for n in [*acks.values(), *results.values()] if n > 1),
        "rtts": rtts,
        "deltas": len(seqs),
        "repeated_seqs": len(seqs) - len(set(seqs)),
    }


async def clients_role(base_url: str, count: int, seconds: float) -> None:
    cpu0, wall0 = process_cpu_s(), time.monotonic()
    runs = await asyncio.gather(*(one_client(base_url, seconds) for _ in range(count)))
    share = (process_cpu_s() - cpu0) / (time.monotonic() - wall0)
    print(json.dumps({"runs": runs, "cpu": share}), flush=True)


# -- the server's side ------------------------------------------------------------------------


async def feed_telemetry(app: Any, stop: asyncio.Event) -> int:
    """Position changes into the hub at TELEMETRY_HZ; how many."""
    channel = app.app.state.telemetry.channel(TELESCOPE)
    n = 0
    while not stop.is_set():
        n += 1
        channel.update({"position": {"az_deg": round(100 + n * 0.01, 3)}})
        await asyncio.sleep(1 / TELEMETRY_HZ)
    return n


async def session(clients: int) -> dict[str, Any]:
    from scopelink.settings import ServeSettings, TelescopeTarget
    from scopelink.web.server import serving

    ports = {"control": free_port(), "imaging": free_port(), "rtsp": free_port()}
    simulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scopelink.cli", "simulate", "--no-discovery",
        "--control-port", str(ports["control"]), "--imaging-port", str(ports["imaging"]),
        "--rtsp-port", str(ports["rtsp"]),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    target = TelescopeTarget(
        host="127.0.0.1",
        control_port=ports["control"],
        imaging_port=ports["imaging"],
        rtsp_port=ports["rtsp"],
        name=TELESCOPE,
    )
    # All clients come from 127.0.0.1, one caller for the per-caller command rate limit.
    settings = ServeSettings(telescopes=[target], simulator=False, command_rate=10_000.0)
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with serving(settings) as app:
            deadline = time.monotonic() + 20
            while not app.registry.get(TELESCOPE).control.connected:
                assert time.monotonic() < deadline, "the app did not connect to the simulator"
                await asyncio.sleep(0.1)
            per = [clients // PROCESSES + (i < clients % PROCESSES) for i in range(PROCESSES)]
            for count in per:
                if count:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, __file__, "--role", "clients", app.base_url,
                        str(count), str(SECONDS), stdout=asyncio.subprocess.PIPE,
                    )  # fmt: skip
                    procs.append(proc)
            stop = asyncio.Event()
            feeder = asyncio.create_task(feed_telemetry(app, stop))
            # Set-up (offers and hellos) and warm-up, then the window the clients measure.
            await asyncio.sleep(8.0)
            cpu0, wall0 = process_cpu_s(), time.monotonic()
            await asyncio.sleep(SECONDS - 4)
            cpu = (process_cpu_s() - cpu0) / (time.monotonic() - wall0)
            peers = len(app.app.state.peers)
            outputs = [json.loads((await p.communicate())[0]) for p in procs]
            stop.set()
            await feeder
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
        simulator.terminate()
        await asyncio.wait_for(simulator.wait(), 10)
    runs = [r for out in outputs for r in out["runs"]]
    return {
        "clients": len(runs),
        "peers": peers,
        "cpu": cpu,
        "clients_cpu": sum(out["cpu"] for out in outputs),
        "commands": sum(r["commands"] for r in runs),
        "acked_once": sum(r["acked_once"] for r in runs),
        "answered_once": sum(r["answered_once"] for r in runs),
        "doubled": sum(r["doubled"] for r in runs),
        "rtts": [x for r in runs for x in r["rtts"]],
        "deltas": [r["deltas"] for r in runs],
        "repeated_seqs": sum(r["repeated_seqs"] for r in runs),
    }


async def main(clients: int, sessions: int) -> None:
    rows = []
    for _ in range(sessions):
        row = await session(clients)
        rtts = row["rtts"]
        row["p50"] = statistics.median(rtts) if rtts else float("nan")
        row["p95"] = pct(rtts, 95) if len(rtts) > 1 else float("nan")
        expected = TELEMETRY_HZ * SECONDS
        row["delta_rate"] = statistics.median(row["deltas"]) / SECONDS
        row["delta_min"] = min(row["deltas"]) / expected
        rows.append(row)
        print(
            f"{row['clients']} clients ({row['peers']} peers on the server): server CPU "
            f"{row['cpu'] * 100:.1f} %, clients' CPU {row['clients_cpu'] * 100:.0f} %, "
            f"{row['commands']} commands, round trip p50 {row['p50']:.1f} ms p95 "
            f"{row['p95']:.1f} ms, acked once {row['acked_once']}, answered once "
            f"{row['answered_once']}, doubled {row['doubled']}, telemetry deltas per client "
            f"per s {row['delta_rate']:.1f} (fewest: {row['delta_min'] * 100:.0f} % of "
            f"{TELEMETRY_HZ:.0f} Hz), repeated seqs {row['repeated_seqs']}",
            flush=True,
        )
    pooled = [x for r in rows for x in r["rtts"]]
    p50, p95 = statistics.median(pooled), pct(pooled, 95)
    complete = all(
        r["acked_once"] == r["answered_once"] == r["commands"] and not r["doubled"] for r in rows
    )
    each_p95 = ", ".join(f"{r['p95']:.0f}" for r in rows)
    each_cpu = ", ".join(f"{r['cpu'] * 100:.1f}" for r in rows)
    verdicts = [
        f"- Command round trip with {clients} clients: p50 {p50:.1f} ms, p95 {p95:.1f} ms "
        f"(sessions' p95: {each_p95} ms).",
        f"- Every command acknowledged once and answered once, none doubled: "
        f"{'yes' if complete else 'no'} "
        f"({sum(r['commands'] for r in rows)} commands); telemetry seqs repeated: "
        f"{sum(r['repeated_seqs'] for r in rows)}.",
        f"- Server CPU: {each_cpu} % of one core.",
    ]
    for line in verdicts:
        print(line)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = [
        f"| {r['clients']} | {r['cpu'] * 100:.1f} % | {r['commands']} | {r['p50']:.1f} ms | "
        f"{r['p95']:.1f} ms | {r['acked_once']} / {r['answered_once']} | {r['doubled']} | "
        f"{r['delta_rate']:.1f} | {r['delta_min'] * 100:.0f} % | {r['repeated_seqs']} | "
        f"{r['clients_cpu'] * 100:.0f} % |"
        for r in rows
    ]
    write_section(
        "datachannel-clients",
        [
            f"## {clients} data-channel-only clients: telemetry at 10 Hz, a command a second each",
            "",
            f"Reproduce: `.venv/bin/python bench/bench_datachannel.py --clients {clients} "
            f"--sessions {sessions}`  ",
            f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, all on one "
            "2-core machine.",
            "",
            "The simulator runs in its own process, the app in the benchmark's. The clients are "
            f"aiortc peers in {PROCESSES} other processes, each with data channels only (no "
            "video): hello, a `ping` every 0.5 s and a `stop` every second (the one command the "
            "control lease lets every client send). The benchmark puts a position change into "
            f"the telemetry hub {TELEMETRY_HZ:.0f} times a second, so each client is sent "
            "telemetry at 10 Hz (on its unordered, unreliable channel). Round trip: a command "
            "sent → its `result` received, on the client's clock; each `stop` is two requests "
            "to the simulator. Server CPU: the app process over "
            f"{SECONDS - 4:.0f} s of the {SECONDS:.0f} s window, in share of one core; the "
            "clients' own CPU (decrypting and parsing in Python) is the last column and shares "
            "the two cores. One row per session.",
            "",
            "| Clients | Server CPU | Commands | Round trip p50 | p95 | Acked once / answered "
            "once | Doubled | Telemetry deltas per client per s (median) | Fewest deltas of "
            "a client (of 10 Hz) | Telemetry seqs seen twice | Clients' CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *table,
            "",
            *verdicts,
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--role", choices=["clients"], help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.role == "clients":
        url, count, seconds = parsed.args
        asyncio.run(clients_role(url, int(count), float(seconds)))
    else:
        started = time.monotonic()
        asyncio.run(main(parsed.clients, parsed.sessions))
        print(f"done in {time.monotonic() - started:.0f} s")
