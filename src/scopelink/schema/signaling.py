"""The WebSocket signaling messages (docs/webrtc-media.md, "WebSocket signaling"), defined once.

The server validates what a client sends with `CLIENT_MESSAGE` (strictly: a number is not a
string, `true` is not an index) and sends the server messages as `model_dump(mode="json")`;
`ui/types/protocol.d.ts` is generated from these models for the browser.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from scopelink.schema.state import Problem

#: An offer is a few kB; a message far larger is not one of ours.
MAX_MESSAGE_BYTES = 64 * 1024
#: Sustained messages per second from one client, and the burst allowed above it (a browser
#: trickles its candidates in a quick burst).
RATE_PER_S = 20.0
BURST = 40

#: The tiers a viewer may ask for (`webrtc.encoder`): the full picture or a reduced one.
TierName = Literal["full", "reduced"]
#: A peer's life (`webrtc.peer.PeerState`).
PeerStateName = Literal["new", "connecting", "connected", "failed", "closed"]


def _absent(value: object) -> bool:
    return value is None


class IceServer(BaseModel):
    """One entry of `RTCConfiguration.iceServers`; TURN entries carry fresh credentials."""

    urls: str | list[str]
    username: str | None = Field(default=None, exclude_if=_absent)
    credential: str | None = Field(default=None, exclude_if=_absent)


class _ClientMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class SignalingOffer(_ClientMessage):
    """Start a session (or replace this socket's session: renegotiation)."""

    type: Literal["offer"]
    sdp: str
    #: The tier to watch; the full tier when left out.
    tier: TierName | None = None


class SignalingCandidate(_ClientMessage):
    """One trickled ICE candidate (`candidate:…`), or the end of them (null or "")."""

    type: Literal["candidate"]
    candidate: str | None = None
    sdpMid: str | None = None
    sdpMLineIndex: int | None = None
    usernameFragment: str | None = None


class SignalingRestart(_ClientMessage):
    """Ask for an ICE restart; always refused (aiortc cannot restart ICE): offer again."""

    type: Literal["restart"]


class SignalingBye(_ClientMessage):
    """End this socket's session; the socket stays open."""

    type: Literal["bye"]


class SignalingDetach(_ClientMessage):
    """Let this socket go and keep its session: the session's `control` data channel is open
    and carries renegotiation from now on (docs/protocol.md). Answered with `detached`."""

    type: Literal["detach"]


ClientMessage = Annotated[
    SignalingOffer | SignalingCandidate | SignalingRestart | SignalingBye | SignalingDetach,
    Field(discriminator="type"),
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("offer", "candidate", "restart", "bye", "detach")


class SignalingHello(BaseModel):
    """Sent when the socket opens: the ICE servers for the browser, and the peer limit."""

    type: Literal["hello"] = "hello"
    ice_servers: list[IceServer]
    max_peers: int


class SignalingAnswer(BaseModel):
    """The answer to an offer, with every server candidate; `session_id` names the session."""

    type: Literal["answer"] = "answer"
    sdp: str
    session_id: str


class SignalingSession(BaseModel):
    """The session's state changed; `reason` says why it closed (null otherwise)."""

    type: Literal["session"] = "session"
    session_id: str
    state: PeerStateName
    reason: str | None = None


class SignalingStats(BaseModel):
    """Every 2 s while connected: the server's statistics of this peer (`PeerStats`)."""

    type: Literal["stats"] = "stats"
    stats: dict[str, Any]


class SignalingDetached(BaseModel):
    """The answer to `detach`: the session lives on without this socket, which the server then
    closes (code 1000, reason `detached`)."""

    type: Literal["detached"] = "detached"
    session_id: str


class SignalingError(BaseModel):
    """A message the server could not take, or a request it refused; the socket stays open
    (except for a flood)."""

    type: Literal["error"] = "error"
    problem: Problem


ServerMessage = Annotated[
    SignalingHello
    | SignalingAnswer
    | SignalingSession
    | SignalingStats
    | SignalingDetached
    | SignalingError,
    Field(discriminator="type"),
]
