"""The browser's side of a remote session, run inside `browser_host`: create an account on the
broker, pair the proxy by the code it printed, then connect through the broker's signaling
with an aiortc peer (video and data channels), watch, command, detach, and report as one JSON
line: frames decoded, the command's result, the selected candidate pair, timings.

    python -m tests.nat.viewer --broker https://broker.scopelink.test:8443 --ca CERT --code CODE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
import traceback
from typing import Any

import httpx
from aiortc import RTCIceServer
from websockets.asyncio.client import connect

from tests.nat.peer import selected_pair
from tests.web.dc_client import DcClient
from tests.web.signaling_client import next_message

PASSWORD = "correct horse battery"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    trust = ssl.create_default_context(cafile=args.ca)
    report: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=args.broker, verify=trust, timeout=20) as http:
        r = await http.post("/api/accounts", json={"name": "ada", "password": PASSWORD})
        r.raise_for_status()
        r = await http.post("/api/pairings/claim", json={"code": args.code, "name": "Backyard"})
        r.raise_for_status()
        telescope = r.json()["id"]
        async with asyncio.timeout(20):
            while not (mine := (await http.get("/api/me")).json()["telescopes"][0])["online"]:
                await asyncio.sleep(0.1)
        report["telescope"] = telescope
        report["lan_url"] = mine["lan_url"]
        token = (await http.post("/api/tokens", json={"label": "nat"})).json()["token"]
    url = args.broker.replace("https://", "wss://", 1)
    started = time.perf_counter()
    ws = await connect(f"{url}/api/telescopes/{telescope}/signaling?token={token}", ssl=trust)
    hello = await next_message(ws, "hello", 20)
    servers = [RTCIceServer(**s) for s in hello["ice_servers"]]
    client = DcClient("", ice_servers=servers, relay_only=args.relay_only)
    frames = 0
    first_frame: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def consume(track: Any) -> None:
        nonlocal frames
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                frames += 1
                if not first_frame.done():
                    first_frame.set_result(time.perf_counter())

    client._discard = consume  # type: ignore[method-assign]

    async def exchange(offer: str) -> str:
        await ws.send(json.dumps({"type": "offer", "sdp": offer}))
        return str((await next_message(ws, "answer", 20))["sdp"])

    try:
        await client.connect(exchange=exchange)
        report["first_frame_ms"] = (await asyncio.wait_for(first_frame, 20) - started) * 1000
        await ws.send(json.dumps({"type": "detach"}))
        await next_message(ws, "detached", 20)
        print(json.dumps({"media": "start"}), flush=True)
        counted = frames
        await asyncio.sleep(args.seconds)
        report["frames"] = frames - counted
        ack, result = await client.run("set_gain", {"gain": 90})
        report["command"] = bool(ack["accepted"] and result.get("ok"))
        report["pair"] = selected_pair(client.pc)
        report["ice_servers"] = [s["urls"] for s in hello["ice_servers"]]
    finally:
        await client.close()
        await ws.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--code", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--relay-only", action="store_true")
    args = parser.parse_args()
    try:
        report = asyncio.run(run(args))
    except Exception as exc:  # reported, for the test's assertion message
        where = traceback.format_exc(limit=6)[-1500:]
        report = {"error": f"{type(exc).__name__}: {exc}", "where": where}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
