"""The state of one telescope as every status consumer sees it (snapshot + deltas)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

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
    #: "RTSP" in the video views (Moon, Sun, planet, scenery): the telescope streams video.
    stage: str | None = None
    state: str | None = None
    target_name: str | None = None
    #: The video's digital zoom: 1, 2 or 4 (the firmware's `rtsp_roi_index` 0, 1, 2).
    zoom: int | None = None


class Recording(BaseModel):
    """The telescope's video recording, as its view state and `AviRecord` events say."""

    #: Recording now.
    active: bool = False
    #: The firmware's state of the latest recording: "start", "working", "complete", "cancel"…
    state: str | None = None
    #: How long it has recorded (so far, or in all once stopped), in ms, when last reported.
    lapse_ms: int | None = None
    #: Frames written, when last reported.
    saved_frames: int | None = None
    #: The file is written (after a stop).
    file_saved: bool | None = None


class Live(BaseModel):
    """Where the live picture comes from and what the telescope's video stream is."""

    #: "preview" (the star view's frames, stretched and encoded here) or "video" (the
    #: telescope's own H.264, in the video views).
    source: Literal["preview", "video"] = "preview"
    #: The telescope's H.264 goes to WebRTC viewers unchanged (MJPEG viewers get it decoded).
    passthrough: bool = False
    #: In the video views, why the stream is re-encoded for WebRTC instead (or null).
    passthrough_refusal: str | None = None
    #: The stream's facts (video source only): codec, H.264 profile and level, size.
    codec: str | None = None
    profile: str | None = None
    level: str | None = None
    width: int | None = None
    height: int | None = None
    #: Frames per second, measured; seconds between keyframes; bits per second, measured.
    frame_rate: float | None = None
    keyframe_interval_s: float | None = None
    bitrate_bps: int | None = None


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


class Optics(BaseModel):
    """The filter wheel and the dew heater, as the telescope last said (null: not yet)."""

    #: The wheel's position: 0 dark, 1 IR cut (the usual), 2 light-pollution filter.
    filter_position: int | None = None
    #: Whether the light-pollution filter is in (position 2).
    lp_filter: bool | None = None
    dew_heater: bool | None = None


class StackCount(BaseModel):
    active: bool = False
    stacked: int = 0
    dropped: int = 0


#: A telescope's cameras: every Seestar has its main (telescope) camera; the S30 models add a
#: wide-angle one.
CameraName = Literal["main", "wide"]


class Device(BaseModel):
    #: `product_model` as the telescope reports it, e.g. "Seestar S50".
    model: str | None = None
    #: The cameras the live view can show (`?camera=` on the MJPEG stream and the snapshot).
    cameras: list[CameraName] = Field(default_factory=lambda: ["main"])
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
    optics: Optics = Field(default_factory=Optics)
    recording: Recording = Field(default_factory=Recording)
    live: Live = Field(default_factory=Live)
    settings: dict[str, object] = Field(default_factory=dict)
    #: The running operation (or the last one, finished), if any.
    operation: Operation | None = None


class ProblemKind(StrEnum):
    """Why a command failed, as a stable name; the problem's `type` URL ends with it."""

    #: The caller's role may not command (a viewer).
    FORBIDDEN = "forbidden"
    #: More commands a second than the caller may send.
    RATE_LIMITED = "rate-limited"
    UNKNOWN_TELESCOPE = "unknown-telescope"
    #: A catalogue name nothing matches.
    UNKNOWN_TARGET = "unknown-target"
    #: The command's parameters are wrong (checked here or by the telescope's limits).
    INVALID = "invalid"
    #: The idempotency key was used before for a different command.
    IDEMPOTENCY_CONFLICT = "idempotency-conflict"
    #: An operation in progress forbids it (a goto while parking); stop that first.
    CONFLICT = "conflict"
    #: Another client holds the control lease; ask for control first.
    NOT_IN_CONTROL = "not-in-control"
    #: It arrived after its deadline (a queued command no longer wanted): not run.
    EXPIRED = "expired"
    #: The telescope said its equipment is moving (its code 203).
    TELESCOPE_BUSY = "telescope-busy"
    #: The telescope refused the command with an error code of its own.
    TELESCOPE_REFUSED = "telescope-refused"
    #: No link to the telescope: nothing was sent.
    NOT_CONNECTED = "not-connected"
    #: Sent, and no answer came in time: it may have run.
    TIMEOUT = "timeout"
    #: Sent, and the link dropped before the answer: it may have run.
    CONNECTION_LOST = "connection-lost"
    #: Any other failure of the telescope's link or protocol.
    TELESCOPE_ERROR = "telescope-error"


def _absent(value: object) -> bool:
    return value is None


#: After a failure: nothing happened ("not_run"), or it may have run ("unknown").
Outcome = Literal["not_run", "unknown"]


class Problem(BaseModel):
    """An error, as `application/problem+json` (RFC 9457) and in signaling and data-channel
    messages. Fields without a value are left out."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = Field(default=None, exclude_if=_absent)
    #: The telescope's own error code, where there is one (e.g. 203 "equipment is moving").
    telescope_code: int | None = Field(default=None, exclude_if=_absent)
    #: For failures after sending: "not_run" (nothing happened) or "unknown" (it may have run).
    outcome: Outcome | None = Field(default=None, exclude_if=_absent)
    #: For validation errors: which field was wrong and why.
    errors: list[dict[str, object]] | None = Field(default=None, exclude_if=_absent)


class Holder(BaseModel):
    """Who holds (or asks for) the control lease, as others see them: never their client id."""

    #: The name the client gave, if any.
    name: str | None
    #: How it commands: "datachannel" or "rest".
    transport: str


class ControlState(BaseModel):
    """The control lease of one telescope, as seen by one client."""

    holder: Holder | None
    #: Whether the client asking holds it.
    yours: bool
    #: The holder's lease ends this long after it was last heard from (null: nobody holds it).
    expires_in_ms: int | None
    #: Someone asked the holder for control and has no answer yet.
    requested_by: Holder | None
    #: Whether the one who asked is the client asking.
    requested_by_you: bool
    #: How long a holder has to answer a request before control passes to the one who asked.
    handover_timeout_ms: int


class CommandAck(BaseModel):
    """The answer to a command: completed, or accepted and running as an operation."""

    command_id: str
    status: str
    operation: Operation | None = None
    result: dict[str, object] | None = None
