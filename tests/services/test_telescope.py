"""The telescope session against the simulator: it learns its model and holds one camera per
camera the model has (the wide one only on the S30 models)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from scopelink.services.frame_pipeline import LiveMode
from scopelink.services.telescope import NoSuchCameraError, Telescope
from scopelink.settings import TelescopeTarget
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.webrtc.conftest import wait_until


@pytest.fixture
async def s30() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimulatorConfig.ephemeral(fps=10, model="S30"))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def s50() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimulatorConfig.ephemeral(fps=10))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


class Listener:
    """A port that counts the connections made to it (and holds them open)."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)


def target_of(sim: Simulator, **ports: int) -> TelescopeTarget:
    target = TelescopeTarget(
        host=sim.host,
        control_port=sim.control.port,
        imaging_port=sim.imaging.port,
        rtsp_port=sim.rtsp.port,
        key_pem=sim.key_pem,
    )
    if sim.wide_imaging is not None and sim.wide_rtsp is not None:
        target.wide_imaging_port = sim.wide_imaging.port
        target.wide_rtsp_port = sim.wide_rtsp.port
    for name, port in ports.items():
        setattr(target, name, port)
    return target


async def test_an_s30_session_learns_its_model_and_connects_its_wide_camera(
    s30: Simulator,
) -> None:
    session = Telescope("s30", target_of(s30))
    assert list(session.cameras) == ["main"], "no wide camera before the telescope says its model"
    await session.start()
    try:
        await wait_until(lambda: session.wide is not None and session.wide.imaging.connected, 5)
        assert session.product_model == "Seestar S30"
        assert session.model is not None and session.model.name == "S30"
        assert list(session.cameras) == ["main", "wide"]
        assert session.camera("wide") is session.wide
        assert s30.wide_imaging is not None and s30.wide_imaging.client_count == 1
        # The wide camera follows the view stage like the main one.
        await session.set_stage("RTSP")
        assert session.wide is not None
        assert session.wide.pipeline.mode is LiveMode.VIDEO
        assert session.pipeline.mode is LiveMode.VIDEO
        await session.set_stage("ContinuousExposure")
        assert session.wide.pipeline.mode is LiveMode.PREVIEW
    finally:
        await session.stop()
    await wait_until(lambda: s30.wide_imaging is not None and s30.wide_imaging.client_count == 0, 5)


async def test_an_s50_session_opens_no_link_for_a_wide_camera(s50: Simulator) -> None:
    async with Listener() as wide_imaging, Listener() as wide_rtsp:
        target = target_of(s50, wide_imaging_port=wide_imaging.port, wide_rtsp_port=wide_rtsp.port)
        session = Telescope("s50", target)
        await session.start()
        try:
            await session.control.wait_connected(5)
            assert session.product_model == "Seestar S50"
            assert session.wide is None and list(session.cameras) == ["main"]
            with pytest.raises(NoSuchCameraError, match="this Seestar S50 has no wide camera"):
                session.camera("wide")
            # Watching, and a video stage, still open nothing on the wide camera's ports.
            async with session.pipeline.viewer(pixels=False):
                await session.set_stage("RTSP")
                await asyncio.sleep(0.5)
                await session.set_stage("ContinuousExposure")
                await asyncio.sleep(0.3)
        finally:
            await session.stop()
        assert (wide_imaging.accepted, wide_rtsp.accepted) == (0, 0)


def test_an_unknown_model_is_one_camera_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scopelink.services.telescope")
    sessions = [
        Telescope(f"x{n}", TelescopeTarget(host="127.0.0.1", model="Seestar S99")) for n in range(2)
    ]
    for session in sessions:
        assert session.product_model == "Seestar S99" and session.model is None
        assert list(session.cameras) == ["main"]
    warnings = [r for r in caplog.records if "Seestar S99" in r.getMessage()]
    assert len(warnings) == 1


def test_a_model_from_discovery_gives_the_wide_camera_before_connecting() -> None:
    session = Telescope("d", TelescopeTarget(host="127.0.0.1", model="Seestar S30 Pro"))
    assert list(session.cameras) == ["main", "wide"]
    assert session.wide is not None and session.wide.imaging.port == 4804
    assert session.wide.pipeline.video is not None
    assert session.wide.pipeline.video.rtsp.port == 4555
