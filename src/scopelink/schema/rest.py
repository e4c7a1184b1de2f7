"""The REST API's own models (besides the state, commands and operations every transport shares):
who you are, the telescopes, the catalogue. Defined here so the browser's types are generated.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from scopelink.schema.commands import Role
from scopelink.schema.state import CameraName
from scopelink.settings import (
    CONTROL_PORT,
    IMAGING_PORT,
    RTSP_PORT,
    WIDE_IMAGING_PORT,
    WIDE_RTSP_PORT,
)


class AccessInfo(BaseModel):
    """Who the server thinks you are (`GET /api/session`)."""

    role: Role
    token_required: bool
    #: The deployment default of the WebRTC feature flag (the UI may override it per user).
    webrtc_default: bool


class TelescopeSummary(BaseModel):
    """One telescope in `GET /api/telescopes`."""

    id: str
    name: str
    host: str
    simulated: bool
    control: str
    imaging: str
    #: `product_model` as the telescope reports it ("Seestar S30"); null until it has said.
    model: str | None
    #: Its cameras, for `?camera=` on the MJPEG stream and the snapshot.
    cameras: list[CameraName]


class NewTelescope(BaseModel):
    """A telescope to add at run time (`POST /api/telescopes`)."""

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\-\[\]]+$")
    name: str | None = Field(default=None, max_length=64)
    control_port: int = Field(default=CONTROL_PORT, ge=1, le=65535)
    imaging_port: int = Field(default=IMAGING_PORT, ge=1, le=65535)
    #: Its live video in the Moon, Sun, planet and scenery views.
    rtsp_port: int = Field(default=RTSP_PORT, ge=1, le=65535)
    #: The wide-angle camera's (S30 models; unused on a model without one).
    wide_imaging_port: int = Field(default=WIDE_IMAGING_PORT, ge=1, le=65535)
    wide_rtsp_port: int = Field(default=WIDE_RTSP_PORT, ge=1, le=65535)


class CatalogueEntry(BaseModel):
    """One object of the catalogue (`GET /api/catalog`)."""

    id: str
    name: str
    common_name: str | None
    kind: str
    ra_hours: float
    dec_deg: float
    magnitude: float | None
    constellation: str | None
    #: Altitude and azimuth now at the telescope's site, when a telescope is given.
    alt_deg: float | None = None
    az_deg: float | None = None


class ControlAction(BaseModel):
    """What to do with the control lease (`POST …/control`): `take` it (free, or already
    yours), `request` it from its holder (the answer waits for the holder's, at most the
    handover timeout), `release` it, or, as its holder, `grant` or `deny` a request."""

    action: Literal["take", "request", "release", "grant", "deny"]
