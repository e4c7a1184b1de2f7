"""The whole simulated telescope: one model behind the control, imaging and discovery ports."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopelink.seestar import verify
from scopelink.settings import CONTROL_PORT, DISCOVERY_PORT, FIRMWARE_IDLE_CUT_S, IMAGING_PORT
from scopelink.simulator.control_server import ControlServer
from scopelink.simulator.discovery_server import DiscoveryResponder
from scopelink.simulator.faults import Faults
from scopelink.simulator.firmware import DEFAULT_PROFILE, PROFILES
from scopelink.simulator.imaging_server import ImagingServer
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

    @classmethod
    def ephemeral(cls, **overrides: Any) -> SimulatorConfig:
        """Free ports everywhere and no discovery: for tests and embedding."""
        return cls(**{"control_port": 0, "imaging_port": 0, "discovery_port": None, **overrides})


class Simulator:
    """Runs a SimulatedTelescope on its three ports."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config = config or SimulatorConfig()
        if config.profile not in PROFILES:
            raise ValueError(f"unknown firmware profile {config.profile!r}: {', '.join(PROFILES)}")
        self.profile = PROFILES[config.profile]
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
        )
        self._drops: asyncio.Task[None] | None = None
        self.discovery: DiscoveryResponder | None = None
        if config.discovery_port is not None:
            self.discovery = DiscoveryResponder(
                config.host,
                config.discovery_port,
                serial=config.serial,
                clients=lambda: self.control.client_count,
                uptime=self.telescope.uptime,
            )

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
        if self.discovery is not None:
            await self.discovery.start()
        log.info(
            "simulated Seestar (firmware %s) on %s: control %d, imaging %d, discovery %s",
            self.profile.version,
            self.config.host,
            self.control.port,
            self.imaging.port,
            self.discovery.port if self.discovery else "off",
        )

    async def stop(self) -> None:
        if self._drops is not None:
            self._drops.cancel()
        if self.discovery is not None:
            await self.discovery.stop()
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
