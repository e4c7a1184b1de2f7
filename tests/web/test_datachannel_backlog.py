"""Telemetry under a real backlog: the client's network stops taking packets while telemetry
keeps coming. The server must not queue it all up (latest wins): it drops deltas while the
channel holds more than `BUFFERED_HIGH` bytes and sends one snapshot once it drains.

The client is a real aiortc peer in another process inside a network namespace
(tests/e2e/netns.py), so its UDP can be blocked while the app, in this process, goes on.
Needs root, iproute2 and nftables (as the network tests do); skipped without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from scopelink.settings import ServeSettings
from scopelink.web.datachannel import BUFFERED_HIGH
from tests.e2e import netns as netns_harness
from tests.e2e.netns import BrowserNetns
from tests.web.conftest import serve, wait_connected

ROOT = Path(__file__).resolve().parents[2]
#: Deltas put into the hub while the client's network is blocked, and their size.
FED = 2_000


class Probe:
    """The client process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def until(self, condition: Any, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if condition(line):
                    return line
            left = deadline - time.monotonic()
            assert left > 0, f"the probe never saw it ({len(self.lines)} lines)"
            raw = await asyncio.wait_for(self.process.stdout.readline(), left)
            assert raw, "the probe ended"
            self.lines.append(json.loads(raw))


def applied(lines: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, int | None]:
    """The state a client following the protocol holds after `lines`, and its `seq`."""
    state: dict[str, Any] | None = None
    seq: int | None = None
    for line in lines:
        if line.get("kind") == "snapshot":
            if seq is None or line["seq"] >= seq:
                state, seq = line["data"], line["seq"]
        elif line.get("kind") == "delta" and state is not None and line["prev"] == seq:
            for section, fields in line["data"].items():
                state[section] = {**state.get(section, {}), **fields}
            seq = line["seq"]
    return state, seq


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
async def test_a_backed_up_telemetry_channel_drops_deltas_and_heals_with_a_snapshot() -> None:
    why = netns_harness.available()
    if why:
        pytest.skip(why)
    with BrowserNetns.create() as netns:
        settings = dataclasses.replace(ServeSettings(simulator_fps=2.0), host=netns.root_v4)
        async with serve(settings, host=netns.root_v4) as app:
            async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as http:
                await wait_connected(http)
            hub = app.app.state.telemetry.channel("simulator")
            process = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", netns.name, sys.executable, "-m", "tests.web.dc_probe",
                app.base_url, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            probe = Probe(process)
            try:
                await probe.until(lambda line: line.get("kind") == "snapshot", timeout=30)
                endpoint_channels = _telemetry_channels(app)
                assert endpoint_channels, "the server has the probe's telemetry channel"

                netns.block_udp()
                blocked_at = len(probe.lines)
                # Telemetry keeps coming, far more than the channel may hold.
                peak = 0
                for n in range(FED):
                    hub.update({"position": {"az_deg": round(10 + n * 0.001, 3)}})
                    if n % 50 == 49:
                        await asyncio.sleep(0.005)
                        peak = max(peak, *(c.bufferedAmount for c in _telemetry_channels(app)))
                last_seq = hub.seq
                await asyncio.sleep(0.5)
                # The server stopped adding to the backlog at its threshold: it never holds
                # all that was fed (about 60 bytes a message, so FED would be ~120 kB).
                assert BUFFERED_HIGH < peak < BUFFERED_HIGH + 4_096, peak

                unblocked = time.time()
                netns.unblock_udp()
                latest = hub.state.position.az_deg
                # Healed: the client holds the latest state, by a snapshot at or after the
                # last message fed.
                snapshot = await probe.until(
                    lambda line: line.get("kind") == "snapshot" and line["seq"] >= last_seq,
                    timeout=20,
                )
                healed_s = snapshot["at"] - unblocked
                await asyncio.sleep(0.5)
                state, _ = applied(probe.lines)
                assert state is not None and state["position"]["az_deg"] == latest
                after = probe.lines[blocked_at:]
                deltas = [line for line in after if line.get("kind") == "delta"]
                # Latest wins: most deltas were never sent, so none of them arrives late.
                assert len(deltas) < FED // 2, len(deltas)
                assert healed_s < 10, f"healed {healed_s:.1f} s after the network came back"
                print(
                    f"peak buffered {peak} B, {len(deltas)} of {FED} deltas delivered, "
                    f"healed {healed_s:.2f} s after the network came back"
                )
            finally:
                if process.stdin is not None:
                    process.stdin.close()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


def _telemetry_channels(app: Any) -> list[Any]:
    return [
        s.channels["telemetry"] for s in app.app.state.peers.sessions() if "telemetry" in s.channels
    ]
