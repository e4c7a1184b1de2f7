"""Server-sent events: a telescope's telemetry as `text/event-stream`.

A snapshot first, then deltas, operations and firmware events, each with an id
`<run>-<seq>`; a client that reconnects with `Last-Event-ID` gets what it missed (or a fresh
snapshot when that is gone, or when the server restarted). A comment line every few seconds keeps
proxies from closing an idle stream. The stream holds no queue per client: a stalled client is
simply not read from until its socket drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from scopelink.services.telemetry import TelemetryChannel, TelemetryMessage
from scopelink.web.deps import TelescopeDep

router = APIRouter(prefix="/api")

#: Distinguishes this run of the server, so ids from a previous run are never trusted.
RUN_ID = secrets.token_hex(4)


def parse_event_id(value: str | None) -> int | None:
    """The sequence number in `<run>-<seq>`, or None when it is not from this run."""
    if not value:
        return None
    run, _, seq = value.partition("-")
    if run != RUN_ID or not seq.isdigit():
        return None
    return int(seq)


def format_message(message: TelemetryMessage) -> bytes:
    data = json.dumps(message.data, separators=(",", ":"))
    return f"id: {RUN_ID}-{message.seq}\nevent: {message.kind}\ndata: {data}\n\n".encode()


async def event_stream(
    channel: TelemetryChannel, after_seq: int | None, heartbeat_s: float
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    messages = channel.messages(after_seq)
    pending: asyncio.Task[TelemetryMessage] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(messages))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat_s)
            if not done:
                yield b": ping\n\n"
                continue
            try:
                message = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield format_message(message)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await messages.aclose()


@router.get(
    "/telescopes/{telescope_id}/events",
    tags=["telemetry"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def telescope_events(
    request: Request,
    session: TelescopeDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    since: Annotated[str | None, Query(description="Resume after this event id")] = None,
) -> StreamingResponse:
    """The telescope's state as a stream: `snapshot`, then `delta`, `operation` and `event`."""
    channel = request.app.state.telemetry.channel(session.id)
    after = parse_event_id(last_event_id or since)
    heartbeat = request.app.state.settings.sse_heartbeat_s
    return StreamingResponse(
        event_stream(channel, after, heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
