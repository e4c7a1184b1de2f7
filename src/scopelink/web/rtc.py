"""The app's WebRTC parts that every transport uses: its peer manager and ICE servers."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import HTTPConnection

from scopelink.webrtc.ice import ice_servers
from scopelink.webrtc.sessions import PeerManager, WebRtcSettings

#: The name the server itself uses for TURN credentials.
SERVER_TURN_USER = "scopelink-server"


def webrtc_settings(request: HTTPConnection) -> WebRtcSettings:
    settings = getattr(request.app.state, "webrtc_settings", None)
    return settings if isinstance(settings, WebRtcSettings) else WebRtcSettings()


def peers(request: HTTPConnection) -> PeerManager:
    """The app's peer manager (created on first use when the app did not make one)."""
    manager = getattr(request.app.state, "peers", None)
    if manager is None:
        manager = PeerManager.from_settings(webrtc_settings(request))
        request.app.state.peers = manager
    return manager


def ice_servers_for(request: HTTPConnection, user: str) -> list[dict[str, Any]]:
    """Browser-style ICE servers for `user` (a non-secret id), with fresh TURN credentials."""
    return ice_servers(webrtc_settings(request).ice, user, time.time())
