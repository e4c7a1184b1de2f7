"""MJPEG transport: the live view as multipart/x-mixed-replace, plus snapshot and stack JPEGs.

A thin adapter over the frame pipeline. Each viewer waits only for the pipeline's newest display
frame (`frames.next(last_seq)`), so a viewer that reads slowly skips frames; nothing is queued
per viewer, and JPEG encoding is shared through `FramePipeline.jpeg`.

Wire format: the stream opens with the dash boundary `--frame`, and every part ends with the
next delimiter (`\\r\\n--frame`) in the same write. Browsers (Chromium's multipart parser among
them) finish a part as soon as they see the delimiter after it; sending it only with the next
part would show every frame one frame late. The stream closes with `--\\r\\n`, completing the
close delimiter `--frame--`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from scopelink.framestamp import FrameStamp
from scopelink.media.display import DisplayFrame
from scopelink.media.latest import LatestValue, SlotClosedError
from scopelink.schema.state import CameraName
from scopelink.seestar.errors import ProtocolError, SeestarError
from scopelink.services.frame_pipeline import (
    MAX_JPEG_QUALITY,
    MAX_JPEG_WIDTH,
    MIN_JPEG_QUALITY,
    MIN_JPEG_WIDTH,
    DisplayError,
    FramePipeline,
)
from scopelink.services.telescope import NoSuchCameraError, Telescope
from scopelink.web.deps import TelescopeDep

log = logging.getLogger(__name__)

router = APIRouter()

BOUNDARY = "frame"
#: A frame older than this is history, not "the latest": a viewer waits for a new one.
FRESH_S = 2.0
#: How long a snapshot waits for the telescope to deliver a frame.
SNAPSHOT_WAIT_S = 5.0
_NO_STORE = {"Cache-Control": "no-store"}
Width = Annotated[
    int | None,
    Query(
        ge=MIN_JPEG_WIDTH,
        le=MAX_JPEG_WIDTH,
        description="JPEG width in pixels (height keeps the aspect ratio); default from settings.",
    ),
]
Quality = Annotated[
    int | None,
    Query(
        ge=MIN_JPEG_QUALITY, le=MAX_JPEG_QUALITY, description="JPEG quality; default from settings."
    ),
]
CameraQuery = Annotated[
    CameraName,
    Query(description="Which camera: `main`, or `wide` on models that have one (S30, S30 Pro)."),
]


def _variant(request: Request, width: int | None, quality: int | None) -> tuple[int, int]:
    settings = request.app.state.settings
    return (
        settings.mjpeg_width if width is None else width,
        settings.mjpeg_quality if quality is None else quality,
    )


def _pipeline(session: Telescope, camera: str) -> FramePipeline:
    try:
        return session.camera(camera).pipeline
    except NoSuchCameraError as exc:
        raise HTTPException(404, detail=str(exc)) from None


def _stamp_value(stamp: FrameStamp) -> str:
    return f"{stamp.frame};{stamp.emit_ms}"


def _is_fresh(pipeline: FramePipeline, display: DisplayFrame) -> bool:
    """Recent, and from the live source as it is now (not the star view's last frame after
    the view went to the Moon)."""
    recent = time.monotonic() - display.received <= FRESH_S
    return recent and pipeline.is_current(display)


def _part(jpeg: bytes, stamp: FrameStamp | None) -> bytes:
    headers = f"\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
    if stamp is not None:
        headers += f"X-Frame-Stamp: {_stamp_value(stamp)}\r\n"
    return b"".join((headers.encode("ascii"), b"\r\n", jpeg, f"\r\n--{BOUNDARY}".encode("ascii")))


async def multipart_body(pipeline: FramePipeline, width: int, quality: int) -> AsyncIterator[bytes]:
    """The MJPEG response body for one viewer: one chunk per part, ending with its delimiter."""
    slot = pipeline.frames
    # The opening dash boundary goes out at once, so the browser knows the stream is live.
    yield f"--{BOUNDARY}".encode("ascii")
    async with pipeline.viewer():
        latest = slot.latest
        seen = latest.seq if latest is not None and not _is_fresh(pipeline, latest.value) else 0
        while True:
            try:
                item = await slot.next(seen)
            except SlotClosedError:
                break  # the pipeline stopped (telescope removed, app shutting down)
            seen = item.seq
            try:
                jpeg = await pipeline.jpeg(item.value, width, quality)
            except DisplayError as exc:
                log.warning("MJPEG: skipping a frame that did not encode: %s", exc)
                continue
            yield _part(jpeg, item.value.stamp)
    yield b"--\r\n"


@router.get(
    "/api/telescopes/{telescope_id}/stream.mjpeg",
    response_class=StreamingResponse,
    responses={
        200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
        404: {"description": "No such telescope, or it has no such camera."},
    },
)
async def stream_mjpeg(
    request: Request,
    session: TelescopeDep,
    width: Width = None,
    quality: Quality = None,
    camera: CameraQuery = "main",
) -> StreamingResponse:
    """The live view as MJPEG; the preview stream runs while at least one viewer watches."""
    w, q = _variant(request, width, quality)
    return StreamingResponse(
        multipart_body(_pipeline(session, camera), w, q),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        # A cached live stream is a frozen one; a proxy that buffers it adds delay.
        headers={**_NO_STORE, "X-Accel-Buffering": "no"},
    )


async def _fresh_frame(pipeline: FramePipeline, slot: LatestValue[DisplayFrame]) -> DisplayFrame:
    latest = slot.latest
    if latest is not None and _is_fresh(pipeline, latest.value):
        return latest.value
    async with pipeline.viewer():
        item = await slot.next(latest.seq if latest is not None else 0)
    return item.value


@router.get(
    "/api/telescopes/{telescope_id}/snapshot.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "No such telescope, or it has no such camera."},
        503: {"description": "No frame in time."},
    },
)
async def snapshot(
    request: Request,
    session: TelescopeDep,
    width: Width = None,
    quality: Quality = None,
    camera: CameraQuery = "main",
) -> Response:
    """The newest live-view frame as a JPEG, starting the preview stream briefly if needed."""
    w, q = _variant(request, width, quality)
    pipeline = _pipeline(session, camera)
    try:
        display = await asyncio.wait_for(_fresh_frame(pipeline, pipeline.frames), SNAPSHOT_WAIT_S)
    except TimeoutError:
        raise HTTPException(
            503, detail=f"no frame from telescope {session.id!r} within {SNAPSHOT_WAIT_S:g} s"
        ) from None
    except SlotClosedError:
        raise HTTPException(503, detail=f"telescope {session.id!r} is shutting down") from None
    jpeg = await pipeline.jpeg(display, w, q)
    headers = dict(_NO_STORE)
    if display.stamp is not None:
        headers["X-Frame-Stamp"] = _stamp_value(display.stamp)
    return Response(jpeg, media_type="image/jpeg", headers=headers)


@router.get(
    "/api/telescopes/{telescope_id}/stack.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "The telescope is not stacking."},
        502: {"description": "The telescope sent a stack we could not decode."},
        503: {"description": "The imaging link is down or did not answer."},
    },
)
async def stacked_image(
    request: Request, session: TelescopeDep, width: Width = None, quality: Quality = None
) -> Response:
    """The current stacked image, stretched like the live view; full width by default."""
    _, q = _variant(request, width, quality)
    try:
        frame = await session.imaging.get_stacked_img()
    except ProtocolError as exc:
        raise HTTPException(502, detail=f"stacked image not understood: {exc}") from exc
    except SeestarError as exc:
        # Not connected, link lost mid-request, or no answer in time.
        raise HTTPException(503, detail=f"stacked image unavailable: {exc}") from exc
    if frame is None:
        raise HTTPException(404, detail=f"not stacking: telescope {session.id!r} has no stack")
    try:
        display = await session.pipeline.process_stack(frame)
    except DisplayError as exc:
        raise HTTPException(502, detail=f"stacked image not displayable: {exc}") from exc
    jpeg = await session.pipeline.jpeg(display, MAX_JPEG_WIDTH if width is None else width, q)
    return Response(jpeg, media_type="image/jpeg", headers=_NO_STORE)
