"""The telemetry hub on its own, against the simulator: the stream every status consumer reads.

A consumer gets a snapshot, then numbered deltas; it can resume after a gap from the number it
saw last; one that fell out of the ring starts again from a snapshot; the stream ends when the
telescope is removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from scopelink.embedded import start_simulator
from scopelink.services.registry import TelescopeRegistry
from scopelink.services.telemetry import TelemetryChannel, TelemetryHub, TelemetryMessage
from scopelink.settings import ServeSettings


@pytest.fixture
async def hub() -> AsyncIterator[tuple[TelescopeRegistry, TelemetryHub]]:
    settings = ServeSettings(simulator_fps=2.0)
    registry = TelescopeRegistry(settings)
    telemetry = TelemetryHub(registry)
    await registry.start()
    simulator = await start_simulator(registry, settings)
    try:
        yield registry, telemetry
    finally:
        await telemetry.stop()
        await registry.stop()
        await simulator.stop()


async def take_until(
    stream: AsyncIterator[TelemetryMessage],
    done: Callable[[TelemetryMessage], bool],
    timeout: float = 15.0,
) -> list[TelemetryMessage]:
    seen: list[TelemetryMessage] = []

    async def collect() -> None:
        async for message in stream:
            seen.append(message)
            if done(message):
                return

    await asyncio.wait_for(collect(), timeout)
    return seen


def in_delta(section: str, field: str) -> Callable[[TelemetryMessage], bool]:
    return lambda m: m.kind == "delta" and field in m.data.get(section, {})


async def test_a_consumer_gets_a_snapshot_then_numbered_deltas_as_the_telescope_changes(
    hub: tuple[TelescopeRegistry, TelemetryHub],
) -> None:
    registry, telemetry = hub
    channel = telemetry.channel("simulator")
    stream = channel.messages()
    first = await anext(stream)
    assert first.kind == "snapshot" and first.data["id"] == "simulator"
    await take_until(stream, lambda m: m.data.get("connection", {}).get("control") == "connected")
    session = registry.get("simulator")
    focuser = await session.commands.get_focuser_position()
    await session.commands.move_focuser(focuser + 7)
    seen = await take_until(
        stream, lambda m: m.data.get("focuser", {}).get("position") == focuser + 7
    )
    numbers = [first.seq] + [m.seq for m in seen]
    assert numbers == sorted(set(numbers)), "numbers only go up, none repeated"
    assert channel.state.focuser.position == focuser + 7


async def test_the_position_is_polled_through_the_command_layer(
    hub: tuple[TelescopeRegistry, TelemetryHub],
) -> None:
    registry, telemetry = hub
    channel = telemetry.channel("simulator")
    await take_until(channel.messages(), in_delta("position", "az_deg"))
    position = channel.state.position
    session = registry.get("simulator")
    eq, hz = await session.commands.get_equatorial(), await session.commands.get_horizontal()
    assert position.dec_deg == pytest.approx(eq.dec_deg, abs=1.0)
    assert position.alt_deg == pytest.approx(hz.alt_deg, abs=1.0)
    assert position.ra_hours is not None and position.az_deg is not None


async def test_a_consumer_resumes_after_the_number_it_saw_or_restarts_from_a_snapshot(
    hub: tuple[TelescopeRegistry, TelemetryHub],
) -> None:
    registry, _ = hub
    # A channel of its own with a small ring, fed by hand: the ring's edge is exact.
    channel = TelemetryChannel(registry.get("simulator"), ring_size=4)
    for step in range(1, 4):
        channel.update({"focuser": {"position": step}})
    resumed = channel.messages(after_seq=1)
    assert [(m.kind, m.seq) for m in [await anext(resumed), await anext(resumed)]] == [
        ("delta", 2),
        ("delta", 3),
    ]
    for step in range(4, 10):
        channel.update({"focuser": {"position": step}})
    late = channel.messages(after_seq=2)  # its next message left the ring
    snapshot = await anext(late)
    assert snapshot.kind == "snapshot" and snapshot.seq == 9
    assert snapshot.data["focuser"]["position"] == 9
    ahead = channel.messages(after_seq=500)  # a number from another run of the server
    assert (await anext(ahead)).kind == "snapshot"


async def test_a_stream_ends_when_its_telescope_is_removed(
    hub: tuple[TelescopeRegistry, TelemetryHub],
) -> None:
    registry, telemetry = hub
    stream = telemetry.channel("simulator").messages()
    await anext(stream)

    async def drain() -> None:
        async for _ in stream:
            pass

    draining = asyncio.create_task(drain())
    await registry.remove("simulator")
    await asyncio.wait_for(draining, 5)
    with pytest.raises(KeyError):
        telemetry.channel("simulator")


async def test_the_filter_and_the_dew_heater_show_at_once_after_a_change(
    hub: tuple[TelescopeRegistry, TelemetryHub],
) -> None:
    registry, telemetry = hub
    channel = telemetry.channel("simulator")
    session = registry.get("simulator")
    await take_until(channel.messages(), in_delta("optics", "filter_position"))
    assert channel.state.optics.lp_filter is False and channel.state.optics.dew_heater is False
    loop = asyncio.get_running_loop()
    # No event says so (pi_output_set2, set_control_value): the poll comes forward at once.
    for change, settled in [
        (session.commands.set_dew_heater(True), lambda: channel.state.optics.dew_heater is True),
        (session.commands.set_gain(150), lambda: channel.state.settings.get("isp_gain") == 150),
        (session.commands.set_lp_filter(True), lambda: channel.state.optics.lp_filter is True),
    ]:
        started = loop.time()
        await change
        await take_until(channel.messages(), lambda _, done=settled: done())
        took = loop.time() - started
        assert took < 2.0, f"{took:.1f} s: the change waited for the 10 s poll"
    assert channel.state.optics.filter_position == 2
