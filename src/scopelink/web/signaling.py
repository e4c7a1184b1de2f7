"""The app's WebSocket signaling endpoint: a thin adapter that carries one client's
`SignalingConversation` (`scopelink.webrtc.signaling`, where the protocol's logic lives) over one
socket. The protocol is written down in docs/webrtc-media.md ("WebSocket signaling").

Tokens and origins are checked by `SecurityMiddleware` before the upgrade; viewers may watch.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from scopelink.auth import Caller
from scopelink.schema.signaling import IceServer, SignalingError, SignalingHello
from scopelink.schema.state import Problem
from scopelink.services.registry import UnknownTelescopeError
from scopelink.web.rtc import peer_host
from scopelink.web.sockets import close_quietly
from scopelink.webrtc.peer import Peer
from scopelink.webrtc.signaling import CLOSE_UNKNOWN_TELESCOPE, SignalingConversation

log = logging.getLogger(__name__)

router = APIRouter()


class SocketOutlet:
    """A signaling conversation's messages on a Starlette WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send(self, text: str) -> bool:
        try:
            await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        await close_quietly(self.websocket, code, reason)


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
    host = peer_host(websocket)

    async def start(offer: str, tier: str | None) -> tuple[Peer, str]:
        return await host.start(telescope, caller, offer, tier)

    talk = SignalingConversation(SocketOutlet(websocket), start, name=f" socket ({caller.client})")
    log.info("signaling for telescope %s opened (%s)", telescope_id, caller.client)
    try:
        servers = host.ice_servers(caller.client)
        await talk.hello(
            SignalingHello(
                ice_servers=[IceServer.model_validate(s) for s in servers],
                max_peers=host.peers.max_peers,
            )
        )
        while talk.open:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            await talk.receive(message.get("text"))
    except WebSocketDisconnect:
        pass
    finally:
        await talk.ended()
        log.info("signaling for telescope %s closed (%s)", telescope_id, caller.client)
