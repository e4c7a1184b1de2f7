"""Ending a WebSocket from the server's side, for every socket the app and the broker serve."""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

#: A close frame's reason may take at most 123 bytes of UTF-8 (RFC 6455 section 5.5).
MAX_REASON_BYTES = 123


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `code` and `reason` (cut to fit a close frame), unless the other side has
    already gone; a socket that breaks while closing is closed all the same."""
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    fitting = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.close(code, fitting)
