"""The control client against the real simulator over real sockets."""

from __future__ import annotations

import asyncio
import time

import pytest

from scopelink.seestar.control import ControlClient
from scopelink.seestar.errors import (
    AuthenticationError,
    CallTimeoutError,
    CommandError,
    ConnectionLostError,
    NotConnectedError,
)
from scopelink.seestar.events import Event, PiStatus, UnknownEvent, View
from scopelink.seestar.link import ConnectionState
from scopelink.seestar.verify import generate_key_pem
from scopelink.settings import Backoff
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.conftest import make_client


async def test_call_returns_the_result(client: ControlClient) -> None:
    result = await client.call("scope_get_equ_coord")
    assert set(result) == {"ra", "dec"}
    assert client.firmware == 2718
    assert client.device_state["device"]["product_model"] == "Seestar S50"


async def test_refused_command_raises_with_firmware_code(client: ControlClient) -> None:
    with pytest.raises(CommandError) as err:
        await client.call("no_such_method")
    assert err.value.code == 102
    assert "unknown method" in str(err.value)


async def test_events_reach_subscribers_typed_and_unknown_ones_raw(
    sim: Simulator, client: ControlClient
) -> None:
    seen: list[Event] = []
    client.subscribe(seen.append)
    await client.call("iscope_start_view", {"mode": "star"})
    sim.control.broadcast({"Event": "Brand-New", "Timestamp": "1.0", "x": 1})
    await asyncio.sleep(0.2)
    views = [e for e in seen if isinstance(e, View)]
    assert views and views[-1].stage == "ContinuousExposure"
    unknown = [e for e in seen if isinstance(e, UnknownEvent) and e.event == "Brand-New"]
    assert unknown and unknown[0].raw == {"Event": "Brand-New", "Timestamp": "1.0", "x": 1}


async def test_call_times_out_with_unknown_outcome_when_the_telescope_stalls(
    sim: Simulator, client: ControlClient
) -> None:
    sim.faults.stall(1.0)
    start = time.monotonic()
    with pytest.raises(CallTimeoutError, match="outcome is unknown"):
        await client.call("get_focuser_position", timeout=0.3)
    assert time.monotonic() - start < 0.8
    await asyncio.sleep(1.0)
    assert isinstance(await client.call("get_focuser_position"), int)


async def test_pending_call_fails_fast_when_the_link_drops_and_client_recovers(
    sim: Simulator, client: ControlClient
) -> None:
    sim.faults.reply_delay_s = 5.0
    call = asyncio.create_task(client.call("get_focuser_position", timeout=10))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    sim.faults.drop()
    with pytest.raises(ConnectionLostError, match="may or may not have run"):
        await call
    assert time.monotonic() - start < 1.0
    sim.faults.clear()
    await client.wait_connected(5)
    assert isinstance(await client.call("get_focuser_position"), int)


async def test_call_while_disconnected_fails_at_once(sim: Simulator) -> None:
    c = make_client(sim)
    with pytest.raises(NotConnectedError):
        await c.call("get_device_state")


async def test_restarted_simulator_is_reconnected_and_events_resume() -> None:
    config = SimulatorConfig.ephemeral()
    first = Simulator(config)
    await first.start()
    port = first.control.port
    client = ControlClient("127.0.0.1", port, backoff=Backoff(0.05, 0.3))
    states: list[ConnectionState] = []
    client.add_state_listener(states.append)
    events: list[Event] = []
    client.subscribe(events.append, {"View"})
    await client.connect(5)
    first.faults.reply_delay_s = 5
    pending = asyncio.create_task(client.call("get_view_state", timeout=10))
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await first.stop()
    with pytest.raises(ConnectionLostError):
        await pending
    assert time.monotonic() - start < 2.5
    second = Simulator(SimulatorConfig.ephemeral(control_port=port))
    await second.start()
    try:
        await client.wait_connected(5)
        await client.call("iscope_start_view", {"mode": "star"})
        await asyncio.sleep(0.2)
        assert events, "events flow again after the reconnect"
        assert states[:2] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
        assert ConnectionState.RECONNECTING in states
        assert states[-1] is ConnectionState.CONNECTED
    finally:
        await client.close()
        await second.stop()
    assert client.state is ConnectionState.CLOSED


async def test_keepalive_holds_the_link_past_the_idle_cut() -> None:
    async with Simulator(SimulatorConfig.ephemeral(idle_cut_s=1.0)) as sim:
        held = make_client(sim, keepalive_s=0.3)
        silent = make_client(sim, keepalive_s=30)
        drops: list[ConnectionState] = []
        silent.add_state_listener(drops.append)
        await held.connect(5)
        await silent.connect(5)
        try:
            await asyncio.sleep(2.0)
            assert held.connected
            assert ConnectionState.RECONNECTING in drops, "the firmware cuts a silent client"
        finally:
            await held.close()
            await silent.close()


async def test_malformed_lines_are_skipped_and_counted(
    sim: Simulator, client: ControlClient
) -> None:
    sim.faults.malformed_rate = 1.0
    for _ in range(5):
        assert isinstance(await client.call("get_focuser_position"), int)
    assert client.malformed_lines >= 5
    assert client.connected


@pytest.mark.parametrize("fault", ["split", "coalesce"])
async def test_split_and_coalesced_writes_lose_nothing(
    sim: Simulator, client: ControlClient, fault: str
) -> None:
    sim.faults.parse(fault)
    results = await asyncio.gather(*(client.call("scope_get_equ_coord") for _ in range(30)))
    assert all(set(r) == {"ra", "dec"} for r in results)


async def test_pistatus_arrives_periodically(client: ControlClient) -> None:
    event = await client.wait_for_event("PiStatus", timeout=7)
    assert isinstance(event, PiStatus)
    assert event.temp is not None and event.battery_capacity is not None


# -- firmware awareness and login -------------------------------------------------------------


async def test_login_with_the_right_key_on_firmware_requiring_it() -> None:
    async with Simulator(SimulatorConfig.ephemeral(profile="secure")) as sim:
        client = make_client(sim, private_key_pem=sim.key_pem)
        await client.connect(5)
        try:
            assert client.verified
            assert client.firmware == 2732
            assert await client.call("pi_is_verified") is True
        finally:
            await client.close()


async def test_login_with_a_wrong_key_is_refused_clearly() -> None:
    async with Simulator(SimulatorConfig.ephemeral(profile="secure")) as sim:
        client = make_client(sim, private_key_pem=generate_key_pem())
        try:
            with pytest.raises(AuthenticationError, match="signature rejected"):
                await client.connect(5)
        finally:
            await client.close()


async def test_missing_key_on_firmware_requiring_login_says_so() -> None:
    async with Simulator(SimulatorConfig.ephemeral(profile="secure")) as sim:
        client = make_client(sim, handshake_timeout=0.5)
        try:
            with pytest.raises(AuthenticationError, match="login key"):
                await client.connect(5)
        finally:
            await client.close()


async def test_old_firmware_gets_no_verify_marker_and_answers() -> None:
    async with Simulator(SimulatorConfig.ephemeral(profile="legacy")) as sim:
        client = make_client(sim)
        await client.connect(5)
        try:
            assert client.firmware == 2225
            await client.call("set_setting", {"exp_ms": {"continuous": 250}})
            settings = await client.call("get_setting")
            assert settings["exp_ms"]["continuous"] == 250
        finally:
            await client.close()


async def test_firmware_7_rejects_verify_inside_objects(sim: Simulator) -> None:
    client = make_client(sim, verify_injection=False)
    await client.connect(5)
    try:
        with pytest.raises(CommandError) as err:
            await client.call("set_setting", {"lang": "en", "verify": True})
        assert err.value.code == 109
        with pytest.raises(CommandError) as err:
            await client.call("set_setting", [{"lang": "en"}, "verify"])
        assert err.value.code == 107
        assert await client.call("set_setting", {"lang": "en"}) == 0
    finally:
        await client.close()
