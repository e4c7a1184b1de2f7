"""The simulated imaging channel (4800/tcp): handshake, preview stream, stacked and current images.

One server, many clients. Preview frames are rendered once per tick (at `fps`) and shared by every
streaming client; each client has one sender that always writes the newest frame and waits for the
socket to drain, so a slow client skips frames instead of queueing them or slowing the others.
While `preview_on()` is False (the RTSP view stages) no preview frames are rendered or sent.

Frame stamps: the frame number counts every rendered frame (stream ticks and `get_current_img`
alike, starting at 1). `emit_ms` is the wall clock, `int(time.time() * 1000)`, read after the
frame is rendered, immediately before it is handed to the client sockets; so a viewer that reads
the stamp measures latency from the moment the simulated telescope starts sending.

Stacked images follow the firmware: ZIP-wrapped RGB48 below 2775, raw RGB48 from 2775, JPEG from
2846 (image type 4, width and height 0), and a zero-length acknowledgement (image type 0) when
`stack()` returns None, i.e. the telescope is not stacking.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable

import numpy as np

from scopelink import framestamp
from scopelink.media.latest import LatestValue
from scopelink.seestar.errors import ProtocolError
from scopelink.seestar.frames import encode_stack_jpeg, encode_stack_raw, encode_stack_zip
from scopelink.seestar.framing import LineBuffer
from scopelink.seestar.imaging_protocol import (
    DataType,
    FrameHeader,
    FrameId,
    ImageType,
)
from scopelink.seestar.messages import Request, encode_json_line, parse_request, response_dict
from scopelink.settings import SENSOR_HEIGHT, SENSOR_WIDTH
from scopelink.simulator.faults import Faults, write_with_faults
from scopelink.simulator.scene import Scene, StackSnapshot
from scopelink.simulator.starfield import StarField

Payload = bytes | memoryview

log = logging.getLogger(__name__)

HANDSHAKE = b"server connected!"
#: First firmware that sends stacks as raw RGB48 rather than zipped.
FIRMWARE_RAW_STACK = 2775
#: First firmware that sends stacks as a finished JPEG.
FIRMWARE_JPEG_STACK = 2846
MIN_FPS = 0.5
MAX_FPS = 30.0
_DROP_POLL_S = 0.05


@dataclasses.dataclass(slots=True)
class ImagingServerStats:
    """What the server did, for tests and benchmarks."""

    connections: int = 0
    frames_rendered: int = 0
    frames_sent: int = 0
    #: Stream frames a client missed because its previous frame had not drained yet.
    frames_skipped: int = 0
    requests: int = 0
    malformed_lines: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Rendered:
    number: int
    payload: memoryview


@dataclasses.dataclass(eq=False, slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    generation: int
    write_lock: asyncio.Lock
    streaming: bool = False
    stream_frame_id: int = FrameId.PREVIEW
    #: Stream frames up to this sequence number were published before the client asked for them.
    stream_from_seq: int = 0
    #: Sequence number of the last stream frame the sender took.
    taken_seq: int = 0
    frames_sent: int = 0
    frames_skipped: int = 0

    def abort(self) -> None:
        # Abort, not close: a dropped link does not flush megabytes of buffered frame first.
        self.writer.transport.abort()


def _preview_header(length: int, frame_id: int, number: int, field: StarField) -> FrameHeader:
    return FrameHeader(
        length=length, frame_id=frame_id, width=field.width, height=field.height,
        image_type=ImageType.PREVIEW, data_type=DataType.BAYER16, image_id=number,
        can_debayer=1,
    )  # fmt: skip


def stretch_to_8bit(rgb16: np.ndarray) -> np.ndarray:
    """A display stretch of a linear RGB48 stack, as the firmware does before making its JPEG."""
    sample = rgb16[::8, ::8].astype(np.float32)
    out = np.empty(rgb16.shape, dtype=np.uint8)
    for c in range(3):
        median = float(np.median(sample[..., c]))
        mad = float(np.median(np.abs(sample[..., c] - median))) or 1.0
        low, high = median - 2.0 * mad, median + 80.0 * mad
        scaled = np.clip((rgb16[..., c].astype(np.float32) - low) / (high - low), 0.0, 1.0)
        out[..., c] = np.sqrt(scaled) * 255.0
    return out


class ImagingServer:
    """A simulated Seestar imaging port: streams previews and answers image requests."""

    def __init__(
        self,
        host: str,
        port: int,
        scene: Callable[[], Scene],
        stack: Callable[[], StackSnapshot | None],
        faults: Faults,
        fps: float = 2.0,
        seed: int = 0,
        firmware: int = 2732,
        preview_on: Callable[[], bool] = lambda: True,
        sensor: tuple[int, int] = (SENSOR_WIDTH, SENSOR_HEIGHT),
    ) -> None:
        self.host = host
        self._requested_port = port
        self._scene = scene
        self._stack = stack
        self.faults = faults
        self.firmware = firmware
        self.stats = ImagingServerStats()
        self.fps = fps
        self._field = StarField(seed, *sensor)
        # False in the RTSP view stages: the camera's picture goes out as video, not here.
        self._preview_on = preview_on
        # StarField caches are not thread-safe; renders run in worker threads one at a time.
        self._render_lock = threading.Lock()
        self._frame_number = 0
        self._frames: LatestValue[_Rendered] = LatestValue()
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._streaming_changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stack_cache: tuple[StackSnapshot, int, bytes, FrameHeader] | None = None
        self._started = time.monotonic()

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def fps(self) -> float:
        return self._fps

    @fps.setter
    def fps(self, value: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise ValueError(f"fps must be a number, got {value!r}")
        if not MIN_FPS <= value <= MAX_FPS:
            raise ValueError(f"fps must be between {MIN_FPS} and {MAX_FPS}, got {value}")
        self._fps = float(value)

    @property
    def client_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Listen; returns once the port is bound."""
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
        self._tasks = [
            asyncio.create_task(self._tick_loop(), name="imaging-sim-ticker"),
            asyncio.create_task(self._drop_watch(), name="imaging-sim-drops"),
        ]
        log.info("imaging simulator on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close the port and every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        handlers = set(self._handlers)
        if handlers:
            # Aborted sockets end their handlers; only one stuck in a stall needs cancelling.
            _, stuck = await asyncio.wait(handlers, timeout=1.0)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- rendering --------------------------------------------------------------------------------

    def _render_preview(self, scene: Scene) -> tuple[int, np.ndarray]:
        with self._render_lock:
            self._frame_number += 1
            number = self._frame_number
            mosaic = self._field.render_unstamped(scene, number)
        self.stats.frames_rendered += 1
        return number, mosaic

    @staticmethod
    def _stamp(number: int, mosaic: np.ndarray) -> memoryview:
        # The emit time is taken here, as the frame is handed to the sockets (see module doc).
        framestamp.draw(mosaic, framestamp.FrameStamp(number, int(time.time() * 1000)))
        return memoryview(np.ascontiguousarray(mosaic, dtype="<u2")).cast("B")

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if not any(conn.streaming for conn in self._connections):
                self._streaming_changed.clear()
                await self._streaming_changed.wait()
                next_at = loop.time()
            await self.faults.wait_if_stalled()
            if not self._preview_on():
                # Streaming clients stay connected and get nothing until a star view is back.
                await asyncio.sleep(_DROP_POLL_S)
                next_at = loop.time()
                continue
            try:
                number, mosaic = await asyncio.to_thread(self._render_preview, self._scene())
            except Exception:
                log.exception("imaging simulator: rendering failed")
            else:
                self._publish(_Rendered(number, self._stamp(number, mosaic)))
            next_at += 1.0 / self._fps
            now = loop.time()
            if next_at < now - 1.0 / self._fps:
                next_at = now  # fell behind (stall, slow machine): skip ticks instead of bursting
            await asyncio.sleep(max(0.0, next_at - now))

    def _publish(self, frame: _Rendered) -> None:
        seq = self._frames.publish(frame)
        # The frame before this one is now superseded; clients that never took it skipped it.
        for conn in self._connections:
            if conn.streaming and seq - 1 > max(conn.taken_seq, conn.stream_from_seq):
                conn.frames_skipped += 1
                self.stats.frames_skipped += 1

    async def _stack_payload(self, snapshot: StackSnapshot) -> tuple[FrameHeader, bytes]:
        cached = self._stack_cache
        if cached is not None and cached[0] == snapshot and cached[1] == self.firmware:
            return cached[3], cached[2]
        firmware = self.firmware
        header, payload = await asyncio.to_thread(self._encode_stack, snapshot, firmware)
        self._stack_cache = (snapshot, firmware, payload, header)
        return header, payload

    def _encode_stack(self, snapshot: StackSnapshot, firmware: int) -> tuple[FrameHeader, bytes]:
        with self._render_lock:
            rgb = self._field.render_stack_rgb(snapshot)
        height, width = rgb.shape[:2]
        if firmware >= FIRMWARE_JPEG_STACK:
            payload = encode_stack_jpeg(stretch_to_8bit(rgb))
            header = FrameHeader(
                length=len(payload), frame_id=FrameId.STACK, image_type=ImageType.STACK_JPEG
            )
            return header, payload
        payload = encode_stack_raw(rgb) if firmware >= FIRMWARE_RAW_STACK else encode_stack_zip(rgb)
        header = FrameHeader(
            length=len(payload), frame_id=FrameId.STACK, width=width, height=height,
            image_type=ImageType.STACK_RAW, data_type=DataType.RGB16,
            image_id=snapshot.stacked_frames,
        )  # fmt: skip
        return header, payload

    # -- connections ------------------------------------------------------------------------------

    async def _drop_watch(self) -> None:
        while True:
            await asyncio.sleep(_DROP_POLL_S)
            generation = self.faults.drop_generation
            for conn in list(self._connections):
                if conn.generation != generation:
                    conn.abort()

    async def _send(self, conn: _Connection, header: FrameHeader, payload: Payload) -> None:
        async with conn.write_lock:
            await self._write(conn, header, payload)

    async def _write(self, conn: _Connection, header: FrameHeader, payload: Payload) -> None:
        # Header and payload go out as two writes: joining them would copy megabytes per frame.
        await write_with_faults(conn.writer, header.pack(), self.faults)
        if len(payload):
            await write_with_faults(conn.writer, payload, self.faults)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Connection(writer, self.faults.drop_generation, asyncio.Lock())
        self._connections.add(conn)
        self.stats.connections += 1
        sender: asyncio.Task[None] | None = None
        try:
            await self._send(conn, FrameHeader(length=len(HANDSHAKE), frame_id=2), HANDSHAKE)
            sender = asyncio.create_task(self._stream_to(conn), name="imaging-sim-sender")
            lines = LineBuffer()
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.faults.wait_if_stalled()
                for line in lines.feed(data):
                    await self._handle_line(conn, line)
        except (ConnectionError, OSError) as exc:
            log.debug("imaging simulator: client gone: %s", exc)
        except asyncio.CancelledError:
            # Python 3.11's stream server logs a cancelled handler as an error: end quietly.
            log.debug("imaging simulator: connection handler cancelled")
        finally:
            conn.streaming = False
            self._connections.discard(conn)
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            conn.abort()
            self._handlers.discard(task)

    async def _stream_to(self, conn: _Connection) -> None:
        """Write the newest rendered frame to one client whenever it has drained the last one."""
        try:
            await self._stream_loop(conn)
        except (ConnectionError, OSError) as exc:
            log.debug("imaging simulator: stream write failed: %s", exc)
            conn.abort()
        except Exception:
            log.exception("imaging simulator: stream sender failed")
            conn.abort()

    async def _stream_loop(self, conn: _Connection) -> None:
        while True:
            await self._frames.next(max(conn.taken_seq, conn.stream_from_seq))
            async with conn.write_lock:
                # Waiting for the lock (a stack reply, say) may have let newer frames arrive.
                latest = self._frames.latest
                assert latest is not None
                conn.taken_seq = latest.seq
                if not conn.streaming:
                    continue
                frame = latest.value
                header = _preview_header(
                    len(frame.payload), conn.stream_frame_id, frame.number, self._field
                )
                await self._write(conn, header, frame.payload)
            conn.frames_sent += 1
            self.stats.frames_sent += 1

    async def _handle_line(self, conn: _Connection, line: bytes) -> None:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self.stats.malformed_lines += 1
            log.debug("imaging simulator: ignoring line: %s", exc)
            return
        self.stats.requests += 1
        # Params (including the firmware's "verify" marker) do not matter to any method here.
        frame_id = request.id & 0xFF
        match request.method:
            case "begin_streaming":
                conn.stream_frame_id = frame_id
                if not conn.streaming:
                    conn.stream_from_seq = self._frames.seq
                    conn.streaming = True
                self._streaming_changed.set()
            case "stop_streaming":
                conn.streaming = False
            case "get_stacked_img":
                await self._answer_stack(conn, frame_id)
            case "get_current_img":
                number, mosaic = await asyncio.to_thread(self._render_preview, self._scene())
                payload = self._stamp(number, mosaic)
                header = _preview_header(len(payload), frame_id, number, self._field)
                await self._send(conn, header, payload)
            case "test_connection":
                await self._reply_json(conn, request, result="server connected!")
            case _:
                await self._reply_json(conn, request, code=102, error="unknown method")

    async def _answer_stack(self, conn: _Connection, frame_id: int) -> None:
        snapshot = self._stack()
        if snapshot is None:
            ack = FrameHeader(length=0, frame_id=frame_id, image_type=ImageType.ACK)
            await self._send(conn, ack, b"")
            return
        header, payload = await self._stack_payload(snapshot)
        await self._send(conn, dataclasses.replace(header, frame_id=frame_id), payload)

    async def _reply_json(
        self, conn: _Connection, request: Request, *, result: object = 0, code: int = 0,
        error: str | None = None,
    ) -> None:  # fmt: skip
        uptime = time.monotonic() - self._started
        body = encode_json_line(response_dict(request, uptime, result, code, error))
        await self._send(conn, FrameHeader(length=len(body), frame_id=request.id & 0xFF), body)
