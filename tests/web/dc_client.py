"""A data-channel client for tests: a real aiortc peer that speaks docs/protocol.md.

It opens `control` (reliable, ordered) and `telemetry` (unordered, no retransmissions), offers
over WHEP, and gathers what the server sends. `drop_sent` and `drop_received` lose chosen
messages in the channel itself (before they are sent, or as they arrive), as a broken network
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

Message = dict[str, Any]
Drop = Callable[[Message], bool]


class DcClient:
    def __init__(
        self,
        base_url: str,
        *,
        telescope: str = "simulator",
        client_id: str | None = None,
        name: str | None = None,
        headers: dict[str, str] | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        relay_only: bool = False,
    ) -> None:
        self.base_url = base_url
        self.telescope = telescope
        self.client_id = client_id or secrets.token_hex(8)
        self.name = name
        self.headers = headers or {}
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=ice_servers or [], iceTransportPolicy=policy)
        )
        self.control = self.pc.createDataChannel("control")
        self.telemetry = self.pc.createDataChannel("telemetry", ordered=False, maxRetransmits=0)
        self.received: list[Message] = []
        self.telemetry_seen: list[Message] = []
        self.drop_sent: Drop = lambda _: False
        self.drop_received: Drop = lambda _: False
        self._arrived = asyncio.Event()
        self._drain: asyncio.Task[None] | None = None
        self.control.on("message", self._on_control)
        self.telemetry.on("message", self._on_telemetry)

    # -- connecting -------------------------------------------------------------------------------

    async def connect(
        self,
        hello: bool = True,
        *,
        video: bool = True,
        exchange: Callable[[str], Awaitable[str]] | None = None,
        **hello_fields: Any,
    ) -> Message | None:
        """Offer over WHEP, or through `exchange` (offer SDP in, answer SDP out), with video or
        data channels only; wait for the channel, and (by default) say hello: the welcome."""
        if video:
            self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def _track(track: Any) -> None:
            self._drain = asyncio.ensure_future(self._discard(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await (exchange or self._whep)(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await self.opened()
        if not hello:
            return None
        return await self.hello(**hello_fields)

    async def _whep(self, offer: str) -> str:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as http:
            r = await http.post(
                f"/api/telescopes/{self.telescope}/whep",
                content=offer,
                headers={"content-type": "application/sdp", **self.headers},
            )
            r.raise_for_status()
        return r.text

    async def opened(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.control.readyState != "open":
            assert time.monotonic() < deadline, "the control channel never opened"
            await asyncio.sleep(0.02)

    async def hello(self, **fields: Any) -> Message:
        self.send(
            {"v": 1, "type": "hello", "client_id": self.client_id, "name": self.name} | fields
        )
        return await self.next("welcome")

    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        await self.pc.close()

    @staticmethod
    async def _discard(track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()

    # -- messages ---------------------------------------------------------------------------------

    def send(self, message: Message | str) -> None:
        if isinstance(message, dict) and self.drop_sent(message):
            return
        self.control.send(message if isinstance(message, str) else json.dumps(message))

    def _on_control(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        if self.drop_received(message):
            return
        self.received.append(message)
        self._arrived.set()

    def _on_telemetry(self, raw: str | bytes) -> None:
        self.telemetry_seen.append(json.loads(raw))
        self._arrived.set()

    async def next(
        self, kind: str, where: Callable[[Message], bool] = lambda _: True, timeout: float = 10
    ) -> Message:
        """The first message of `kind` (matching `where`) received so far or from now on;
        taken out of `received`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.received):
                if message.get("type") == kind and where(message):
                    return self.received.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [m.get("type") for m in self.received]
                raise AssertionError(f"no {kind} within {timeout} s (received {kinds})")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def command(
        self, name: str, params: Message | None = None, *, id: str | None = None, **extra: Any
    ) -> str:
        """Send a command; its id."""
        command_id = id or secrets.token_hex(8)
        message = {"v": 1, "type": "command", "id": command_id, "name": name}
        self.send(message | {"params": params or {}} | extra)
        return command_id

    async def run(
        self, name: str, params: Message | None = None, timeout: float = 20, **kw: Any
    ) -> tuple[Message, Message]:
        """Send a command and wait for its ack and result."""
        command_id = self.command(name, params, **kw)
        ack = await self.next("ack", lambda m: m["id"] == command_id, timeout)
        if not ack["accepted"]:
            return ack, {}
        result = await self.next("result", lambda m: m["id"] == command_id, timeout)
        return ack, result

    async def error(self, timeout: float = 10) -> Message:
        return (await self.next("error", timeout=timeout))["problem"]
