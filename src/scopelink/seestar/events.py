"""Typed events of the control channel.

Every event keeps its raw fields; the typed classes add the fields clients act on. An event whose
name we do not know is still delivered, as `UnknownEvent`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scopelink.seestar.messages import RawEvent

#: Lifecycle states after which an operation is over.
TERMINAL_STATES = frozenset({"complete", "fail", "cancel"})


class Event(BaseModel):
    """Base of all events: name, firmware uptime stamp, and every field as received."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    name: ClassVar[str] = ""

    event: str = Field(alias="Event")
    timestamp: str | None = Field(default=None, alias="Timestamp")

    @property
    def raw(self) -> dict[str, Any]:
        """Every field as the telescope sent it."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class OperationEvent(Event):
    """An event with the start/working/complete/fail/cancel lifecycle."""

    state: str | None = None
    lapse_ms: int | None = None
    route: list[str] | None = None
    error: str | None = None
    code: int | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class PiStatus(Event):
    name: ClassVar[str] = "PiStatus"
    temp: float | None = None
    charger_status: str | None = None
    charge_online: bool | None = None
    battery_capacity: float | None = None


class Version(Event):
    name: ClassVar[str] = "Version"
    firmware_ver_int: int | None = None
    firmware_ver_string: str | None = None
    is_verified: bool | None = None


class View(OperationEvent):
    name: ClassVar[str] = "View"
    mode: str | None = None
    stage: str | None = None
    target_name: str | None = None
    lp_filter: bool | None = None
    gain: int | None = None


class AutoGoto(OperationEvent):
    name: ClassVar[str] = "AutoGoto"
    count: int | None = None
    hint: bool | None = None


class ScopeGoto(OperationEvent):
    name: ClassVar[str] = "ScopeGoto"
    cur_ra_dec: list[float] | None = None
    dist_deg: float | None = None


class ScopeTrack(OperationEvent):
    name: ClassVar[str] = "ScopeTrack"
    tracking: bool | None = None
    manual: bool | None = None


class ScopeHome(OperationEvent):
    name: ClassVar[str] = "ScopeHome"
    close: bool | None = None


class FocuserMove(OperationEvent):
    name: ClassVar[str] = "FocuserMove"
    position: int | None = None


class AutoFocus(OperationEvent):
    name: ClassVar[str] = "AutoFocus"
    result: dict[str, Any] | None = None


class Exposure(OperationEvent):
    name: ClassVar[str] = "Exposure"
    exp_ms: float | None = None


class Stack(OperationEvent):
    name: ClassVar[str] = "Stack"
    stacked_frame: int | None = None
    dropped_frame: int | None = None
    total_frame: int | None = None


class PlateSolve(OperationEvent):
    name: ClassVar[str] = "PlateSolve"
    result: dict[str, Any] | None = None


class WheelMove(OperationEvent):
    name: ClassVar[str] = "WheelMove"
    position: int | None = None


class DiskSpace(Event):
    name: ClassVar[str] = "DiskSpace"
    used_percent: float | None = None


class Alert(OperationEvent):
    name: ClassVar[str] = "Alert"


class UnknownEvent(Event):
    """An event we have no class for; all its fields are in `raw`."""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        PiStatus, Version, View, AutoGoto, ScopeGoto, ScopeTrack, ScopeHome, FocuserMove,
        AutoFocus, Exposure, Stack, PlateSolve, WheelMove, DiskSpace, Alert,
    )
}  # fmt: skip


def parse_event(raw: RawEvent) -> Event:
    """Type a raw event; if its fields do not fit the class, deliver it as UnknownEvent."""
    cls = EVENT_TYPES.get(raw.name)
    if cls is not None:
        try:
            return cls.model_validate(raw.data)
        except ValidationError:
            pass  # a firmware with other field types: fall through, nothing is lost
    return UnknownEvent.model_validate(raw.data)
