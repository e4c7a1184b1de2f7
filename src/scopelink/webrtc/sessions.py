"""The peers of every telescope: limits, timeouts, clean-up, and the tier encoders they share.

`PeerSessionManager` creates `PeerSession`s from offers, refuses more than `max_peers` at once
(`TooManyPeers`), closes peers that have not connected within `connect_timeout_s`, and forgets
peers when they close or fail. It owns the `TierEncoder`s: one per (telescope, tier), created on
first use and closed once no peer watches that tier. Each peer holds its telescope's `viewer()`
context while it lives, so the telescope's stream starts with the first viewer of any transport
(MJPEG or WebRTC) and stops after the last.

The telescope is seen through `FrameSource` (its frame slot and its viewer demand), so this
module imports no service and no web code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiortc import RTCIceServer

from scopelink.seestar.latest import LatestValue
from scopelink.webrtc.adapt import tier_bitrate
from scopelink.webrtc.encoder import FULL, TIERS, Tier, TierEncoder
from scopelink.webrtc.ice import IceSettings
from scopelink.webrtc.peer import Adaptation, PeerSession, PeerStats

if TYPE_CHECKING:
    from scopelink.services.frame_pipeline import DisplayFrame

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WebRtcSettings:
    """WebRTC's ports of call and limits, in one object (the app keeps it on its state)."""

    ice: IceSettings = field(default_factory=IceSettings)
    #: Concurrent peers over all telescopes; the next offer is refused with the reason.
    max_peers: int = 16
    #: A peer not connected this long after its answer is closed.
    connect_timeout_s: float = 15.0
    #: Set each tier's bitrate and move peers between tiers by their receivers' feedback
    #: (webrtc/adapt.py); off, every tier keeps its starting bitrate and peers their tier.
    adaptive: bool = True


class FrameSource(Protocol):
    """A telescope as the peers need it (`FramePipeline` is one)."""

    @property
    def frames(self) -> LatestValue[DisplayFrame]:
        """The newest display frame (the slot may be replaced when the source restarts)."""
        ...

    def viewer(self) -> AbstractAsyncContextManager[None]:
        """Held while someone watches: the first starts the stream, the last stops it."""
        ...


class TooManyPeers(RuntimeError):
    """The configured limit of concurrent peers is reached."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the server already sends video to its limit of {limit} concurrent WebRTC peers"
        )
        self.limit = limit


class UnknownPeer(KeyError):
    """No live peer session has this id."""

    def __str__(self) -> str:
        return f"no peer session {self.args[0]!r}"


class PeerSessionManager:
    """Creates, limits, times out and cleans up peer sessions; owns the shared tier encoders."""

    def __init__(
        self,
        max_peers: int,
        connect_timeout_s: float = 15.0,
        *,
        adaptive: bool = True,
        tiers: tuple[Tier, ...] = TIERS,
    ) -> None:
        """`adaptive`: tier bitrates and each peer's tier follow feedback (webrtc/adapt.py);
        `tiers`, lowest first, are what adaptation chooses from."""
        self.max_peers = max_peers
        self.connect_timeout_s = connect_timeout_s
        self.adaptive = adaptive
        self.tiers = tiers
        self._sessions: dict[str, PeerSession] = {}
        self._viewing: dict[str, AbstractAsyncContextManager[None]] = {}
        self._watchdogs: dict[str, asyncio.Task[None]] = {}
        self._encoders: dict[tuple[str, str], TierEncoder] = {}
        #: Peers being set up count against the limit too.
        self._pending = 0

    @classmethod
    def from_settings(cls, settings: WebRtcSettings) -> PeerSessionManager:
        return cls(settings.max_peers, settings.connect_timeout_s, adaptive=settings.adaptive)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- sessions ---------------------------------------------------------------------------------

    async def create(
        self,
        telescope_id: str,
        source: FrameSource,
        offer_sdp: str,
        *,
        client: str = "",
        tier: Tier = FULL,
        ice_servers: list[RTCIceServer] | None = None,
    ) -> tuple[PeerSession, str]:
        """A new peer for `telescope_id` answering `offer_sdp`: the session and its answer SDP.

        Raises `TooManyPeers` at the limit and `OfferRejected` for an offer it cannot answer.
        """
        if len(self._sessions) + self._pending >= self.max_peers:
            raise TooManyPeers(self.max_peers)
        self._pending += 1
        viewing = source.viewer()
        try:
            await viewing.__aenter__()
            session = PeerSession(
                self._encoder(telescope_id, source, tier),
                telescope_id=telescope_id,
                client=client,
                ice_servers=ice_servers,
                encoder_for=lambda t: self._encoder(telescope_id, source, t),
                adaptation=self._adaptation(tier),
                on_feedback=self._rebalance,
                on_close=self._forget,
            )
            self._sessions[session.id] = session
            self._viewing[session.id] = viewing
        except BaseException:
            self._pending -= 1
            await viewing.__aexit__(None, None, None)
            self._prune(telescope_id)
            raise
        self._pending -= 1
        try:
            answer = await session.answer(offer_sdp)
        except BaseException:
            # Closing runs `_forget`, which releases the viewer and the encoders.
            await session.close()
            raise
        self._watchdogs[session.id] = asyncio.create_task(
            self._expire_unless_connected(session), name=f"peer-timeout-{session.id[:6]}"
        )
        return session, answer

    def get(self, session_id: str) -> PeerSession:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownPeer(session_id) from None

    def sessions(self, telescope_id: str | None = None) -> list[PeerSession]:
        return [
            s
            for s in self._sessions.values()
            if telescope_id is None or s.telescope_id == telescope_id
        ]

    def stats(self, telescope_id: str | None = None) -> list[PeerStats]:
        """Per-peer stats, of one telescope or of all."""
        return [s.stats() for s in self.sessions(telescope_id)]

    def encoders(self, telescope_id: str) -> dict[str, TierEncoder]:
        """The tier encoders that exist for a telescope now, by tier name."""
        return {tier: e for (tid, tier), e in self._encoders.items() if tid == telescope_id}

    async def close(self, session_id: str) -> None:
        await self.get(session_id).close()

    async def close_all(self) -> None:
        """Close every peer and encoder (server shutdown)."""
        await asyncio.gather(*(s.close() for s in list(self._sessions.values())))
        for encoder in list(self._encoders.values()):
            await encoder.close()
        self._encoders.clear()

    # -- internals --------------------------------------------------------------------------------

    def _encoder(self, telescope_id: str, source: FrameSource, tier: Tier) -> TierEncoder:
        key = (telescope_id, tier.name)
        encoder = self._encoders.get(key)
        if encoder is None:
            # A callable: the encoder follows the pipeline's new slot after a restart.
            encoder = TierEncoder(tier, lambda: source.frames)
            self._encoders[key] = encoder
            log.info("telescope %s: tier %s created", telescope_id, tier.name)
        return encoder

    def _adaptation(self, start: Tier) -> Adaptation | None:
        if not self.adaptive or start.name not in {t.name for t in self.tiers}:
            return None
        return Adaptation.over(self.tiers, start)

    def _rebalance(self, peer: PeerSession) -> None:
        """Set each of the peer's telescope's encoders to the lowest estimate among its peers.

        A peer counts for the tier it watches or is moving to, so a peer on its way down does
        not hold the tier it leaves back."""
        estimates: dict[int, tuple[TierEncoder, list[int]]] = {}
        for session in self.sessions(peer.telescope_id):
            estimate = session.estimate_bps
            if estimate is None or session.closed.is_set():
                continue
            encoder = session.track.next_encoder
            estimates.setdefault(id(encoder), (encoder, []))[1].append(estimate)
        for encoder, values in estimates.values():
            bitrate = tier_bitrate(encoder.tier, values)
            if bitrate != encoder.bitrate:
                log.debug("tier %s: %d kbit/s", encoder.tier.name, bitrate // 1000)
                encoder.set_bitrate(bitrate)

    def _prune(self, telescope_id: str) -> None:
        """Close the telescope's tier encoders that no live peer watches or moves to."""
        wanted = {
            s.target_tier.name for s in self.sessions(telescope_id) if not s.closed.is_set()
        } | {s.track.encoder.tier.name for s in self.sessions(telescope_id)}
        for (tid, name), encoder in list(self._encoders.items()):
            if tid == telescope_id and name not in wanted and encoder.holders == 0:
                del self._encoders[(tid, name)]
                asyncio.get_running_loop().create_task(encoder.close())
                log.info("telescope %s: tier %s closed (no viewer)", telescope_id, name)

    async def _expire_unless_connected(self, session: PeerSession) -> None:
        connected = asyncio.ensure_future(session.connected.wait())
        closed = asyncio.ensure_future(session.closed.wait())
        try:
            await asyncio.wait(
                {connected, closed},
                timeout=self.connect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            connected.cancel()
            closed.cancel()
        if not session.connected.is_set() and not session.closed.is_set():
            log.warning(
                "peer %s: not connected within %.1f s; closing",
                session.log_id,
                self.connect_timeout_s,
            )
            await session.close()

    async def _forget(self, session: PeerSession) -> None:
        """A session closed (by the viewer, a failure, the timeout or shutdown)."""
        self._sessions.pop(session.id, None)
        watchdog = self._watchdogs.pop(session.id, None)
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        viewing = self._viewing.pop(session.id, None)
        if viewing is not None:
            with contextlib.suppress(Exception):
                await viewing.__aexit__(None, None, None)
        self._prune(session.telescope_id)
