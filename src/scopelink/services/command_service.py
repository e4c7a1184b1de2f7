"""The command service: the one path every command takes, whatever transport it came by.

It checks the caller's role and rate, validates and resolves the command (catalogue names to
coordinates), refuses conflicting motion with a reason, sends it through the Seestar command
layer, maps every failure to one error model (`CommandFailure` → `Problem`), applies the
idempotency rule (one key, one execution), and follows long commands as operations.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scopelink.auth import VIEWERS_WATCH, may_command
from scopelink.catalog import Catalogue, Kind, UnknownTargetError
from scopelink.ratelimit import KeyedLimiter
from scopelink.schema.commands import (
    COMMAND_ADAPTER,
    DIRECTION_ANGLE,
    Autofocus,
    Command,
    CommandStatus,
    Focus,
    Goto,
    Move,
    Park,
    Role,
    SetDewHeater,
    SetExposure,
    SetGain,
    SetLpFilter,
    SetTracking,
    SetZoom,
    StartRecording,
    StartStack,
    StartView,
    Stop,
    StopAutofocus,
    StopRecording,
    StopStack,
    StopView,
    SyncLocation,
    SyncTime,
    ViewMode,
)
from scopelink.schema.operations import FOCUS_KINDS, MOTION_KINDS, Operation, OperationKind
from scopelink.schema.operations import OperationState as S
from scopelink.schema.state import CommandAck, Outcome, ProblemKind
from scopelink.seestar.errors import (
    CallTimeoutError,
    CommandError,
    ConnectionLostError,
    NotConnectedError,
    SeestarError,
)
from scopelink.seestar.events import AutoFocus, AutoGoto, Event, FocuserMove, ScopeGoto, ScopeHome
from scopelink.seestar.events import Stack as StackEvent
from scopelink.services.audit import AuditLog
from scopelink.services.control import DEADMAN_S, ControlLease, Controller, LeaseHeld
from scopelink.services.journal import IdempotencyJournal
from scopelink.services.registry import TelescopeRegistry, UnknownTelescopeError
from scopelink.services.telescope import Telescope

log = logging.getLogger(__name__)

#: The view a goto by name starts when the command names none: the video views for the Sun,
#: the Moon and the planets (the telescope films them), the star view for everything else.
VIEW_FOR_KIND = {Kind.MOON: ViewMode.MOON, Kind.SUN: ViewMode.SUN, Kind.PLANET: ViewMode.PLANET}
#: How often a running move's deadman looks at its sender's silence.
DEADMAN_POLL_S = 0.05
#: The view stage in which the telescope streams (and can record) video.
VIDEO_STAGE = "RTSP"


class CommandFailure(Exception):
    """A command that did not succeed, with everything a transport needs to say why.

    A domain value: each transport maps `kind` to its own terms at its edge (HTTP statuses in
    `scopelink.web.problems`).
    """

    def __init__(
        self,
        title: str,
        detail: str,
        *,
        kind: ProblemKind,
        outcome: Outcome,
        telescope_code: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail
        self.kind = kind
        self.outcome = outcome
        self.telescope_code = telescope_code
        self.errors = errors


def failure_from(exc: Exception, what: str) -> CommandFailure:
    """The error model: every way a command can fail, mapped once."""
    match exc:
        case CommandFailure():
            return exc
        case CommandError(code=203):
            return CommandFailure(
                "Telescope busy",
                f"{what}: the equipment is moving",
                kind=ProblemKind.TELESCOPE_BUSY,
                telescope_code=203,
                outcome="not_run",
            )
        case CommandError():
            return CommandFailure(
                "Telescope refused",
                f"{what}: {exc.text}",
                kind=ProblemKind.TELESCOPE_REFUSED,
                telescope_code=exc.code,
                outcome="not_run",
            )
        case NotConnectedError():
            return CommandFailure(
                "Telescope not connected",
                f"{what}: {exc}",
                kind=ProblemKind.NOT_CONNECTED,
                outcome="not_run",
            )
        case CallTimeoutError():
            return CommandFailure(
                "No answer from the telescope",
                f"{what}: {exc}",
                kind=ProblemKind.TIMEOUT,
                outcome="unknown",
            )
        case ConnectionLostError():
            return CommandFailure(
                "Connection lost",
                f"{what}: {exc}",
                kind=ProblemKind.CONNECTION_LOST,
                outcome="unknown",
            )
        case ValueError():
            return CommandFailure(
                "Invalid command", f"{what}: {exc}", kind=ProblemKind.INVALID, outcome="not_run"
            )
        case SeestarError():
            return CommandFailure(
                "Telescope error",
                f"{what}: {exc}",
                kind=ProblemKind.TELESCOPE_ERROR,
                outcome="unknown",
            )
    raise exc


#: Where an idempotency key is remembered: (telescope, client, key).
_Slot = tuple[str, str, str]


@dataclass(slots=True)
class _Remembered:
    command: str
    result: asyncio.Future[CommandAck]
    expires: float


@dataclass(frozen=True, slots=True)
class Admission:
    """A command taken to run: `outcome` resolves to its acknowledgement or fails with a
    `CommandFailure`. `repeat`: the same idempotency key was taken before, so nothing new runs
    and `outcome` is the first one's."""

    outcome: asyncio.Future[CommandAck]
    repeat: bool


class CommandService:
    """Executes commands for every transport (REST, the data channel)."""

    def __init__(
        self,
        registry: TelescopeRegistry,
        catalogue: Catalogue,
        *,
        rate: float = 10.0,
        idempotency_ttl_s: float = 600.0,
        max_remembered: int = 4096,
        max_remembered_per_client: int = 256,
        audit: AuditLog | None = None,
        journal: IdempotencyJournal | None = None,
    ) -> None:
        self.registry = registry
        self.audit = audit or AuditLog()
        #: Keys that outlive the process (the proxy's), so a retry after a restart never runs
        #: the command twice.
        self.journal = journal
        self.catalogue = catalogue
        self.limiter = KeyedLimiter(rate, max(1.0, 2 * rate))
        self._ttl = idempotency_ttl_s
        self._max_remembered = max_remembered
        self._max_per_client = max_remembered_per_client
        #: (telescope, client, key) → the command and its outcome, oldest first.
        self._remembered: OrderedDict[_Slot, _Remembered] = OrderedDict()
        self._per_client: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._running: set[asyncio.Task[Any]] = set()
        self._leases: dict[str, ControlLease] = {}
        #: Per telescope: the deadman watching the running move, if any.
        self._deadmen: dict[str, asyncio.Task[None]] = {}
        #: Per telescope: held from a focus step's busy check to its operation's start, so two
        #: steps arriving together cannot both start from the same position.
        self._focus_locks: dict[str, asyncio.Lock] = {}

    def lease(self, telescope_id: str) -> ControlLease:
        """The control lease of a telescope (made on first use)."""
        lease = self._leases.get(telescope_id)
        if lease is None:
            lease = self._leases[telescope_id] = ControlLease(telescope_id)
        return lease

    # -- entry points ---------------------------------------------------------------------------

    @staticmethod
    def parse(data: Any) -> Command:
        """Validate raw input (a dict from JSON) into a command; raises pydantic's error."""
        return COMMAND_ADAPTER.validate_python(data)

    async def execute(
        self,
        telescope_id: str,
        command: Command,
        *,
        client: str,
        role: Role,
        idempotency_key: str | None = None,
        controller: Controller | None = None,
        who: str | None = None,
    ) -> CommandAck:
        """Run one command; returns its acknowledgement or raises CommandFailure."""
        admission = self.submit(
            telescope_id,
            command,
            client=client,
            role=role,
            idempotency_key=idempotency_key,
            controller=controller,
            who=who,
        )
        return await asyncio.shield(admission.outcome)

    def submit(
        self,
        telescope_id: str,
        command: Command,
        *,
        client: str,
        role: Role,
        idempotency_key: str | None = None,
        controller: Controller | None = None,
        who: str | None = None,
    ) -> Admission:
        """Take one command to run, or refuse it (raises CommandFailure: nothing ran).

        Either way it is in the audit log (`who`: the caller's verified name, if known).

        `client` is who is rate-limited (a token, an address); `controller` is who holds the
        control lease (a tab, a script; by default `client` over REST). A command from anyone
        but the lease's holder is refused, except `stop`.

        It runs in a task of its own: a caller that goes away does not cut it short. With an
        idempotency key, a key this client used before gets the first command's outcome (a
        retry is never refused for the rate, and never runs twice); the key is forgotten when
        its command did not run, so a retry may try again.
        """
        entry = {
            "telescope": telescope_id,
            "client": client,
            "who": who,
            "role": Role(role).value,
            "command": command.type,
            "params": command.model_dump(mode="json", exclude={"type"}),
        }
        try:
            admission = self._admit(
                telescope_id, command, client, role, idempotency_key, controller
            )
        except CommandFailure as failure:
            self.audit.record(**entry, outcome="refused", detail=failure.detail)
            raise
        admission.outcome.add_done_callback(
            lambda done: self.audit.record(**entry, **_ended(done), repeat=admission.repeat)
        )
        return admission

    def _admit(
        self,
        telescope_id: str,
        command: Command,
        client: str,
        role: Role,
        idempotency_key: str | None,
        controller: Controller | None,
    ) -> Admission:
        if not may_command(role):
            raise CommandFailure(
                "Forbidden", VIEWERS_WATCH, kind=ProblemKind.FORBIDDEN, outcome="not_run"
            )
        try:
            session = self.registry.get(telescope_id)
        except UnknownTelescopeError as exc:
            raise CommandFailure(
                "Unknown telescope", str(exc), kind=ProblemKind.UNKNOWN_TELESCOPE, outcome="not_run"
            ) from None
        controller = controller or Controller(client)
        # Keys belong to the controller: a tab that comes back on a new connection finds its own.
        slot = None if idempotency_key is None else (session.id, controller.client, idempotency_key)
        text = command.model_dump_json()
        if slot is not None:
            remembered = self._recall(slot) or self._from_journal(slot)
            if remembered is not None:
                if remembered.command != text:
                    raise CommandFailure(
                        "Idempotency key reused",
                        f"key {idempotency_key!r} was already used for a different command",
                        kind=ProblemKind.IDEMPOTENCY_CONFLICT,
                        outcome="not_run",
                    )
                return Admission(remembered.result, repeat=True)
        if not self.limiter.allow(client):
            raise CommandFailure(
                "Too many commands",
                f"slow down: at most {self.limiter.rate:g} commands per second",
                kind=ProblemKind.RATE_LIMITED,
                outcome="not_run",
            )
        lease = self.lease(session.id)
        if not isinstance(command, Stop):
            take_control(lease, controller)
        else:
            lease.touch(controller.client)
            self._call_off_deadman(session.id)
        task = asyncio.get_running_loop().create_task(
            self._run(session, command), name=f"command-{_describe(command)}"
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(_retrieve)
        if slot is not None:
            self._remember(slot, _Remembered(text, task, time.monotonic() + self._ttl))
            task.add_done_callback(lambda t: self._forget_if_not_run(slot, t))
            if self.journal is not None:
                self.journal.taken(slot, text)
                task.add_done_callback(lambda t: self._journal_end(slot, t))
        if isinstance(command, Move) and controller.keepalive:
            self._watch_move(session, lease, controller.client, task, command.duration_s)
        return Admission(task, repeat=False)

    # -- the deadman ----------------------------------------------------------------------------

    def _watch_move(
        self,
        session: Telescope,
        lease: ControlLease,
        client: str,
        sent: asyncio.Task[CommandAck],
        duration_s: float,
    ) -> None:
        """Stop the mount if `client` goes silent while its move runs (a newer move or a stop
        takes over the watch)."""
        self._call_off_deadman(session.id)
        watch = asyncio.get_running_loop().create_task(
            self._deadman(session, lease, client, sent, duration_s),
            name=f"deadman-{session.id}",
        )
        self._deadmen[session.id] = watch
        self._running.add(watch)
        watch.add_done_callback(self._running.discard)

    def _call_off_deadman(self, telescope_id: str) -> None:
        watch = self._deadmen.pop(telescope_id, None)
        if watch is not None:
            watch.cancel()

    async def _deadman(
        self,
        session: Telescope,
        lease: ControlLease,
        client: str,
        sent: asyncio.Task[CommandAck],
        duration_s: float,
    ) -> None:
        try:
            await asyncio.shield(sent)
        except CommandFailure:
            return  # the move was not made
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            silence = lease.silence_s(client)
            if silence is None or silence > DEADMAN_S:
                why = "lost control" if silence is None else f"silent for {silence:.1f} s"
                log.warning("deadman: stopping %s: the client moving it %s", session.id, why)
                try:
                    await session.commands.stop_move()
                except SeestarError as exc:
                    log.error("deadman: the stop for %s failed: %s", session.id, exc)
                return
            await asyncio.sleep(DEADMAN_POLL_S)

    # -- idempotency ----------------------------------------------------------------------------

    def _recall(self, slot: _Slot) -> _Remembered | None:
        now = time.monotonic()
        while self._remembered:
            oldest_slot, oldest = next(iter(self._remembered.items()))
            if oldest.expires >= now:
                break
            self._drop(oldest_slot)
        return self._remembered.get(slot)

    def _remember(self, slot: _Slot, entry: _Remembered) -> None:
        client = slot[1]
        self._remembered[slot] = entry
        self._per_client[client] = self._per_client.get(client, 0) + 1
        if self._per_client[client] > self._max_per_client:
            # One client's flood of keys must not push out everyone else's.
            self._drop(next(k for k in self._remembered if k[1] == client))
        while len(self._remembered) > self._max_remembered:
            self._drop(next(iter(self._remembered)))

    def _drop(self, slot: _Slot) -> None:
        if self._remembered.pop(slot, None) is None:
            return
        left = self._per_client[slot[1]] - 1
        if left:
            self._per_client[slot[1]] = left
        else:
            del self._per_client[slot[1]]

    def _from_journal(self, slot: _Slot) -> _Remembered | None:
        """A key taken before this process started: its first outcome, or unknown if the
        process stopped while its command ran."""
        entry = self.journal.recall(slot) if self.journal is not None else None
        if entry is None:
            return None
        outcome: asyncio.Future[CommandAck] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(_retrieve)
        if entry.ack is not None:
            outcome.set_result(CommandAck.model_validate(entry.ack))
        elif entry.failure is not None:
            failure = dict(entry.failure)
            kind = ProblemKind(failure.pop("kind"))
            outcome.set_exception(CommandFailure(kind=kind, **failure))
        else:
            outcome.set_exception(
                CommandFailure(
                    "Outcome unknown",
                    "the server restarted while this command ran, so whether it did is not "
                    "known; look at the telescope before sending it again",
                    kind=ProblemKind.CONNECTION_LOST,
                    outcome="unknown",
                )
            )
        remembered = _Remembered(entry.command, outcome, time.monotonic() + self._ttl)
        self._remember(slot, remembered)
        return remembered

    def _journal_end(self, slot: _Slot, task: asyncio.Task[CommandAck]) -> None:
        assert self.journal is not None
        if task.cancelled():
            return  # stopping while it ran: after a restart its outcome is unknown
        exc = task.exception()
        if exc is None:
            self.journal.ended(slot, ack=task.result().model_dump(mode="json"))
        elif isinstance(exc, CommandFailure) and exc.outcome == "not_run":
            self.journal.forget(slot)
        elif isinstance(exc, CommandFailure):
            self.journal.ended(slot, failure=_failure_record(exc))

    def _forget_if_not_run(self, slot: _Slot, task: asyncio.Task[CommandAck]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, CommandFailure) and exc.outcome == "not_run":
            remembered = self._remembered.get(slot)
            if remembered is not None and remembered.result is task:
                self._drop(slot)  # nothing happened: a retry with the same key may try again

    async def close(self) -> None:
        """Wait for the commands still running (the app is stopping)."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self, session: Telescope, command: Command) -> CommandAck:
        command_id = f"cmd-{next(self._ids)}"
        handler = _HANDLERS[type(command)]
        try:
            result = await handler(self, session, command)
        except (SeestarError, ValueError, CommandFailure) as exc:
            raise failure_from(exc, _describe(command)) from None
        if isinstance(result, Operation):
            return CommandAck(
                command_id=command_id, status=CommandStatus.ACCEPTED, operation=result
            )
        return CommandAck(command_id=command_id, status=CommandStatus.COMPLETED, result=result)

    # -- conflicts and operations ---------------------------------------------------------------

    @staticmethod
    def _refuse_if_busy(session: Telescope, kinds: frozenset[OperationKind], what: str) -> None:
        busy = session.operations.running(kinds)
        if busy:
            op = busy[0]
            target = f" to {op.target}" if op.target else ""
            raise CommandFailure(
                "Telescope busy",
                f"cannot {what}: a {op.kind}{target} is in progress; stop it first",
                kind=ProblemKind.CONFLICT,
                outcome="not_run",
            )

    @staticmethod
    async def _follow(
        session: Telescope,
        op: Operation,
        names: set[str],
        on_event: Callable[[Event], None],
        send: Callable[[], Any],
    ) -> Operation:
        """Subscribe to the events that drive `op`, then send; the subscription ends with it."""
        tracker = session.operations
        unsubscribe: Callable[[], None] | None = None

        def handle(event: Event) -> None:
            on_event(event)
            if op.done and unsubscribe is not None:
                unsubscribe()

        unsubscribe = session.control.subscribe(handle, names)
        try:
            await send()
        except BaseException as exc:
            unsubscribe()
            failure = failure_from(exc, op.kind) if isinstance(exc, Exception) else None
            reason = failure.detail if failure else "cancelled"
            tracker.update(op, S.FAIL, error=reason, message=reason)
            raise
        if op.state is S.START:
            tracker.update(op, S.WORKING)
        return op

    # -- handlers -------------------------------------------------------------------------------

    async def _goto(self, session: Telescope, cmd: Goto) -> Operation:
        self._refuse_if_busy(session, MOTION_KINDS, "start a goto")
        if cmd.target is not None:
            try:
                # From the site: the Moon's parallax (up to 1°) is more than half the field.
                target = self.catalogue.resolve(cmd.target, site=session.site)
            except UnknownTargetError as exc:
                hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
                raise CommandFailure(
                    "Unknown target",
                    f"no target called {cmd.target!r} in the catalogue{hint}",
                    kind=ProblemKind.UNKNOWN_TARGET,
                    outcome="not_run",
                    errors=[{"loc": ["target"], "msg": "unknown target"}],
                ) from None
            ra, dec, name = target.ra_hours, target.dec_deg, target.name
            mode = cmd.mode or VIEW_FOR_KIND.get(target.kind, ViewMode.STAR)
        else:
            assert cmd.ra_hours is not None and cmd.dec_deg is not None
            ra, dec, name = (
                cmd.ra_hours,
                cmd.dec_deg,
                f"RA {cmd.ra_hours:.3f}h Dec {cmd.dec_deg:+.2f}°",
            )
            mode = cmd.mode or ViewMode.STAR
        tracker = session.operations
        op = tracker.start(OperationKind.GOTO, target=name, message=f"slewing to {name}")
        first_distance: list[float] = []

        def on_event(event: Event) -> None:
            if isinstance(event, ScopeGoto) and event.dist_deg is not None and not event.terminal:
                if not first_distance:
                    first_distance.append(max(event.dist_deg, 1e-6))
                progress = 0.9 * (1 - event.dist_deg / first_distance[0])
                tracker.update(
                    op,
                    S.WORKING,
                    progress=progress,
                    message=f"slewing to {name}, {event.dist_deg:.1f}° to go",
                )
            elif isinstance(event, AutoGoto) and event.terminal:
                state = {"complete": S.COMPLETE, "fail": S.FAIL}.get(event.state or "", S.CANCEL)
                message = {S.COMPLETE: f"tracking {name}", S.FAIL: "goto failed"}.get(
                    state, "goto stopped"
                )
                tracker.update(op, state, message=message, error=event.error)
            elif event.event == "PlateSolve" and getattr(event, "state", None) == "start":
                tracker.update(op, S.WORKING, progress=0.92, message=f"centring on {name}")

        return await self._follow(
            session,
            op,
            {"ScopeGoto", "AutoGoto", "PlateSolve"},
            on_event,
            lambda: session.commands.goto_target(ra, dec, name, mode, cmd.lp_filter),
        )

    async def _stop(self, session: Telescope, cmd: Stop) -> dict[str, Any]:
        await session.commands.stop_goto()
        await session.commands.stop_move()
        return {"stopped": True}

    async def _move(self, session: Telescope, cmd: Move) -> dict[str, Any]:
        self._refuse_if_busy(
            session, frozenset({OperationKind.GOTO, OperationKind.PARK}), "move by hand"
        )
        angle = DIRECTION_ANGLE[cmd.direction]
        await session.commands.speed_move(angle, cmd.speed, cmd.duration_s)
        return {"direction": str(cmd.direction), "duration_s": cmd.duration_s}

    async def _park(self, session: Telescope, cmd: Park) -> Operation:
        self._refuse_if_busy(session, MOTION_KINDS, "park")
        tracker = session.operations
        op = tracker.start(OperationKind.PARK, message="parking")

        def on_event(event: Event) -> None:
            if isinstance(event, ScopeHome):
                if event.state == "complete" and event.close:
                    tracker.update(op, S.COMPLETE, message="parked")
                elif event.terminal:
                    tracker.update(
                        op,
                        S.CANCEL if event.state == "cancel" else S.FAIL,
                        message="parking stopped",
                        error=event.error,
                    )

        return await self._follow(session, op, {"ScopeHome"}, on_event, session.commands.park)

    async def _tracking(self, session: Telescope, cmd: SetTracking) -> dict[str, Any]:
        await session.commands.set_tracking(cmd.on)
        return {"tracking": cmd.on}

    async def _focus(self, session: Telescope, cmd: Focus) -> Operation:
        tracker = session.operations
        async with self._focus_locks.setdefault(session.id, asyncio.Lock()):
            self._refuse_if_busy(session, FOCUS_KINDS, "move the focuser")
            if cmd.position is not None:
                goal = cmd.position
            else:
                assert cmd.delta is not None
                goal = await session.commands.get_focuser_position() + cmd.delta
            if not 0 <= goal <= 2600:
                raise ValueError(f"focuser position {goal} is outside 0..2600")
            op = tracker.start(OperationKind.FOCUS, target=str(goal), message=f"focusing to {goal}")
        start: list[int] = []

        def on_event(event: Event) -> None:
            if not isinstance(event, FocuserMove) or event.route:
                return  # moves inside an autofocus run belong to that run
            if event.position is not None and not start:
                start.append(event.position)
            if event.state == "complete":
                tracker.update(op, S.COMPLETE, message=f"focuser at {event.position}")
            elif event.terminal:
                tracker.update(op, S.CANCEL, message="focuser stopped", error=event.error)
            elif event.position is not None and start and start[0] != goal:
                done = (event.position - start[0]) / (goal - start[0])
                tracker.update(op, S.WORKING, progress=done, message=f"focuser at {event.position}")

        async def send() -> None:
            await session.commands.move_focuser(goal)

        return await self._follow(session, op, {"FocuserMove"}, on_event, send)

    async def _autofocus(self, session: Telescope, cmd: Autofocus) -> Operation:
        self._refuse_if_busy(session, FOCUS_KINDS | MOTION_KINDS, "start autofocus")
        tracker = session.operations
        op = tracker.start(OperationKind.AUTOFOCUS, message="autofocus")

        def on_event(event: Event) -> None:
            if isinstance(event, AutoFocus) and event.terminal:
                state = {"complete": S.COMPLETE, "fail": S.FAIL}.get(event.state or "", S.CANCEL)
                point = (event.result or {}).get("last_point")
                message = (
                    f"best focus at {point[0]}"
                    if state is S.COMPLETE and point
                    else ("autofocus " + str(state))
                )
                tracker.update(op, state, message=message, error=event.error)
            elif isinstance(event, FocuserMove) and event.position is not None:
                tracker.update(op, S.WORKING, message=f"sampling focus at {event.position}")

        return await self._follow(
            session, op, {"AutoFocus", "FocuserMove"}, on_event, session.commands.start_autofocus
        )

    async def _stop_autofocus(self, session: Telescope, cmd: StopAutofocus) -> dict[str, Any]:
        await session.commands.stop_autofocus()
        return {"stopped": True}

    async def _start_view(self, session: Telescope, cmd: StartView) -> dict[str, Any]:
        await session.commands.start_view(cmd.mode, cmd.lp_filter)
        return {"mode": str(cmd.mode)}

    async def _stop_view(self, session: Telescope, cmd: StopView) -> dict[str, Any]:
        await session.commands.stop_view()
        return {"stopped": True}

    async def _start_stack(self, session: Telescope, cmd: StartStack) -> Operation:
        self._refuse_if_busy(session, frozenset({OperationKind.STACK}), "start stacking")
        tracker = session.operations
        op = tracker.start(OperationKind.STACK, message="stacking")

        def on_event(event: Event) -> None:
            if not isinstance(event, StackEvent):
                return
            if event.state == "frame_complete":
                tracker.update(
                    op,
                    S.WORKING,
                    message=f"{event.stacked_frame or 0} frames "
                    f"stacked, {event.dropped_frame or 0} dropped",
                )
            elif event.terminal:
                # Stopping a stack is how it normally ends: the frames so far are the result.
                state = S.FAIL if event.state == "fail" else S.COMPLETE
                tracker.update(
                    op,
                    state,
                    message=f"stopped with {event.stacked_frame or 0} frames stacked",
                    error=event.error,
                )

        return await self._follow(
            session, op, {"Stack"}, on_event, lambda: session.commands.start_stack(cmd.restart)
        )

    async def _stop_stack(self, session: Telescope, cmd: StopStack) -> dict[str, Any]:
        await session.commands.stop_stack()
        return {"stopped": True}

    async def _set_zoom(self, session: Telescope, cmd: SetZoom) -> dict[str, Any]:
        await session.commands.set_rtsp_zoom(cmd.zoom)
        return {"zoom": cmd.zoom}

    async def _start_recording(self, session: Telescope, cmd: StartRecording) -> dict[str, Any]:
        try:
            await session.commands.start_recording()
        except CommandError as exc:
            raise await _recording_refusal(session, exc, starting=True) from None
        return {"recording": True}

    async def _stop_recording(self, session: Telescope, cmd: StopRecording) -> dict[str, Any]:
        try:
            await session.commands.stop_recording()
        except CommandError as exc:
            raise await _recording_refusal(session, exc, starting=False) from None
        return {"recording": False}

    async def _exposure(self, session: Telescope, cmd: SetExposure) -> dict[str, Any]:
        await session.commands.set_exposure(stack_ms=cmd.stack_ms, continuous_ms=cmd.continuous_ms)
        return cmd.model_dump(exclude={"type"}, exclude_none=True)

    async def _gain(self, session: Telescope, cmd: SetGain) -> dict[str, Any]:
        await session.commands.set_gain(cmd.gain)
        return {"gain": cmd.gain}

    async def _lp_filter(self, session: Telescope, cmd: SetLpFilter) -> dict[str, Any]:
        await session.commands.set_lp_filter(cmd.on)
        return {"lp_filter": cmd.on}

    async def _dew_heater(self, session: Telescope, cmd: SetDewHeater) -> dict[str, Any]:
        await session.commands.set_dew_heater(cmd.on, cmd.power_percent)
        return {"on": cmd.on, "power_percent": cmd.power_percent}

    async def _sync_time(self, session: Telescope, cmd: SyncTime) -> dict[str, Any]:
        when = cmd.when or datetime.now(UTC)
        await session.commands.set_time(when, cmd.time_zone)
        return {"when": when.isoformat(), "time_zone": cmd.time_zone}

    async def _sync_location(self, session: Telescope, cmd: SyncLocation) -> dict[str, Any]:
        await session.commands.set_location(cmd.lat_deg, cmd.lon_deg)
        # Keep the connect-time device state current: goto uses the site for the Moon.
        session.control.device_state["location_lon_lat"] = [cmd.lon_deg, cmd.lat_deg]
        return {"lat_deg": cmd.lat_deg, "lon_deg": cmd.lon_deg}


async def _recording_refusal(session: Telescope, exc: CommandError, *, starting: bool) -> Exception:
    """Why the telescope refused a recording command, in words a user can act on.

    The firmware answers every recording mistake with 207 "fail to operate"; its view state
    tells which one it was (asked only after a refusal, so it costs nothing otherwise).
    """
    if exc.code != 207:
        return exc
    try:
        view = await session.commands.get_view_state()
    except SeestarError:
        return exc
    record = view.get("AviRecord")
    recording = isinstance(record, dict) and record.get("state") in ("start", "working")
    if starting and view.get("stage") != VIDEO_STAGE:
        reason = "recording needs a Moon, Sun, planet or scenery view"
    elif starting and recording:
        reason = "the telescope is already recording"
    elif not starting and not recording:
        reason = "the telescope is not recording"
    else:
        return exc
    what = "start recording" if starting else "stop recording"
    return CommandFailure(
        "Telescope refused",
        f"{what}: {reason}",
        kind=ProblemKind.TELESCOPE_REFUSED,
        telescope_code=exc.code,
        outcome="not_run",
    )


def take_control(lease: ControlLease, who: Controller) -> None:
    """Take (or keep) the lease for `who`; another holder is a refusal in the error model."""
    try:
        lease.take(who)
    except LeaseHeld as exc:
        raise CommandFailure(
            "Not in control", str(exc), kind=ProblemKind.NOT_IN_CONTROL, outcome="not_run"
        ) from None


def _retrieve(task: asyncio.Task[CommandAck]) -> None:
    """Mark a command's failure as seen: whoever waits for it may be gone."""
    if not task.cancelled():
        task.exception()


def _failure_record(failure: CommandFailure) -> dict[str, Any]:
    return {
        "title": failure.title,
        "detail": failure.detail,
        "kind": failure.kind.value,
        "outcome": failure.outcome,
        "telescope_code": failure.telescope_code,
        "errors": failure.errors,
    }


def _ended(done: asyncio.Future[CommandAck]) -> dict[str, Any]:
    """How a command ended, for its audit record."""
    if done.cancelled():
        return {"outcome": "failed", "detail": "cancelled (the server stopped)"}
    exc = done.exception()
    if exc is not None:
        detail = exc.detail if isinstance(exc, CommandFailure) else str(exc)
        return {"outcome": "failed", "detail": detail}
    return {"outcome": done.result().status}


def _describe(command: Command) -> str:
    return command.type.replace("_", " ")


_HANDLERS: dict[type, Callable[..., Any]] = {
    Goto: CommandService._goto,
    Stop: CommandService._stop,
    Move: CommandService._move,
    Park: CommandService._park,
    SetTracking: CommandService._tracking,
    Focus: CommandService._focus,
    Autofocus: CommandService._autofocus,
    StopAutofocus: CommandService._stop_autofocus,
    StartView: CommandService._start_view,
    StopView: CommandService._stop_view,
    StartStack: CommandService._start_stack,
    StopStack: CommandService._stop_stack,
    SetZoom: CommandService._set_zoom,
    StartRecording: CommandService._start_recording,
    StopRecording: CommandService._stop_recording,
    SetExposure: CommandService._exposure,
    SetGain: CommandService._gain,
    SetLpFilter: CommandService._lp_filter,
    SetDewHeater: CommandService._dew_heater,
    SyncTime: CommandService._sync_time,
    SyncLocation: CommandService._sync_location,
}
