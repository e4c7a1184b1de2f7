"""The data-channel protocol against the real app, its simulator and a real aiortc peer."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCSessionDescription

from scopelink.schema.commands import COMMAND_ADAPTER
from scopelink.services.control import DEADMAN_S
from scopelink.settings import ServeSettings
from scopelink.simulator.simulator import Simulator
from tests.conftest import sky_at
from tests.web.conftest import RunningApp, serve, wait_connected
from tests.web.dc_client import DcClient

ROOT = Path(__file__).resolve().parents[2]
#: The `type` of every command in the schema's union.
COMMAND_TYPES = [
    option["properties"]["type"]["const"]
    for option in COMMAND_ADAPTER.json_schema()["$defs"].values()
    if "type" in option.get("properties", {}) and "const" in option["properties"]["type"]
]


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=2.0)) as app:
        app.simulator.telescope.mount.slew_rate_deg_s = 120.0
        async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as http:
            await wait_connected(http)
        yield app


@pytest.fixture
async def client(running: RunningApp) -> AsyncIterator[DcClient]:
    dc = DcClient(running.base_url, name="Tester")
    try:
        yield dc
    finally:
        await dc.close()


async def test_hello_commands_results_progress_and_telemetry(
    running: RunningApp, client: DcClient
) -> None:
    welcome = await client.connect()
    assert welcome is not None
    assert welcome["telescope_id"] == "simulator" and welcome["role"] == "operator"
    assert welcome["keepalive_ms"] == 500 and welcome["deadman_ms"] == 1500
    assert welcome["lease"]["holder"] is None

    telescope = running.simulator.telescope
    ack, result = await client.run("set_gain", {"gain": 120})
    assert ack["accepted"] is True and ack.get("problem") is None
    assert result["ok"] and result["ack"]["result"] == {"gain": 120}
    assert telescope.gain == 120
    lease = await client.next("lease", lambda m: m["yours"])
    assert lease["holder"] == {"name": "Tester", "transport": "datachannel"}

    before = telescope.focuser
    ack, result = await client.run("focus", {"delta": 9})
    operation = result["ack"]["operation"]
    assert result["ok"] and operation["kind"] == "focus"
    done = await client.next(
        "progress",
        lambda m: m["operation"]["id"] == operation["id"] and m["operation"]["state"] == "complete",
    )
    assert done["operation"]["message"].startswith("focuser at")
    assert telescope.focuser == before + 9

    # Telemetry: a snapshot first, then numbered deltas, the focuser's position among them.
    first = client.telemetry_seen[0]
    assert first["kind"] == "snapshot" and first["data"]["id"] == "simulator"
    for _ in range(100):
        if any(
            m["kind"] == "delta" and m["data"].get("focuser", {}).get("position") == before + 9
            for m in client.telemetry_seen
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the focuser's move never came as a delta")
    # Each delta names the one before it; over a loss-free loopback they chain without a gap.
    chain = sorted(client.telemetry_seen, key=lambda m: m["seq"])
    assert chain[0]["kind"] == "snapshot" and chain[0]["prev"] is None
    for before_it, message in itertools.pairwise(chain):
        if message["kind"] == "delta":
            assert message["prev"] == before_it["seq"], (before_it, message)

    client.send({"v": 1, "type": "ping", "t": 123.5})
    pong = await client.next("pong")
    assert pong["t"] == 123.5 and pong["server_time_ms"] > 0


async def test_refusals_come_as_acks_with_a_problem(running: RunningApp, client: DcClient) -> None:
    await client.connect()
    ack, _ = await client.run("focus", {"delta": 5000})
    assert ack["accepted"] is False
    assert ack["problem"]["status"] == 422 and ack["problem"]["outcome"] == "not_run"
    ack, _ = await client.run("launch")
    assert ack["accepted"] is False and ack["problem"]["type"].endswith("/invalid")
    ack, _ = await client.run("set_gain", {"gain": 1, "type": "park"})
    assert ack["accepted"] is False
    ack, _ = await client.run("goto", {"target": "M 81"}, deadline_ms=1)
    assert ack["accepted"] is False and ack["problem"]["type"].endswith("/expired")
    ack, result = await client.run("goto", {"target": "Planet Nine"})
    assert ack["accepted"] is True  # taken; the catalogue says no when it runs
    assert result["ok"] is False and result["problem"]["type"].endswith("/unknown-target")


async def test_a_retried_command_runs_once_and_its_result_comes_again_on_a_new_connection(
    running: RunningApp, client: DcClient
) -> None:
    await client.connect()
    telescope = running.simulator.telescope
    before = telescope.focuser
    # The first ack and result are lost on the way back.
    client.drop_received = lambda m: m.get("type") in ("ack", "result")
    command_id = client.command("focus", {"delta": 11})
    await asyncio.sleep(1.5)
    client.drop_received = lambda _: False
    assert telescope.focuser == before + 11, "it ran"
    client.command("focus", {"delta": 11}, id=command_id)  # the client's retry
    ack = await client.next("ack", lambda m: m["id"] == command_id)
    result = await client.next("result", lambda m: m["id"] == command_id)
    assert ack["accepted"] and result["ok"]
    await asyncio.sleep(0.5)
    assert telescope.focuser == before + 11, "the retry ran nothing"
    first_ack = result["ack"]["command_id"]

    # The connection dies; the same client (its id) comes back on a new one and asks again.
    await client.close()
    again = DcClient(running.base_url, client_id=client.client_id)
    try:
        await again.connect()
        again.command("focus", {"delta": 11}, id=command_id)
        result = await again.next("result", lambda m: m["id"] == command_id)
        assert result["ok"] and result["ack"]["command_id"] == first_ack
        assert telescope.focuser == before + 11
        # Another client's id is another command, even with the same command id.
        again.send({"v": 1, "type": "lease", "action": "release"})
        await again.next("lease", lambda m: m["holder"] is None)
        other = DcClient(running.base_url)
        try:
            await other.connect()
            _, result = await other.run("focus", {"delta": 11}, id=command_id)
            assert result["ok"] and result["ack"]["command_id"] != first_ack
            done = result["ack"]["operation"]
            await other.next(
                "progress",
                lambda m: m["operation"]["id"] == done["id"] and m["operation"]["ended_at"],
            )
            assert telescope.focuser == before + 22
        finally:
            await other.close()
    finally:
        await again.close()


async def test_hostile_messages_get_errors_and_the_session_stays_up(
    running: RunningApp, client: DcClient
) -> None:
    await client.connect(hello=False)
    client.send({"v": 1, "type": "command", "id": "x", "name": "stop"})
    assert (await client.error())["status"] == 409  # hello first
    await client.hello()
    cases: list[tuple[str, int]] = [
        ("not json {", 400),
        ("[1, 2]", 400),
        ('{"v": 2, "type": "ping", "t": 1}', 400),
        ('{"type": "ping", "t": 1}', 400),
        ('{"v": 1, "type": "dance"}', 400),
        ('{"v": 1, "type": "ping", "t": "soon"}', 400),
        ('{"v": 1, "type": "command", "id": "", "name": "stop"}', 400),
        ('{"v": 1, "type": "lease", "action": "steal"}', 400),
        ('{"v": 1, "type": "hello", "client_id": "again-and-again"}', 409),
        ('{"v": 1, "type": "ping", "t": 1, "extra": true}', 400),
    ]
    for raw, status in cases:
        client.send(raw)
        problem = await client.error()
        assert problem["status"] == status, (raw, problem)
        assert problem["title"] and problem["detail"]
    client.send("x" * (70 * 1024))
    assert (await client.error())["status"] == 413
    ack, result = await client.run("set_gain", {"gain": 60})
    assert ack["accepted"] and result["ok"], "still up after all that"


async def test_a_data_channel_only_session_commands_and_watches_without_any_video(
    running: RunningApp,
) -> None:
    pipeline = running.registry.get("simulator").pipeline
    manager = running.app.state.peers
    manager.max_channel_peers = 2
    clients = [DcClient(running.base_url) for _ in range(3)]
    try:
        welcome = await clients[0].connect(video=False)
        assert welcome is not None and welcome["telescope_id"] == "simulator"
        _, result = await clients[0].run("set_gain", {"gain": 140})
        assert result["ok"] and running.simulator.telescope.gain == 140
        for _ in range(100):
            if clients[0].telemetry_seen:
                break
            await asyncio.sleep(0.05)
        assert clients[0].telemetry_seen[0]["kind"] == "snapshot"
        assert pipeline.viewers == 0 and not pipeline.imaging.streaming, "no video was started"
        (stats,) = manager.stats("simulator")
        assert stats.tier == "none" and stats.codec == "none" and stats.state == "connected"
        await clients[1].connect(video=False)
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await clients[2].connect(video=False)
        assert refused.value.response.status_code == 503
        assert "data channels for its limit of 2" in refused.value.response.text
    finally:
        for dc in clients:
            await dc.close()


HOLDER_SCRIPT = """
import asyncio, sys
from tests.web.dc_client import DcClient

async def main(url):
    dc = DcClient(url, name="Holder")
    await dc.connect(video=False)
    await dc.run("move", {"direction": "up", "speed": 720, "duration_s": 10})
    print("moving", flush=True)
    while True:  # keepalives until killed
        dc.send({"v": 1, "type": "ping", "t": 0})
        await asyncio.sleep(0.25)

asyncio.run(main(sys.argv[1]))
"""


async def test_the_mount_stops_when_the_process_moving_it_is_killed(running: RunningApp) -> None:
    mount = running.simulator.telescope.mount
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER_SCRIPT,
        running.base_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        assert line.strip() == b"moving"
        await asyncio.sleep(1.0)
        assert mount.moving, "its keepalives keep the move going"
        holder.kill()  # no goodbye: the process is simply gone
        killed_at = time.monotonic()
        while mount.moving and time.monotonic() - killed_at < 8:
            await asyncio.sleep(0.02)
        stopped_after = time.monotonic() - killed_at
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
    assert not mount.moving, "the mount kept moving after its mover died"
    assert stopped_after < DEADMAN_S + 0.6, stopped_after


async def test_two_clients_contend_for_control_over_their_data_channels(
    running: RunningApp,
) -> None:
    alice, bob = DcClient(running.base_url, name="Alice"), DcClient(running.base_url, name="Bob")
    try:
        await alice.connect(video=False)
        await bob.connect(video=False)
        alice.send({"v": 1, "type": "lease", "action": "take"})
        await alice.next("lease", lambda m: m["yours"])
        seen = await bob.next("lease", lambda m: m["holder"] is not None)
        assert seen["holder"] == {"name": "Alice", "transport": "datachannel"}
        assert not seen["yours"]
        ack, _ = await bob.run("set_gain", {"gain": 10})
        assert not ack["accepted"] and ack["problem"]["type"].endswith("/not-in-control")
        assert "Alice controls this telescope" in ack["problem"]["detail"]
        bob.send({"v": 1, "type": "lease", "action": "take"})
        assert (await bob.error())["type"].endswith("/not-in-control")

        # Bob asks; Alice is told and says no; then asks again and Alice grants.
        bob.send({"v": 1, "type": "lease", "action": "request"})
        asked = await alice.next("lease", lambda m: m["requested_by"] is not None)
        assert asked["requested_by"] == {"name": "Bob", "transport": "datachannel"}
        alice.send({"v": 1, "type": "lease", "action": "deny"})
        denied = await bob.next("lease", lambda m: m["requested_by"] is None and not m["yours"])
        assert denied["holder"]["name"] == "Alice"
        bob.send({"v": 1, "type": "lease", "action": "request"})
        await alice.next("lease", lambda m: m["requested_by"] is not None)
        alice.send({"v": 1, "type": "lease", "action": "grant"})
        await bob.next("lease", lambda m: m["yours"])
        ack, result = await bob.run("set_gain", {"gain": 77})
        assert ack["accepted"] and result["ok"]
        ack, _ = await alice.run("set_gain", {"gain": 1})
        assert not ack["accepted"]
        # Alice goes silent for good: her connection closes; she holds nothing, Bob keeps it.
        await alice.close()
        ack, result = await bob.run("set_gain", {"gain": 78})
        assert result["ok"] and running.simulator.telescope.gain == 78
    finally:
        await alice.close()
        await bob.close()


async def test_resync_and_the_periodic_snapshot_heal_lost_telemetry(
    running: RunningApp, client: DcClient
) -> None:
    await client.connect(video=False)
    for _ in range(100):
        if client.telemetry_seen:
            break
        await asyncio.sleep(0.05)
    client.telemetry_seen.clear()
    client.send({"v": 1, "type": "resync"})
    for _ in range(40):
        if any(m["kind"] == "snapshot" for m in client.telemetry_seen):
            break
        await asyncio.sleep(0.05)
    snapshots = [m for m in client.telemetry_seen if m["kind"] == "snapshot"]
    assert snapshots, "no snapshot within 2 s of a resync"
    assert snapshots[0]["data"]["id"] == "simulator"


async def test_an_offer_over_the_data_channel_makes_a_new_connection(
    running: RunningApp, client: DcClient
) -> None:
    await client.connect(video=False)
    second = DcClient(running.base_url, client_id=client.client_id)
    try:
        await second.pc.setLocalDescription(await second.pc.createOffer())
        client.send({"v": 1, "type": "offer", "sdp": second.pc.localDescription.sdp})
        answer = await client.next("answer")
        assert answer["session_id"] and "a=candidate:" in answer["sdp"]
        await second.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await second.opened()
        welcome = await second.hello()
        assert welcome["telescope_id"] == "simulator"
        await client.close()  # the old connection goes; the new one carries on
        _, result = await second.run("set_gain", {"gain": 33})
        assert result["ok"]
    finally:
        await second.close()


def every_command(sim: Simulator) -> list[tuple[str, dict[str, object]]]:
    """Every command of the REST API, with the parameters REST takes, in an order the simulated
    telescope can follow (a goto, to a point well above its horizon now, unparks it; the Moon's
    view carries zoom and recording)."""
    ra_hours, dec_deg = sky_at(sim, alt_deg=45.0, az_deg=180.0)
    return [
        ("sync_time", {"time_zone": "Europe/Amsterdam"}),
        ("sync_location", {"lat_deg": 52.1, "lon_deg": 5.1}),
        ("set_gain", {"gain": 90}),
        ("set_exposure", {"continuous_ms": 500, "stack_ms": 10_000}),
        ("set_lp_filter", {"on": True}),
        ("set_dew_heater", {"on": True, "power_percent": 40}),
        ("goto", {"ra_hours": ra_hours, "dec_deg": dec_deg}),
        ("stop", {}),
        ("tracking", {"on": True}),
        ("move", {"direction": "up", "speed": 100, "duration_s": 0.3}),
        ("focus", {"delta": 5}),
        ("focus", {"position": 1500}),
        ("autofocus", {}),
        ("stop_autofocus", {}),
        ("start_view", {"mode": "star"}),
        ("start_stack", {}),
        ("stop_stack", {}),
        ("stop_view", {}),
        ("start_view", {"mode": "moon"}),
        ("set_zoom", {"zoom": 2}),
        ("start_recording", {}),
        ("stop_recording", {}),
        ("stop_view", {}),
        ("park", {}),
    ]


async def test_every_command_makes_its_round_trip_over_the_data_channel(
    running: RunningApp, client: DcClient
) -> None:
    commands = every_command(running.simulator)
    names = {name for name, _ in commands}
    assert names == set(COMMAND_TYPES), names ^ set(COMMAND_TYPES)
    await client.connect()
    for name, params in commands:
        ack, result = await client.run(name, params)
        assert ack["accepted"], (name, ack)
        assert result["ok"], (name, result)
        operation = result["ack"].get("operation")
        if operation is not None and name in ("goto", "focus", "park"):
            await client.next(
                "progress",
                lambda m, op=operation: (
                    m["operation"]["id"] == op["id"]
                    and m["operation"]["state"] in ("complete", "cancel", "fail")
                ),
                timeout=30,
            )
    telescope = running.simulator.telescope
    assert telescope.gain == 90 and telescope.wheel == 2
    assert telescope.settings["heater_enable"] is True
