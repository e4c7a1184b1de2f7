"""The signaling protocol's session, with no transport: offer/answer, trickle, renegotiation,
detach, and the `session`/`stats` events (docs/webrtc-media.md, "WebSocket signaling").

A `SignalingConversation` is one signaling conversation with one client. It holds at most one peer:
a second offer closes the previous peer and answers with a new one; `bye` closes it; the
conversation's end closes it, unless the peer was let go first with `detach` (its data
channel then carries renegotiation). An adapter feeds it the client's text messages
(`receive`) and carries what it sends through a `SignalingOutlet`: the app's WebSocket
(`web/signaling.py`), or the telescope-side proxy's link to the broker, where many clients'
conversations share one socket.

Hostile input never ends the conversation except a flood (more than `RATE_PER_S` messages a
second, with a burst of `BURST`), answered with an error and closed with `CLOSE_POLICY`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Protocol

from aioice.mdns import is_mdns_hostname
from pydantic import BaseModel, ValidationError

from scopelink.ratelimit import TokenBucket
from scopelink.schema.problems import message_detail
from scopelink.schema.signaling import (
    BURST,
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    MAX_MESSAGE_BYTES,
    RATE_PER_S,
    ClientMessage,
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
from scopelink.webrtc.negotiation import (
    NegotiationError,
    add_candidates,
    candidate_fragment,
    negotiation_problem,
)
from scopelink.webrtc.peer import Peer, PeerState
from scopelink.webrtc.sdp import parse_sdpfrag

log = logging.getLogger(__name__)

#: Candidates waiting to be added, at most (a browser sends a handful per peer).
MAX_QUEUED_CANDIDATES = 32
#: How often `stats` messages are sent while the peer is connected.
STATS_INTERVAL_S = 2.0
#: How often the peer's state is looked at for `session` events.
WATCH_INTERVAL_S = 0.05
#: Close codes (WebSocket's, whatever carries them): normal (after `detach`), policy violation
#: (a flood), and 4404 for an unknown telescope.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_UNKNOWN_TELESCOPE = 4404

#: Starts a peer for an offer (its SDP and the tier asked for): the peer and its answer.
PeerStarter = Callable[[str, str | None], Awaitable[tuple[Peer, str]]]


class SignalingOutlet(Protocol):
    """Where a session's messages go: one client's end of a socket or a relayed link."""

    async def send(self, text: str) -> bool:
        """Send one message; False when the client is gone (not an error)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """End the conversation from this side."""
        ...


class BadMessage(ValueError):
    """A message the protocol does not allow; becomes an `error` message."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = Problem(title=title, status=status, detail=detail)


def parse_message(text: str | None) -> ClientMessage:
    """One client message, or `BadMessage` saying why it is not one (`None`: a binary one)."""
    if text is None:
        raise BadMessage(400, "Unsupported message", "messages are JSON text, not binary")
    if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
        limit = f"a message is at most {MAX_MESSAGE_BYTES} bytes"
        raise BadMessage(413, "Message too large", limit)
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
        raise BadMessage(400, f"Bad {kind}", message_detail(exc)) from None


class SignalingConversation:
    """One client's signaling conversation: its peer (at most one), and the events about it."""

    def __init__(self, outlet: SignalingOutlet, start: PeerStarter, *, name: str = "") -> None:
        self.outlet = outlet
        self._start = start
        self._name = name
        self.peer: Peer | None = None
        self._watcher: asyncio.Task[None] | None = None
        #: Why we closed the current peer ourselves, for its last `session` event.
        self._reason: str | None = None
        self._send_lock = asyncio.Lock()
        self.open = True
        self._bucket = TokenBucket(RATE_PER_S, BURST)
        #: Trickled candidates wait here for `_trickle`, in order, each with the peer it was
        #: sent for: adding one can take a second (an mDNS name is looked up), and the
        #: conversation's other messages must not wait for that.
        self._candidates: asyncio.Queue[tuple[Peer | None, str]] = asyncio.Queue(
            MAX_QUEUED_CANDIDATES
        )
        self._trickler: asyncio.Task[None] | None = None

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, message: BaseModel) -> None:
        """Send one message; a client that went away is not an error."""
        if not self.open:
            return
        async with self._send_lock:
            if not await self.outlet.send(message.model_dump_json()):
                self.open = False

    async def error(self, problem: Problem) -> None:
        await self.send(SignalingError(problem=problem))

    async def hello(self, hello: SignalingHello) -> None:
        await self.send(hello)

    # -- receiving --------------------------------------------------------------------------------

    async def receive(self, text: str | None) -> None:
        """Take one message from the client (`None`: a binary one); a refusal is answered with
        an `error`, a flood ends the conversation."""
        if not self.open:
            return
        if not self._bucket.take():
            await self.error(
                Problem(
                    title="Too many messages",
                    status=429,
                    detail=f"at most {RATE_PER_S:g} messages a second; closing",
                )
            )
            await self.close(CLOSE_POLICY, "too many messages")
            return
        try:
            await self.handle(parse_message(text))
        except BadMessage as exc:
            await self.error(exc.problem)
        except NegotiationError as exc:
            await self.error(negotiation_problem(exc))

    async def handle(self, message: ClientMessage) -> None:
        match message:
            case SignalingOffer():
                await self.on_offer(message)
            case SignalingCandidate():
                fragment = candidate_fragment(message.candidate, message.usernameFragment)
                if self.peer is None:
                    await add_candidates(None, fragment)  # refused at once: no peer
                try:
                    self._candidates.put_nowait((self.peer, fragment))
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
                await self.end_peer("bye")
            case SignalingDetach():
                await self.detach()

    async def _trickle(self) -> None:
        """Add the queued candidates in order, but an mDNS one (`<uuid>.local`, what Chromium
        sends for its host address) beside the rest: looking it up can take a second, and
        usually fails from another network; the server-reflexive and relay candidates behind
        it must not wait for that (bench:remote measured a second of every connection's
        set-up there). aioice keeps the end of candidates pending until its lookups end."""
        lookups: set[asyncio.Task[None]] = set()
        try:
            while True:
                peer, fragment = await self._candidates.get()
                if _mdns_candidate(fragment):
                    lookup = asyncio.create_task(self._add(peer, fragment), name="mdns-candidate")
                    lookups.add(lookup)
                    lookup.add_done_callback(lookups.discard)
                    continue
                await self._add(peer, fragment)
        finally:
            for lookup in lookups:
                lookup.cancel()

    async def _add(self, peer: Peer | None, fragment: str) -> None:
        """Add one fragment; a refusal is reported only while the peer it was for is still
        this conversation's (a late error must not look like the new peer's)."""
        try:
            await add_candidates(peer, fragment)
        except NegotiationError as exc:
            if peer is self.peer:
                await self.error(negotiation_problem(exc))

    async def on_offer(self, offer: SignalingOffer) -> None:
        # A renegotiation: the previous peer ends first (it frees its place in the limit).
        await self.end_peer("renegotiated")
        peer, answer = await self._start(offer.sdp, offer.tier)
        if not self.open:
            await peer.close()
            return
        self.peer = peer
        self._reason = None
        await self.send(SignalingAnswer(sdp=answer, session_id=peer.id))
        self._watcher = asyncio.create_task(self._watch(peer), name=f"signaling-{peer.log_id}")

    async def detach(self) -> None:
        """Let the conversation go and keep its peer, whose `control` data channel is open: the
        peer then lives as long as its connection, and renegotiates over that channel."""
        peer = self.peer
        control = peer.channels.get("control") if peer is not None else None
        if peer is None or control is None or control.readyState != "open":
            raise BadMessage(
                409,
                "Nothing to detach",
                "detach needs a session whose 'control' data channel is open",
            )
        watcher = self._watcher
        self.peer, self._watcher = None, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        log.info("peer %s: detached from its signaling%s", peer.log_id, self._name)
        await self.send(SignalingDetached(session_id=peer.id))
        await self.close(CLOSE_NORMAL, "detached")

    # -- the peer ---------------------------------------------------------------------------------

    async def end_peer(self, reason: str) -> None:
        """Close the conversation's peer, if any, and let its last `session` event go out."""
        peer, watcher = self.peer, self._watcher
        self.peer, self._watcher = None, None
        if peer is None:
            return
        if not peer.closed.is_set():
            self._reason = reason
        await peer.close()
        if watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, peer: Peer) -> None:
        """`session` events on every state change; `stats` every 2 s while connected."""
        last: PeerState | None = None
        ever_connected = False
        next_stats = 0.0
        while True:
            state = peer.state
            if state is not last:
                reason = None
                if state is PeerState.CLOSED:
                    reason = self._closed_reason(last, ever_connected)
                await self.send(
                    SignalingSession(session_id=peer.id, state=state.value, reason=reason)
                )
                last = state
            if state is PeerState.CLOSED:
                return
            if state is PeerState.CONNECTED:
                ever_connected = True
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL_S
                    await self.send(SignalingStats(stats=public_stats(peer)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peer.closed.wait(), WATCH_INTERVAL_S)

    def _closed_reason(self, last: PeerState | None, ever_connected: bool) -> str:
        if self._reason is not None:
            return self._reason
        if last is PeerState.FAILED:
            return "connection failed"
        if not ever_connected:
            return "not connected in time"
        return "closed by the server"

    # -- the end ----------------------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """End the conversation from this side (its peer is kept only if detached)."""
        self.open = False
        async with self._send_lock:
            await self.outlet.close(code, reason)

    async def ended(self) -> None:
        """The conversation is over (either side ended it): stop, and close the peer unless it
        was detached."""
        self.open = False
        if self._trickler is not None:
            self._trickler.cancel()
        await self.end_peer("socket closed")


def _mdns_candidate(fragment: str) -> bool:
    """Whether a trickled fragment has a candidate whose address aioice looks up by mDNS."""
    return any(
        len(fields) > 4 and is_mdns_hostname(fields[4])
        for fields in (candidate.split() for candidate in parse_sdpfrag(fragment).candidates)
    )


def public_stats(peer: Peer) -> dict[str, Any]:
    """A peer's stats as its client may see them (not who the other clients are)."""
    stats = asdict(peer.stats())
    stats.pop("client", None)
    return stats
