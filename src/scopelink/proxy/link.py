"""The proxy's link to the broker: dialled out (no port forwarding), proven with the proxy's key,
kept alive with heartbeats, redialled with capped backoff, and carrying one signaling
conversation per browser that asks to connect (docs/remote.md, "The proxy's link").

Each conversation is the same `SignalingConversation` as on the app's own socket, started only
for a valid grant (checked here, offline, with the broker's public key; each grant once), its
caller's role the grant's. A conversation has its own inbox and task, so one browser's offer
never waits behind another's. A peer let go with `detach` outlives its conversation and the
link itself: a broker restart does not touch a connected session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from scopelink.auth import GrantBook, grant_caller
from scopelink.grants import GrantRefused, GrantVerifier, sign_challenge
from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.schema.link import (
    CLOSE_NOT_PAIRED,
    CLOSE_SILENT,
    CLOSE_UNAUTHENTICATED,
    TO_PROXY,
    LinkChallenge,
    LinkEnd,
    LinkIce,
    LinkIceRequest,
    LinkOpen,
    LinkPing,
    LinkPong,
    LinkRefused,
    LinkRegister,
    LinkRegistered,
    LinkRelay,
    LinkRevoke,
    challenge_text,
)
from scopelink.schema.problems import PROBLEM_TYPE
from scopelink.schema.signaling import SignalingError, SignalingHello
from scopelink.schema.state import Problem
from scopelink.services.telescope import Telescope
from scopelink.settings import Backoff
from scopelink.web.rtc import PeerHost
from scopelink.webrtc.peer import Peer
from scopelink.webrtc.signaling import SignalingConversation

log = logging.getLogger(__name__)

#: Redial after 1 s, doubling to at most 30 s, with jitter (many proxies must not return at once).
BACKOFF = Backoff(initial_s=1.0, maximum_s=30.0)
#: The broker's first words must come this soon after the socket opens.
HANDSHAKE_TIMEOUT_S = 10.0
#: The link is dead after this many heartbeats without a word from the broker.
MISSED_HEARTBEATS = 3
#: Messages waiting for one conversation, at most (a browser sends a handful).
INBOX = 64
#: How long a peer waits for fresh ICE servers before it uses the last known.
ICE_TIMEOUT_S = 3.0
#: Largest link message taken (a relayed signaling message is at most 64 KiB, JSON-escaped).
MAX_LINK_MESSAGE = 256 * 1024


class LinkState(StrEnum):
    """The link's life: `refused` is final (the proxy must be paired again)."""

    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"
    REFUSED = "refused"


class LinkRefusedError(Exception):
    """The broker will not take this proxy's link; redialling would not help."""


class _Conversation:
    """One browser's conversation on this proxy: its inbox, task and account."""

    def __init__(self, link: BrokerLink, conv: str, account: str) -> None:
        self.link = link
        self.conv = conv
        self.account = account
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue(INBOX)
        self.talk: SignalingConversation | None = None
        self.task: asyncio.Task[None] | None = None

    # SignalingOutlet
    async def send(self, text: str) -> bool:
        if self.link.conversations.get(self.conv) is not self:
            return False
        return await self.link.send(LinkRelay(conv=self.conv, data=text))

    async def close(self, code: int, reason: str) -> None:
        if self.link.conversations.pop(self.conv, None) is self:
            await self.link.send(LinkEnd(conv=self.conv, code=code, reason=reason[:123]))
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(None)

    async def run(self) -> None:
        assert self.talk is not None
        try:
            while self.talk.open:
                text = await self.inbox.get()
                if text is None:
                    break
                await self.talk.receive(text)
        finally:
            await self.talk.ended()
            self.link.conversations.pop(self.conv, None)


class BrokerLink:
    """Holds the proxy's link to its broker for as long as `run` runs."""

    def __init__(
        self,
        identity: ProxyIdentity,
        pairing: Pairing,
        telescope: Telescope,
        host: PeerHost,
        *,
        url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff = BACKOFF,
        grants: GrantBook | None = None,
        lan_url: str | None = None,
    ) -> None:
        self.identity = identity
        self.pairing = pairing
        self.telescope = telescope
        self.host = host
        self.url = url or link_url(pairing.broker_url)
        self.ssl_context = ssl_context
        self.backoff = backoff
        #: The LAN page's sessions from grants: one verifier for both paths, so a grant is
        #: accepted once whichever way it comes.
        self.grants = grants
        self.verifier = (
            grants.verifier
            if grants is not None
            else GrantVerifier(pairing.broker_key, pairing.telescope_id)
        )
        #: Where browsers on the telescope's network reach the proxy's own page (mDNS name).
        self.lan_url = lan_url
        self.state = LinkState.OFFLINE
        self.changed = asyncio.Event()
        self.conversations: dict[str, _Conversation] = {}
        self.refusal: str | None = None
        self._ws: ClientConnection | None = None
        self._heard = 0.0
        #: Links made, for the figures and the tests (a reconnect counts).
        self.links = 0
        self._ice_ids = itertools.count(1)
        self._ice_waiting: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}

    def _set(self, state: LinkState) -> None:
        if state is not self.state:
            log.info("broker link: %s", state.value)
            self.state = state
            self.changed.set()
            self.changed = asyncio.Event()

    async def wait_for(self, state: LinkState, timeout: float = 10.0) -> None:
        """Until the link is in `state` (tests, and a CLI waiting to say "online")."""
        async with asyncio.timeout(timeout):
            while self.state is not state:
                await self.changed.wait()

    # -- the dial loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Dial, hold, redial with capped backoff; returns only when the broker refuses this
        proxy for good (raises `LinkRefusedError`)."""
        attempt = 0
        while True:
            self._set(LinkState.CONNECTING)
            try:
                async with connect(
                    self.url,
                    ssl=self.ssl_context,
                    open_timeout=HANDSHAKE_TIMEOUT_S,
                    max_size=MAX_LINK_MESSAGE,
                    ping_interval=None,  # our own heartbeats, which the broker also counts
                    compression=None,  # small messages; the state would cost the broker memory
                ) as ws:
                    self._ws = ws
                    if await self._hold(ws):
                        attempt = 0
            except LinkRefusedError as exc:
                self.refusal = str(exc)
                self._set(LinkState.REFUSED)
                log.error("broker refused this proxy: %s", exc)
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                log.info("broker link: %s", _why(exc))
            except Exception:  # a bug here must not leave the proxy unreachable for good
                log.exception("broker link: unexpected failure; dialling again")
            finally:
                self._ws = None
                await self._end_all("the proxy's link to the broker dropped")
            self._set(LinkState.OFFLINE)
            await asyncio.sleep(self.backoff.delay(attempt, random.random()))
            attempt += 1

    async def _hold(self, ws: ClientConnection) -> bool:
        """One link from handshake to close; True if it got as far as registered."""
        challenge = await asyncio.wait_for(self._next(ws), HANDSHAKE_TIMEOUT_S)
        if not isinstance(challenge, LinkChallenge):
            raise ConnectionError(f"broker sent {challenge.type!r} before its challenge")
        telescope_id = self.pairing.telescope_id
        signature = sign_challenge(self.identity.key, challenge_text(challenge.nonce, telescope_id))
        await self.send(
            LinkRegister(
                telescope_id=telescope_id,
                public_key=self.identity.public_key,
                signature=signature,
                max_peers=self.host.peers.max_peers,
                lan_url=self.lan_url,
            )
        )
        reply = await asyncio.wait_for(self._next(ws), HANDSHAKE_TIMEOUT_S)
        if isinstance(reply, LinkRefused):
            code = await _close_code(ws)
            if code in (CLOSE_NOT_PAIRED, CLOSE_UNAUTHENTICATED) or reply.problem.status in (
                401,
                403,
                426,
            ):
                raise LinkRefusedError(reply.problem.detail or reply.problem.title)
            raise ConnectionError(f"broker refused the link: {reply.problem.detail}")
        if not isinstance(reply, LinkRegistered):
            raise ConnectionError(f"broker sent {reply.type!r} instead of registering")
        self.links += 1
        self._heard = time.monotonic()
        self._set(LinkState.ONLINE)
        beat = asyncio.create_task(self._heartbeat(ws, reply.heartbeat_s), name="link-heartbeat")
        try:
            while True:
                await self._dispatch(await self._next(ws))
        except ConnectionClosed:
            return True
        finally:
            beat.cancel()

    async def _heartbeat(self, ws: ClientConnection, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if time.monotonic() - self._heard > every_s * MISSED_HEARTBEATS:
                log.warning("broker link: no word from the broker in %.0f s", every_s * 3)
                await ws.close(CLOSE_SILENT, "heartbeats stopped")
                return
            await self.send(LinkPing(t=time.time()))

    async def _next(self, ws: ClientConnection) -> BaseModel:
        """The broker's next message; one we cannot read is logged and skipped."""
        while True:
            raw = await ws.recv()
            self._heard = time.monotonic()
            try:
                return TO_PROXY.validate_json(raw)
            except ValidationError as exc:
                log.warning("broker link: unreadable message skipped (%s)", exc.error_count())

    async def send(self, message: BaseModel) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(message.model_dump_json())
        except ConnectionClosed:
            return False
        return True

    # -- conversations ----------------------------------------------------------------------------

    async def _dispatch(self, message: BaseModel) -> None:
        match message:
            case LinkPing():
                await self.send(LinkPong(t=message.t))
            case LinkPong():
                pass
            case LinkOpen():
                await self._open(message)
            case LinkRelay():
                conversation = self.conversations.get(message.conv)
                if conversation is None:
                    await self.send(LinkEnd(conv=message.conv, code=4404, reason="no such conv"))
                    return
                try:
                    conversation.inbox.put_nowait(message.data)
                except asyncio.QueueFull:
                    await conversation.close(1008, "too many messages")
            case LinkEnd():
                conversation = self.conversations.pop(message.conv, None)
                if conversation is not None:
                    with contextlib.suppress(asyncio.QueueFull):
                        conversation.inbox.put_nowait(None)
            case LinkRevoke():
                await self.revoke(message.account)
            case LinkIce():
                waiting = self._ice_waiting.pop(message.id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(
                        [s.model_dump(exclude_none=True) for s in message.ice_servers]
                    )
            case _:
                log.warning("broker link: unexpected %s", getattr(message, "type", "?"))

    async def _open(self, message: LinkOpen) -> None:
        try:
            grant = self.verifier.verify(message.grant)
        except GrantRefused as exc:
            log.info("broker link: conversation %s refused: %s", message.conv, exc.reason)
            refusal = Problem(
                type=PROBLEM_TYPE + "grant-refused",
                title="Grant refused",
                status=401,
                detail=exc.reason,
            )
            text = SignalingError(problem=refusal).model_dump_json()
            await self.send(LinkRelay(conv=message.conv, data=text))
            await self.send(LinkEnd(conv=message.conv, code=4401, reason=exc.reason[:123]))
            return
        caller = grant_caller(grant)
        conversation = _Conversation(self, message.conv, grant.account_id)
        opened = [s.model_dump(exclude_none=True) for s in message.ice_servers]
        telescope, host = self.telescope, self.host
        first = True

        async def ice() -> list[dict[str, Any]]:
            # The open's credentials for the first peer; fresh ones for each later peer (a
            # renegotiation over the data channel, maybe hours on, after they expired).
            nonlocal first, opened
            if first:
                first = False
                return opened
            fresh = await self.fresh_ice()
            if fresh is not None:
                opened = fresh
            return opened

        async def start(offer: str, tier: str | None) -> tuple[Peer, str]:
            return await host.start(telescope, caller, offer, tier, ice)

        conversation.talk = SignalingConversation(
            conversation, start, name=f" conversation {message.conv} ({grant.name})"
        )
        self.conversations[message.conv] = conversation
        hello = SignalingHello(
            ice_servers=message.client_ice_servers, max_peers=self.host.peers.max_peers
        )
        await conversation.talk.hello(hello)
        conversation.task = asyncio.create_task(conversation.run(), name=f"conv-{message.conv}")
        log.info("broker link: %s connects as %s", grant.name, grant.role.value)

    async def fresh_ice(self, timeout_s: float = ICE_TIMEOUT_S) -> list[dict[str, Any]] | None:
        """Fresh ICE servers from the broker; None when it cannot say (link down, slow)."""
        if self.state is not LinkState.ONLINE:
            return None
        ask = next(self._ice_ids)
        answer: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._ice_waiting[ask] = answer
        try:
            if not await self.send(LinkIceRequest(id=ask)):
                return None
            return await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            log.warning("broker link: no fresh ICE servers in %.0f s; using the last", timeout_s)
            return None
        finally:
            self._ice_waiting.pop(ask, None)

    async def revoke(self, account: str) -> None:
        """An account lost its role: end its conversations and close its peers."""
        revoked = Problem(
            type=PROBLEM_TYPE + "revoked",
            title="Access revoked",
            status=403,
            detail="an owner of this telescope revoked your access",
        )
        for conversation in [c for c in self.conversations.values() if c.account == account]:
            await conversation.send(SignalingError(problem=revoked).model_dump_json())
            await conversation.close(4403, "access revoked")
        if self.grants is not None:
            self.grants.end_account(account)
        client = f"account-{account}"
        for peer in self.host.peers.sessions(self.telescope.id):
            if peer.client == client:
                await peer.close()
        log.info("broker link: access of account %s revoked; its peers closed", account)

    async def _end_all(self, why: str) -> None:
        conversations = list(self.conversations.values())
        self.conversations.clear()
        for conversation in conversations:
            with contextlib.suppress(asyncio.QueueFull):
                conversation.inbox.put_nowait(None)
        if conversations:
            log.info("broker link: %d conversation(s) ended: %s", len(conversations), why)


def link_url(broker_url: str) -> str:
    """The link's WebSocket address from the broker's address (https → wss)."""
    base = broker_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + "/api/proxy/link"


async def _close_code(ws: ClientConnection) -> int | None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.wait_closed(), 2)
    return ws.close_code


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


__all__ = ["BrokerLink", "LinkRefusedError", "LinkState", "link_url"]
