"""The real app on a real port, with its embedded simulator, and an HTTP client for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from scopelink.settings import ServeSettings
from scopelink.web.server import RunningApp, serving

#: The tests' name for it; kept short because every web and browser test uses it.
serve = serving
__all__ = ["RunningApp", "serve", "wait_connected"]


async def wait_connected(http: httpx.AsyncClient, telescope_id: str = "simulator") -> None:
    for _ in range(200):
        state = (await http.get(f"/api/telescopes/{telescope_id}")).json()
        if state["connection"]["control"] == "connected":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the telescope never connected")


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=5.0)) as app:
        app.simulator.telescope.mount.slew_rate_deg_s = 120.0
        yield app


@pytest.fixture
async def http(running: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=20) as client:
        await wait_connected(client)
        yield client
