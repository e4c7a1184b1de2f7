"""Typed commands: the control methods the app uses, with checked params and parsed results.

`SeestarCommands` wraps a `ControlClient`. It sends the most common form of each request and
accepts every known variant of each reply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from scopelink.seestar.control import ControlClient
from scopelink.seestar.errors import ProtocolError


class ViewMode(StrEnum):
    """`iscope_start_view` modes."""

    STAR = "star"
    MOON = "moon"
    SUN = "sun"
    PLANET = "planet"
    SCENERY = "scenery"
    SOLAR_SYSTEM = "solar_sys"


#: The digital zoom factors of the RTSP video, indexed by `rtsp_roi_index` (0, 1, 2).
RTSP_ZOOMS: tuple[int, ...] = (1, 2, 4)


class StopStage(StrEnum):
    """What `iscope_stop_view` may stop."""

    AUTO_GOTO = "AutoGoto"
    STACK = "Stack"
    DARK_LIBRARY = "DarkLibrary"


class FilterPosition(IntEnum):
    """Filter wheel slots of the S50."""

    DARK = 0
    IR_CUT = 1
    LP = 2


@dataclass(frozen=True, slots=True)
class EquatorialCoord:
    ra_hours: float
    dec_deg: float


@dataclass(frozen=True, slots=True)
class HorizontalCoord:
    alt_deg: float
    az_deg: float


@dataclass(frozen=True, slots=True)
class DiskVolume:
    total_mb: float
    free_mb: float


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{what}: expected a number, got {value!r}")
    return float(value)


def _check_ra_dec(ra_hours: float, dec_deg: float) -> None:
    if not (math.isfinite(ra_hours) and 0.0 <= ra_hours < 24.0):
        raise ValueError(f"RA must be in [0, 24) hours, got {ra_hours}")
    if not (math.isfinite(dec_deg) and -90.0 <= dec_deg <= 90.0):
        raise ValueError(f"Dec must be in [-90, 90] degrees, got {dec_deg}")


class SeestarCommands:
    """The command layer over one control connection."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client

    async def _call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        return await self.client.call(method, params, timeout=timeout)

    # -- state --------------------------------------------------------------------------------

    async def get_device_state(
        self, keys: list[str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        params = {"keys": keys} if keys else None
        result = await self._call("get_device_state", params, timeout=timeout)
        if not isinstance(result, dict):
            raise ProtocolError(f"get_device_state: expected an object, got {result!r}")
        return result

    async def get_view_state(self, *, timeout: float | None = None) -> dict[str, Any]:
        result = await self._call("get_view_state", timeout=timeout)
        if isinstance(result, dict) and isinstance(result.get("View"), dict):
            return result["View"]
        if isinstance(result, dict):
            return result
        raise ProtocolError(f"get_view_state: expected an object, got {result!r}")

    async def get_equatorial(self, *, timeout: float | None = None) -> EquatorialCoord:
        result = await self._call("scope_get_equ_coord", timeout=timeout)
        if isinstance(result, dict):
            return EquatorialCoord(
                _number(result.get("ra"), "ra"), _number(result.get("dec"), "dec")
            )
        if isinstance(result, list) and len(result) >= 2:
            return EquatorialCoord(_number(result[0], "ra"), _number(result[1], "dec"))
        raise ProtocolError(f"scope_get_equ_coord: unexpected result {result!r}")

    async def get_horizontal(self, *, timeout: float | None = None) -> HorizontalCoord:
        result = await self._call("scope_get_horiz_coord", timeout=timeout)
        if isinstance(result, list) and len(result) >= 2:
            return HorizontalCoord(_number(result[0], "alt"), _number(result[1], "az"))
        if isinstance(result, dict):
            return HorizontalCoord(
                _number(result.get("alt"), "alt"), _number(result.get("az"), "az")
            )
        raise ProtocolError(f"scope_get_horiz_coord: unexpected result {result!r}")

    # -- motion -------------------------------------------------------------------------------

    async def goto(self, ra_hours: float, dec_deg: float) -> None:
        """Slew the mount (`scope_goto`); ScopeGoto events report progress."""
        _check_ra_dec(ra_hours, dec_deg)
        await self._call("scope_goto", [ra_hours, dec_deg])

    async def goto_target(
        self,
        ra_hours: float,
        dec_deg: float,
        name: str = "",
        mode: ViewMode = ViewMode.STAR,
        lp_filter: bool = False,
    ) -> None:
        """Start a view at a target (`iscope_start_view`): slew, plate-solve and centre."""
        _check_ra_dec(ra_hours, dec_deg)
        params = {
            "mode": str(mode),
            "target_ra_dec": [ra_hours, dec_deg],
            "target_name": name,
            "lp_filter": lp_filter,
        }
        await self._call("iscope_start_view", params)

    async def sync(self, ra_hours: float, dec_deg: float) -> None:
        _check_ra_dec(ra_hours, dec_deg)
        await self._call("scope_sync", [ra_hours, dec_deg])

    async def speed_move(self, angle_deg: float, speed: int, duration_s: float) -> None:
        """Move at `speed` toward `angle` (0 = +azimuth, 90 = up, 180 = -azimuth, 270 = down)."""
        if not 0 <= speed <= 5000:
            raise ValueError("speed must be within 0..5000")
        if not 0 < duration_s <= 10:
            raise ValueError("duration must be within (0, 10] seconds")
        params = {"speed": int(speed), "angle": int(angle_deg) % 360, "dur_sec": duration_s}
        await self._call("scope_speed_move", params)

    async def stop_move(self) -> None:
        await self._call("scope_speed_move", {"speed": 0, "angle": 0, "dur_sec": 0})

    async def stop_goto(self) -> None:
        await self._call("iscope_stop_view", {"stage": str(StopStage.AUTO_GOTO)})

    async def park(self) -> None:
        await self._call("scope_park")

    async def set_tracking(self, on: bool) -> None:
        await self._call("scope_set_track_state", on)

    async def get_tracking(self) -> bool:
        result = await self._call("scope_get_track_state")
        if isinstance(result, dict):
            result = result.get("tracking")
        if not isinstance(result, bool):
            raise ProtocolError(f"scope_get_track_state: unexpected result {result!r}")
        return result

    # -- view and stacking --------------------------------------------------------------------

    async def start_view(self, mode: ViewMode = ViewMode.STAR, lp_filter: bool = False) -> None:
        await self._call("iscope_start_view", {"mode": str(mode), "lp_filter": lp_filter})

    async def stop_view(self, stage: StopStage | None = None) -> None:
        await self._call("iscope_stop_view", {"stage": str(stage)} if stage else None)

    async def start_stack(self, restart: bool = False) -> None:
        await self._call("iscope_start_stack", {"restart": restart})

    async def stop_stack(self) -> None:
        await self.stop_view(StopStage.STACK)

    # -- video (the RTSP stage: Moon, Sun, planet and scenery views) ------------------------

    async def set_rtsp_zoom(self, zoom: int) -> None:
        """The video's digital zoom, 1x, 2x or 4x (`set_setting {"rtsp_roi_index": 0|1|2}`)."""
        if zoom not in RTSP_ZOOMS:
            raise ValueError(f"zoom must be one of {', '.join(map(str, RTSP_ZOOMS))}")
        await self.set_settings(rtsp_roi_index=RTSP_ZOOMS.index(zoom))

    async def start_recording(self) -> None:
        """Record the video on the telescope ("mp4 record"); AviRecord events follow."""
        await self._call("start_record_avi", {"raw": False})

    async def stop_recording(self) -> None:
        await self._call("stop_record_avi")

    # -- focus --------------------------------------------------------------------------------

    async def start_autofocus(self) -> None:
        await self._call("start_auto_focuse")

    async def stop_autofocus(self) -> None:
        await self._call("stop_auto_focuse")

    async def get_focuser_position(self) -> int:
        result = await self._call("get_focuser_position")
        if isinstance(result, dict):
            result = result.get("step")
        return int(_number(result, "focuser position"))

    async def move_focuser(self, step: int) -> int:
        """Move to an absolute step; returns the target the telescope accepted."""
        if not 0 <= step <= 10_000:
            raise ValueError("focuser step out of range")
        result = await self._call("move_focuser", {"step": int(step), "ret_step": True})
        if isinstance(result, dict) and "step" in result:
            return int(_number(result["step"], "step"))
        return step

    # -- camera and settings ------------------------------------------------------------------

    async def set_filter(self, position: int) -> None:
        if position not in set(FilterPosition):
            raise ValueError("filter position must be 0 (dark), 1 (IR cut) or 2 (LP)")
        await self._call("set_wheel_position", [int(position)])

    async def get_filter(self, *, timeout: float | None = None) -> int:
        """The filter wheel's position: 0 dark, 1 IR cut, 2 light-pollution filter."""
        result = await self._call("get_wheel_position", timeout=timeout)
        return int(_number(result, "wheel position"))

    async def set_lp_filter(self, on: bool) -> None:
        await self.set_filter(FilterPosition.LP if on else FilterPosition.IR_CUT)

    async def get_settings(self) -> dict[str, Any]:
        result = await self._call("get_setting")
        if not isinstance(result, dict):
            raise ProtocolError(f"get_setting: expected an object, got {result!r}")
        return result

    async def set_settings(self, **settings: Any) -> None:
        if not settings:
            raise ValueError("no settings given")
        await self._call("set_setting", settings)

    async def set_exposure(
        self, *, stack_ms: int | None = None, continuous_ms: int | None = None
    ) -> None:
        exp: dict[str, int] = {}
        for key, value in (("stack_l", stack_ms), ("continuous", continuous_ms)):
            if value is not None:
                if not 1 <= value <= 600_000:
                    raise ValueError(f"{key} exposure must be within 1..600000 ms")
                exp[key] = int(value)
        if not exp:
            raise ValueError("give stack_ms and/or continuous_ms")
        await self.set_settings(exp_ms=exp)

    async def set_gain(self, gain: int) -> None:
        if not 0 <= gain <= 400:
            raise ValueError("gain must be within 0..400")
        await self._call("set_control_value", ["gain", int(gain)])

    async def set_dew_heater(self, on: bool, power_percent: int = 50) -> None:
        if not 0 <= power_percent <= 100:
            raise ValueError("heater power must be within 0..100 %")
        await self._call("pi_output_set2", {"heater": {"state": on, "value": int(power_percent)}})

    async def get_stack_settings(self) -> dict[str, Any]:
        result = await self._call("get_stack_setting")
        if not isinstance(result, dict):
            raise ProtocolError(f"get_stack_setting: expected an object, got {result!r}")
        return result

    async def set_stack_settings(self, **settings: Any) -> None:
        await self._call("set_stack_setting", settings)

    # -- time, place, storage -----------------------------------------------------------------

    async def set_time(self, when: datetime, time_zone: str = "UTC") -> None:
        params = [
            {
                "year": when.year,
                "mon": when.month,
                "day": when.day,
                "hour": when.hour,
                "min": when.minute,
                "sec": when.second,
                "time_zone": time_zone,
            }
        ]
        await self._call("pi_set_time", params)

    async def get_time(self) -> dict[str, Any]:
        result = await self._call("pi_get_time")
        if not isinstance(result, dict):
            raise ProtocolError(f"pi_get_time: expected an object, got {result!r}")
        return result

    async def set_location(self, lat_deg: float, lon_deg: float) -> None:
        if not (-90 <= lat_deg <= 90 and -180 <= lon_deg <= 180):
            raise ValueError("latitude must be within ±90° and longitude within ±180°")
        await self._call("set_user_location", {"lat": lat_deg, "lon": lon_deg, "force": True})

    async def get_disk_volume(self) -> DiskVolume:
        result = await self._call("get_disk_volume")
        if not isinstance(result, dict):
            raise ProtocolError(f"get_disk_volume: expected an object, got {result!r}")
        total = result.get("totalMB", result.get("total_mb"))
        free = result.get("freeMB", result.get("free_mb"))
        return DiskVolume(_number(total, "totalMB"), _number(free, "freeMB"))
