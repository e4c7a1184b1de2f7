"""The messages between a telescope-side proxy and the broker, on the WebSocket the proxy dials
out (`/api/proxy/link`), defined once (docs/remote.md, "The proxy's link").

The broker carries signaling only: it opens a conversation on the proxy for each browser that
asks to connect (with a grant for that browser's role), relays that browser's signaling
messages (`relay.data`, the same text as on the app's signaling socket) both ways untouched,
and ends the conversation when either side goes. Media and commands never pass here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from scopelink.schema.signaling import IceServer
from scopelink.schema.state import Problem

#: Link protocol version; a proxy of another version is refused with a reason.
LINK_VERSION = 1
#: Close codes of the link: 4401 the proxy failed to prove its key, 4403 it claimed a
#: telescope it is not paired for, 4409 another link for the same telescope replaced this one,
#: 4408 heartbeats stopped.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_PAIRED = 4403
CLOSE_REPLACED = 4409
CLOSE_SILENT = 4408
#: A conversation id: the broker instance's id and a counter, opaque to the proxy.
ConversationId = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class LinkChallenge(_Message):
    """Broker → proxy, first: sign this nonce to prove the key the telescope was paired with."""

    type: Literal["challenge"] = "challenge"
    nonce: str
    version: int = LINK_VERSION


class LinkRegister(_Message):
    """Proxy → broker: who it is. `signature` is Ed25519 over `challenge_text(nonce, id)`."""

    type: Literal["register"] = "register"
    telescope_id: str = Field(min_length=1, max_length=64)
    public_key: str = Field(min_length=1, max_length=4096)
    signature: str = Field(min_length=1, max_length=256)
    version: int = LINK_VERSION
    #: Concurrent video peers it takes (the browsers' `hello` says it).
    max_peers: int = Field(default=16, ge=0, le=1024)
    #: Its own page on the telescope's network (an mDNS name), for a direct connection there.
    lan_url: str | None = Field(default=None, max_length=200, pattern=r"^https?://[^\s]+$")


class LinkRegistered(_Message):
    """Broker → proxy: the link is up; send a `ping` at least this often."""

    type: Literal["registered"] = "registered"
    telescope_id: str
    heartbeat_s: float


class LinkRefused(_Message):
    """Broker → proxy, before closing: why the link is not taken (a clear reason)."""

    type: Literal["refused"] = "refused"
    problem: Problem


class LinkPing(_Message):
    type: Literal["ping"] = "ping"
    t: float = 0.0


class LinkPong(_Message):
    type: Literal["pong"] = "pong"
    t: float = 0.0


class LinkOpen(_Message):
    """Broker → proxy: a browser wants to connect. `grant` is checked by the proxy (offline, with
    the broker's public key). The proxy answers with the signaling `hello` (carrying
    `client_ice_servers`) or an `error` and `end`. `ice_servers` are for the proxy's own side
    of this conversation's peers; both carry TURN credentials minted by the broker."""

    type: Literal["open"] = "open"
    conv: ConversationId
    grant: str = Field(max_length=4096)
    ice_servers: list[IceServer] = Field(default_factory=list)
    client_ice_servers: list[IceServer] = Field(default_factory=list)


class LinkRelay(_Message):
    """Either way: one signaling message of a conversation, as text, untouched."""

    type: Literal["relay"] = "relay"
    conv: ConversationId
    data: str = Field(max_length=64 * 1024)


class LinkEnd(_Message):
    """Either way: the conversation is over (the browser left, or the proxy closed it: after
    `detach` with 1000, on a flood with 1008, a refused grant with 4401)."""

    type: Literal["end"] = "end"
    conv: ConversationId
    code: int = 1000
    reason: str = Field(default="", max_length=123)


class LinkIceRequest(_Message):
    """Proxy → broker: fresh ICE servers (TURN credentials expire) for a peer about to be made
    (a browser renegotiating over its data channel, long after its conversation opened)."""

    type: Literal["ice_request"] = "ice_request"
    id: int = Field(ge=0)


class LinkIce(_Message):
    """Broker → proxy: the answer to `ice_request` `id`."""

    type: Literal["ice"] = "ice"
    id: int
    ice_servers: list[IceServer] = Field(default_factory=list)


class LinkRevoke(_Message):
    """Broker → proxy: an account lost its role here; close its peers now."""

    type: Literal["revoke"] = "revoke"
    account: str = Field(min_length=1, max_length=64)


# -- pairing (`/api/proxy/pair`): the device-code pattern over one socket -------------------------


class PairRequest(_Message):
    """Proxy → broker: pair the holder of this key (its identity) with an owner's account."""

    type: Literal["pair"] = "pair"
    public_key: str = Field(min_length=1, max_length=4096)


class PairCode(_Message):
    """Broker → proxy: show this code; the owner types it in the broker's page, signed in."""

    type: Literal["code"] = "code"
    user_code: str
    expires_in: float
    #: Where the owner types it.
    verification_url: str


class PairDone(_Message):
    """Broker → proxy, last: `paired` (with the telescope id and the key that signs its
    grants), or why not (`expired`, `locked` after wrong codes, `refused`)."""

    type: Literal["paired", "expired", "locked", "refused"]
    telescope_id: str | None = None
    broker_key: str | None = None
    detail: str = ""


ToProxy = Annotated[
    LinkChallenge | LinkRegistered | LinkRefused | LinkPing | LinkPong | LinkOpen | LinkRelay
    | LinkEnd | LinkRevoke | LinkIce,
    Field(discriminator="type"),
]  # fmt: skip
ToBroker = Annotated[
    LinkRegister | LinkPing | LinkPong | LinkRelay | LinkEnd | LinkIceRequest,
    Field(discriminator="type"),
]
TO_PROXY: TypeAdapter[ToProxy] = TypeAdapter(ToProxy)
TO_BROKER: TypeAdapter[ToBroker] = TypeAdapter(ToBroker)


def challenge_text(nonce: str, telescope_id: str) -> bytes:
    """What the proxy signs: bound to this link's nonce and the telescope it claims."""
    return f"scopelink-link/{LINK_VERSION}:{nonce}:{telescope_id}".encode()
