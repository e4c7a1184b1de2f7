"""Server-sent telemetry: a snapshot, then deltas; resume; a stalled client costs nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.web.conftest import RunningApp

EVENTS = "/api/telescopes/simulator/events"


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse an event stream into {"id", "event", "data"} dicts (comments are skipped)."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")


async def take(stream: AsyncIterator[dict[str, Any]], until: Any, timeout: float = 10) -> list:
    seen: list[dict[str, Any]] = []

    async def run() -> None:
        async for message in stream:
            seen.append(message)
            if until(message):
                return

    await asyncio.wait_for(run(), timeout)
    return seen


async def test_stream_starts_with_a_snapshot_then_sends_deltas(http: httpx.AsyncClient) -> None:
    async with http.stream("GET", EVENTS) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = sse(response)
        first = await anext(stream)
        assert first["event"] == "snapshot"
        assert first["data"]["id"] == "simulator"
        assert first["data"]["connection"]["control"] == "connected"
        await http.post("/api/telescopes/simulator/focus", json={"delta": -30})
        seen = await take(stream, lambda m: m["event"] == "delta" and "focuser" in m["data"])
        assert any(m["event"] == "operation" and m["data"]["kind"] == "focus" for m in seen)
        ids = [int(m["id"].split("-")[1]) for m in [first, *seen]]
        assert ids == sorted(ids)


async def test_resume_with_last_event_id_replays_what_was_missed(http: httpx.AsyncClient) -> None:
    async with http.stream("GET", EVENTS) as response:
        first = await anext(sse(response))
    last_id = first["id"]
    await http.post("/api/telescopes/simulator/settings/gain", json={"gain": 150})
    await http.post("/api/telescopes/simulator/focus", json={"delta": 25})
    await asyncio.sleep(0.5)
    async with http.stream("GET", EVENTS, headers={"Last-Event-ID": last_id}) as response:
        stream = sse(response)
        seen = await take(
            stream, lambda m: m["event"] == "operation" and m["data"]["kind"] == "focus"
        )
    assert seen[0]["event"] != "snapshot", "a resume within the ring replays, it does not restart"
    assert int(seen[0]["id"].split("-")[1]) == int(last_id.split("-")[1]) + 1


async def test_unknown_or_stale_event_id_gets_a_fresh_snapshot(http: httpx.AsyncClient) -> None:
    async with http.stream("GET", EVENTS, headers={"Last-Event-ID": "oldrun-5"}) as response:
        assert (await anext(sse(response)))["event"] == "snapshot"


async def test_stalled_client_does_not_build_a_backlog(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(f"GET {EVENTS} HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.3)  # the stalled client now reads nothing at all
    channel = running.app.state.telemetry.channel("simulator")
    produced = 0
    for i in range(3000):  # far more messages than the ring holds
        channel.update({"view": {"target_name": f"t{i}"}})
        produced += 1
        if i % 100 == 0:
            await asyncio.sleep(0)
    async with http.stream("GET", EVENTS) as response:  # others are served meanwhile
        assert (await anext(sse(response)))["data"]["view"]["target_name"] == "t2999"
    data = b""
    while b"t2999" not in data:
        data += await asyncio.wait_for(reader.read(1 << 20), 10)
    writer.close()
    deltas = data.count(b"event: delta")
    assert deltas < produced / 2, "a stalled client skips to a fresh snapshot, it gets no backlog"
    assert data.count(b"event: snapshot") >= 2


async def test_idle_stream_sends_heartbeats() -> None:
    from scopelink.settings import ServeSettings
    from tests.web.conftest import serve

    async with serve(ServeSettings(sse_heartbeat_s=0.2)) as app:
        async with (
            httpx.AsyncClient(base_url=app.base_url, timeout=10) as http,
            http.stream("GET", EVENTS) as response,
        ):
            lines = response.aiter_lines()
            seen: list[str] = []
            while ": ping" not in seen:
                seen.append(await asyncio.wait_for(anext(lines), 5))
            assert any(line.startswith("event: snapshot") for line in seen)
