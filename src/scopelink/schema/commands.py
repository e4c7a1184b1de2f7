"""Commands a user can give a telescope, with their validation.

Every transport parses input into one of these models, so every path has the same rules and the
same error for the same mistake.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from scopelink.seestar.commands import ViewMode

__all__ = ["COMMAND_ADAPTER", "Command", "Role", "ViewMode"]


class Role(StrEnum):
    """What a client may do: viewers watch, operators also command."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class Direction(StrEnum):
    """Directional moves of the alt-az mount."""

    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"


#: `scope_speed_move` angles: 0 = +azimuth (right), 90 = up, 180 = -azimuth, 270 = down.
DIRECTION_ANGLE = {Direction.RIGHT: 0, Direction.UP: 90, Direction.LEFT: 180, Direction.DOWN: 270}


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Goto(_Command):
    """Slew to a target by name (the catalogue) or by coordinates, then track it."""

    type: Literal["goto"] = "goto"
    target: str | None = Field(default=None, min_length=1, max_length=80)
    ra_hours: float | None = Field(default=None, ge=0.0, lt=24.0)
    dec_deg: float | None = Field(default=None, ge=-90.0, le=90.0)
    #: The view to start there; by default the one that suits the target (the Moon's for the
    #: Moon, the Sun's for the Sun, planet for a planet), star for anything else.
    mode: ViewMode | None = None
    lp_filter: bool = False

    @model_validator(mode="after")
    def _target_or_coordinates(self) -> Goto:
        has_coords = self.ra_hours is not None or self.dec_deg is not None
        if self.target is None and not has_coords:
            raise ValueError("give a target name, or ra_hours and dec_deg")
        if self.target is not None and has_coords:
            raise ValueError("give a target name or coordinates, not both")
        if has_coords and (self.ra_hours is None or self.dec_deg is None):
            raise ValueError("give both ra_hours and dec_deg")
        return self


class Stop(_Command):
    """Stop every motion: a goto, a manual move."""

    type: Literal["stop"] = "stop"


class Move(_Command):
    """Move in a direction at a speed for a while (the direction pad)."""

    type: Literal["move"] = "move"
    direction: Direction
    #: Firmware units: 1440 is the default slew rate (4°/s); 1 is 10 arcsec/s.
    speed: int = Field(default=720, ge=1, le=1440)
    duration_s: float = Field(default=1.0, gt=0.0, le=10.0)


class Park(_Command):
    type: Literal["park"] = "park"


class SetTracking(_Command):
    type: Literal["tracking"] = "tracking"
    on: bool


class Focus(_Command):
    """Move the focuser to an absolute position or by a number of steps."""

    type: Literal["focus"] = "focus"
    position: int | None = Field(default=None, ge=0, le=2600)
    delta: int | None = Field(default=None, ge=-1000, le=1000)

    @model_validator(mode="after")
    def _one_of(self) -> Focus:
        if (self.position is None) == (self.delta is None):
            raise ValueError("give exactly one of position or delta")
        return self


class Autofocus(_Command):
    type: Literal["autofocus"] = "autofocus"


class StopAutofocus(_Command):
    type: Literal["stop_autofocus"] = "stop_autofocus"


class StartView(_Command):
    type: Literal["start_view"] = "start_view"
    mode: ViewMode = ViewMode.STAR
    lp_filter: bool = False


class StopView(_Command):
    type: Literal["stop_view"] = "stop_view"


class StartStack(_Command):
    type: Literal["start_stack"] = "start_stack"
    restart: bool = False


class StopStack(_Command):
    type: Literal["stop_stack"] = "stop_stack"


class SetZoom(_Command):
    """The digital zoom of the video views (Moon, Sun, planet, scenery): 1x, 2x or 4x."""

    type: Literal["set_zoom"] = "set_zoom"
    zoom: Literal[1, 2, 4]


class StartRecording(_Command):
    """Record the live video on the telescope (the Moon, Sun, planet and scenery views)."""

    type: Literal["start_recording"] = "start_recording"


class StopRecording(_Command):
    """Stop the recording; the telescope saves the file."""

    type: Literal["stop_recording"] = "stop_recording"


class SetExposure(_Command):
    type: Literal["set_exposure"] = "set_exposure"
    continuous_ms: int | None = Field(default=None, ge=1, le=60_000)
    stack_ms: int | None = Field(default=None, ge=1_000, le=600_000)

    @model_validator(mode="after")
    def _some(self) -> SetExposure:
        if self.continuous_ms is None and self.stack_ms is None:
            raise ValueError("give continuous_ms and/or stack_ms")
        return self


class SetGain(_Command):
    type: Literal["set_gain"] = "set_gain"
    gain: int = Field(ge=0, le=400)


class SetLpFilter(_Command):
    type: Literal["set_lp_filter"] = "set_lp_filter"
    on: bool


class SetDewHeater(_Command):
    type: Literal["set_dew_heater"] = "set_dew_heater"
    on: bool
    power_percent: int = Field(default=50, ge=0, le=100)


class SyncTime(_Command):
    """Set the telescope's clock (default: the server's clock now)."""

    type: Literal["sync_time"] = "sync_time"
    when: datetime | None = None
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)


class SyncLocation(_Command):
    type: Literal["sync_location"] = "sync_location"
    lat_deg: float = Field(ge=-90.0, le=90.0)
    lon_deg: float = Field(ge=-180.0, le=180.0)


Command = Annotated[
    Goto | Stop | Move | Park | SetTracking | Focus | Autofocus | StopAutofocus | StartView
    | StopView | StartStack | StopStack | SetZoom | StartRecording | StopRecording | SetExposure
    | SetGain | SetLpFilter | SetDewHeater | SyncTime | SyncLocation,
    Field(discriminator="type"),
]  # fmt: skip

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class CommandStatus(StrEnum):
    """What an acknowledgement says: done, or accepted and running as an operation."""

    COMPLETED = "completed"
    ACCEPTED = "accepted"
