"""What the simulated camera sees: a snapshot of the telescope's state, read once per frame."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scene:
    """Pointing and camera settings at one instant."""

    ra_hours: float
    dec_deg: float
    #: Steps away from best focus; 0 is sharp, blur grows with |offset|.
    focus_offset: int = 0
    exposure_ms: float = 500.0
    gain: int = 80
    #: True while the mount is slewing or moving: stars trail.
    moving: bool = False
    #: Sensor angle in degrees (field rotation of an alt-az mount).
    rotation_deg: float = 0.0


@dataclass(frozen=True, slots=True)
class StackSnapshot:
    """The current stack, or None when the telescope is not stacking."""

    ra_hours: float
    dec_deg: float
    stacked_frames: int
    dropped_frames: int = 0
