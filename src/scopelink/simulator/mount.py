"""The simulated Seestar mount: an alt-az mount that slews, tracks, moves by hand and parks.

The mount has no task of its own. Every public call first advances it from the last call to
"now" as read from `clock`, so a fake clock makes it fully deterministic. Callers poll `motion`,
`tracking` and `parked` to produce the firmware's ScopeGoto, ScopeTrack and ScopeHome events.

Units: RA in hours, Dec, altitude and azimuth in degrees, azimuth from north through east,
times in seconds of `clock` (Unix time, because sidereal time is derived from it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from scopelink import astro

#: Time an axis takes to reach full slew speed (a guess): half a second, so a slew's time is
#: dominated by its length, as on the real telescope.
RAMP_S = 0.5
#: A GOTO has arrived when both axes are this close to the target.
ARRIVAL_DEG = 0.01
#: Integration step while a motion is in progress; idle and tracking states are exact.
STEP_S = 0.05
#: `scope_speed_move` speed unit in degrees per second: 1440, the top of alp's UI slider,
#: is the default 4°/s slew rate, so one unit is 10 arcsec/s. Faster requests are clamped.
SPEED_UNIT_DEG_S = 4.0 / 1440.0
#: Altitude range of the optical axis: folded shut at -90 up to the zenith.
MIN_ALT_DEG = astro.PARKED.alt_deg
MAX_ALT_DEG = 90.0


class MotionKind(StrEnum):
    """What the mount's motors are doing.

    NONE → GOTO (`goto`), MOVE (`speed_move`), PARK (`park`).
    GOTO → NONE (arrived: tracking on; or `stop`), PARK (`park`).
    MOVE → NONE (duration over, speed 0, `stop`), GOTO, MOVE (a new move), PARK.
    PARK → NONE (arrived: parked; or `stop`).
    """

    NONE = "none"
    GOTO = "goto"
    MOVE = "move"
    PARK = "park"


class MountError(Exception):
    """The mount refused a command; `code` is the firmware error code that goes with it."""

    code: int = 207

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MountBusy(MountError):
    """A slew or park is in progress; the firmware answers 203 "equipment is moving"."""

    code: int = 203


class MountParked(MountError):
    """The mount is folded shut; it must be opened by a GOTO or a manual move first."""


class BelowHorizon(MountError):
    """The GOTO target is below the horizon now."""


@dataclass(frozen=True, slots=True)
class Pointing:
    """Where the mount points, in both frames, at one instant."""

    ra_hours: float
    dec_deg: float
    alt_deg: float
    az_deg: float


@dataclass(frozen=True, slots=True)
class _Move:
    """A manual move: constant axis rates until `until` (clock seconds)."""

    alt_rate: float
    az_rate: float
    until: float


class Mount:
    """A simulated alt-az mount, advanced lazily from `clock`.

    It starts parked at `astro.PARKED` (alt -90°, az 0°) with tracking off. The axis angles
    are the physical ones; `sync` adds an offset so that the reported position differs from
    them, the way a real mount's model absorbs a pointing error. Parking clears that offset.
    """

    def __init__(
        self,
        lat_deg: float,
        lon_deg: float,
        clock: Callable[[], float] = time.time,
        slew_rate_deg_s: float = 4.0,
    ) -> None:
        if not -90.0 <= lat_deg <= 90.0:
            raise ValueError(f"latitude {lat_deg} is outside [-90, 90]")
        if not math.isfinite(lon_deg):
            raise ValueError("longitude must be finite")
        if not slew_rate_deg_s > 0.0:
            raise ValueError("slew rate must be positive")
        self.lat_deg = lat_deg
        self.lon_deg = lon_deg
        self.slew_rate_deg_s = slew_rate_deg_s
        self._clock = clock
        self._t = clock()
        # Physical axis angles; authoritative unless tracking while idle.
        self._axis_alt, self._axis_az = astro.PARKED
        self._alt_rate = 0.0
        self._az_rate = 0.0
        # Added to the axis angles to give the reported (model) alt/az; set by `sync`.
        self._alt_offset = 0.0
        self._az_offset = 0.0
        self._motion = MotionKind.NONE
        self._tracking = False
        self._parked = True
        # The sky position held while tracking and idle: the reported alt/az follow it.
        self._held: astro.Equatorial | None = None
        self._target: astro.Equatorial | None = None
        self._move: _Move | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def motion(self) -> MotionKind:
        self._advance()
        return self._motion

    @property
    def moving(self) -> bool:
        """True while a GOTO, manual move or park is in progress: stars trail."""
        return self.motion is not MotionKind.NONE

    @property
    def tracking(self) -> bool:
        self._advance()
        return self._tracking

    @property
    def parked(self) -> bool:
        self._advance()
        return self._parked

    @property
    def target(self) -> astro.Equatorial | None:
        """The GOTO target being slewed to or tracked, or None.

        Cleared when a GOTO is stopped, and by a manual move, a sync and a park.
        """
        self._advance()
        return self._target

    @property
    def sync_offset_deg(self) -> astro.Horizontal:
        """What `sync` added to the axis angles: (alt, az) in degrees."""
        return astro.Horizontal(self._alt_offset, self._az_offset)

    def position(self) -> Pointing:
        """The reported pointing now."""
        self._advance()
        alt, az = self._model_horizontal(self._t)
        ra, dec = self._reported_equatorial(self._t)
        return Pointing(ra_hours=ra, dec_deg=dec, alt_deg=alt, az_deg=az)

    def distance_to_target_deg(self) -> float | None:
        """Great-circle distance from the reported position to the GOTO target, or None."""
        target = self.target
        if target is None:
            return None
        here = self.position()
        return astro.equatorial_separation_deg(
            here.ra_hours, here.dec_deg, target.ra_hours, target.dec_deg
        )

    def rotation_deg(self) -> float:
        """Field rotation of the camera: the parallactic angle at the reported position."""
        here = self.position()
        return astro.parallactic_angle_deg(
            here.ra_hours, here.dec_deg, self.lat_deg, self._lst(self._t)
        )

    # -- commands -----------------------------------------------------------------------------

    def goto(self, ra_hours: float, dec_deg: float) -> None:
        """Slew to (RA, Dec), then track it. Opens the mount if it is parked."""
        target = _equatorial(ra_hours, dec_deg)
        self._advance()
        self._refuse_if_slewing("a GOTO")
        alt, _ = self._horizontal_of(target, self._t)
        if alt < 0.0:
            raise BelowHorizon(f"target is {-alt:.1f}° below the horizon")
        self._materialise_axes()
        self._target = target
        self._move = None
        self._parked = False
        # The firmware turns tracking off for the slew and back on at arrival (ScopeTrack off/on).
        self._tracking = False
        self._held = None
        self._motion = MotionKind.GOTO

    def sync(self, ra_hours: float, dec_deg: float) -> None:
        """Declare that the mount points at (RA, Dec) now, without moving it."""
        sky = _equatorial(ra_hours, dec_deg)
        self._advance()
        if self._motion is not MotionKind.NONE:
            raise MountBusy("cannot sync while the mount is moving")
        if self._parked:
            raise MountParked("cannot sync while the mount is parked")
        self._materialise_axes()
        alt, az = self._horizontal_of(sky, self._t)
        self._alt_offset = alt - self._axis_alt
        self._az_offset = astro.wrap_deg_signed(az - self._axis_az)
        self._target = None
        if self._tracking:
            self._held = sky

    def speed_move(self, angle_deg: float, speed: float, dur_s: float) -> None:
        """Move by hand like `scope_speed_move`: `angle_deg` 0 → +az, 90 → +alt, 180 → −az,
        270 (or −90) → −alt; `speed` in firmware units (see `SPEED_UNIT_DEG_S`); for `dur_s`
        seconds. Speed 0 or a non-positive duration stops a manual move.
        """
        for name, value in (("angle", angle_deg), ("speed", speed), ("duration", dur_s)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite")
        if speed < 0.0:
            raise ValueError("speed must not be negative")
        self._advance()
        if speed == 0.0 or dur_s <= 0.0:
            # A joystick release must not abort a GOTO or a park, only a manual move.
            if self._motion is MotionKind.MOVE:
                self._halt(self._t)
            return
        self._refuse_if_slewing("a manual move")
        self._materialise_axes()
        rate = min(speed * SPEED_UNIT_DEG_S, self.slew_rate_deg_s)
        angle = math.radians(angle_deg)
        self._move = _Move(
            alt_rate=rate * math.sin(angle), az_rate=rate * math.cos(angle), until=self._t + dur_s
        )
        self._target = None
        self._parked = False
        self._held = None
        self._motion = MotionKind.MOVE

    def stop(self) -> None:
        """Abort any motion where it is; tracking is left as it is."""
        self._advance()
        if self._motion is MotionKind.GOTO:
            # An abandoned GOTO has no target any more; callers tell "cancel" from "complete" by it.
            self._target = None
        if self._motion is not MotionKind.NONE:
            self._halt(self._t)

    def park(self) -> None:
        """Turn tracking off and fold the mount shut at `astro.PARKED`."""
        self._advance()
        if self._motion is MotionKind.PARK or self._parked:
            return
        self._materialise_axes()
        self._move = None
        self._target = None
        self._tracking = False
        self._held = None
        self._motion = MotionKind.PARK

    def set_tracking(self, on: bool) -> None:
        """Follow the sky (RA/Dec fixed) or hold the axes (alt/az fixed)."""
        self._advance()
        if self._parked:
            raise MountParked("cannot track while the mount is parked")
        if self._motion in (MotionKind.GOTO, MotionKind.PARK):
            raise MountBusy("cannot change tracking during a slew")
        if on == self._tracking:
            return
        if on:
            if self._motion is MotionKind.NONE:
                self._held = self._reported_equatorial(self._t)
        else:
            self._materialise_axes()
        self._tracking = on

    def set_location(self, lat_deg: float, lon_deg: float) -> None:
        """Move the observer (`set_user_location`). The axes stay put; a tracked target stays
        tracked, so its alt/az jump to where it is seen from the new place.
        """
        if not -90.0 <= lat_deg <= 90.0:
            raise ValueError(f"latitude {lat_deg} is outside [-90, 90]")
        if not math.isfinite(lon_deg):
            raise ValueError("longitude must be finite")
        self._advance()
        self.lat_deg = lat_deg
        self.lon_deg = lon_deg

    # -- motion -------------------------------------------------------------------------------

    def _advance(self) -> None:
        now = self._clock()
        if now <= self._t:
            # A clock that stands still or steps back leaves the mount where it is.
            return
        t = self._t
        while self._motion is not MotionKind.NONE and t < now:
            if self._move is not None:
                # Constant rates integrate exactly in one step, up to the end of the move.
                t_next = min(now, self._move.until)
            else:
                t_next = min(now, t + STEP_S)
            self._step(t_next, t_next - t)
            t = t_next
        self._t = now

    def _step(self, t: float, dt: float) -> None:
        """Advance an active motion to time `t`, `dt` seconds after the previous step."""
        if self._move is not None:
            self._axis_alt = _clamp_alt(self._axis_alt + self._move.alt_rate * dt)
            self._axis_az = astro.wrap_deg(self._axis_az + self._move.az_rate * dt)
            if t >= self._move.until:
                self._halt(t)
            return
        if self._target is not None and self._motion is MotionKind.GOTO:
            # Re-evaluated every step: the target keeps rising or setting during the slew.
            alt, az = self._horizontal_of(self._target, t)
            goal = astro.Horizontal(alt - self._alt_offset, az - self._az_offset)
        else:
            goal = astro.PARKED
        err_alt = _clamp_alt(goal.alt_deg) - self._axis_alt
        err_az = astro.wrap_deg_signed(goal.az_deg - self._axis_az)
        rate = self.slew_rate_deg_s
        d_alt, self._alt_rate = _approach(err_alt, self._alt_rate, rate, rate / RAMP_S, dt)
        d_az, self._az_rate = _approach(err_az, self._az_rate, rate, rate / RAMP_S, dt)
        self._axis_alt += d_alt
        self._axis_az = astro.wrap_deg(self._axis_az + d_az)
        if abs(err_alt - d_alt) < ARRIVAL_DEG and abs(err_az - d_az) < ARRIVAL_DEG:
            self._arrive()

    def _arrive(self) -> None:
        if self._motion is MotionKind.GOTO:
            self._tracking = True
            self._held = self._target
        else:
            self._axis_alt, self._axis_az = astro.PARKED
            # The firmware re-initialises its pointing model when it opens again (inference).
            self._alt_offset = self._az_offset = 0.0
            self._parked = True
        self._end_motion()

    def _end_motion(self) -> None:
        self._motion = MotionKind.NONE
        self._alt_rate = self._az_rate = 0.0
        self._move = None

    def _halt(self, t: float) -> None:
        """End a motion where it is; a tracking mount holds the sky position it reached."""
        self._end_motion()
        if self._tracking:
            self._held = self._reported_equatorial(t)

    def _refuse_if_slewing(self, what: str) -> None:
        if self._motion in (MotionKind.GOTO, MotionKind.PARK):
            raise MountBusy(f"cannot start {what} while a {self._motion.value} is in progress")

    # -- frames -------------------------------------------------------------------------------

    def _lst(self, t: float) -> float:
        return astro.local_sidereal_hours(t, self.lon_deg)

    def _horizontal_of(self, sky: astro.Equatorial, t: float) -> astro.Horizontal:
        return astro.equatorial_to_horizontal(sky.ra_hours, sky.dec_deg, self.lat_deg, self._lst(t))

    def _model_horizontal(self, t: float) -> astro.Horizontal:
        """The reported alt/az at time `t`: the held sky position, or the axes plus the offset."""
        if self._held is not None:
            return self._horizontal_of(self._held, t)
        return astro.Horizontal(
            self._axis_alt + self._alt_offset, astro.wrap_deg(self._axis_az + self._az_offset)
        )

    def _reported_equatorial(self, t: float) -> astro.Equatorial:
        """The reported RA/Dec at time `t`."""
        if self._held is not None:
            return self._held
        alt, az = self._model_horizontal(t)
        return astro.horizontal_to_equatorial(alt, az, self.lat_deg, self._lst(t))

    def _materialise_axes(self) -> None:
        """Turn a held sky position into axis angles, so that the axes stay put from now on."""
        if self._held is not None:
            alt, az = self._horizontal_of(self._held, self._t)
            self._axis_alt = _clamp_alt(alt - self._alt_offset)
            self._axis_az = astro.wrap_deg(az - self._az_offset)
        self._held = None


def _equatorial(ra_hours: float, dec_deg: float) -> astro.Equatorial:
    if not (math.isfinite(ra_hours) and math.isfinite(dec_deg)):
        raise ValueError("RA and Dec must be finite")
    if not -90.0 <= dec_deg <= 90.0:
        raise ValueError(f"declination {dec_deg} is outside [-90, 90]")
    return astro.Equatorial(astro.wrap_hours(ra_hours), dec_deg)


def _clamp_alt(alt: float) -> float:
    return min(MAX_ALT_DEG, max(MIN_ALT_DEG, alt))


def _approach(
    error: float, rate: float, max_rate: float, accel: float, dt: float
) -> tuple[float, float]:
    """One step of a per-axis slew that is `error` degrees short of its goal.

    The axis accelerates up to `max_rate` and brakes so that it can stop at the goal; a step
    that would reach or pass the goal lands on it. Returns (displacement, new rate).
    """
    braking = math.sqrt(2.0 * accel * abs(error))
    wanted = math.copysign(min(max_rate, braking), error)
    dv = max(-accel * dt, min(accel * dt, wanted - rate))
    rate += dv
    step = rate * dt
    if abs(step) >= abs(error) and step * error >= 0.0:
        return error, 0.0
    return step, rate
