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
from scopelink.services.registry import TelescopeRegistry, UnknownTelescopeError
from scopelink.services.telescope import TelescopeSession

log = logging.getLogger(__name__)

#: The view a goto by name starts when the command names none: the video views for the Sun,
#: the Moon and the planets (the telescope films them), the star view for everything else.
VIEW_FOR_KIND = {Kind.MOON: ViewMode.MOON, Kind.SUN: ViewMode.SUN, Kind.PLANET: ViewMode.PLANET}
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


@dataclass(slots=True)
class _Remembered:
    command: str
    result: asyncio.Future[CommandAck]
    expires: float


class CommandService:
    """Executes commands for every transport (REST today, the data channel tomorrow)."""

    def __init__(
        self,
        registry: TelescopeRegistry,
        catalogue: Catalogue,
        *,
        rate: float = 10.0,
        idempotency_ttl_s: float = 600.0,
        max_remembered: int = 1024,
    ) -> None:
        self.registry = registry
        self.catalogue = catalogue
        self.limiter = KeyedLimiter(rate, max(1.0, 2 * rate))
        self._ttl = idempotency_ttl_s
        self._max_remembered = max_remembered
        self._remembered: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()
        self._ids = itertools.count(1)

    # -- entry point ----------------------------------------------------------------------------

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
    ) -> CommandAck:
        """Run one command; returns its acknowledgement or raises CommandFailure."""
        if role is not Role.OPERATOR:
            raise CommandFailure(
                "Forbidden",
                "viewers may watch but not command the telescope; sign in with an operator token",
                kind=ProblemKind.FORBIDDEN,
                outcome="not_run",
            )
        if not self.limiter.allow(client):
            raise CommandFailure(
                "Too many commands",
                f"slow down: at most {self.limiter.rate:g} commands per second",
                kind=ProblemKind.RATE_LIMITED,
                outcome="not_run",
            )
        try:
            session = self.registry.get(telescope_id)
        except UnknownTelescopeError as exc:
            raise CommandFailure(
                "Unknown telescope", str(exc), kind=ProblemKind.UNKNOWN_TELESCOPE, outcome="not_run"
            ) from None
        if idempotency_key is None:
            return await self._run(session, command)
        return await self._run_once(session, command, idempotency_key)

    async def _run_once(self, session: TelescopeSession, command: Command, key: str) -> CommandAck:
        now = time.monotonic()
        for k in [k for k, r in self._remembered.items() if r.expires < now]:
            del self._remembered[k]
        text = command.model_dump_json()
        slot = (session.id, key)
        remembered = self._remembered.get(slot)
        if remembered is not None:
            if remembered.command != text:
                raise CommandFailure(
                    "Idempotency key reused",
                    f"key {key!r} was already used for a different command",
                    kind=ProblemKind.IDEMPOTENCY_CONFLICT,
                    outcome="not_run",
                )
            return await asyncio.shield(remembered.result)
        future: asyncio.Future[CommandAck] = asyncio.get_running_loop().create_future()
        self._remembered[slot] = _Remembered(text, future, now + self._ttl)
        while len(self._remembered) > self._max_remembered:
            self._remembered.popitem(last=False)
        try:
            ack = await self._run(session, command)
        except CommandFailure as exc:
            if exc.outcome == "not_run":
                # Nothing happened: a retry with the same key may try again.
                self._remembered.pop(slot, None)
            future.set_exception(exc)
            future.exception()  # mark retrieved: other waiters may not exist
            raise
        future.set_result(ack)
        return ack

    async def _run(self, session: TelescopeSession, command: Command) -> CommandAck:
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
    def _refuse_if_busy(
        session: TelescopeSession, kinds: frozenset[OperationKind], what: str
    ) -> None:
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
        session: TelescopeSession,
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

    async def _goto(self, session: TelescopeSession, cmd: Goto) -> Operation:
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

    async def _stop(self, session: TelescopeSession, cmd: Stop) -> dict[str, Any]:
        await session.commands.stop_goto()
        await session.commands.stop_move()
        return {"stopped": True}

    async def _move(self, session: TelescopeSession, cmd: Move) -> dict[str, Any]:
        self._refuse_if_busy(
            session, frozenset({OperationKind.GOTO, OperationKind.PARK}), "move by hand"
        )
        angle = DIRECTION_ANGLE[cmd.direction]
        await session.commands.speed_move(angle, cmd.speed, cmd.duration_s)
        return {"direction": str(cmd.direction), "duration_s": cmd.duration_s}

    async def _park(self, session: TelescopeSession, cmd: Park) -> Operation:
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

    async def _tracking(self, session: TelescopeSession, cmd: SetTracking) -> dict[str, Any]:
        await session.commands.set_tracking(cmd.on)
        return {"tracking": cmd.on}

    async def _focus(self, session: TelescopeSession, cmd: Focus) -> Operation:
        self._refuse_if_busy(session, FOCUS_KINDS, "move the focuser")
        if cmd.position is not None:
            goal = cmd.position
        else:
            assert cmd.delta is not None
            goal = await session.commands.get_focuser_position() + cmd.delta
        if not 0 <= goal <= 2600:
            raise ValueError(f"focuser position {goal} is outside 0..2600")
        tracker = session.operations
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

    async def _autofocus(self, session: TelescopeSession, cmd: Autofocus) -> Operation:
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

    async def _stop_autofocus(
        self, session: TelescopeSession, cmd: StopAutofocus
    ) -> dict[str, Any]:
        await session.commands.stop_autofocus()
        return {"stopped": True}

    async def _start_view(self, session: TelescopeSession, cmd: StartView) -> dict[str, Any]:
        await session.commands.start_view(cmd.mode, cmd.lp_filter)
        return {"mode": str(cmd.mode)}

    async def _stop_view(self, session: TelescopeSession, cmd: StopView) -> dict[str, Any]:
        await session.commands.stop_view()
        return {"stopped": True}

    async def _start_stack(self, session: TelescopeSession, cmd: StartStack) -> Operation:
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

    async def _stop_stack(self, session: TelescopeSession, cmd: StopStack) -> dict[str, Any]:
        await session.commands.stop_stack()
        return {"stopped": True}

    async def _set_zoom(self, session: TelescopeSession, cmd: SetZoom) -> dict[str, Any]:
        await session.commands.set_rtsp_zoom(cmd.zoom)
        return {"zoom": cmd.zoom}

    async def _start_recording(
        self, session: TelescopeSession, cmd: StartRecording
    ) -> dict[str, Any]:
        try:
            await session.commands.start_recording()
        except CommandError as exc:
            raise await _recording_refusal(session, exc, starting=True) from None
        return {"recording": True}

    async def _stop_recording(
        self, session: TelescopeSession, cmd: StopRecording
    ) -> dict[str, Any]:
        try:
            await session.commands.stop_recording()
        except CommandError as exc:
            raise await _recording_refusal(session, exc, starting=False) from None
        return {"recording": False}

    async def _exposure(self, session: TelescopeSession, cmd: SetExposure) -> dict[str, Any]:
        await session.commands.set_exposure(stack_ms=cmd.stack_ms, continuous_ms=cmd.continuous_ms)
        return cmd.model_dump(exclude={"type"}, exclude_none=True)

    async def _gain(self, session: TelescopeSession, cmd: SetGain) -> dict[str, Any]:
        await session.commands.set_gain(cmd.gain)
        return {"gain": cmd.gain}

    async def _lp_filter(self, session: TelescopeSession, cmd: SetLpFilter) -> dict[str, Any]:
        await session.commands.set_lp_filter(cmd.on)
        return {"lp_filter": cmd.on}

    async def _dew_heater(self, session: TelescopeSession, cmd: SetDewHeater) -> dict[str, Any]:
        await session.commands.set_dew_heater(cmd.on, cmd.power_percent)
        return {"on": cmd.on, "power_percent": cmd.power_percent}

    async def _sync_time(self, session: TelescopeSession, cmd: SyncTime) -> dict[str, Any]:
        when = cmd.when or datetime.now(UTC)
        await session.commands.set_time(when, cmd.time_zone)
        return {"when": when.isoformat(), "time_zone": cmd.time_zone}

    async def _sync_location(self, session: TelescopeSession, cmd: SyncLocation) -> dict[str, Any]:
        await session.commands.set_location(cmd.lat_deg, cmd.lon_deg)
        # Keep the connect-time device state current: goto uses the site for the Moon.
        session.control.device_state["location_lon_lat"] = [cmd.lon_deg, cmd.lat_deg]
        return {"lat_deg": cmd.lat_deg, "lon_deg": cmd.lon_deg}


async def _recording_refusal(
    session: TelescopeSession, exc: CommandError, *, starting: bool
) -> Exception:
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
