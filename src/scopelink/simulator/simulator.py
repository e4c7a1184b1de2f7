"""The whole simulated telescope: one model behind the control, imaging and discovery ports."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopelink.seestar import verify
from scopelink.seestar.models import DEFAULT_MODEL, MODELS, CameraFacts
from scopelink.settings import (
    CONTROL_PORT,
    DISCOVERY_PORT,
    FIRMWARE_IDLE_CUT_S,
    IMAGING_PORT,
    RTSP_PORT,
    WIDE_IMAGING_PORT,
    WIDE_RTSP_PORT,
)
from scopelink.simulator.control_server import ControlServer
from scopelink.simulator.discovery_server import DiscoveryResponder
from scopelink.simulator.faults import Faults
from scopelink.simulator.firmware import DEFAULT_PROFILE, PROFILES
from scopelink.simulator.h264 import H264Settings
from scopelink.simulator.imaging_server import ImagingServer
from scopelink.simulator.live_video import LiveVideo
from scopelink.simulator.rtsp_server import RtspServer
from scopelink.simulator.telescope import SimulatedTelescope

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimulatorConfig:
    """How to run a simulator; port 0 picks a free port."""

    host: str = "127.0.0.1"
    control_port: int = CONTROL_PORT
    imaging_port: int = IMAGING_PORT
    discovery_port: int | None = DISCOVERY_PORT
    profile: str = DEFAULT_PROFILE
    serial: str = "4ddb0535"
    seed: int = 0
    fps: float = 2.0
    lat_deg: float = 52.0
    lon_deg: float = 4.9
    slew_rate_deg_s: float = 4.0
    idle_cut_s: float = FIRMWARE_IDLE_CUT_S
    #: On external power: the battery charges instead of draining.
    charging: bool = False
    #: The login key pair as a PEM private key; generated when the firmware has a login.
    key_pem: bytes | None = None
    faults: list[str] = field(default_factory=list)
    #: "S50", "S30" or "S30 Pro" (`scopelink.seestar.models.MODELS`).
    model: str = DEFAULT_MODEL
    #: RTSP video of the main camera in the RTSP view stages.
    rtsp_port: int = RTSP_PORT
    #: The wide-angle camera's RTSP video and imaging port (S30 models only).
    wide_rtsp_port: int = WIDE_RTSP_PORT
    wide_imaging_port: int = WIDE_IMAGING_PORT
    video_fps: float = 30.0
    video_bitrate: int = 6_000_000
    #: x264 profile: "baseline" (Constrained Baseline, what browsers take as is), "main", "high".
    video_profile: str = "baseline"
    #: B-frames between references; > 0 gives a stream a browser cannot take without re-encoding.
    video_b_frames: int = 0
    video_gop_s: float = 1.0

    @classmethod
    def ephemeral(cls, **overrides: Any) -> SimulatorConfig:
        """Free ports everywhere and no discovery: for tests and embedding."""
        free = {
            "control_port": 0,
            "imaging_port": 0,
            "discovery_port": None,
            "rtsp_port": 0,
            "wide_rtsp_port": 0,
            "wide_imaging_port": 0,
        }
        return cls(**{**free, **overrides})

    def video_settings(self) -> H264Settings:
        return H264Settings(
            fps=self.video_fps,
            bitrate=self.video_bitrate,
            profile=self.video_profile,
            b_frames=self.video_b_frames,
            gop_s=self.video_gop_s,
        )


class Simulator:
    """Runs a SimulatedTelescope on its ports: control, imaging, RTSP, discovery (and the
    wide camera's imaging and RTSP ports on the S30 models)."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config = config or SimulatorConfig()
        if config.profile not in PROFILES:
            raise ValueError(f"unknown firmware profile {config.profile!r}: {', '.join(PROFILES)}")
        if config.model not in MODELS:
            raise ValueError(f"unknown model {config.model!r}: {', '.join(MODELS)}")
        if not 1.0 <= config.video_fps <= 60.0:
            raise ValueError(f"video fps must be within 1..60, got {config.video_fps}")
        self.profile = PROFILES[config.profile]
        self.model = model = MODELS[config.model]
        self.faults = Faults()
        for spec in config.faults:
            self.faults.parse(spec)
        if config.key_pem is None and self.profile.login_available:
            config.key_pem = verify.generate_key_pem()
        #: The private key a client needs for the login handshake (None: firmware has no login).
        self.key_pem = config.key_pem
        self.telescope = SimulatedTelescope(
            self.profile,
            emit=self._emit,
            serial=config.serial,
            lat_deg=config.lat_deg,
            lon_deg=config.lon_deg,
            seed=config.seed,
            public_key_pem=config.key_pem,
            slew_rate_deg_s=config.slew_rate_deg_s,
            charging=config.charging,
            model=model,
            video_fps=config.video_fps,
        )
        self.control = ControlServer(
            self.telescope,
            config.host,
            config.control_port,
            faults=self.faults,
            idle_cut_s=config.idle_cut_s,
        )
        self.imaging = ImagingServer(
            config.host,
            config.imaging_port,
            scene=self.telescope.scene,
            stack=self.telescope.stack,
            faults=self.faults,
            fps=config.fps,
            seed=config.seed,
            firmware=self.profile.version_int,
            preview_on=self._preview_on,
            sensor=(model.main.width, model.main.height),
        )
        self.video, self.rtsp = self._video_camera(config.rtsp_port, wide=False)
        #: The wide-angle camera (S30 models): its own video and imaging port.
        self.wide_video: LiveVideo | None = None
        self.wide_rtsp: RtspServer | None = None
        self.wide_imaging: ImagingServer | None = None
        if model.wide is not None:
            self._build_wide_camera(model.wide)
        self._drops: asyncio.Task[None] | None = None
        self.discovery: DiscoveryResponder | None = None
        if config.discovery_port is not None:
            self.discovery = DiscoveryResponder(
                config.host,
                config.discovery_port,
                serial=config.serial,
                model=model.product_model,
                clients=lambda: self.control.client_count,
                uptime=self.telescope.uptime,
            )

    def _video_camera(self, port: int, *, wide: bool) -> tuple[LiveVideo, RtspServer]:
        """A camera's RTSP video and its server, live in the telescope's RTSP stage."""
        config, telescope = self.config, self.telescope
        video = LiveVideo(
            config.video_settings(),
            mode=lambda: telescope.rtsp_mode,
            roi_index=lambda: telescope.roi_index,
            wide=wide,
            seed=config.seed,
        )
        server = RtspServer(
            config.host,
            port,
            video,
            faults=self.faults,
            available=lambda: telescope.rtsp_mode is not None,
            mode=lambda: telescope.rtsp_mode,
        )
        return video, server

    def _build_wide_camera(self, wide: CameraFacts) -> None:
        config, telescope = self.config, self.telescope
        # Its RTSP video runs with the main camera's RTSP stage (the simulator does not model
        # the wide camera's own view, `SecondView`); its imaging port shows the star field with
        # the main camera's framing (its wider plate scale is not modelled either).
        self.wide_video, self.wide_rtsp = self._video_camera(config.wide_rtsp_port, wide=True)
        self.wide_imaging = ImagingServer(
            config.host,
            config.wide_imaging_port,
            scene=telescope.scene,
            stack=lambda: None,
            faults=self.faults,
            fps=config.fps,
            seed=config.seed + 1,
            firmware=self.profile.version_int,
            preview_on=self._preview_on,
            sensor=(wide.width, wide.height),
        )

    def _preview_on(self) -> bool:
        return self.telescope.rtsp_mode is None

    def _emit(self, message: dict[str, object]) -> None:
        self.control.broadcast(message)

    @property
    def host(self) -> str:
        return self.config.host

    async def start(self) -> None:
        self._drops = asyncio.create_task(self.faults.run_periodic_drops(), name="sim-drops")
        await self.telescope.start()
        await self.control.start()
        await self.imaging.start()
        for video, rtsp in ((self.video, self.rtsp), (self.wide_video, self.wide_rtsp)):
            if video is not None and rtsp is not None:
                await video.start()
                await rtsp.start()
        self.telescope.rtsp_port = self.rtsp.port
        if self.wide_imaging is not None:
            await self.wide_imaging.start()
        if self.discovery is not None:
            await self.discovery.start()
        log.info(
            "simulated Seestar %s (firmware %s) on %s: control %d, imaging %d, rtsp %d, "
            "discovery %s",
            self.model.name,
            self.profile.version,
            self.config.host,
            self.control.port,
            self.imaging.port,
            self.rtsp.port,
            self.discovery.port if self.discovery else "off",
        )

    async def stop(self) -> None:
        if self._drops is not None:
            self._drops.cancel()
        if self.discovery is not None:
            await self.discovery.stop()
        if self.wide_imaging is not None:
            await self.wide_imaging.stop()
        for video, rtsp in ((self.video, self.rtsp), (self.wide_video, self.wide_rtsp)):
            if video is not None and rtsp is not None:
                await rtsp.stop()
                await video.stop()
        await self.imaging.stop()
        await self.control.stop()
        await self.telescope.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_key(self, path: Path) -> None:
        """Save the login private key for a client to use."""
        if self.key_pem is None:
            raise ValueError(f"firmware {self.profile.version} has no login")
        path.write_bytes(self.key_pem)
        path.chmod(0o600)
