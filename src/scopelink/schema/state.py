"""The state of one telescope as every status consumer sees it (snapshot + deltas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from scopelink.schema.operations import Operation


class Connection(BaseModel):
    #: "connecting", "connected", "reconnecting" or "closed" for each link.
    control: str = "closed"
    imaging: str = "closed"
    last_error: str | None = None


class Position(BaseModel):
    ra_hours: float | None = None
    dec_deg: float | None = None
    alt_deg: float | None = None
    az_deg: float | None = None


class Mount(BaseModel):
    #: "idle", "slewing", "moving" or "parking".
    motion: str = "idle"
    tracking: bool | None = None
    parked: bool | None = None


class View(BaseModel):
    mode: str | None = None
    stage: str | None = None
    state: str | None = None
    target_name: str | None = None


class Focuser(BaseModel):
    position: int | None = None
    max_step: int | None = None
    moving: bool = False


class Power(BaseModel):
    battery_percent: float | None = None
    charging: bool | None = None
    charger_status: str | None = None
    temperature_c: float | None = None


class Disk(BaseModel):
    total_mb: float | None = None
    free_mb: float | None = None
    used_percent: float | None = None


class StackCount(BaseModel):
    active: bool = False
    stacked: int = 0
    dropped: int = 0


class Device(BaseModel):
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None


class TelescopeState(BaseModel):
    """Everything the UI shows about one telescope."""

    id: str
    name: str
    simulated: bool = False
    connection: Connection = Field(default_factory=Connection)
    device: Device = Field(default_factory=Device)
    position: Position = Field(default_factory=Position)
    mount: Mount = Field(default_factory=Mount)
    view: View = Field(default_factory=View)
    focuser: Focuser = Field(default_factory=Focuser)
    power: Power = Field(default_factory=Power)
    disk: Disk = Field(default_factory=Disk)
    stack: StackCount = Field(default_factory=StackCount)
    settings: dict[str, object] = Field(default_factory=dict)
    #: The running operation (or the last one, finished), if any.
    operation: Operation | None = None


class Problem(BaseModel):
    """An error, as `application/problem+json` (RFC 9457) and as a data-channel error."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    #: The telescope's own error code, where there is one (e.g. 203 "equipment is moving").
    telescope_code: int | None = None
    #: For failures after sending: "not_run" (nothing happened) or "unknown" (it may have run).
    outcome: str | None = None
    #: For validation errors: which field was wrong and why.
    errors: list[dict[str, object]] | None = None


class CommandAck(BaseModel):
    """The answer to a command: completed, or accepted and running as an operation."""

    command_id: str
    status: str
    operation: Operation | None = None
    result: dict[str, object] | None = None
