"""The simulated imaging port, seen from a bare socket: the bytes on the wire must be right."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from scopelink import framestamp
from scopelink.seestar.frames import decode_preview, decode_stack
from scopelink.seestar.imaging_protocol import (
    HEADER_SIZE,
    MAGIC,
    DataType,
    FrameHeader,
    ImageType,
)
from scopelink.simulator.faults import Faults
from scopelink.simulator.imaging_server import ImagingServer
from scopelink.simulator.scene import Scene, StackSnapshot

FRAME_BYTES = HEADER_SIZE + 1080 * 1920 * 2


@dataclass
class Sky:
    """What the server's callables return; tests change it."""

    scene: Scene = field(default_factory=lambda: Scene(ra_hours=5.5, dec_deg=-5.0))
    stack: StackSnapshot | None = None


@pytest.fixture
def sky() -> Sky:
    return Sky()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def server(sky: Sky, faults: Faults) -> AsyncIterator[ImagingServer]:
    srv = ImagingServer(
        "127.0.0.1", 0, scene=lambda: sky.scene, stack=lambda: sky.stack, faults=faults, fps=20
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class Wire:
    """A bare client socket that speaks JSON lines up and reads frames down."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, method: str, request_id: int, **extra: object) -> None:
        self.writer.write(json.dumps({"id": request_id, "method": method, **extra}).encode())
        self.writer.write(b"\r\n")
        await self.writer.drain()

    async def frame(self, timeout: float = 3.0) -> tuple[FrameHeader, bytes]:
        async def read() -> tuple[FrameHeader, bytes]:
            header = FrameHeader.parse(await self.reader.readexactly(HEADER_SIZE))
            assert header.magic == MAGIC
            return header, await self.reader.readexactly(header.length)

        return await asyncio.wait_for(read(), timeout)

    async def handshake(self) -> None:
        header, payload = await self.frame()
        assert (header.frame_id, payload) == (2, b"server connected!")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_handshake_frame_is_sent_on_connect(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    header, payload = await wire.frame()
    assert header.magic == MAGIC
    assert (header.version, header.header_size) == (2, 80)
    assert (header.frame_id, header.width, header.height, header.length) == (2, 0, 0, 17)
    assert payload == b"server connected!"
    await wire.close()


async def test_begin_streaming_pushes_bayer_preview_frames_at_the_set_rate(
    server: ImagingServer,
) -> None:
    server.fps = 10
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("begin_streaming", 21)
    first, payload = await wire.frame()
    started = time.monotonic()
    ids = [first.image_id]
    while time.monotonic() - started < 1.0:
        header, payload = await wire.frame()
        ids.append(header.image_id)
    assert (first.frame_id, first.width, first.height) == (21, 1080, 1920)
    assert (first.image_type, first.data_type) == (ImageType.PREVIEW, DataType.BAYER16)
    assert first.length == len(payload) == 1080 * 1920 * 2
    assert 8 <= len(ids) <= 13
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    await wire.close()


async def test_frame_id_echoes_the_low_byte_of_the_request_id(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("begin_streaming", 0x1234)
    header, _ = await wire.frame()
    assert header.frame_id == 0x34
    await wire.close()


async def test_stop_streaming_stops_the_frames(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("begin_streaming", 21)
    await wire.frame()
    await wire.send("stop_streaming", 22)
    await asyncio.sleep(0.2)  # frames already on the way may still arrive
    while True:
        try:
            await wire.frame(timeout=0.3)
        except TimeoutError:
            break
    rendered = server.stats.frames_rendered
    await asyncio.sleep(0.3)
    assert server.stats.frames_rendered == rendered
    await wire.close()


async def test_frames_are_rendered_once_and_shared_by_all_clients(server: ImagingServer) -> None:
    wires = [await Wire.open(server.port) for _ in range(3)]
    for wire in wires:
        await wire.handshake()
        await wire.send("begin_streaming", 21)
    seen: list[set[int]] = [set(), set(), set()]
    for _ in range(8):
        for i, wire in enumerate(wires):
            header, _ = await wire.frame()
            seen[i].add(header.image_id)
    assert len(seen[0] & seen[1] & seen[2]) >= 5
    # About one render per tick, not one per client.
    assert server.stats.frames_rendered <= server.stats.frames_sent / 2
    for wire in wires:
        await wire.close()


async def test_slow_client_skips_frames_without_slowing_others(server: ImagingServer) -> None:
    server.fps = 20
    slow = await Wire.open(server.port)
    fast = await Wire.open(server.port)
    for wire in (slow, fast):
        await wire.handshake()
        await wire.send("begin_streaming", 21)
    # The slow client never reads; the fast one reads everything for 1.5 s.
    count = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        await fast.frame()
        count += 1
    assert count >= 0.75 * 20 * 1.5
    rendered = server.stats.frames_rendered
    assert server.stats.frames_skipped >= rendered - 10  # the slow one missed nearly all
    # Nothing queues up for the slow client: once it stops streaming and drains its socket, it
    # has at most the frame that was being written (partly in kernel buffers) and no more.
    await slow.send("stop_streaming", 22)
    slow_bytes = 0
    while True:
        try:
            chunk = await asyncio.wait_for(slow.reader.read(1 << 20), 0.3)
        except TimeoutError:
            break
        if not chunk:
            break
        slow_bytes += len(chunk)
    assert slow_bytes <= 2 * FRAME_BYTES
    for wire in (slow, fast):
        await wire.close()


async def test_stack_answer_is_ack_when_not_stacking(server: ImagingServer, sky: Sky) -> None:
    sky.stack = None
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("get_stacked_img", 23)
    header, payload = await wire.frame()
    assert (header.frame_id, header.image_type) == (23, ImageType.ACK)
    assert header.length == len(payload) == 0
    await wire.close()


@pytest.mark.parametrize(
    ("firmware", "image_type", "size", "magic"),
    [
        (2732, ImageType.STACK_RAW, (1080, 1920), b"PK\x03\x04"),
        (2800, ImageType.STACK_RAW, (1080, 1920), None),
        (2846, ImageType.STACK_JPEG, (0, 0), b"\xff\xd8"),
    ],
)
async def test_stack_format_follows_the_firmware(
    server: ImagingServer,
    sky: Sky,
    firmware: int,
    image_type: ImageType,
    size: tuple[int, int],
    magic: bytes | None,
) -> None:
    server.firmware = firmware
    sky.stack = StackSnapshot(ra_hours=5.5, dec_deg=-5.0, stacked_frames=12)
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("get_stacked_img", 23)
    header, payload = await wire.frame(timeout=10)
    assert (header.frame_id, header.image_type) == (23, image_type)
    assert (header.width, header.height) == size
    if magic is None:
        assert len(payload) == 1080 * 1920 * 6
    else:
        assert payload.startswith(magic)
    rgb = decode_stack(header, payload)
    assert rgb.shape == (1920, 1080, 3)
    await wire.close()


async def test_current_image_is_one_stamped_preview_frame(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    before = time.time() * 1000
    await wire.send("get_current_img", 24)
    header, payload = await wire.frame()
    after = time.time() * 1000
    assert (header.frame_id, header.image_type, header.data_type) == (24, 1, 2)
    stamp = framestamp.read(decode_preview(header, payload))
    assert stamp is not None
    assert stamp.frame == header.image_id
    assert before <= stamp.emit_ms <= after
    with pytest.raises(TimeoutError):
        await wire.frame(timeout=0.3)  # one frame, not a stream
    await wire.close()


async def test_stream_stamps_carry_frame_number_and_send_time(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("begin_streaming", 21)
    for _ in range(3):
        header, payload = await wire.frame()
        received = time.time() * 1000
        stamp = framestamp.read(decode_preview(header, payload)[:200])
        assert stamp is not None
        assert stamp.frame == header.image_id
        assert received - 500 <= stamp.emit_ms <= received
    await wire.close()


async def test_keepalive_gets_a_small_framed_reply(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("test_connection", 1003, params="verify")
    header, payload = await wire.frame()
    assert header.frame_id == 1003 & 0xFF
    assert (header.width, header.height) == (0, 0)
    assert 0 < header.length < 1000
    reply = json.loads(payload)
    assert (reply["method"], reply["code"], reply["id"]) == ("test_connection", 0, 1003)
    await wire.close()


async def test_malformed_lines_are_ignored(server: ImagingServer) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    wire.writer.write(b"{not json\r\n[1,2]\r\n\r\n")
    await wire.send("test_connection", 5)
    header, _ = await wire.frame()
    assert header.frame_id == 5
    assert server.stats.malformed_lines == 2
    await wire.close()


async def test_fps_is_validated(server: ImagingServer) -> None:
    for bad in (0.1, 31, float("nan")):
        with pytest.raises(ValueError):
            server.fps = bad
    server.fps = 0.5
    server.fps = 30
    assert server.fps == 30


async def test_port_zero_picks_a_free_port_and_clients_connect_at_once(
    server: ImagingServer,
) -> None:
    assert server.port > 0
    wires = [await Wire.open(server.port) for _ in range(4)]
    for wire in wires:
        await wire.handshake()
    assert server.client_count == 4
    for wire in wires:
        await wire.close()


async def test_drop_fault_closes_existing_connections(
    server: ImagingServer, faults: Faults
) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    faults.drop()
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await wire.frame(timeout=2)
    await wire.close()
    fresh = await Wire.open(server.port)
    await fresh.handshake()
    await fresh.close()


async def test_split_writes_still_arrive_as_whole_frames(
    server: ImagingServer, faults: Faults
) -> None:
    faults.split_writes = True
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("begin_streaming", 21)
    header, payload = await wire.frame(timeout=10)
    assert header.length == len(payload) == 1080 * 1920 * 2
    await wire.send("stop_streaming", 22)
    await wire.close()


async def test_stall_holds_replies_until_it_ends(server: ImagingServer, faults: Faults) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    faults.stall(0.4)
    started = time.monotonic()
    await wire.send("test_connection", 7)
    await wire.frame()
    assert time.monotonic() - started >= 0.3
    await wire.close()


async def test_stars_in_the_stream_follow_the_scene(server: ImagingServer, sky: Sky) -> None:
    wire = await Wire.open(server.port)
    await wire.handshake()
    await wire.send("get_current_img", 24)
    _, a = await wire.frame()
    sky.scene = Scene(ra_hours=12.0, dec_deg=40.0)
    await wire.send("get_current_img", 24)
    _, b = await wire.frame()
    pixels_a = np.frombuffer(a, "<u2").reshape(1920, 1080)[200:]
    pixels_b = np.frombuffer(b, "<u2").reshape(1920, 1080)[200:]
    # Sky ~900 ADU with ~18 ADU of noise: anything 300 above it is starlight.
    bright_a = pixels_a > np.median(pixels_a) + 300
    bright_b = pixels_b > np.median(pixels_b) + 300
    assert bright_a.any() and bright_b.any()
    assert (bright_a & bright_b).sum() < 0.2 * min(bright_a.sum(), bright_b.sum())
    await wire.close()
