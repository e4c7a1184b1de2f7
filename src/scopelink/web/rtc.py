"""The app's WebRTC host: what starting a peer for a caller takes, the same for every signaling
path (WHEP, the app's signaling socket, a renegotiation over a data channel, and the proxy's link
to the broker): the peer manager, ICE servers, and the data-channel endpoint wired to the
command service and telemetry hub."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel
from starlette.requests import HTTPConnection

from scopelink.auth import Caller
from scopelink.schema.channel import Renegotiate
from scopelink.services.command_service import CommandService
from scopelink.services.telemetry import TelemetryHub
from scopelink.services.telescope import Telescope
from scopelink.web.datachannel import ChannelEndpoint
from scopelink.webrtc.encoder import tier_named
from scopelink.webrtc.ice import ice_servers, to_aiortc
from scopelink.webrtc.negotiation import start_session
from scopelink.webrtc.peer import DataChannelHandler, Peer
from scopelink.webrtc.sessions import PeerManager, WebRtcSettings

#: The name the server itself uses for TURN credentials.
SERVER_TURN_USER = "scopelink-server"
#: ICE servers handed out by someone else, fetched when a peer is made.
IceSource = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class PeerHost:
    """Starts peers for callers: one per app, kept on `app.state.peer_host`."""

    peers: PeerManager
    settings: WebRtcSettings
    commands: CommandService
    telemetry: TelemetryHub

    def ice_servers(self, user: str) -> list[dict[str, Any]]:
        """Browser-style ICE servers for `user` (a non-secret id), with fresh TURN credentials."""
        return ice_servers(self.settings.ice, user, time.time())

    async def start(
        self,
        telescope: Telescope,
        caller: Caller,
        offer: str,
        tier: str | None = None,
        ice: IceSource | None = None,
    ) -> tuple[Peer, str]:
        """A new peer for `caller` watching `telescope`, and its answer; raises
        `NegotiationError` when the offer is refused. `ice`: where this server's own ICE
        servers come from when someone else hands them out (the broker, to a proxy); asked
        again for each later peer negotiated over this one's data channel, since TURN
        credentials expire."""
        servers = self.ice_servers(SERVER_TURN_USER) if ice is None else await ice()
        return await start_session(
            self.peers,
            telescope.id,
            telescope.pipeline,
            offer,
            client=caller.client,
            tier=tier_named(tier),
            ice_servers=to_aiortc(servers),
            on_datachannel=self.channels(telescope, caller, ice),
        )

    def channels(
        self, telescope: Telescope, caller: Caller, ice: IceSource | None = None
    ) -> DataChannelHandler:
        """The data channels of one new peer connection: one endpoint, made when the first
        channel opens; an offer over it starts the caller's next peer here."""
        endpoint: ChannelEndpoint | None = None

        async def renegotiate(offer: Renegotiate, _: ChannelEndpoint) -> tuple[str, str]:
            peer, answer = await self.start(telescope, caller, offer.sdp, offer.tier, ice)
            return peer.id, answer

        def handle(peer: Peer, channel: RTCDataChannel) -> None:
            nonlocal endpoint
            if endpoint is None:
                endpoint = ChannelEndpoint(
                    peer,
                    telescope=telescope,
                    commands=self.commands,
                    telemetry=self.telemetry.channel(telescope.id),
                    caller=caller,
                    renegotiate=renegotiate,
                )
            endpoint.attach(channel)

        return handle


def peer_host(connection: HTTPConnection) -> PeerHost:
    """The app's peer host (made on first use from the app's state)."""
    state = connection.app.state
    host = getattr(state, "peer_host", None)
    if host is None:
        settings = getattr(state, "webrtc_settings", None)
        settings = settings if isinstance(settings, WebRtcSettings) else WebRtcSettings()
        peers = getattr(state, "peers", None) or PeerManager.from_settings(settings)
        host = PeerHost(peers, settings, state.commands, state.telemetry)
        state.peer_host = host
    return host
