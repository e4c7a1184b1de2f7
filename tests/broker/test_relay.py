"""Signaling between broker instances through PostgreSQL's LISTEN/NOTIFY: each instance gets
its own frames, in order, whole, however large (past NOTIFY's 8000 bytes)."""

from __future__ import annotations

import asyncio

import pytest

from scopelink.broker.relay import Frame, LocalRelay, PostgresRelay, UnknownInstance
from tests.broker.postgres_server import PostgresServer


async def test_frames_reach_the_named_instance_only_in_order_and_large_ones_whole(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    a, b = PostgresRelay("a", dsn), PostgresRelay("b", dsn)
    got: dict[str, list[Frame]] = {"a": [], "b": []}
    arrived = asyncio.Event()

    def keep(name: str):  # type: ignore[no-untyped-def]
        async def deliver(frame: Frame) -> None:
            got[name].append(frame)
            arrived.set()

        return deliver

    await a.start(keep("a"))
    await b.start(keep("b"))
    try:
        big = "x" * 20_000  # an SDP offer with every candidate is a few kB; this is far more
        for n in range(5):
            await a.publish("b", {"k": "relay", "n": n})
        await a.publish("b", {"k": "relay", "data": big})
        await b.publish("a", {"k": "back", "n": 0})
        async with asyncio.timeout(10):
            while len(got["b"]) < 6 or not got["a"]:
                arrived.clear()
                await arrived.wait()
        assert [f.get("n") for f in got["b"][:5]] == [0, 1, 2, 3, 4]
        assert got["b"][5]["data"] == big
        assert got["a"] == [{"k": "back", "n": 0}]
        # The large one went through the spill table and left nothing behind.
        rows = await a._sender.execute("SELECT count(*) FROM relay_spill")
        assert (await rows.fetchone())[0] == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_lone_broker_reaches_only_itself() -> None:
    relay = LocalRelay("solo")
    got: list[Frame] = []

    async def deliver(frame: Frame) -> None:
        got.append(frame)

    await relay.start(deliver)
    await relay.publish("solo", {"k": "back"})
    assert got == [{"k": "back"}]
    with pytest.raises(UnknownInstance, match="runs alone"):
        await relay.publish("other", {"k": "back"})
