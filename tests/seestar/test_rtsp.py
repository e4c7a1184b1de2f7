"""The RTSP source against real sockets: the simulator's RTSP camera, and servers that misbehave."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import statistics
import threading
import time
from collections.abc import AsyncIterator

import av
import pytest

from scopelink import framestamp
from scopelink.seestar import h264
from scopelink.seestar.control import ControlClient
from scopelink.seestar.link import ConnectionState
from scopelink.seestar.rtsp import (
    AccessUnit,
    RtspSource,
    StreamFacts,
    Transport,
    _RawUnit,
    _Timeline,
    _UnitGrouper,
    passthrough_ok,
)
from scopelink.settings import Backoff
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.conftest import make_client

FAST_BACKOFF = Backoff(initial_s=0.05, maximum_s=0.3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workers(source: RtspSource) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{source.name}-")]


async def until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:g} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers: a telescope that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


# -- passthrough_ok ------------------------------------------------------------------------------


def facts(**kwargs: object) -> StreamFacts:
    base: dict[str, object] = dict(
        codec="h264", transport=Transport.TCP, profile="Constrained Baseline", profile_idc=66,
        constraints=0xC0, level_idc=40, level="4.0", width=1920, height=1080, frame_rate=30.0,
        slice_groups=1, redundant_pictures=False, cabac=False,
    )  # fmt: skip
    return StreamFacts(**{**base, **kwargs})  # type: ignore[arg-type]


def test_constrained_baseline_without_b_frames_goes_to_browsers_unchanged() -> None:
    assert passthrough_ok(facts()) is None
    assert passthrough_ok(facts(profile="Baseline", constraints=0x00)) is None
    assert facts().profile_level_id == "42c028"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"codec": "hevc"}, "not H.264"),
        ({"profile": None}, "profile is unknown"),
        ({"profile": "Main", "profile_idc": 77}, "Main is not (Constrained) Baseline"),
        ({"profile": "High", "profile_idc": 100}, "High is not"),
        ({"reorders": True}, "B-frames"),
        ({"profile": "Baseline", "slice_groups": 2}, "flexible macroblock ordering"),
        ({"profile": "Baseline", "redundant_pictures": True}, "redundant pictures"),
    ],
)
def test_passthrough_refuses_what_browsers_cannot_decode(
    changes: dict[str, object], reason: str
) -> None:
    refusal = passthrough_ok(facts(**changes))
    assert refusal is not None and reason in refusal


# -- servers that are not there or do not answer ---------------------------------------------------


async def test_a_server_that_is_not_there_is_retried_with_backoff_and_close_is_prompt() -> None:
    states: list[ConnectionState] = []
    source = RtspSource("127.0.0.1", free_port(), backoff=FAST_BACKOFF, name="rtsp-absent")
    source.add_state_listener(states.append)
    source.start()
    await until(lambda: source.stats.failed_attempts >= 3, 5.0)
    assert source.state is ConnectionState.RECONNECTING
    assert source.last_error is not None and "connect failed" in source.last_error
    assert "refused" in source.last_error.lower()
    assert source.stats.units == 0 and source.facts is None
    started = time.monotonic()
    await source.close()
    assert time.monotonic() - started < 0.5
    assert states[0] is ConnectionState.CONNECTING
    assert states[-1] is ConnectionState.CLOSED
    assert ConnectionState.CONNECTED not in states
    with pytest.raises(TimeoutError):
        await source.wait_connected(0.05)


async def test_a_server_that_never_answers_times_out_and_close_does_not_wait_for_it(
    silent_server: int,
) -> None:
    source = RtspSource(
        "127.0.0.1", silent_server, backoff=FAST_BACKOFF, connect_timeout=0.5,
        name="rtsp-silent",
    )  # fmt: skip
    source.start()
    await until(lambda: source.stats.failed_attempts >= 1, 3.0)
    assert source.last_error == "connect failed: no answer within 0.5 s"
    # Close while the next attempt is blocked in FFmpeg: returns at once, the worker soon after.
    await until(lambda: bool(workers(source)), 2.0)
    started = time.monotonic()
    await source.close()
    assert time.monotonic() - started < 0.2
    assert source.state is ConnectionState.CLOSED and source.units.closed
    await until(lambda: not workers(source), 2.0)
    assert source.stats.units == 0


# -- against the simulator's RTSP camera -----------------------------------------------------------


class Camera:
    """A simulator with a control client to switch its view mode."""

    def __init__(self, sim: Simulator, client: ControlClient) -> None:
        self.sim = sim
        self.client = client

    async def view(self, mode: str) -> None:
        await self.client.call("iscope_start_view", {"mode": mode})

    def source(self, transport: Transport = Transport.TCP, **kwargs: object) -> RtspSource:
        kwargs.setdefault("backoff", FAST_BACKOFF)
        kwargs.setdefault("connect_timeout", 1.0)
        kwargs.setdefault("stall_timeout", 1.0)
        return RtspSource(
            self.sim.host,
            self.sim.rtsp.port,
            transport=transport,
            **kwargs,  # type: ignore[arg-type]
        )


async def open_camera(**config: object) -> Camera:
    sim = Simulator(SimulatorConfig.ephemeral(**config))
    await sim.start()
    client = make_client(sim)
    await client.connect(timeout=5)
    camera = Camera(sim, client)
    await camera.view("moon")
    return camera


@pytest.fixture
async def camera() -> AsyncIterator[Camera]:
    """The simulator in Moon mode: its camera serves H.264 over RTSP."""
    cam = await open_camera()
    try:
        yield cam
    finally:
        await cam.client.close()
        await cam.sim.stop()


class Collector:
    """Every unit a consumer sees (it may skip some, as any latest-wins consumer may)."""

    def __init__(self, source: RtspSource) -> None:
        self.units: list[AccessUnit] = []
        self._source = source
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        seen = 0
        async for item in self._source.units.values():
            seen = item.seq
            self.units.append(item.value)
        del seen

    def since(self, number: int) -> list[AccessUnit]:
        return [u for u in self.units if u.number > number]

    async def keyframes(self, count: int, timeout: float, after: int = 0) -> list[AccessUnit]:
        await until(lambda: sum(u.keyframe for u in self.since(after)) >= count, timeout)
        return [u for u in self.since(after) if u.keyframe]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def stamp_of(unit: AccessUnit) -> framestamp.FrameStamp | None:
    """Decode a keyframe with a fresh decoder (it must need nothing else) and read its stamp."""
    decoder = av.CodecContext.create("h264", "r")
    kinds = [h264.nal_type(n) for n in h264.split_annexb(unit.data)]
    try:
        frames = decoder.decode(av.Packet(unit.data)) + decoder.decode(None)
    except av.InvalidDataError as exc:
        raise AssertionError(f"unit {unit.number} ({len(unit.data)} B, NALs {kinds})") from exc
    assert len(frames) == 1
    return framestamp.read(frames[0].to_ndarray(format="gray"))


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
async def test_units_arrive_with_advancing_pts_and_keyframes_that_decode_alone(
    camera: Camera, transport: Transport
) -> None:
    source = camera.source(transport)
    collector = Collector(source)
    source.start()
    try:
        await source.wait_connected(5)
        keyframes = await collector.keyframes(2, timeout=5)
        units = list(collector.units)
        assert units[0].keyframe and units[0].number == 1  # the server starts with an IDR
        assert all(b.number > a.number for a, b in itertools.pairwise(units))
        assert all(b.pts > a.pts for a, b in itertools.pairwise(units))
        assert all(u.session == 1 and u.data.startswith(b"\x00\x00") for u in units)
        stamps = [stamp_of(k) for k in keyframes]
        assert all(s is not None for s in stamps)
        frames = [s.frame for s in stamps if s is not None]
        assert frames == sorted(frames) and frames[-1] - frames[0] >= 25
        # The pts advance as the telescope's frames do: 3000 ticks a frame at 30 fps, or with
        # real time where a busy simulator skipped frame ticks (never beyond the wall clock).
        span = keyframes[-1].pts - keyframes[0].pts
        wall = keyframes[-1].received - keyframes[0].received
        assert (frames[-1] - frames[0]) * 3000 * 0.95 <= span <= (wall + 0.2) * 90_000
        assert source.stats.units >= len(units) and source.stats.keyframes >= 2
        assert source.stats.bytes >= sum(len(u.data) for u in units)
        assert source.state is ConnectionState.CONNECTED and source.last_error is None
    finally:
        await collector.stop()
        await source.close()


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
async def test_a_unit_comes_out_when_its_picture_is_in_not_when_the_next_starts(
    camera: Camera, transport: Transport
) -> None:
    # FFmpeg's parser would hold each picture until the next one's first packet, a frame
    # interval (33 ms) of latency on every unit; the source hands it over as it is whole.
    sent: dict[int, float] = {}  # stamp frame number -> when the simulator sent the picture
    camera.sim.video.frames.tap(lambda item: sent.setdefault(item.value.number, time.monotonic()))
    source = camera.source(transport)
    seen: list[tuple[AccessUnit, float]] = []

    async def watch() -> None:
        async for item in source.units.values():
            seen.append((item.value, time.monotonic()))

    watcher = asyncio.create_task(watch())
    source.start()
    try:
        await until(lambda: len(seen) >= 40, 10)
    finally:
        watcher.cancel()
        await source.close()
    # Whole: every unit from the first keyframe on decodes, its stamp one more than the last.
    decoder = av.CodecContext.create("h264", "r")
    first_key = next(i for i, (unit, _) in enumerate(seen) if unit.keyframe)
    delays, stamps = [], []
    for unit, at in seen[first_key:]:
        for frame in decoder.decode(av.Packet(unit.data)):
            stamp = framestamp.read(frame.to_ndarray(format="rgb24"))
            assert stamp is not None
            stamps.append(stamp.frame)
            delays.append(at - sent[stamp.frame])
    assert stamps == list(range(stamps[0], stamps[0] + len(stamps)))
    # Sent to seen: a few ms, not a frame interval (a loaded machine may be late now and then).
    assert statistics.median(delays) < 0.015, [round(d * 1000) for d in delays]
    assert source.stats.split_units == 0 and source.early_units


def test_the_timeline_does_not_run_ahead_of_arrival() -> None:
    # A first IDR that took 0.43 s to make arrives just before the next picture: the pictures
    # after it must not all look 0.43 s early.
    timeline = _Timeline()
    t = 100.0
    assert timeline.map(1040, t) == 0
    assert timeline.map(40040, t + 0.02) == 3000  # anchored again, one frame on
    assert timeline.map(43040, t + 0.053) == 6000
    # Units that arrive late (a stall, then a burst) keep the stream's own spacing.
    assert [timeline.map(43040 + 3000 * i, t + 0.5) for i in (1, 2, 3)] == [9000, 12000, 15000]


async def test_facts_match_what_the_simulator_serves(camera: Camera) -> None:
    source = camera.source()
    collector = Collector(source)
    source.start()
    try:
        await collector.keyframes(2, timeout=5)
        facts = source.facts
        assert facts is not None
        assert (facts.codec, facts.transport) == ("h264", Transport.TCP)
        assert (facts.profile, facts.profile_idc) == ("Constrained Baseline", 66)
        assert facts.constraints is not None and facts.constraints & 0x40
        assert (facts.width, facts.height) == (1920, 1080)
        assert facts.profile_level_id == camera.sim.video.parameter_sets.profile_level_id  # type: ignore[union-attr]
        assert facts.frame_rate == pytest.approx(30.0, abs=1.5)
        assert facts.keyframe_interval_s == pytest.approx(1.0, abs=0.1)
        assert facts.keyframe_interval_units == 30
        assert facts.reorders is False and facts.cabac is False
        assert passthrough_ok(facts) is None
    finally:
        await collector.stop()
        await source.close()


async def test_a_stream_with_b_frames_is_not_passed_through() -> None:
    camera = await open_camera(video_profile="high", video_b_frames=2)
    source = camera.source()
    collector = Collector(source)
    source.start()
    try:
        keyframes = await collector.keyframes(1, timeout=5)
        facts = source.facts
        assert facts is not None
        # x264 names the least profile its tools need: High, or Main with a fast preset.
        assert (facts.profile, facts.profile_idc) in (("High", 100), ("Main", 77))
        assert facts.reorders and facts.max_num_reorder_frames == 2
        refusal = passthrough_ok(facts)
        assert refusal == f"profile {facts.profile} is not (Constrained) Baseline"
        assert passthrough_ok(StreamFacts(**{**_fields(facts), "profile": "Constrained Baseline"}))
        assert stamp_of(keyframes[0]) is not None  # still decodable for MJPEG viewers
    finally:
        await collector.stop()
        await source.close()
        await camera.client.close()
        await camera.sim.stop()


def _fields(facts: StreamFacts) -> dict[str, object]:
    return {name: getattr(facts, name) for name in StreamFacts.__dataclass_fields__}


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
async def test_reconnects_after_the_telescope_stalls(camera: Camera, transport: Transport) -> None:
    source = camera.source(transport)
    collector = Collector(source)
    source.start()
    try:
        await collector.keyframes(1, timeout=5)
        before = source.stats.units
        camera.sim.faults.stall(2.0)
        await until(lambda: source.state is ConnectionState.RECONNECTING, 3)
        assert source.last_error == "stalled: nothing received for 1 s"
        assert source.stats.stalls >= 1  # an attempt during the stall may stall too
        await until(lambda: source.state is ConnectionState.CONNECTED, 5)
        resumed = await collector.keyframes(1, timeout=5, after=before)
        assert resumed[0].session >= 2 and stamp_of(resumed[0]) is not None
        assert source.stats.reconnects >= 1
        # One timeline: the new session continues after the old one.
        old = [u for u in collector.units if u.session == 1]
        assert resumed[0].pts > old[-1].pts
    finally:
        await collector.stop()
        await source.close()


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
async def test_reconnects_after_the_connection_drops(camera: Camera, transport: Transport) -> None:
    source = camera.source(transport)
    collector = Collector(source)
    source.start()
    try:
        await collector.keyframes(1, timeout=5)
        before = source.stats.units
        camera.sim.faults.drop()
        resumed = await collector.keyframes(1, timeout=5, after=before)
        assert resumed[0].session == 2
        assert source.stats.reconnects == 1 and source.stats.stalls == 0
        assert source.state is ConnectionState.CONNECTED
    finally:
        await collector.stop()
        await source.close()


async def test_mode_switches_end_the_stream_and_bring_it_back(
    camera: Camera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scopelink.seestar.rtsp")
    source = camera.source()
    collector = Collector(source)
    source.start()
    try:
        await collector.keyframes(1, timeout=5)
        await camera.view("star")
        await until(lambda: source.state is ConnectionState.RECONNECTING, 3)
        assert source.last_error in ("the stream ended", "connection lost: End of file")
        # Out of the video modes every attempt is refused; the source keeps trying, quietly.
        failed = source.stats.failed_attempts
        await until(lambda: source.stats.failed_attempts >= failed + 4, 5)
        assert source.state is ConnectionState.RECONNECTING
        assert source.last_error == "connect failed: Server returned 5XX Server Error reply"
        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert sum(r.levelno >= logging.INFO for r in retries) <= 2
        stopped_at = source.stats.units
        await asyncio.sleep(0.3)
        assert source.stats.units == stopped_at
        await camera.view("moon")
        await until(lambda: source.state is ConnectionState.CONNECTED, 5)
        resumed = await collector.keyframes(1, timeout=5, after=stopped_at)
        assert resumed[0].session >= 2 and stamp_of(resumed[0]) is not None
    finally:
        await collector.stop()
        await source.close()


async def test_close_while_reading_returns_at_once_and_publishes_nothing_after(
    camera: Camera,
) -> None:
    source = camera.source(stall_timeout=2.0)
    collector = Collector(source)
    source.start()
    await collector.keyframes(1, timeout=5)
    camera.sim.faults.stall(3.0)  # the worker now blocks in a read
    await asyncio.sleep(0.3)
    assert workers(source)
    published = source.units.seq
    started = time.monotonic()
    await source.close()
    assert time.monotonic() - started < 0.2
    assert source.state is ConnectionState.CLOSED and source.units.closed
    await until(lambda: not workers(source), 3)
    assert source.units.seq == published
    await collector.stop()


async def test_a_wrong_path_is_reported(camera: Camera) -> None:
    source = RtspSource(
        camera.sim.host, camera.sim.rtsp.port, path="/nothing", backoff=FAST_BACKOFF,
        name="rtsp-path",
    )  # fmt: skip
    source.start()
    try:
        await until(lambda: source.stats.failed_attempts >= 1, 3)
        assert source.last_error is not None and "404" in source.last_error
    finally:
        await source.close()


async def test_retry_now_skips_the_backoff_when_the_stream_is_back(camera: Camera) -> None:
    await camera.view("star")
    source = camera.source(backoff=Backoff(initial_s=20.0, maximum_s=20.0))
    source.start()
    try:
        await until(lambda: source.stats.failed_attempts >= 1, 3)
        await camera.view("moon")
        await asyncio.sleep(0.3)
        assert source.state is ConnectionState.RECONNECTING  # waiting out its 10-20 s
        source.retry_now()
        await until(lambda: source.state is ConnectionState.CONNECTED, 2)
    finally:
        await source.close()


def test_a_unit_that_looked_whole_but_was_not_stops_early_units_for_good() -> None:
    sc = b"\x00\x00\x00\x01"

    def picture(pts: int, slices: int) -> list[list[_RawUnit] | None]:
        # Each slice: a fragmentation unit's first piece (as FFmpeg gives it: start code and
        # NAL header, then the fragment's 100 bytes), a full-size fragment, a short last.
        out = []
        for _ in range(slices):
            out.append(grouper.add(sc + b"\x41" + bytes(100), pts, 0.0))
            out.append(grouper.add(bytes(100), pts, 0.0))
            out.append(grouper.add(bytes(40), pts, 0.0))
        return out

    grouper = _UnitGrouper(h264.AccessUnitAssembler(), facts(), early=True)
    # Learning: each unit goes out when the next picture's first piece comes.
    assert [len(a or []) for a in picture(0, 1)] == [0, 0, 0]
    assert [len(a or []) for a in picture(3000, 1)] == [1, 0, 0]
    assert [len(a or []) for a in picture(6000, 1)] == [1, 0, 0]
    # Three pictures of one slice in a row: the next goes out with its last piece.
    assert [len(a or []) for a in picture(9000, 1)] == [1, 0, 1]
    assert [len(a or []) for a in picture(12_000, 1)] == [0, 0, 1]
    # A picture of two slices: out after the first (it looked whole); the second comes late.
    added = picture(15_000, 2)
    assert [a if a is None else len(a) for a in added] == [0, 0, 1, None, 0, 0]
    assert not grouper.early
    # From then on a unit waits for the next timestamp.
    assert [len(a or []) for a in picture(18_000, 1)] == [0, 0, 0]
    assert [len(a or []) for a in picture(21_000, 1)] == [1, 0, 0]


def test_a_whole_nal_unit_as_long_as_a_first_fragment_does_not_end_a_unit_early() -> None:
    sc = b"\x00\x00\x00\x01"
    grouper = _UnitGrouper(h264.AccessUnitAssembler(), facts(), early=True)
    for n in range(4):  # learnt: one slice a picture, fragments of 100 bytes
        assert len(grouper.add(sc + b"\x41" + bytes(100), 3000 * n, 0.0) or []) == (n > 0)
        assert grouper.add(bytes(100), 3000 * n, 0.0) == []
        grouper.add(bytes(40), 3000 * n, 0.0)
    # A slice in one packet, as long as a first fragment: it might go on, so the unit waits.
    assert grouper.add(sc + b"\x41" + bytes(100), 12_000, 0.0) == []
    [unit] = grouper.add(sc + b"\x41" + bytes(100), 15_000, 0.0) or []  # the next picture's
    assert unit.pts == 12_000 and grouper.early  # out at the next timestamp, nothing split
