"""The imaging channel client (4800/tcp): preview stream, stacked and current images.

Owns the byte stream from the telescope: it finds frame boundaries (and finds them again after
garbage), tells previews from stacks, acknowledgements and small non-image frames, and decodes
previews off the event loop. Previews follow "latest wins": while one is being decoded only the
newest received frame waits, and decoded frames go to `frames`, a `LatestValue`, never a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from typing import NamedTuple

from scopelink.media.latest import LatestValue
from scopelink.seestar.errors import (
    CallTimeoutError,
    ConnectionLostError,
    NotConnectedError,
    ProtocolError,
)
from scopelink.seestar.frames import FrameKind, ImagingFrame, decode_preview, decode_stack
from scopelink.seestar.imaging_protocol import HEADER_SIZE, MAGIC, FrameHeader, FrameId, ImageType
from scopelink.seestar.link import LinkEnded, ReconnectingLink
from scopelink.seestar.messages import Request, encode_request
from scopelink.settings import IMAGING_KEEPALIVE_S, IMAGING_PORT, MAX_FRAME_BYTES, Backoff

log = logging.getLogger(__name__)

_MAGIC_BYTES = MAGIC.to_bytes(2, "big")
#: Largest header size we believe; anything else means we are not at a frame boundary.
_MAX_HEADER_SIZE = 1024
#: alp and the proxy treat frames this small as "not a payload message".
_MIN_IMAGE_BYTES = 1000
#: Frame ids our requests use; keepalive ids avoid them so a reply cannot be mistaken for one.
_RESERVED_IDS = frozenset({FrameId.HANDSHAKE, *range(FrameId.VIEW, FrameId.CURRENT + 1)})


@dataclass(slots=True)
class ImagingStats:
    """Counters of the imaging channel since the client was created."""

    #: Preview frames whose payload arrived whole.
    frames_received: int = 0
    #: Preview frames decoded and published to `frames`.
    frames_decoded: int = 0
    #: Preview frames dropped undecoded because a newer one arrived first.
    frames_skipped: int = 0
    #: Times the stream lost frame sync and had to scan for the next header.
    resyncs: int = 0
    #: Bytes thrown away while looking for a header.
    bytes_discarded: int = 0
    #: Every byte read from the socket (headers, payloads, garbage).
    bytes_received: int = 0
    stacks_received: int = 0
    #: Handshake, keepalive replies and other small frames that carry no image.
    other_frames: int = 0
    decode_errors: int = 0


class _Raw(NamedTuple):
    header: FrameHeader
    payload: bytes
    received: float
    receive_s: float


class ImagingClient(ReconnectingLink):
    """Client of the telescope's imaging port; subscribe to `frames` for the live preview."""

    def __init__(
        self,
        host: str,
        port: int = IMAGING_PORT,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
        keepalive_s: float = IMAGING_KEEPALIVE_S,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        name: str = "imaging",
    ) -> None:
        super().__init__(host, port, backoff=backoff, connect_timeout=connect_timeout, name=name)
        self.keepalive_s = keepalive_s
        self.max_frame_bytes = max_frame_bytes
        #: The newest decoded preview frame; consumers `await frames.next(seq)`.
        self.frames: LatestValue[ImagingFrame] = LatestValue()
        self.stats = ImagingStats()
        self._streaming = False
        self._pending: dict[int, asyncio.Future[_Raw | None]] = {}
        self._keepalive_ids = itertools.count(1000)

    @property
    def streaming(self) -> bool:
        """Whether we want the preview stream (re-requested after every reconnect)."""
        return self._streaming

    # -- requests ---------------------------------------------------------------------------------

    async def begin_streaming(self) -> None:
        """Ask for the preview stream, now if connected and again after every reconnect."""
        self._streaming = True
        await self._send_if_connected(FrameId.PREVIEW, "begin_streaming")

    async def stop_streaming(self) -> None:
        """Stop the preview stream (and stop asking for it after reconnects)."""
        self._streaming = False
        await self._send_if_connected(FrameId.STOP, "stop_streaming")

    async def get_stacked_img(self, timeout: float = 15.0) -> ImagingFrame | None:
        """The current stacked image, or None when the telescope is not stacking."""
        raw = await self._request_frame(FrameId.STACK, "get_stacked_img", timeout)
        if raw is None:
            return None
        started = time.perf_counter()
        rgb = await asyncio.to_thread(decode_stack, raw.header, raw.payload)
        return ImagingFrame(
            raw.header, FrameKind.STACK, rgb, raw.received, raw.receive_s,
            time.perf_counter() - started,
        )  # fmt: skip

    async def get_current_img(self, timeout: float = 10.0) -> ImagingFrame | None:
        """The current single frame, or None if the telescope answers with an empty ack."""
        raw = await self._request_frame(FrameId.CURRENT, "get_current_img", timeout)
        if raw is None:
            return None
        return await asyncio.to_thread(_decode_preview_frame, raw)

    async def _send_request(self, request_id: int, method: str) -> None:
        await self.send(encode_request(Request(id=request_id, method=method)))

    async def _send_if_connected(self, request_id: int, method: str) -> None:
        # Streaming is a remembered wish: a link that is down gets it when it comes back, and a
        # new connection starts without a stream anyway.
        try:
            await self._send_request(request_id, method)
        except NotConnectedError as exc:
            log.info("%s: %s deferred until connected: %s", self.name, method, exc)

    async def _request_frame(self, frame_id: int, method: str, timeout: float) -> _Raw | None:
        # The answer carries only the request id, so concurrent callers share one request.
        future = self._pending.get(frame_id)
        if future is None or future.done():
            if not self.connected:
                raise NotConnectedError(f"{self.name} is not connected ({self.state})")
            future = asyncio.get_running_loop().create_future()
            self._pending[frame_id] = future
            try:
                await self._send_request(frame_id, method)
            except NotConnectedError:
                self._pending.pop(frame_id, None)
                raise
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if self._pending.get(frame_id) is future:
                del self._pending[frame_id]
                future.set_exception(CallTimeoutError(f"{method}: no answer in {timeout:g} s"))
                future.exception()  # retrieved: other waiters may be gone
            raise CallTimeoutError(f"{method}: no answer in {timeout:g} s") from None

    def _resolve(self, frame_id: int, raw: _Raw | None) -> None:
        future = self._pending.pop(frame_id, None)
        if future is not None and not future.done():
            future.set_result(raw)

    # -- the session ------------------------------------------------------------------------------

    async def _run_session(self, reader: asyncio.StreamReader) -> None:
        previews: LatestValue[_Raw] = LatestValue()
        decoder = asyncio.create_task(self._decode_previews(previews), name=f"{self.name}-decode")
        keepalive = asyncio.create_task(self._keepalive(), name=f"{self.name}-keepalive")
        try:
            self._ready()
            if self._streaming:
                try:
                    await self._send_request(FrameId.PREVIEW, "begin_streaming")
                except NotConnectedError as exc:
                    raise LinkEnded(f"could not resume streaming: {exc}") from exc
            while True:
                header, started = await self._read_header(reader)
                payload = await reader.readexactly(header.length) if header.length else b""
                self.stats.bytes_received += header.length
                now = time.monotonic()
                self._dispatch(_Raw(header, payload, now, now - started), previews)
        finally:
            previews.close()
            for task in (decoder, keepalive):
                task.cancel()
            for task in (decoder, keepalive):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _read_header(self, reader: asyncio.StreamReader) -> tuple[FrameHeader, float]:
        """The next frame header, scanning past anything that is not one."""
        buf = await reader.readexactly(HEADER_SIZE)
        started = time.monotonic()
        self.stats.bytes_received += HEADER_SIZE
        lost = False
        while True:
            header = self._valid_header(buf)
            if header is not None:
                if header.header_size > HEADER_SIZE:
                    extra = header.header_size - HEADER_SIZE
                    await reader.readexactly(extra)
                    self.stats.bytes_received += extra
                return header, started
            if not lost:
                lost = True
                self.stats.resyncs += 1
                log.warning("%s: lost frame sync; scanning for the next header", self.name)
            # Keep from the next magic on (or a trailing first magic byte) and read up to 80 again.
            at = buf.find(_MAGIC_BYTES, 1)
            if at < 0:
                at = HEADER_SIZE - 1 if buf[-1] == _MAGIC_BYTES[0] else HEADER_SIZE
            self.stats.bytes_discarded += at
            more = await reader.readexactly(at)
            self.stats.bytes_received += at
            buf = buf[at:] + more
            started = time.monotonic()

    def _valid_header(self, buf: bytes) -> FrameHeader | None:
        if not buf.startswith(_MAGIC_BYTES):
            return None
        header = FrameHeader.parse(buf)
        if not HEADER_SIZE <= header.header_size <= _MAX_HEADER_SIZE:
            return None
        if header.length > self.max_frame_bytes:
            log.warning("%s: frame of %d bytes is over the limit", self.name, header.length)
            return None
        return header

    def _dispatch(self, raw: _Raw, previews: LatestValue[_Raw]) -> None:
        header = raw.header
        if header.length == 0:
            # An acknowledgement: "nothing to send" (e.g. not stacking).
            self._resolve(header.frame_id, None)
            return
        if header.frame_id == FrameId.HANDSHAKE or not _is_image(header):
            self.stats.other_frames += 1
            return
        if header.frame_id == FrameId.STACK or header.image_type in (
            ImageType.STACK_RAW,
            ImageType.STACK_JPEG,
        ):
            self.stats.stacks_received += 1
            self._resolve(FrameId.STACK, raw)
            return
        if header.frame_id == FrameId.CURRENT:
            self._resolve(FrameId.CURRENT, raw)
            return
        self.stats.frames_received += 1
        previews.publish(raw)

    async def _decode_previews(self, previews: LatestValue[_Raw]) -> None:
        seen = 0
        async for item in previews:
            self.stats.frames_skipped += item.seq - seen - 1
            seen = item.seq
            try:
                frame = await asyncio.to_thread(_decode_preview_frame, item.value)
            except ProtocolError as exc:
                self.stats.decode_errors += 1
                log.warning("%s: dropping preview frame: %s", self.name, exc)
                continue
            if self.frames.closed:
                return
            self.stats.frames_decoded += 1
            self.frames.publish(frame)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            request_id = next(self._keepalive_ids)
            while request_id & 0xFF in _RESERVED_IDS:
                request_id = next(self._keepalive_ids)
            try:
                await self._send_request(request_id, "test_connection")
            except NotConnectedError as exc:
                # The reader sees the same dead socket and ends the session.
                log.debug("%s: keepalive not sent: %s", self.name, exc)
                return

    def _on_disconnected(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLostError(f"{self.name}: {reason}"))
                future.exception()  # retrieved: the waiter may have timed out already

    def start(self) -> None:
        """Start connecting in the background; a client closed before gets a fresh `frames`."""
        if self.frames.closed:
            self.frames = self.frames.renew()
        super().start()

    async def close(self) -> None:
        """Stop for good; consumers waiting on `frames` are woken."""
        await super().close()
        self.frames.close()


def _is_image(header: FrameHeader) -> bool:
    if header.image_type == ImageType.STACK_JPEG:
        return True  # the JPEG carries its own size; the header says 0 x 0
    return header.width > 0 and header.height > 0 and header.length >= _MIN_IMAGE_BYTES


def _decode_preview_frame(raw: _Raw) -> ImagingFrame:
    started = time.perf_counter()
    rgb = decode_preview(raw.header, raw.payload)
    return ImagingFrame(
        raw.header, FrameKind.PREVIEW, rgb, raw.received, raw.receive_s,
        time.perf_counter() - started,
    )  # fmt: skip
