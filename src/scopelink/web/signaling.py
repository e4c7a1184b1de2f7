"""The app's own WebSocket signaling channel: offer/answer, trickle, renegotiation, events.

A thin adapter over the same `PeerSessionManager` as WHEP (`scopelink.web.whep`). One socket
holds at most one peer session, its own: a second offer closes the previous session and answers
with a new one (renegotiation); `bye` closes it; closing the socket closes it. The protocol is
written down in docs/webrtc-media.md ("WebSocket signaling").

Tokens and origins are checked by `SecurityMiddleware` before the upgrade; viewers may watch.
Hostile input never ends the socket except a flood (more than `RATE_PER_S` messages a second,
with a burst of `BURST`), which is answered with an error and closed with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from aiortc.exceptions import InvalidStateError
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from scopelink.ratelimit import TokenBucket
from scopelink.services.registry import UnknownTelescopeError
from scopelink.services.telescope import TelescopeSession
from scopelink.web.security import Caller
from scopelink.web.whep import SERVER_TURN_USER, ice_servers_for, peers
from scopelink.webrtc.encoder import FULL, REDUCED, Tier
from scopelink.webrtc.ice import to_aiortc
from scopelink.webrtc.peer import IceRestartUnsupported, PeerSession, PeerState
from scopelink.webrtc.sdp import OfferRejected
from scopelink.webrtc.sessions import TooManyPeers

log = logging.getLogger(__name__)

router = APIRouter()

#: An offer is a few kB; a message far larger is not one of ours.
MAX_MESSAGE_BYTES = 64 * 1024
#: Sustained messages per second from one socket, and the burst allowed above it (a browser
#: trickles its candidates in a quick burst).
RATE_PER_S = 20.0
BURST = 40
#: How often `stats` messages are sent while the peer is connected.
STATS_INTERVAL_S = 2.0
#: How often a session's state is looked at for `session` events.
WATCH_INTERVAL_S = 0.05
#: Close codes: policy violation (flood), and 4404 for an unknown telescope.
CLOSE_POLICY = 1008
CLOSE_UNKNOWN_TELESCOPE = 4404
TIERS: dict[str, Tier] = {FULL.name: FULL, REDUCED.name: REDUCED}


class BadMessage(ValueError):
    """A message the protocol does not allow; becomes an `error` message."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "problem": {"title": title, "status": status, "detail": detail}}


class SignalingChannel:
    """One socket: its peer session (at most one), and the events it sends about it."""

    def __init__(self, websocket: WebSocket, telescope: TelescopeSession, caller: Caller) -> None:
        self.websocket = websocket
        self.telescope = telescope
        self.caller = caller
        self.session: PeerSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        #: Why we closed the current session ourselves, for its last `session` event.
        self._reason: str | None = None
        self._send_lock = asyncio.Lock()
        self._open = True
        self._bucket = TokenBucket(RATE_PER_S, BURST)

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; a socket that went away is not an error."""
        if not self._open:
            return
        async with self._send_lock:
            try:
                await self.websocket.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._open = False

    async def hello(self) -> None:
        servers = ice_servers_for(self.websocket, self.caller.client)
        max_peers = peers(self.websocket).max_peers
        await self.send({"type": "hello", "ice_servers": servers, "max_peers": max_peers})

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while self._open:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if not self._bucket.take():
                    await self.send(
                        problem(
                            429,
                            "Too many messages",
                            f"at most {RATE_PER_S:g} messages a second; closing",
                        )
                    )
                    await self._close_socket(CLOSE_POLICY, "too many messages")
                    break
                try:
                    await self.handle(self.parse(message))
                except BadMessage as exc:
                    await self.send(problem(exc.status, exc.title, exc.detail))
        except WebSocketDisconnect:
            pass
        finally:
            self._open = False
            await self.end_session("socket closed")

    def parse(self, message: dict[str, Any]) -> dict[str, Any]:
        text = message.get("text")
        if text is None:
            raise BadMessage(400, "Unsupported message", "messages are JSON text, not binary")
        if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
            raise BadMessage(
                413, "Message too large", f"a message is at most {MAX_MESSAGE_BYTES} bytes"
            )
        try:
            data = json.loads(text)
        except ValueError:
            raise BadMessage(400, "Not JSON", "a message is a JSON object") from None
        if not isinstance(data, dict):
            raise BadMessage(400, "Not an object", "a message is a JSON object with a type")
        if not isinstance(data.get("type"), str):
            raise BadMessage(400, "No type", "a message needs a string 'type'")
        return data

    async def handle(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "offer":
            await self.on_offer(data)
        elif kind == "candidate":
            await self.on_candidate(data)
        elif kind == "restart":
            raise BadMessage(
                422,
                "ICE restart unsupported",
                "this server cannot restart ICE; send a new offer for a new session",
            )
        elif kind == "bye":
            await self.end_session("bye")
        else:
            raise BadMessage(400, "Unknown message type", f"no message of type {kind[:40]!r}")

    # -- messages ---------------------------------------------------------------------------------

    async def on_offer(self, data: dict[str, Any]) -> None:
        sdp = data.get("sdp")
        if not isinstance(sdp, str):
            raise BadMessage(400, "Bad offer", "an offer needs 'sdp', a string")
        tier_name = data.get("tier", FULL.name)
        if tier_name is None:
            tier_name = FULL.name
        if not isinstance(tier_name, str) or tier_name not in TIERS:
            raise BadMessage(400, "Bad offer", f"'tier' is one of {sorted(TIERS)}")
        # A renegotiation: the previous session ends first (it frees its place in the limit).
        await self.end_session("renegotiated")
        server_ice = to_aiortc(ice_servers_for(self.websocket, SERVER_TURN_USER))
        try:
            session, answer = await peers(self.websocket).create(
                self.telescope.id,
                self.telescope.pipeline,
                sdp,
                client=self.caller.client,
                tier=TIERS[tier_name],
                ice_servers=server_ice,
            )
        except TooManyPeers as exc:
            raise BadMessage(503, "Too many viewers", str(exc)) from None
        except OfferRejected as exc:
            raise BadMessage(400, "Offer not accepted", str(exc)) from None
        if not self._open:
            await session.close()
            return
        self.session = session
        self._reason = None
        await self.send({"type": "answer", "sdp": answer, "session_id": session.id})
        self._watcher = asyncio.create_task(
            self._watch(session), name=f"signaling-{session.log_id}"
        )

    async def on_candidate(self, data: dict[str, Any]) -> None:
        candidate = data.get("candidate")
        mid, index = data.get("sdpMid"), data.get("sdpMLineIndex")
        ufrag = data.get("usernameFragment")
        if candidate is not None and not isinstance(candidate, str):
            raise BadMessage(400, "Bad candidate", "'candidate' is a string or null")
        if mid is not None and not isinstance(mid, str):
            raise BadMessage(400, "Bad candidate", "'sdpMid' is a string or null")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise BadMessage(400, "Bad candidate", "'sdpMLineIndex' is an integer or null")
        if ufrag is not None and not isinstance(ufrag, str):
            raise BadMessage(400, "Bad candidate", "'usernameFragment' is a string or null")
        session = self.session
        if session is None:
            raise BadMessage(409, "No session", "send an offer before candidates")
        lines = [] if ufrag is None else [f"a=ice-ufrag:{ufrag}"]
        if candidate:
            value = candidate.removeprefix("a=").strip()
            if not value.startswith("candidate:") or "\n" in value or "\r" in value:
                raise BadMessage(400, "Bad candidate", "a candidate is 'candidate:…' on one line")
            lines.append(f"a={value}")
        else:
            lines.append("a=end-of-candidates")
        try:
            await session.add_remote_candidates("\r\n".join(lines) + "\r\n")
        except IceRestartUnsupported as exc:
            raise BadMessage(422, "ICE restart unsupported", str(exc)) from None
        except OfferRejected as exc:
            raise BadMessage(400, "Bad candidate", str(exc)) from None
        except InvalidStateError:
            detail = "the session is closed; send a new offer"
            raise BadMessage(409, "Session closed", detail) from None

    # -- the session ------------------------------------------------------------------------------

    async def end_session(self, reason: str) -> None:
        """Close the socket's session, if any, and let its last `session` event go out."""
        session, watcher = self.session, self._watcher
        self.session, self._watcher = None, None
        if session is None:
            return
        if not session.closed.is_set():
            self._reason = reason
        await session.close()
        if watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, session: PeerSession) -> None:
        """`session` events on every state change; `stats` every 2 s while connected."""
        last: PeerState | None = None
        ever_connected = False
        next_stats = 0.0
        while True:
            state = session.state
            if state is not last:
                event: dict[str, Any] = {
                    "type": "session",
                    "session_id": session.id,
                    "state": state.value,
                }
                if state is PeerState.CLOSED:
                    event["reason"] = self._closed_reason(last, ever_connected)
                await self.send(event)
                last = state
            if state is PeerState.CLOSED:
                return
            if state is PeerState.CONNECTED:
                ever_connected = True
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL_S
                    await self.send({"type": "stats", "stats": _public(session)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.closed.wait(), WATCH_INTERVAL_S)

    def _closed_reason(self, last: PeerState | None, ever_connected: bool) -> str:
        if self._reason is not None:
            return self._reason
        if last is PeerState.FAILED:
            return "connection failed"
        if not ever_connected:
            return "not connected in time"
        return "closed by the server"

    async def _close_socket(self, code: int, reason: str) -> None:
        self._open = False
        async with self._send_lock:
            if self.websocket.application_state is not WebSocketState.DISCONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await self.websocket.close(code, reason)


def _public(session: PeerSession) -> dict[str, Any]:
    stats = asdict(session.stats())
    stats.pop("client", None)
    return stats


@router.websocket("/api/telescopes/{telescope_id}/signaling")
async def signaling(websocket: WebSocket, telescope_id: str) -> None:
    """WebRTC signaling for the app's UI (see docs/webrtc-media.md, "WebSocket signaling")."""
    caller: Caller = websocket.state.caller
    await websocket.accept()
    try:
        telescope = websocket.app.state.registry.get(telescope_id)
    except UnknownTelescopeError as exc:
        await websocket.send_text(json.dumps(problem(404, "Unknown telescope", str(exc))))
        await websocket.close(CLOSE_UNKNOWN_TELESCOPE, "unknown telescope")
        return
    channel = SignalingChannel(websocket, telescope, caller)
    log.info("signaling for telescope %s opened (%s)", telescope_id, caller.client)
    try:
        await channel.hello()
        await channel.run()
    finally:
        log.info("signaling for telescope %s closed (%s)", telescope_id, caller.client)
