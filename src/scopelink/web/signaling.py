"""The app's own WebSocket signaling channel: offer/answer, trickle, renegotiation, events.

A thin adapter over the same `PeerManager` as WHEP (`scopelink.web.whep`). One socket
holds at most one peer session, its own: a second offer closes the previous session and answers
with a new one (renegotiation); `bye` closes it; closing the socket closes it, unless the
session was let go first with `detach` (its data channel then carries renegotiation). The
protocol is written down in docs/webrtc-media.md ("WebSocket signaling").

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

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from scopelink.auth import Caller
from scopelink.ratelimit import TokenBucket
from scopelink.schema.signaling import (
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    ClientMessage,
    IceServer,
    SignalingAnswer,
    SignalingBye,
    SignalingCandidate,
    SignalingDetach,
    SignalingDetached,
    SignalingError,
    SignalingHello,
    SignalingOffer,
    SignalingRestart,
    SignalingSession,
    SignalingStats,
)
from scopelink.schema.state import Problem
from scopelink.services.registry import UnknownTelescopeError
from scopelink.services.telescope import Telescope
from scopelink.web.datachannel import TIERS, channel_handler
from scopelink.web.problems import message_detail, negotiation_problem
from scopelink.web.rtc import SERVER_TURN_USER, ice_servers_for, peers
from scopelink.webrtc.encoder import FULL
from scopelink.webrtc.ice import to_aiortc
from scopelink.webrtc.negotiation import (
    NegotiationError,
    add_candidates,
    candidate_fragment,
    start_session,
)
from scopelink.webrtc.peer import Peer, PeerState

log = logging.getLogger(__name__)

router = APIRouter()

#: An offer is a few kB; a message far larger is not one of ours.
MAX_MESSAGE_BYTES = 64 * 1024
#: Sustained messages per second from one socket, and the burst allowed above it (a browser
#: trickles its candidates in a quick burst).
RATE_PER_S = 20.0
BURST = 40
#: Candidates waiting to be added, at most (a browser sends a handful per session).
MAX_QUEUED_CANDIDATES = 32
#: How often `stats` messages are sent while the peer is connected.
STATS_INTERVAL_S = 2.0
#: How often a session's state is looked at for `session` events.
WATCH_INTERVAL_S = 0.05
#: Close codes: normal (after `detach`), policy violation (flood), 4404 for an unknown telescope.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_UNKNOWN_TELESCOPE = 4404


class BadMessage(ValueError):
    """A message the protocol does not allow; becomes an `error` message."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = Problem(title=title, status=status, detail=detail)


def _invalid(kind: str, exc: ValidationError) -> BadMessage:
    """A message of a known type with fields it may not have, named field by field."""
    return BadMessage(400, f"Bad {kind}", message_detail(exc))


class SignalingChannel:
    """One socket: its peer session (at most one), and the events it sends about it."""

    def __init__(self, websocket: WebSocket, telescope: Telescope, caller: Caller) -> None:
        self.websocket = websocket
        self.telescope = telescope
        self.caller = caller
        self.session: Peer | None = None
        self._watcher: asyncio.Task[None] | None = None
        #: Why we closed the current session ourselves, for its last `session` event.
        self._reason: str | None = None
        self._send_lock = asyncio.Lock()
        self._open = True
        self._bucket = TokenBucket(RATE_PER_S, BURST)
        #: Trickled candidates wait here for `_trickle`, in order, each with the session it
        #: was sent for: adding one can take a second (an mDNS name is looked up), and the
        #: socket's other messages must not wait for that.
        self._candidates: asyncio.Queue[tuple[Peer | None, str]] = asyncio.Queue(
            MAX_QUEUED_CANDIDATES
        )
        self._trickler: asyncio.Task[None] | None = None

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, message: BaseModel) -> None:
        """Send one message; a socket that went away is not an error."""
        if not self._open:
            return
        async with self._send_lock:
            try:
                await self.websocket.send_text(message.model_dump_json())
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._open = False

    async def error(self, problem: Problem) -> None:
        await self.send(SignalingError(problem=problem))

    async def hello(self) -> None:
        servers = ice_servers_for(self.websocket, self.caller.client)
        max_peers = peers(self.websocket).max_peers
        await self.send(
            SignalingHello(
                ice_servers=[IceServer.model_validate(s) for s in servers], max_peers=max_peers
            )
        )

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while self._open:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if not self._bucket.take():
                    await self.error(
                        Problem(
                            title="Too many messages",
                            status=429,
                            detail=f"at most {RATE_PER_S:g} messages a second; closing",
                        )
                    )
                    await self._close_socket(CLOSE_POLICY, "too many messages")
                    break
                try:
                    await self.handle(self.parse(message))
                except BadMessage as exc:
                    await self.error(exc.problem)
                except NegotiationError as exc:
                    await self.error(negotiation_problem(exc))
        except WebSocketDisconnect:
            pass
        finally:
            self._open = False
            if self._trickler is not None:
                self._trickler.cancel()
            await self.end_session("socket closed")

    def parse(self, message: dict[str, Any]) -> ClientMessage:
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
        kind = data.get("type")
        if not isinstance(kind, str):
            raise BadMessage(400, "No type", "a message needs a string 'type'")
        if kind not in CLIENT_TYPES:
            raise BadMessage(400, "Unknown message type", f"no message of type {kind[:40]!r}")
        try:
            return CLIENT_MESSAGE.validate_python(data)
        except ValidationError as exc:
            raise _invalid(kind, exc) from None

    async def handle(self, message: ClientMessage) -> None:
        match message:
            case SignalingOffer():
                await self.on_offer(message)
            case SignalingCandidate():
                fragment = candidate_fragment(message.candidate, message.usernameFragment)
                if self.session is None:
                    await add_candidates(None, fragment)  # refused at once: no session
                try:
                    self._candidates.put_nowait((self.session, fragment))
                except asyncio.QueueFull:
                    raise BadMessage(
                        429, "Too many candidates", "candidates are arriving faster than added"
                    ) from None
                if self._trickler is None:
                    self._trickler = asyncio.create_task(self._trickle(), name="signaling-trickle")
            case SignalingRestart():
                raise BadMessage(
                    422,
                    "ICE restart unsupported",
                    "this server cannot restart ICE; send a new offer for a new session",
                )
            case SignalingBye():
                await self.end_session("bye")
            case SignalingDetach():
                await self.detach()

    async def _trickle(self) -> None:
        """Add the queued candidates in order; a refusal is reported only while the session it
        was for is still this socket's (a late error must not look like the new session's)."""
        while True:
            session, fragment = await self._candidates.get()
            try:
                await add_candidates(session, fragment)
            except NegotiationError as exc:
                if session is self.session:
                    await self.error(negotiation_problem(exc))

    # -- messages ---------------------------------------------------------------------------------

    async def on_offer(self, offer: SignalingOffer) -> None:
        # A renegotiation: the previous session ends first (it frees its place in the limit).
        await self.end_session("renegotiated")
        server_ice = to_aiortc(ice_servers_for(self.websocket, SERVER_TURN_USER))
        session, answer = await start_session(
            peers(self.websocket),
            self.telescope.id,
            self.telescope.pipeline,
            offer.sdp,
            client=self.caller.client,
            tier=TIERS[offer.tier or FULL.name],
            ice_servers=server_ice,
            on_datachannel=channel_handler(self.websocket, self.telescope, self.caller),
        )
        if not self._open:
            await session.close()
            return
        self.session = session
        self._reason = None
        await self.send(SignalingAnswer(sdp=answer, session_id=session.id))
        self._watcher = asyncio.create_task(
            self._watch(session), name=f"signaling-{session.log_id}"
        )

    async def detach(self) -> None:
        """Let the socket go and keep its session, whose `control` data channel is open: the
        session then lives as long as its peer connection, and renegotiates over that channel."""
        session = self.session
        control = session.channels.get("control") if session is not None else None
        if session is None or control is None or control.readyState != "open":
            raise BadMessage(
                409,
                "Nothing to detach",
                "detach needs a session whose 'control' data channel is open",
            )
        watcher = self._watcher
        self.session, self._watcher = None, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        log.info("peer %s: detached from its signaling socket", session.log_id)
        await self.send(SignalingDetached(session_id=session.id))
        await self._close_socket(CLOSE_NORMAL, "detached")

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

    async def _watch(self, session: Peer) -> None:
        """`session` events on every state change; `stats` every 2 s while connected."""
        last: PeerState | None = None
        ever_connected = False
        next_stats = 0.0
        while True:
            state = session.state
            if state is not last:
                reason = None
                if state is PeerState.CLOSED:
                    reason = self._closed_reason(last, ever_connected)
                await self.send(
                    SignalingSession(session_id=session.id, state=state.value, reason=reason)
                )
                last = state
            if state is PeerState.CLOSED:
                return
            if state is PeerState.CONNECTED:
                ever_connected = True
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL_S
                    await self.send(SignalingStats(stats=_public(session)))
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


def _public(session: Peer) -> dict[str, Any]:
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
        refusal = Problem(title="Unknown telescope", status=404, detail=str(exc))
        await websocket.send_text(SignalingError(problem=refusal).model_dump_json())
        await websocket.close(CLOSE_UNKNOWN_TELESCOPE, "unknown telescope")
        return
    channel = SignalingChannel(websocket, telescope, caller)
    log.info("signaling for telescope %s opened (%s)", telescope_id, caller.client)
    try:
        await channel.hello()
        await channel.run()
    finally:
        log.info("signaling for telescope %s closed (%s)", telescope_id, caller.client)
