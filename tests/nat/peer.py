"""One aiortc peer of the NAT tests; run it inside a namespace (`python -m tests.nat.peer`).

The answerer (the proxy's side) listens on a Unix socket (namespaces share the filesystem, so
both peers reach it); the offerer (the browser's side) creates the data channel and the offer,
sends it as one JSON line and reads the answer line back. aiortc gathers every candidate before
its description is complete (no trickle), so one exchange is enough. Once the channel is open
the offerer sends `--pings` pings that the answerer echoes, the answerer greets the offerer
`--greetings` times, and each side prints one JSON line describing what it saw:

    {"role", "gather_s", "connect_s", "rtt_ms": [...], "received": [...], "pair": {...},
     "local_candidates": [...], "remote_candidates": [...]}

`connect_s` is, for the offerer, createOffer → channel open (gathering, ICE, DTLS, SCTP; the
`--signal-delay-ms` the answer is held is left out); for the answerer, offer received → channel
open. The answer is held by default for 50 ms, a broker's one-way delay: with none, the two
peers start their checks within a millisecond of each other and aiortc nominated a path through
the relay in about 1 run in 4 although a direct one worked (see docs/network.md).

The answerer corrects aioice as `scopelink proxy` does (`webrtc/aioice_patches.py`) unless
given `--stock-aioice`; the offerer is aiortc as it is.

`pair` is the candidate pair the ICE connection sends on: aioice's `Connection._nominated[1]`,
which `Connection.sendto` uses for every datagram, so it is the path data really takes (aiortc
has no public selected-pair API; `RTCIceTransport._connection` is the aioice connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)


def candidate(c: Any) -> dict[str, Any]:
    return {"type": c.type, "address": c.host, "port": c.port, "protocol": c.transport}


def selected_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The pair ICE sends on (see the module doc), and the candidates on both sides."""
    ice = pc.sctp.transport.transport if pc.sctp else None  # RTCIceTransport (bundled)
    connection = getattr(ice, "_connection", None)  # aioice.Connection
    pair = getattr(connection, "_nominated", {}).get(1)
    if pair is None:
        return None
    return {"local": candidate(pair.local_candidate), "remote": candidate(pair.remote_candidate)}


def candidates(pc: RTCPeerConnection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ice = pc.sctp.transport.transport if pc.sctp else None
    connection = getattr(ice, "_connection", None)
    if connection is None:
        return [], []
    return (
        [candidate(c) for c in connection.local_candidates],
        [candidate(c) for c in connection.remote_candidates],
    )


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        servers = [RTCIceServer(**server) for server in json.loads(args.ice)]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.opened = asyncio.get_running_loop().create_future()
        self.received: list[str] = []
        self.pongs: asyncio.Queue[str] = asyncio.Queue()
        self.greeted = asyncio.Event()
        self.bye = asyncio.Event()
        self.report: dict[str, Any] = {"role": args.role}

    def watch(self, channel: RTCDataChannel) -> None:
        @channel.on("open")
        def _open() -> None:
            if not self.opened.done():
                self.opened.set_result(channel)

        @channel.on("message")
        def _message(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode()
            if text.startswith("ping "):
                channel.send("pong " + text[5:])
            elif text.startswith("pong "):
                self.pongs.put_nowait(text)
            elif text == "bye":
                self.bye.set()
            else:
                self.received.append(text)
                if len(self.received) >= self.args.greetings:
                    self.greeted.set()

        if channel.readyState == "open" and not self.opened.done():
            self.opened.set_result(channel)

    def finish(self, rtts: list[float]) -> None:
        local, remote = candidates(self.pc)
        self.report.update(
            rtt_ms=rtts,
            rtt_median_ms=statistics.median(rtts) if rtts else None,
            received=self.received,
            pair=selected_pair(self.pc),
            local_candidates=local,
            remote_candidates=remote,
            ice_state=self.pc.iceConnectionState,
        )
        print(json.dumps(self.report), flush=True)

    async def offer(self) -> None:
        start = time.perf_counter()
        self.watch(self.pc.createDataChannel("nat"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.report["gather_s"] = time.perf_counter() - start
        reader, writer = await connect_unix(self.args.signal, self.args.timeout)
        writer.write(json.dumps(describe(self.pc)).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
        await asyncio.sleep(self.args.signal_delay_ms / 1000)
        await self.pc.setRemoteDescription(RTCSessionDescription(**answer))
        channel: RTCDataChannel = await self.opened
        # The held answer is the broker's share, not the connection's.
        self.report["connect_s"] = time.perf_counter() - start - self.args.signal_delay_ms / 1000
        rtts = []
        for i in range(self.args.pings):
            sent = time.perf_counter()
            channel.send(f"ping {i} ".ljust(self.args.payload_bytes, "."))
            await self.pongs.get()
            rtts.append((time.perf_counter() - sent) * 1000)
        await self.greeted.wait()
        self.finish(rtts)
        channel.send("bye")
        await asyncio.sleep(0.2)  # let the bye leave before the transport closes
        writer.close()

    async def answer(self) -> None:
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        connected = asyncio.get_running_loop().create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not connected.done():
                connected.set_result((reader, writer))

        server = await asyncio.start_unix_server(accept, self.args.signal)
        print(json.dumps({"role": "answer", "listening": self.args.signal}), flush=True)
        reader, writer = await connected
        server.close()
        offer = json.loads(await reader.readline())
        start = time.perf_counter()
        self.pc.on("datachannel", self.watch)
        await self.pc.setRemoteDescription(RTCSessionDescription(**offer))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.report["gather_s"] = time.perf_counter() - start
        writer.write(json.dumps(describe(self.pc)).encode() + b"\n")
        await writer.drain()
        channel: RTCDataChannel = await self.opened
        self.report["connect_s"] = time.perf_counter() - start
        for i in range(self.args.greetings):
            channel.send(f"hello {i} from {self.args.role}")
        await self.bye.wait()
        self.finish([])
        writer.close()

    async def gather(self) -> None:
        """Only gather: print the local candidates an offer would carry."""
        start = time.perf_counter()
        self.pc.createDataChannel("nat")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        local, _ = candidates(self.pc)
        self.report.update(gather_s=time.perf_counter() - start, local_candidates=local)
        print(json.dumps(self.report), flush=True)

    async def run(self) -> None:
        roles = {"offer": self.offer, "answer": self.answer, "gather": self.gather}
        try:
            async with asyncio.timeout(self.args.timeout):
                await roles[self.args.role]()
        except TimeoutError:
            self.report["error"] = "timeout"
            self.report["ice_state"] = self.pc.iceConnectionState
            local, remote = candidates(self.pc)
            self.report.update(local_candidates=local, remote_candidates=remote)
            print(json.dumps(self.report), flush=True)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)


def describe(pc: RTCPeerConnection) -> dict[str, str]:
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


async def connect_unix(
    path: str, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.open_unix_connection(path)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["offer", "answer", "gather"], required=True)
    parser.add_argument("--signal", default="", help="Unix socket path for the SDP exchange")
    parser.add_argument("--ice", default="[]", help="JSON list of RTCIceServer dicts")
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--payload-bytes", type=int, default=1000, help="size of each ping")
    parser.add_argument("--greetings", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=40.0)
    parser.add_argument(
        "--signal-delay-ms",
        type=float,
        default=50.0,
        help="hold the answer this long before applying it (the broker's one-way delay)",
    )
    parser.add_argument("--log", action="store_true", help="aioice's log on stderr")
    parser.add_argument(
        "--stock-aioice",
        action="store_true",
        help="answerer: without scopelink's corrections to aioice (the proxy has them)",
    )
    args = parser.parse_args()
    if args.role == "answer" and not args.stock_aioice:
        from scopelink.webrtc import aioice_patches

        aioice_patches.apply()
    if args.log:
        logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(message)s")
    await Peer(args).run()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
