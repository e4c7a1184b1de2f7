"""The command service on its own, against the simulator: no HTTP, as every transport uses it.

Each test drives `CommandService.execute` the way REST and the data channel do and looks at what
the telescope did (the simulator's focuser and mount), or at the failure: its kind and outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scopelink.catalog import Catalogue
from scopelink.embedded import start_simulator
from scopelink.schema.commands import Focus, Goto, Park, Role, SetGain, Stop
from scopelink.schema.operations import Operation
from scopelink.schema.state import CommandAck, ProblemKind
from scopelink.services.command_service import CommandFailure, CommandService
from scopelink.services.control import Controller
from scopelink.services.journal import IdempotencyJournal
from scopelink.services.registry import TelescopeRegistry
from scopelink.services.telescope import Telescope
from scopelink.settings import ServeSettings
from scopelink.simulator.simulator import Simulator

OPERATOR, VIEWER = Role.OPERATOR, Role.VIEWER


@dataclass
class Rig:
    registry: TelescopeRegistry
    service: CommandService
    session: Telescope
    simulator: Simulator

    async def run(self, command: object, *, key: str | None = None, **kw: object) -> CommandAck:
        args = {"client": "tester", "role": OPERATOR} | kw
        return await self.service.execute(
            "simulator",
            command,  # type: ignore[arg-type]
            idempotency_key=key,
            **args,  # type: ignore[arg-type]
        )

    async def failure(self, command: object, **kw: object) -> CommandFailure:
        with pytest.raises(CommandFailure) as caught:
            await self.run(command, **kw)
        return caught.value

    async def finished(self, op: Operation | None, timeout: float = 20) -> Operation:
        assert op is not None
        for _ in range(int(timeout / 0.05)):
            current = self.session.operations.get(op.id)
            assert current is not None
            if current.done:
                return current
            await asyncio.sleep(0.05)
        raise AssertionError(f"{op.kind} never finished")


async def connected(session: Telescope) -> None:
    for _ in range(200):
        if session.control.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the simulator never connected")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    settings = ServeSettings(simulator_fps=2.0)
    registry = TelescopeRegistry(settings)
    await registry.start()
    simulator = await start_simulator(registry, settings)
    try:
        session = registry.get("simulator")
        await connected(session)
        simulator.telescope.mount.slew_rate_deg_s = 120.0
        yield Rig(registry, CommandService(registry, Catalogue()), session, simulator)
    finally:
        await registry.stop()
        await simulator.stop()


async def test_a_focus_moves_the_focuser_and_ends_complete(rig: Rig) -> None:
    telescope = rig.simulator.telescope
    before = telescope.focuser
    ack = await rig.run(Focus(delta=12))
    assert ack.status == "accepted" and ack.operation is not None
    done = await rig.finished(ack.operation)
    assert done.state == "complete"
    assert telescope.focuser == before + 12


async def test_the_same_key_runs_once_and_returns_the_first_answer(rig: Rig) -> None:
    telescope = rig.simulator.telescope
    before = telescope.focuser
    first, again = await asyncio.gather(
        rig.run(Focus(delta=10), key="k1"), rig.run(Focus(delta=10), key="k1")
    )
    assert first.command_id == again.command_id
    await rig.finished(first.operation)
    assert telescope.focuser == before + 10, "the focuser moved once"
    third = await rig.run(Focus(delta=10), key="k1")  # later, the same retry
    assert third.command_id == first.command_id and telescope.focuser == before + 10
    reused = await rig.failure(Focus(delta=20), key="k1")
    assert reused.kind is ProblemKind.IDEMPOTENCY_CONFLICT and reused.outcome == "not_run"


async def test_a_key_whose_command_did_not_run_may_be_tried_again(rig: Rig) -> None:
    rig.simulator.faults.drop()  # the link goes; nothing can be sent
    for _ in range(100):
        if not rig.session.control.connected:
            break
        await asyncio.sleep(0.01)
    failed = await rig.failure(SetGain(gain=120), key="again")
    assert failed.kind is ProblemKind.NOT_CONNECTED and failed.outcome == "not_run"
    await connected(rig.session)
    ack = await rig.run(SetGain(gain=120), key="again")
    assert ack.status == "completed" and ack.result == {"gain": 120}
    assert rig.simulator.telescope.gain == 120


async def test_a_viewer_may_not_command_and_nothing_moves(rig: Rig) -> None:
    telescope = rig.simulator.telescope
    before = telescope.focuser
    failed = await rig.failure(Focus(delta=50), role=VIEWER)
    assert failed.kind is ProblemKind.FORBIDDEN and failed.outcome == "not_run"
    await asyncio.sleep(0.3)
    assert telescope.focuser == before


async def test_a_client_over_its_rate_is_refused_and_another_is_not(rig: Rig) -> None:
    service = CommandService(rig.registry, Catalogue(), rate=2.0)
    kinds = []
    for _ in range(8):
        try:
            await service.execute("simulator", Stop(), client="fast", role=OPERATOR)
            kinds.append(None)
        except CommandFailure as exc:
            kinds.append(exc.kind)
    assert kinds[0] is None and ProblemKind.RATE_LIMITED in kinds
    await service.execute("simulator", Stop(), client="calm", role=OPERATOR)


async def test_an_unknown_telescope_and_target_are_named(rig: Rig) -> None:
    with pytest.raises(CommandFailure) as caught:
        await rig.service.execute("nowhere", Stop(), client="tester", role=OPERATOR)
    assert caught.value.kind is ProblemKind.UNKNOWN_TELESCOPE
    failed = await rig.failure(Goto(target="Planet Nine"))
    assert failed.kind is ProblemKind.UNKNOWN_TARGET and "Planet Nine" in failed.detail


async def test_motion_during_a_goto_is_refused_until_it_is_stopped(rig: Rig) -> None:
    rig.simulator.telescope.mount.slew_rate_deg_s = 3.0
    goto = await rig.run(Goto(target="M 81"))
    failed = await rig.failure(Park())
    assert failed.kind is ProblemKind.CONFLICT and "goto to M 81 is in progress" in failed.detail
    await rig.run(Stop())
    assert (await rig.finished(goto.operation)).state == "cancel"
    park = await rig.run(Park())
    assert park.operation is not None


async def test_a_telescope_that_goes_silent_gives_an_unknown_outcome(rig: Rig) -> None:
    rig.simulator.faults.stall(30.0)  # the telescope takes the request and never answers
    rig.session.control._call_timeout = 0.5  # the client's wait for an answer (10 s by default)
    try:
        failed = await rig.failure(SetGain(gain=90))
    finally:
        rig.simulator.faults.clear()
    assert failed.kind is ProblemKind.TIMEOUT
    assert failed.outcome == "unknown", "it may have run: the client must not assume either"


async def test_a_retry_is_answered_even_over_the_rate_and_keys_belong_to_their_client(
    rig: Rig,
) -> None:
    service = CommandService(rig.registry, Catalogue(), rate=1.0)  # a burst of 2
    telescope = rig.simulator.telescope
    before = telescope.focuser
    tab = Controller("tab-a")
    kw = {"client": "a", "role": OPERATOR, "controller": tab}
    first = await service.execute("simulator", Focus(delta=5), idempotency_key="k", **kw)
    await rig.finished(first.operation)
    await service.execute("simulator", Stop(), **kw)  # the burst is spent
    with pytest.raises(CommandFailure) as limited:
        await service.execute("simulator", Stop(), **kw)
    assert limited.value.kind is ProblemKind.RATE_LIMITED
    # The retry of a command that ran must not say "not run": it gets the first answer.
    again = await service.execute("simulator", Focus(delta=5), idempotency_key="k", **kw)
    assert again.command_id == first.command_id
    # Another client's key "k" is its own command.
    service.lease("simulator").release(tab.client)
    other = await service.execute(
        "simulator",
        Focus(delta=5),
        idempotency_key="k",
        client="b",
        role=OPERATOR,
        controller=Controller("tab-b"),
    )
    assert other.command_id != first.command_id
    await rig.finished(other.operation)
    assert telescope.focuser == before + 10


async def test_one_clients_flood_of_keys_does_not_push_out_anothers(rig: Rig) -> None:
    # Room for 6 keys in all, 4 per client: without the per-client bound the busy client's
    # ten keys would push the calm client's out.
    service = CommandService(
        rig.registry, Catalogue(), rate=1000.0, max_remembered=6, max_remembered_per_client=4
    )
    lease = service.lease("simulator")

    async def gain(value: int, key: str, tab: str) -> CommandAck:
        holder = lease.holder
        if holder is not None:
            lease.release(holder.client)  # the two take turns at the controls
        return await service.execute(
            "simulator",
            SetGain(gain=value),
            idempotency_key=key,
            client="one-caller",
            role=OPERATOR,
            controller=Controller(tab),
        )

    kept = await gain(100, "mine", "calm")
    firsts = [await gain(n, f"k{n}", "busy") for n in range(10)]
    assert (await gain(100, "mine", "calm")).command_id == kept.command_id
    latest = await gain(9, "k9", "busy")
    assert latest.command_id == firsts[9].command_id, "the busy client's newest keys are kept"
    forgotten = await gain(0, "k0", "busy")
    assert forgotten.command_id != firsts[0].command_id, "its oldest key was let go: ran anew"


async def test_a_command_runs_to_its_end_when_its_caller_goes_away(rig: Rig) -> None:
    telescope = rig.simulator.telescope
    before = telescope.focuser
    rig.simulator.faults.reply_delay_s = 0.3
    caller = asyncio.create_task(rig.run(SetGain(gain=150), key="gone"))
    await asyncio.sleep(0.1)
    caller.cancel()  # an HTTP client that hung up, a data channel that closed
    await asyncio.sleep(0.6)
    rig.simulator.faults.clear()
    assert telescope.gain == 150
    retry = await rig.run(SetGain(gain=150), key="gone")
    assert retry.result == {"gain": 150}
    assert telescope.focuser == before


async def test_two_focus_steps_at_once_run_one_and_refuse_the_other(rig: Rig) -> None:
    """Two steps arriving together (two tabs, or a queue sent on reconnection) must not both
    start from the same position: one moves the focuser, the other is refused as busy."""
    start = rig.simulator.telescope.focuser
    outcomes = await asyncio.gather(
        rig.run(Focus(delta=10)), rig.run(Focus(delta=100)), return_exceptions=True
    )
    accepted = [o for o in outcomes if isinstance(o, CommandAck)]
    refused = [o for o in outcomes if isinstance(o, CommandFailure)]
    assert len(accepted) == 1 and len(refused) == 1, outcomes
    assert refused[0].kind is ProblemKind.CONFLICT and refused[0].outcome == "not_run"
    op = await rig.finished(accepted[0].operation)
    assert op.state == "complete"
    assert rig.simulator.telescope.focuser - start in (10, 100)


# -- idempotency keys across a restart (services/journal.py) ------------------------------------


def restarted(rig: Rig, path: Path) -> Rig:
    """The same telescope, a new command service reading the journal: a restarted server."""
    service = CommandService(rig.registry, Catalogue(), journal=IdempotencyJournal(path))
    return Rig(rig.registry, service, rig.session, rig.simulator)


async def test_a_retry_after_a_restart_gets_the_first_answer_and_nothing_runs_again(
    rig: Rig, tmp_path: Path
) -> None:
    path = tmp_path / "commands.jsonl"
    rig.service.journal = IdempotencyJournal(path)
    telescope = rig.simulator.telescope
    before = telescope.focuser
    first = await rig.run(Focus(delta=10), key="focus-1")
    assert first.operation is not None
    await rig.finished(first.operation)
    again = await restarted(rig, path).run(Focus(delta=10), key="focus-1")
    assert again.operation is not None
    assert (again.command_id, again.status, again.operation.id) == (
        first.command_id, first.status, first.operation.id,
    )  # fmt: skip
    assert telescope.focuser == before + 10, "it ran once"
    conflict = await restarted(rig, path).failure(Focus(delta=99), key="focus-1")
    assert conflict.kind.value == "idempotency-conflict"


async def test_a_command_cut_off_by_a_restart_is_reported_unknown_not_run_again(
    rig: Rig, tmp_path: Path
) -> None:
    path = tmp_path / "commands.jsonl"
    # The server wrote the command down and stopped before it ended (killed mid-command).
    journal = IdempotencyJournal(path)
    journal.taken(("simulator", "tester", "focus-2"), Focus(delta=7).model_dump_json())
    before = rig.simulator.telescope.focuser
    failure = await restarted(rig, path).failure(Focus(delta=7), key="focus-2")
    assert failure.outcome == "unknown" and "restarted" in failure.detail
    assert rig.simulator.telescope.focuser == before


async def test_a_command_that_did_not_run_may_run_when_retried_after_a_restart(
    rig: Rig, tmp_path: Path
) -> None:
    path = tmp_path / "commands.jsonl"
    rig.service.journal = IdempotencyJournal(path)
    refused = await rig.failure(Focus(delta=10), key="f", role=VIEWER)
    assert refused.outcome == "not_run"
    ack = await restarted(rig, path).run(Focus(delta=10), key="f")
    assert ack.status == "accepted"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[-1]["slot"] == ["simulator", "tester", "f"]


def test_a_line_cut_short_by_a_crash_loses_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    journal = IdempotencyJournal(path)
    journal.taken(("t", "c", "a"), "{}")
    journal.ended(("t", "c", "a"), ack={"command_id": "x", "status": "completed"})
    with path.open("a") as file:
        file.write('{"slot": ["t", "c", "b"], "comm')  # the crash
    again = IdempotencyJournal(path)
    entry = again.recall(("t", "c", "a"))
    assert entry is not None and entry.ack == {"command_id": "x", "status": "completed"}
    assert again.recall(("t", "c", "b")) is None
