"""The imaging client over real sockets: against the simulator and against scripted raw servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import numpy as np
import pytest

from scopelink import framestamp
from scopelink.media.latest import SlotClosedError
from scopelink.seestar.errors import CallTimeoutError, ConnectionLostError, NotConnectedError
from scopelink.seestar.frames import FrameKind, encode_bayer
from scopelink.seestar.imaging import ImagingClient
from scopelink.seestar.imaging_protocol import DataType, FrameHeader, ImageType
from scopelink.seestar.messages import parse_request
from scopelink.settings import Backoff
from scopelink.simulator.faults import Faults
from scopelink.simulator.imaging_server import ImagingServer
from scopelink.simulator.scene import Scene, StackSnapshot

FAST_BACKOFF = Backoff(initial_s=0.05, maximum_s=0.2)
HANDSHAKE = FrameHeader(length=17, frame_id=2).pack() + b"server connected!"

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def preview_bytes(image_id: int, width: int = 32, height: int = 24) -> bytes:
    """One small but real preview frame (header + Bayer payload) as the telescope sends it."""
    mosaic = np.full((height, width), image_id, dtype=np.uint16)
    payload = encode_bayer(mosaic)
    header = FrameHeader(
        length=len(payload), frame_id=21, width=width, height=height,
        image_type=ImageType.PREVIEW, data_type=DataType.BAYER16, image_id=image_id,
    )  # fmt: skip
    return header.pack() + payload


class RawServer:
    """A scripted imaging port: each connection runs `script`; lines it received are kept."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; that is what several tests do on purpose
        finally:
            writer.close()

    def kill(self) -> None:
        """Drop every open connection at once, as a crashing telescope would."""
        for writer in self.writers:
            writer.transport.abort()

    async def stop(self) -> None:
        self.kill()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def read_lines(reader: asyncio.StreamReader, into: list[str]) -> None:
    while line := await reader.readline():
        into.append(parse_request(line.strip()).method)


@pytest.fixture
async def raw_servers() -> AsyncIterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        await server.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[ImagingClient]]:
    made: list[ImagingClient] = []
    yield made
    for client in made:
        await client.close()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def stack() -> list[StackSnapshot | None]:
    return [None]


@pytest.fixture
async def sim(faults: Faults, stack: list[StackSnapshot | None]) -> AsyncIterator[ImagingServer]:
    server = ImagingServer(
        "127.0.0.1", 0, scene=lambda: Scene(ra_hours=5.5, dec_deg=-5.0), stack=lambda: stack[0],
        faults=faults, fps=20,
    )  # fmt: skip
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(port: int, clients: list[ImagingClient], **kwargs: object) -> ImagingClient:
    kwargs.setdefault("backoff", FAST_BACKOFF)
    client = ImagingClient("127.0.0.1", port, **kwargs)  # type: ignore[arg-type]
    clients.append(client)
    await client.connect(timeout=5)
    return client


async def start_raw(script: Script, raw_servers: list[RawServer]) -> RawServer:
    server = RawServer(script)
    raw_servers.append(server)
    return server


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- against the simulator ---------------------------------------------------------------------


async def test_streaming_delivers_decoded_stamped_preview_frames(
    sim: ImagingServer, clients: list[ImagingClient]
) -> None:
    client = await connect(sim.port, clients)
    await client.begin_streaming()
    item = await asyncio.wait_for(client.frames.next(0), 5)
    frame = item.value
    assert frame.kind is FrameKind.PREVIEW
    assert frame.rgb is not None
    assert frame.rgb.shape == (1920, 1080, 3)
    assert frame.rgb.dtype == np.uint16
    stamp = framestamp.read(frame.rgb[:200])
    assert stamp is not None and stamp.frame == frame.header.image_id
    assert frame.decode_s > 0
    assert client.stats.frames_decoded >= 1
    assert client.stats.other_frames >= 1  # the handshake


async def test_stack_answer_is_ack_when_not_stacking(
    sim: ImagingServer, clients: list[ImagingClient]
) -> None:
    client = await connect(sim.port, clients)
    assert await client.get_stacked_img(timeout=5) is None


@pytest.mark.parametrize(
    ("firmware", "dtype"), [(2732, np.uint16), (2800, np.uint16), (2900, np.uint8)]
)
async def test_stacked_image_is_decoded_whatever_the_firmware_sends(
    sim: ImagingServer,
    clients: list[ImagingClient],
    stack: list[StackSnapshot | None],
    firmware: int,
    dtype: type,
) -> None:
    sim.firmware = firmware
    stack[0] = StackSnapshot(ra_hours=5.5, dec_deg=-5.0, stacked_frames=20)
    client = await connect(sim.port, clients)
    frame = await client.get_stacked_img(timeout=10)
    assert frame is not None
    assert frame.kind is FrameKind.STACK
    assert frame.rgb is not None
    assert frame.rgb.shape == (1920, 1080, 3)
    assert frame.rgb.dtype == dtype


async def test_current_image_is_one_decoded_frame(
    sim: ImagingServer, clients: list[ImagingClient]
) -> None:
    client = await connect(sim.port, clients)
    frame = await client.get_current_img(timeout=5)
    assert frame is not None
    assert frame.header.frame_id == 24
    assert frame.rgb is not None and frame.rgb.shape == (1920, 1080, 3)
    assert client.frames.seq == 0  # not a stream frame


async def test_streaming_resumes_after_reconnect(
    sim: ImagingServer, clients: list[ImagingClient], faults: Faults
) -> None:
    client = await connect(sim.port, clients)
    await client.begin_streaming()
    first = await asyncio.wait_for(client.frames.next(0), 5)
    faults.drop()
    await wait_until(lambda: sim.stats.connections == 2 and client.connected)
    # Frames keep coming on the new connection without anyone asking again.
    seq = client.frames.seq
    later = await asyncio.wait_for(client.frames.next(seq), 5)
    assert later.value.header.image_id > first.value.header.image_id
    assert client.streaming


async def test_stopped_stream_stays_stopped_after_reconnect(
    sim: ImagingServer, clients: list[ImagingClient], faults: Faults
) -> None:
    client = await connect(sim.port, clients)
    await client.begin_streaming()
    await asyncio.wait_for(client.frames.next(0), 5)
    await client.stop_streaming()
    faults.drop()
    await wait_until(lambda: sim.stats.connections == 2 and client.connected)
    await asyncio.sleep(0.3)
    received = client.stats.frames_received
    await asyncio.sleep(0.3)
    assert client.stats.frames_received == received


async def test_pending_stack_request_fails_fast_when_the_server_is_killed(
    sim: ImagingServer,
    clients: list[ImagingClient],
    faults: Faults,
    stack: list[StackSnapshot | None],
) -> None:
    stack[0] = StackSnapshot(ra_hours=5.5, dec_deg=-5.0, stacked_frames=3)
    client = await connect(sim.port, clients)
    faults.stall(5.0)  # the telescope hangs with our request in it...
    request = asyncio.create_task(client.get_stacked_img(timeout=30))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    stopping = asyncio.create_task(sim.stop())  # ...and then dies
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(request, 2)
    assert time.monotonic() - started < 0.5
    faults.clear()
    await stopping


# -- against scripted raw servers --------------------------------------------------------------


async def test_client_resynchronises_after_garbage_between_frames(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    garbage = (
        b"\x00\x11garbage\x03"  # a lone first magic byte
        + b"\x03\xc3\x00\x02\x00\x07" + bytes(40)  # the magic, then a header size that is wrong
        + np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    )  # fmt: skip
    garbage = garbage.replace(b"\x03\xc3\x00\x02\x00\x50", b"")  # no real header by accident

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE + preview_bytes(1) + garbage + preview_bytes(2))
        await writer.drain()
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    await wait_until(lambda: client.frames.seq > 0 and client.stats.frames_received == 2)
    item = await asyncio.wait_for(client.frames.next(0), 2)
    await wait_until(lambda: (client.frames.latest or item).value.header.image_id == 2)
    assert client.stats.resyncs == 1
    assert client.stats.bytes_discarded == len(garbage)
    assert client.connected


async def test_oversized_frame_length_counts_as_lost_sync(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    bogus = FrameHeader(length=500_000_000, frame_id=21, width=1080, height=1920).pack()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE + bogus + preview_bytes(7))
        await writer.drain()
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients, max_frame_bytes=1_000_000)
    item = await asyncio.wait_for(client.frames.next(0), 3)
    assert item.value.header.image_id == 7
    assert client.stats.resyncs == 1
    assert client.stats.bytes_discarded == len(bogus)


async def test_handshake_and_small_frames_are_skipped(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    reply = b'{"jsonrpc":"2.0","method":"test_connection","result":"server connected!","code":0}'
    small = FrameHeader(length=len(reply), frame_id=0xE8).pack() + reply

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE + small + preview_bytes(3))
        await writer.drain()
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    item = await asyncio.wait_for(client.frames.next(0), 3)
    assert item.value.header.image_id == 3
    assert client.stats.other_frames == 2
    assert client.stats.frames_received == 1


async def test_newest_preview_frame_always_wins(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    burst = b"".join(preview_bytes(i, width=540, height=960) for i in range(1, 31))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE + burst)
        await writer.drain()
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    await wait_until(lambda: client.stats.frames_decoded + client.stats.frames_skipped == 30)
    latest = client.frames.latest
    assert latest is not None and latest.value.header.image_id == 30
    assert client.stats.frames_received == 30
    assert client.frames.seq == client.stats.frames_decoded


async def test_keepalive_is_sent_on_schedule_with_ids_that_cannot_collide(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    ids: list[int] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE)
        while line := await reader.readline():
            request = parse_request(line.strip())
            assert request.method == "test_connection"
            ids.append(request.id)

    server = await start_raw(script, raw_servers)
    await connect(await server.start(), clients, keepalive_s=0.05)
    await wait_until(lambda: len(ids) >= 4)
    assert all(i & 0xFF not in (2, 20, 21, 22, 23, 24) for i in ids)
    assert len(set(ids)) == len(ids)


async def test_concurrent_stack_requests_share_one_request(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    methods: list[str] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE)
        methods.append(parse_request((await reader.readline()).strip()).method)
        await asyncio.sleep(0.2)
        writer.write(FrameHeader(length=0, frame_id=23).pack())  # not stacking
        await read_lines(reader, methods)

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    results = await asyncio.gather(client.get_stacked_img(2), client.get_stacked_img(2))
    assert results == [None, None]
    assert methods == ["get_stacked_img"]


async def test_silent_telescope_makes_the_request_time_out(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    with pytest.raises(CallTimeoutError):
        await client.get_current_img(timeout=0.2)
    # A later request is sent afresh rather than joining the timed-out one.
    with pytest.raises(CallTimeoutError):
        await client.get_current_img(timeout=0.1)


async def test_killed_connection_fails_the_pending_request_at_once(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    asked = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE)
        await reader.readline()
        asked.set()
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    request = asyncio.create_task(client.get_stacked_img(timeout=30))
    await asyncio.wait_for(asked.wait(), 2)
    started = time.monotonic()
    server.kill()
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(request, 2)
    assert time.monotonic() - started < 0.5


async def test_requests_need_a_connection(clients: list[ImagingClient]) -> None:
    client = ImagingClient("127.0.0.1", 9, backoff=FAST_BACKOFF)
    clients.append(client)
    with pytest.raises(NotConnectedError):
        await client.get_stacked_img(timeout=1)
    await client.begin_streaming()  # remembered for when the link comes up
    assert client.streaming


async def test_close_wakes_frame_consumers(
    raw_servers: list[RawServer], clients: list[ImagingClient]
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HANDSHAKE)
        await reader.read()

    server = await start_raw(script, raw_servers)
    client = await connect(await server.start(), clients)
    waiter = asyncio.create_task(client.frames.next(0))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(SlotClosedError):
        await asyncio.wait_for(waiter, 1)


# -- a telescope that vanishes without a word ---------------------------------------------------

BLACKHOLE_TABLE = "scopelink_test_blackhole"


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)


@contextlib.contextmanager
def blackhole(port: int) -> Iterator[None]:
    """Drop every TCP segment to and from `port` on this machine: no FIN, no RST, nothing."""
    _nft(
        f"table inet {BLACKHOLE_TABLE} {{\n"
        "  chain out { type filter hook output priority 0;\n"
        f"    tcp dport {port} drop\n    tcp sport {port} drop\n  }}\n}}\n"
    )
    try:
        yield
    finally:
        _nft(f"delete table inet {BLACKHOLE_TABLE}\n")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="dropping packets needs root and nft"
)
async def test_a_telescope_that_vanishes_is_noticed_and_the_stream_resumes_when_it_returns(
    sim: ImagingServer, clients: list[ImagingClient]
) -> None:
    # Without dead-peer detection the kernel retransmits for ~15 minutes while the read waits.
    client = ImagingClient("127.0.0.1", sim.port, backoff=FAST_BACKOFF, keepalive_s=0.5)
    client.dead_peer_s = 2.0
    clients.append(client)
    await client.connect(timeout=5)
    await client.begin_streaming()
    await asyncio.wait_for(client.frames.next(0), 5)
    with blackhole(sim.port):
        await wait_until(lambda: not client.connected, timeout=8)
        assert client.last_error is not None and "timed out" in client.last_error
    await wait_until(lambda: client.connected, timeout=15)
    seq = client.frames.seq
    await asyncio.wait_for(client.frames.next(seq), 5)  # streaming again, nobody asked
