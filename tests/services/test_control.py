"""The control lease and the deadman, through the command service, against the simulator.

One client controls at a time; anyone may stop; a silent holder loses control; a request is put
to the holder, who grants, denies or (silent) loses it; a move whose sender goes silent stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from scopelink.catalog import Catalogue
from scopelink.embedded import start_simulator
from scopelink.schema.commands import Move, Park, Role, SetGain, Stop
from scopelink.schema.state import ProblemKind
from scopelink.services.command_service import CommandFailure, CommandService
from scopelink.services.control import DEADMAN_S, ControlLease, Controller
from scopelink.services.registry import TelescopeRegistry
from scopelink.settings import ServeSettings
from scopelink.simulator.telescope import SimulatedTelescope

ALICE = Controller("alice-tab", name="Alice", transport="datachannel", keepalive=True)
BOB = Controller("bob-tab", name="Bob", transport="datachannel", keepalive=True)
SCRIPT = Controller("script")


@pytest.fixture
async def service() -> AsyncIterator[CommandService]:
    settings = ServeSettings(simulator_fps=2.0)
    registry = TelescopeRegistry(settings)
    await registry.start()
    simulator = await start_simulator(registry, settings)
    service = CommandService(registry, Catalogue(), rate=100.0)
    service.simulator = simulator  # type: ignore[attr-defined]
    try:
        session = registry.get("simulator")
        for _ in range(200):
            if session.control.connected:
                break
            await asyncio.sleep(0.05)
        yield service
    finally:
        await service.close()
        await registry.stop()
        await simulator.stop()


def telescope(service: CommandService) -> SimulatedTelescope:
    return service.simulator.telescope  # type: ignore[attr-defined,no-any-return]


async def send(service: CommandService, command: object, who: Controller) -> object:
    return await service.execute(
        "simulator",
        command,  # type: ignore[arg-type]
        client=who.client,
        role=Role.OPERATOR,
        controller=who,
    )


async def refused(service: CommandService, command: object, who: Controller) -> CommandFailure:
    with pytest.raises(CommandFailure) as caught:
        await send(service, command, who)
    return caught.value


async def test_one_client_controls_others_watch_and_anyone_may_stop(
    service: CommandService,
) -> None:
    await send(service, SetGain(gain=90), ALICE)  # a command takes the free lease
    lease = service.lease("simulator")
    assert lease.holder == ALICE
    failed = await refused(service, SetGain(gain=10), BOB)
    assert failed.kind is ProblemKind.NOT_IN_CONTROL and failed.outcome == "not_run"
    assert "Alice controls this telescope" in failed.detail
    assert telescope(service).gain == 90
    failed = await refused(service, Park(), SCRIPT)  # REST takes part in the same lease
    assert failed.kind is ProblemKind.NOT_IN_CONTROL
    await send(service, Stop(), BOB)  # safety first: a stop is never refused for the lease
    assert lease.holder == ALICE
    assert lease.release(ALICE.client) and lease.holder is None
    await send(service, SetGain(gain=30), BOB)
    assert lease.holder == BOB


async def test_a_silent_holder_loses_control(service: CommandService) -> None:
    lease = service.lease("simulator")
    lease.ttl_s = 0.3
    await send(service, SetGain(gain=90), ALICE)
    await asyncio.sleep(0.2)
    lease.touch(ALICE.client)  # still there
    await asyncio.sleep(0.2)
    assert lease.holder == ALICE
    await asyncio.sleep(0.2)
    assert lease.holder is None
    await send(service, SetGain(gain=40), BOB)
    assert lease.holder == BOB


async def test_a_request_is_put_to_the_holder_who_grants_denies_or_loses_it() -> None:
    lease = ControlLease("t", handover_timeout_s=0.3)
    changes: list[str | None] = []
    lease.subscribe(lambda s: changes.append(s.requested_by and s.requested_by.client))
    lease.take(ALICE)
    asking = asyncio.create_task(lease.request(BOB))
    await asyncio.sleep(0.05)
    assert lease.requested_by == BOB and lease.holder == ALICE
    assert not lease.answer(BOB.client, True), "only the holder answers"
    assert lease.answer(ALICE.client, False)
    assert await asking is False and lease.holder == ALICE and lease.requested_by is None
    asking = asyncio.create_task(lease.request(BOB))
    await asyncio.sleep(0.05)
    assert not await lease.request(SCRIPT), "one request at a time"
    lease.answer(ALICE.client, True)
    assert await asking is True and lease.holder == BOB
    started = time.monotonic()
    assert await lease.request(ALICE) is True  # Bob does not answer
    assert time.monotonic() - started >= 0.3 and lease.holder == ALICE
    assert "bob-tab" in changes, "the holder was told who asked"


async def test_a_request_lasts_while_its_client_has_a_connection_open() -> None:
    """A client moving to a new connection (renegotiation) keeps asking; when its last
    connection closes the request is off."""
    lease = ControlLease("t", handover_timeout_s=5.0)
    lease.take(ALICE)
    old = lease.connected(BOB.client)
    asking = asyncio.create_task(lease.request(BOB))
    await asyncio.sleep(0.05)
    new = lease.connected(BOB.client)  # the new connection says hello
    old()  # then the old one closes
    old()  # (twice: no harm)
    await asyncio.sleep(0.05)
    assert lease.requested_by == BOB, "still asking"
    new()  # the last one goes
    assert await asyncio.wait_for(asking, 1) is False
    assert lease.requested_by is None and lease.holder == ALICE


async def test_the_mount_stops_when_the_client_moving_it_goes_silent(
    service: CommandService,
) -> None:
    mount = telescope(service).mount
    lease = service.lease("simulator")
    await send(service, Move(direction="up", speed=720, duration_s=10.0), ALICE)
    assert mount.moving
    for _ in range(10):  # alive: keepalives every 0.25 s, the move goes on
        await asyncio.sleep(0.25)
        lease.touch(ALICE.client)
    assert mount.moving, "a client that keeps talking keeps moving"
    silent_from = time.monotonic()
    while mount.moving and time.monotonic() - silent_from < 5:
        await asyncio.sleep(0.02)
    stopped_after = time.monotonic() - silent_from
    assert not mount.moving, "the deadman never stopped the mount"
    assert DEADMAN_S - 0.1 < stopped_after < DEADMAN_S + 0.5, stopped_after


async def test_a_rest_move_has_no_deadman_and_ends_with_its_duration(
    service: CommandService,
) -> None:
    mount = telescope(service).mount
    await send(service, Move(direction="left", speed=720, duration_s=2.5), SCRIPT)
    await asyncio.sleep(DEADMAN_S + 0.3)
    assert mount.moving, "no keepalives over REST: the move's own duration bounds it"
    await asyncio.sleep(1.2)
    assert not mount.moving
