"""Shared fixtures: a real simulator on free loopback ports and clients connected to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from scopelink import astro
from scopelink.seestar.commands import SeestarCommands
from scopelink.seestar.control import ControlClient
from scopelink.settings import Backoff
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.broker.postgres_server import PostgresServer, postgres_or_fail

FAST_BACKOFF = Backoff(initial_s=0.05, maximum_s=0.5)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A 7.x simulator with a fast mount, so slews take about a second."""
    simulator = Simulator(SimulatorConfig.ephemeral(slew_rate_deg_s=120.0))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def make_client(sim: Simulator, **kwargs: object) -> ControlClient:
    kwargs.setdefault("backoff", FAST_BACKOFF)
    return ControlClient(sim.host, sim.control.port, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[ControlClient]:
    c = make_client(sim)
    await c.connect(timeout=5)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def scope(client: ControlClient) -> SeestarCommands:
    return SeestarCommands(client)


def sky_at(sim: Simulator, alt_deg: float, az_deg: float) -> tuple[float, float]:
    """RA (hours) and Dec (degrees) that stand at alt/az above the simulator's site now."""
    mount = sim.telescope.mount
    lst = astro.local_sidereal_hours(time.time(), mount.lon_deg)
    eq = astro.horizontal_to_equatorial(alt_deg, az_deg, mount.lat_deg, lst)
    return eq.ra_hours, eq.dec_deg


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (a test failure when it cannot be had; see
    `postgres_or_fail`)."""
    server = postgres_or_fail()
    try:
        yield server
    finally:
        server.stop()
