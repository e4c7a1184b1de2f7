"""MJPEG, snapshot and stack JPEGs over a real uvicorn server, registry and simulator."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from scopelink import framestamp
from scopelink.embedded import start_simulator
from scopelink.seestar.commands import SeestarCommands
from scopelink.seestar.events import ScopeGoto, Stack
from scopelink.services.frame_pipeline import FramePipeline, LiveMode
from scopelink.services.registry import TelescopeRegistry
from scopelink.services.telescope import Telescope
from scopelink.settings import ServeSettings
from scopelink.simulator.simulator import Simulator
from scopelink.web.listen import NOTSENT_LOWAT, listening_socket
from scopelink.web.mjpeg import multipart_body, router
from tests.conftest import sky_at
from tests.web.conftest import RunningApp, serve, wait_connected

FPS = 10.0
BOUNDARY = b"--frame"
STREAM = "/api/telescopes/simulator/stream.mjpeg"


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes
    #: Wall clock (ms since the epoch) when the part's last byte was read.
    received_ms: float

    @property
    def header_stamp(self) -> framestamp.FrameStamp | None:
        value = self.headers.get("x-frame-stamp")
        if value is None:
            return None
        frame, emit_ms = value.split(";")
        return framestamp.FrameStamp(int(frame), int(emit_ms))

    @property
    def latency_ms(self) -> float:
        stamp = self.header_stamp
        assert stamp is not None
        return self.received_ms - stamp.emit_ms

    def image(self) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(self.body, np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None, "part is not a JPEG"
        return bgr


@dataclass
class MjpegReader:
    """A strict multipart/x-mixed-replace parser: every byte must be where the format says."""

    parts: list[Part] = field(default_factory=list)
    closed: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    _opened: bool = False

    async def read(self, response: httpx.Response, delay_s: float = 0.0) -> None:
        """Read parts until the stream ends; sleep `delay_s` after each (a slow viewer)."""
        async for data in response.aiter_raw():
            self._buf += data
            while (part := self._next_part()) is not None:
                self.parts.append(part)
                if delay_s:
                    await asyncio.sleep(delay_s)
            if self.closed:
                return

    def _next_part(self) -> Part | None:
        buf = self._buf
        if not self._opened:
            if len(buf) < len(BOUNDARY):
                return None
            assert buf.startswith(BOUNDARY), bytes(buf[:20])
            del buf[: len(BOUNDARY)]
            self._opened = True
        if len(buf) < 2:
            return None
        if buf.startswith(b"--"):
            assert bytes(buf) == b"--\r\n", "close delimiter ends the stream"
            self.closed = True
            return None
        assert buf.startswith(b"\r\n"), bytes(buf[:20])
        end = buf.find(b"\r\n\r\n", 2)
        if end < 0:
            return None
        lines = bytes(buf[2:end]).decode("ascii").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        start = end + 4
        stop = start + length
        if len(buf) < stop + len(BOUNDARY) + 2:
            return None
        assert bytes(buf[stop : stop + 2 + len(BOUNDARY)]) == b"\r\n" + BOUNDARY
        body = bytes(buf[start:stop])
        del buf[: stop + 2 + len(BOUNDARY)]
        return Part(headers, body, time.time() * 1000)


@dataclass
class App:
    registry: TelescopeRegistry
    session: Telescope
    base_url: str
    simulator: Simulator

    @property
    def pipeline(self) -> FramePipeline:
        return self.session.pipeline


@pytest.fixture
async def app() -> AsyncIterator[App]:
    settings = ServeSettings(simulator_fps=FPS)
    registry = TelescopeRegistry(settings)
    await registry.start()
    simulator = await start_simulator(registry, settings)
    simulator.telescope.mount.slew_rate_deg_s = 120.0
    session = registry.get("simulator")
    session.pipeline.linger_s = 0.5
    api = FastAPI()
    api.state.registry = registry
    api.state.settings = settings
    api.include_router(router)
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not serving.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        await session.imaging.wait_connected(5)
        yield App(registry, session, f"http://127.0.0.1:{port}", simulator)
    finally:
        await registry.stop()  # closes the pipelines, which ends every stream
        server.should_exit = True
        await asyncio.wait_for(serving, 5)
        sock.close()
        await simulator.stop()


@pytest.fixture
async def http(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
        yield client


async def watch(
    http: httpx.AsyncClient, seconds: float, params: dict[str, int | str] | None = None
) -> list[Part]:
    reader = MjpegReader()
    async with http.stream("GET", STREAM, params=params) as response:
        assert response.status_code == 200
        try:
            await asyncio.wait_for(reader.read(response), seconds)
        except TimeoutError:
            pass  # watched long enough
    return reader.parts


def star_mask(image: np.ndarray) -> np.ndarray:
    """Pixels well above the sky (6 sigma), below the stamp band, at half resolution."""
    grey = cv2.cvtColor(image[120:], cv2.COLOR_BGR2GRAY).astype(np.float32)
    half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    sky = float(np.median(half))
    sigma = 1.4826 * float(np.median(np.abs(half - sky)))
    return half > sky + 6 * max(sigma, 1.0)


def matched(a: np.ndarray, b: np.ndarray) -> float:
    """The share of star pixels in `a` with a star pixel of `b` at most one pixel away."""
    near_b = cv2.dilate(b.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float((a & near_b).sum()) / max(1, int(a.sum()))


# -- the stream ------------------------------------------------------------------------------------


async def test_mjpeg_streams_stamped_star_frames_that_change_as_the_mount_slews(
    app: App, http: httpx.AsyncClient
) -> None:
    await app.session.control.wait_connected(5)
    commands = SeestarCommands(app.session.control)

    async def slew_to(alt_deg: float, az_deg: float) -> None:
        arrived = asyncio.create_task(
            app.session.control.wait_for_event(
                "ScopeGoto",
                lambda e: isinstance(e, ScopeGoto) and e.state == "complete",
                timeout=10,
            )
        )
        await commands.goto(*sky_at(app.simulator, alt_deg, az_deg))
        await arrived
        # Frames rendered during the slew may still be on their way; let them pass.
        await wait_for_parts(reader, len(reader.parts) + 4)

    reader = MjpegReader()
    async with http.stream("GET", STREAM) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        assert response.headers["cache-control"] == "no-store"
        reading = asyncio.create_task(reader.read(response))
        await wait_for_parts(reader, 2)
        await slew_to(45.0, 120.0)
        at_a = reader.parts[-2:]
        await slew_to(45.0, 240.0)
        at_b = reader.parts[-1]
        reading.cancel()

    numbers = []
    for part in reader.parts:
        assert part.headers["content-type"] == "image/jpeg"
        assert int(part.headers["content-length"]) == len(part.body)
        image = part.image()
        assert image.shape == (960, 540, 3), "default width from the settings"
        stamp = framestamp.read(image)
        assert stamp is not None and stamp == part.header_stamp
        numbers.append(stamp.frame)
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    a1, a2, b = (star_mask(part.image()) for part in (*at_a, at_b))
    assert a1.sum() >= 5 and b.sum() >= 5, "stars are in view"
    assert matched(a1, a2) > 0.5, "a still mount shows the same stars"
    assert matched(a2, b) < 0.2, "after the slew other stars are in view"


async def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def wait_for_parts(reader: MjpegReader, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(reader.parts) < count:
        assert time.monotonic() < deadline, f"only {len(reader.parts)} of {count} parts arrived"
        await asyncio.sleep(0.02)


async def test_each_part_carries_its_closing_delimiter_so_browsers_show_it_at_once(
    app: App,
) -> None:
    chunks = multipart_body(app.pipeline, 540, 80)
    assert await anext(chunks) == BOUNDARY
    for _ in range(2):
        chunk = await asyncio.wait_for(anext(chunks), 5)
        assert chunk.startswith(b"\r\nContent-Type: image/jpeg\r\n")
        assert chunk.endswith(b"\r\n" + BOUNDARY), "not held back until the next frame"
    await chunks.aclose()
    assert app.pipeline.viewers == 0


async def test_pipeline_work_does_not_grow_with_viewers(app: App, http: httpx.AsyncClient) -> None:
    stats = app.pipeline.stats
    variants = [{"width": 540, "quality": 80}, {"width": 270, "quality": 60}]
    for viewers in (2, 5):
        processed, encodes = stats.frames_processed, stats.jpeg_encodes
        watched = await asyncio.gather(*(watch(http, 2.5, variants[i % 2]) for i in range(viewers)))
        processed = stats.frames_processed - processed
        encodes = stats.jpeg_encodes - encodes
        seen = [{p.header_stamp.frame for p in parts if p.header_stamp} for parts in watched]
        received = [len(frames) for frames in seen]
        # The sessions overlap for ~2.5 s at 10 fps; each frame is processed once (the first
        # frame a viewer gets may have been processed before it came)...
        assert 15 <= processed <= 35, processed
        assert max(received) - 1 <= processed <= min(received) + 3, (viewers, processed, received)
        # ...and encoded once per variant, not once per viewer. (A frame encoded in the round
        # before, or one encoded as the viewers left, makes the count differ by one or two.)
        per_variant = sum(len(set().union(*seen[v::2])) for v in range(2))
        assert abs(encodes - per_variant) <= 2, (viewers, encodes, per_variant, received)


async def test_slow_viewer_skips_frames_without_delaying_others(app: App) -> None:
    # The slow viewer sits behind a thin link: a small receive window, read twice a second.
    thin = httpx.AsyncHTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)])
    params = {"width": 1080, "quality": 80}
    fast, slow = MjpegReader(), MjpegReader()
    seconds = 6.0
    async with (
        httpx.AsyncClient(base_url=app.base_url, timeout=10) as fast_http,
        httpx.AsyncClient(base_url=app.base_url, timeout=10, transport=thin) as slow_http,
        fast_http.stream("GET", STREAM, params=params) as fast_response,
        slow_http.stream("GET", STREAM, params=params) as slow_response,
    ):
        readers = [
            asyncio.create_task(fast.read(fast_response)),
            asyncio.create_task(slow.read(slow_response, delay_s=0.5)),
        ]
        await asyncio.sleep(seconds)
        for task in readers:
            task.cancel()

    fast_numbers = [p.header_stamp.frame for p in fast.parts if p.header_stamp]
    span = fast_numbers[-1] - fast_numbers[0] + 1
    assert len(fast_numbers) >= 0.9 * span, "the fast viewer gets (nearly) every frame"
    assert len(fast_numbers) >= 0.9 * FPS * (seconds - 1.0)
    assert statistics.median(p.latency_ms for p in fast.parts) < 250

    slow_numbers = [p.header_stamp.frame for p in slow.parts if p.header_stamp]
    assert len(slow_numbers) <= seconds * 2 + 1
    assert slow_numbers[-1] - slow_numbers[0] > 2 * len(slow_numbers), "it skips frames"
    latencies = [p.latency_ms for p in slow.parts]
    third = len(latencies) // 3
    middle, last = latencies[third : 2 * third], latencies[2 * third :]
    # A queue would add 0.4 s per part read; latest-frame-wins keeps the delay flat.
    assert statistics.mean(last) <= statistics.mean(middle) + 300, latencies
    assert max(last) < 2500, latencies


async def test_streaming_starts_with_the_first_viewer_and_stops_after_the_last_plus_linger(
    app: App, http: httpx.AsyncClient
) -> None:
    imaging = app.session.imaging
    assert not imaging.streaming
    parts = await watch(http, 1.0)
    assert parts
    left = time.monotonic()
    await wait_until(lambda: app.pipeline.viewers == 0, 1.0)  # the server sees the disconnect
    assert imaging.streaming, "still on during the linger"
    await wait_until(lambda: not imaging.streaming, app.pipeline.linger_s + 1.0)
    assert time.monotonic() - left >= app.pipeline.linger_s * 0.9
    assert app.simulator.imaging.stats.frames_sent > 0


# -- snapshot ----------------------------------------------------------------------------------


async def test_snapshot_starts_the_stream_for_a_fresh_frame_and_returns_it_as_jpeg(
    app: App, http: httpx.AsyncClient
) -> None:
    assert app.pipeline.frames.latest is None
    response = await http.get(
        "/api/telescopes/simulator/snapshot.jpg", params={"width": 270, "quality": 50}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 270, 3)
    frame, _ = response.headers["x-frame-stamp"].split(";")
    assert int(frame) >= 1
    assert app.pipeline.viewers == 0
    again = await http.get("/api/telescopes/simulator/snapshot.jpg")
    assert again.status_code == 200


async def test_snapshot_is_503_when_the_telescope_sends_nothing(
    app: App, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scopelink.web.mjpeg.SNAPSHOT_WAIT_S", 0.3)
    await app.session.imaging.close()
    response = await http.get("/api/telescopes/simulator/snapshot.jpg")
    assert response.status_code == 503
    assert "no frame" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "field_name"),
    [
        ({"width": 63}, "width"),
        ({"width": 1081}, "width"),
        ({"width": "wide"}, "width"),
        ({"quality": 29}, "quality"),
        ({"quality": 96}, "quality"),
    ],
)
async def test_bad_width_or_quality_is_a_422_naming_the_field(
    http: httpx.AsyncClient, query: dict[str, object], field_name: str
) -> None:
    for path in ("stream.mjpeg", "snapshot.jpg", "stack.jpg"):
        response = await http.get(f"/api/telescopes/simulator/{path}", params=query)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", field_name]


# -- stacked image ---------------------------------------------------------------------------------


async def test_stack_jpg_is_404_until_stacking_then_the_stretched_stack(
    app: App, http: httpx.AsyncClient
) -> None:
    response = await http.get("/api/telescopes/simulator/stack.jpg")
    assert response.status_code == 404
    assert "not stacking" in response.json()["detail"]

    await app.session.control.wait_connected(5)
    commands = SeestarCommands(app.session.control)
    await commands.set_exposure(stack_ms=100)
    await commands.start_view()
    stacked = asyncio.create_task(
        app.session.control.wait_for_event(
            "Stack",
            lambda e: (
                isinstance(e, Stack) and e.state == "frame_complete" and bool(e.stacked_frame)
            ),
            timeout=10,
        )
    )
    await commands.start_stack()
    await stacked

    response = await http.get("/api/telescopes/simulator/stack.jpg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (1920, 1080, 3), "a stack is full width by default"
    background = float(np.median(image[::4, ::4])) / 255
    assert 0.1 < background < 0.4, "stretched, not linear"
    assert app.pipeline.stack_frames.latest is not None
    small = await http.get("/api/telescopes/simulator/stack.jpg", params={"width": 540})
    assert cv2.imdecode(np.frombuffer(small.content, np.uint8), 1).shape == (960, 540, 3)


# -- shutdown ----------------------------------------------------------------------------------


async def test_streams_end_cleanly_when_the_app_shuts_down(
    app: App, http: httpx.AsyncClient
) -> None:
    reader = MjpegReader()
    async with http.stream("GET", STREAM) as response:
        reading = asyncio.create_task(reader.read(response))
        await wait_for_parts(reader, 2)
        await app.registry.stop()  # what the app's shutdown does
        await asyncio.wait_for(reading, 5)
    assert reader.closed, "the stream ended with the close delimiter"
    assert app.pipeline.viewers == 0


# -- the wide camera (S30 models) ------------------------------------------------------------------


@pytest.fixture
async def s30() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=FPS, simulator_model="S30")) as running:
        yield running


def check_stamped(parts: list[Part], shape: tuple[int, int, int]) -> None:
    numbers = []
    for part in parts:
        image = part.image()
        assert image.shape == shape
        stamp = framestamp.read(image)
        assert stamp is not None and stamp == part.header_stamp
        numbers.append(stamp.frame)
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


async def test_the_wide_camera_streams_its_own_stamped_frames_in_star_and_moon_views(
    s30: RunningApp,
) -> None:
    sim = s30.simulator
    assert sim.wide_imaging is not None and sim.wide_rtsp is not None
    session = s30.registry.get("simulator")
    async with httpx.AsyncClient(base_url=s30.base_url, timeout=10) as http:
        await wait_connected(http)
        await wait_until(lambda: session.wide is not None and session.wide.imaging.connected, 5)
        assert session.wide is not None
        parts = await watch(http, 1.5, {"camera": "wide"})
        assert len(parts) >= 5
        check_stamped(parts, (960, 540, 3))
        assert sim.wide_imaging.stats.frames_sent >= len(parts)
        assert sim.imaging.stats.frames_sent == 0, "the main camera was not asked for frames"

        # The Moon view: the wide camera's own RTSP video (4555), decoded for MJPEG.
        await session.commands.start_view("moon")
        await wait_until(lambda: session.wide.pipeline.mode is LiveMode.VIDEO, 5)
        parts = await watch(http, 2.5, {"camera": "wide", "width": 1080})
        # The last star frame may open the stream (it is under FRESH_S old); then only video.
        landscape = [part.image().shape[1] > part.image().shape[0] for part in parts]
        video = parts[landscape.index(True) :] if True in landscape else []
        assert len(video) >= 5 and all(landscape[-len(video) :])
        check_stamped(video, (608, 1080, 3))
        assert sim.wide_rtsp.stats.sessions >= 1
        assert sim.rtsp.stats.sessions == 0, "the main camera's video was not opened"


async def test_the_wide_camera_of_an_s50_is_a_404_problem() -> None:
    async with (
        serve(ServeSettings(simulator_fps=FPS)) as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=10) as http,
    ):
        await wait_connected(http)
        for path in ("stream.mjpeg", "snapshot.jpg"):
            response = await http.get(
                f"/api/telescopes/simulator/{path}", params={"camera": "wide"}
            )
            assert response.status_code == 404
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"] == "this Seestar S50 has no wide camera"
            odd = await http.get(f"/api/telescopes/simulator/{path}", params={"camera": "side"})
            assert odd.status_code == 422
        assert running.simulator.imaging.stats.frames_sent == 0


def test_accepted_connections_send_at_once_and_keep_little_unsent() -> None:
    """Every connection the app accepts has TCP_NODELAY (a response in two writes would
    otherwise wait 40 ms for the client's delayed ACK on a kept-alive connection) and
    TCP_NOTSENT_LOWAT (a slow viewer's stream skips frames instead of queueing them)."""
    sock = listening_socket("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname()):
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                if hasattr(socket, "TCP_NOTSENT_LOWAT"):
                    lowat = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
                    assert lowat == NOTSENT_LOWAT
    finally:
        sock.close()
