"""The firmware's request methods of the simulated telescope, one `_m_<method>` each.

Mixed into `SimulatedTelescope`, whose state and operations they use; `handle()` dispatches a
request to its method and turns bad params and mount refusals into the firmware's error codes.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from scopelink.seestar import verify
from scopelink.seestar.messages import finite
from scopelink.seestar.models import CameraFacts
from scopelink.simulator.firmware import (
    BAD_PARAM,
    FAIL,
    FOCUSER_MAX_STEP,
    MOVING,
    UNKNOWN_METHOD,
    VIEW_MODES,
    WHEEL_NAMES,
    ConnectionInfo,
    FirmwareError,
)
from scopelink.simulator.mount import MotionKind, MountBusy, MountParked

log = logging.getLogger(__name__)


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class FirmwareMethods:
    """Request handlers; `self` is the SimulatedTelescope they are mixed into."""

    def handle(self, method: str, params: Any, conn: ConnectionInfo) -> Any:
        """Execute one request (the "verify" marker already removed)."""
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            raise UNKNOWN_METHOD
        try:
            return handler(params, conn)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            log.debug("bad params for %s: %r (%s)", method, params, exc)
            raise BAD_PARAM from None
        except MountParked:
            raise FirmwareError(207, "fail to operate: the mount is parked") from None
        except MountBusy:
            raise MOVING from None

    # auth

    def _m_get_verify_str(self, params: Any, conn: ConnectionInfo) -> Any:
        if not self.profile.login_available:
            raise UNKNOWN_METHOD
        conn.challenge = secrets.token_hex(16)
        return {"str": conn.challenge}

    def _m_verify_client(self, params: Any, conn: ConnectionInfo) -> Any:
        if not self.profile.login_available:
            raise UNKNOWN_METHOD
        data, sign = params.get("data"), params.get("sign")
        if not conn.challenge or data != conn.challenge or not isinstance(sign, str):
            raise FirmwareError(207, "fail to operate: no matching challenge")
        conn.challenge = None
        if self._public_key is None or not verify.check_signature(self._public_key, data, sign):
            raise FirmwareError(207, "fail to operate: signature rejected")
        conn.verified = True
        return 0

    def _m_pi_is_verified(self, params: Any, conn: ConnectionInfo) -> Any:
        return conn.verified or not self.profile.login_available

    def _m_test_connection(self, params: Any, conn: ConnectionInfo) -> Any:
        return "server connected!"

    # state

    def _m_get_device_state(self, params: Any, conn: ConnectionInfo) -> Any:
        state = self.device_state(conn)
        keys = params.get("keys") if isinstance(params, dict) else None
        if keys:
            return {k: state[k] for k in keys if k in state}
        return state

    def device_state(self, conn: ConnectionInfo) -> dict[str, Any]:
        m = self.mount
        return {
            "device": {
                "name": "ASI AIR imager",
                "firmware_ver_int": self.profile.version_int,
                "firmware_ver_string": self.profile.version,
                "is_verified": conn.verified or not self.profile.login_available,
                "sn": self.serial,
                "cpuId": "sim-" + self.serial,
                "product_model": self.model.product_model,
                "user_product_model": self.model.product_model,
                "focal_len": self.model.main.focal_length_mm,
                "fnumber": self.model.f_number,
                "can_star_mode_sel_cam": False,
            },
            "setting": {**self.settings, "isp_gain": self.gain, "focal_pos": self.focuser},
            "location_lon_lat": list(self.location),
            "camera": self._camera_fields(self.model.main),
            **(
                {"second_camera": self._camera_fields(self.model.wide)}
                if self.model.wide is not None
                else {}
            ),
            "focuser": {
                "state": self.focuser_state,
                "max_step": FOCUSER_MAX_STEP,
                "step": self.focuser,
            },
            "ap": {
                "ssid": f"{self.model.ssid_prefix}_{self.serial}",
                "passwd": "12345678",
                "is_5g": True,
            },
            "station": {
                "server": True,
                "freq": 5180,
                "ip": "127.0.0.1",
                "ssid": "home",
                "gateway": "127.0.0.1",
                "netmask": "255.0.0.0",
                "sig_lev": -50,
                "key_mgmt": "WPA2-PSK",
            },
            "storage": {
                "is_typec_connected": False,
                "connected_storage": ["emmc"],
                "storage_volume": [self._volume()],
                "cur_storage": "emmc",
            },
            "balance_sensor": {"code": 0, "data": {"x": 0.01, "y": -0.02, "z": 1.0, "angle": 1.2}},
            "compass_sensor": {
                "code": 0,
                "data": {"x": 10.0, "y": 5.0, "z": -30.0, "direction": 180.0, "cali": 1},
            },
            "mount": {
                "move_type": "none" if m.motion is MotionKind.NONE else "goto",
                "close": m.parked,
                "tracking": m.tracking,
                "equ_mode": False,
            },
            "pi_status": {
                "is_overtemp": False,
                **self._pi_status_fields(),
                "is_typec_connected": self.power.charging,
                "battery_overtemp": False,
                "battery_temp": 25.0,
                "battery_temp_type": "normal",
            },
        }

    @staticmethod
    def _camera_fields(camera: CameraFacts) -> dict[str, Any]:
        return {
            "chip_size": camera.chip_size,
            "pixel_size_um": camera.pixel_size_um,
            "debayer_pattern": camera.debayer_pattern,
            "hpc_num": 0,
        }

    def _volume(self) -> dict[str, Any]:
        total, free = round(self.disk_total_mb), round(self.disk_free_mb)
        return {
            "name": "emmc",
            "state": "mounted",
            "total_mb": total,
            "totalMB": total,
            "free_mb": free,
            "freeMB": free,
            "disk_mb": total,
            "diskSizeMB": total,
            "used_percent": round(100 * (1 - free / total)),
        }

    def _m_get_view_state(self, params: Any, conn: ConnectionInfo) -> Any:
        v = self.view
        view: dict[str, Any] = {
            "state": v.state,
            "lapse_ms": int((time.monotonic() - v.started) * 1000) if v.started else 0,
            "mode": v.mode or "none",
            "cam_id": 0,
            "lp_filter": v.lp_filter,
            "gain": self.gain,
            "target_name": v.target_name,
            "stage": v.stage,
        }
        if v.stage == "Stack" or self.stack_state.stacked:
            s = self.stack_state
            view["Stack"] = {
                "state": "working" if s.active else "idle",
                "stacked_frame": s.stacked,
                "dropped_frame": s.dropped,
            }
        if v.stage == "RTSP":
            view["RTSP"] = self.rtsp_fields()
            if self.record is not None:
                view["AviRecord"] = self.record.fields()
        if "AutoFocus" in self.operations:
            view["AutoFocus"] = {
                "state": "working",
                "stage": "FocuserMove",
                "FocuserMove": {"state": "working", "position": self.focuser},
            }
        return {"View": view}

    def _m_scope_get_equ_coord(self, params: Any, conn: ConnectionInfo) -> Any:
        p = self.mount.position()
        return {"ra": round(p.ra_hours, 6), "dec": round(p.dec_deg, 6)}

    _m_scope_get_ra_dec = _m_scope_get_equ_coord

    def _m_scope_get_horiz_coord(self, params: Any, conn: ConnectionInfo) -> Any:
        p = self.mount.position()
        return [round(p.alt_deg, 6), round(p.az_deg, 6)]

    def _m_scope_get_track_state(self, params: Any, conn: ConnectionInfo) -> Any:
        return self.mount.tracking

    # motion

    @staticmethod
    def _ra_dec(params: Any) -> tuple[float, float]:
        ra, dec = finite(params[0]), finite(params[1])
        if not (0.0 <= ra < 24.0 and -90.0 <= dec <= 90.0):
            raise ValueError("coordinates out of range")
        return ra, dec

    def _m_scope_goto(self, params: Any, conn: ConnectionInfo) -> Any:
        self._goto(*self._ra_dec(params))
        return 0

    def _m_scope_sync(self, params: Any, conn: ConnectionInfo) -> Any:
        ra, dec = self._ra_dec(params)
        if self.mount.motion is not MotionKind.NONE or self.mount.parked:
            raise FAIL
        self.mount.sync(ra, dec)
        return 0

    def _m_scope_speed_move(self, params: Any, conn: ConnectionInfo) -> Any:
        # Old form {speed, angle, dur_sec}; new form {angle, level, dur_sec, percent}.
        if "percent" in params:
            speed = finite(params["percent"]) / 100.0 * 1440.0
        else:
            speed = finite(params.get("speed", 0))
        angle = finite(params.get("angle", 0))
        duration = finite(params.get("dur_sec", 1))
        if self.mount.motion in (MotionKind.GOTO, MotionKind.PARK) and speed > 0:
            raise MOVING
        if speed <= 0:
            if self.mount.motion is MotionKind.MOVE:
                self.mount.stop()
            return 0
        self.mount.speed_move(angle, speed, max(0.0, min(duration, 10.0)))
        self._was_moving = True
        return 0

    def _m_scope_park(self, params: Any, conn: ConnectionInfo) -> Any:
        self._park()
        return 0

    def _m_scope_move_to_horizon(self, params: Any, conn: ConnectionInfo) -> Any:
        return 0

    def _m_scope_set_track_state(self, params: Any, conn: ConnectionInfo) -> Any:
        on = params.get("tracking") if isinstance(params, dict) else params
        if isinstance(on, list) and on:
            on = on[0]
        if not isinstance(on, bool):
            raise ValueError("tracking must be a boolean")
        self.mount.set_tracking(on)
        self.emit("ScopeTrack", state="on" if on else "off", tracking=on, manual=True, route=[])
        return 0

    def _m_iscope_start_view(self, params: Any, conn: ConnectionInfo) -> Any:
        params = params or {}
        mode = params.get("mode", "star")
        if mode not in VIEW_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        lp = bool(params.get("lp_filter", False))
        target = params.get("target_ra_dec")
        if target is not None:
            ra, dec = self._ra_dec(target)
            name = params.get("target_name", "")
            self._auto_goto(ra, dec, name if isinstance(name, str) else "", mode, lp)
        else:
            self._start_view(mode, lp)
        return 0

    def _m_iscope_stop_view(self, params: Any, conn: ConnectionInfo) -> Any:
        stage = params.get("stage") if isinstance(params, dict) else None
        self._stop_view(stage)
        return 0

    def _m_iscope_start_stack(self, params: Any, conn: ConnectionInfo) -> Any:
        restart = bool(params.get("restart", False)) if isinstance(params, dict) else False
        self._start_stack(restart)
        return 0

    def _m_set_stack_type(self, params: Any, conn: ConnectionInfo) -> Any:
        return 0

    def _m_start_auto_focuse(self, params: Any, conn: ConnectionInfo) -> Any:
        self._autofocus()
        return 0

    def _m_stop_auto_focuse(self, params: Any, conn: ConnectionInfo) -> Any:
        self._cancel_operation("AutoFocus")
        self._cancel_operation("FocuserMove")
        return 0

    def _m_get_focuser_position(self, params: Any, conn: ConnectionInfo) -> Any:
        if isinstance(params, dict) and params.get("ret_obj"):
            return {"step": self.focuser}
        return self.focuser

    def _m_move_focuser(self, params: Any, conn: ConnectionInfo) -> Any:
        if "AutoFocus" in self.operations:
            raise MOVING
        step = params["step"]
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError("step must be an integer")
        self._move_focuser(step, [])
        return {"step": step}

    def _m_start_solve(self, params: Any, conn: ConnectionInfo) -> Any:
        async def body() -> None:
            await self._plate_solve([])

        self._start_operation("PlateSolve", body)
        return 0

    # camera and settings

    def _m_set_control_value(self, params: Any, conn: ConnectionInfo) -> Any:
        name, value = str(params[0]).lower(), params[1]
        number = finite(value)
        if name == "gain":
            if not 0 <= number <= 400:
                raise ValueError("gain out of range")
            self.gain = int(number)
        elif name == "exposure":
            if not 1 <= number <= 60_000:
                raise ValueError("exposure out of range")
            self.settings["exp_ms"]["continuous"] = int(number)
        else:
            raise ValueError(f"unknown control {name!r}")
        return 0

    def _m_get_control_value(self, params: Any, conn: ConnectionInfo) -> Any:
        name = str(params[0]).lower()
        if name == "gain":
            return {"name": "Gain", "value": self.gain}
        if name == "exposure":
            return {"name": "Exposure", "value": self.settings["exp_ms"]["continuous"]}
        raise ValueError(f"unknown control {name!r}")

    def _m_get_setting(self, params: Any, conn: ConnectionInfo) -> Any:
        return {**self.settings, "focal_pos": self.focuser}

    def _m_set_setting(self, params: Any, conn: ConnectionInfo) -> Any:
        if not isinstance(params, dict) or not params:
            raise ValueError("set_setting takes an object")
        exp = params.get("exp_ms")
        if exp is not None:
            for key in ("stack_l", "continuous"):
                if key in exp and not 1 <= finite(exp[key]) <= 600_000:
                    raise ValueError("exposure out of range")
        roi = params.get("rtsp_roi_index")
        if roi is not None and (isinstance(roi, bool) or roi not in (0, 1, 2)):
            raise ValueError("rtsp_roi_index is 0, 1 or 2")
        _merge(self.settings, params)
        if "heater_enable" in params:
            self.settings["heater_enable"] = bool(params["heater_enable"])
        self.emit("Setting", **params)
        if roi is not None and self.view.stage == "RTSP":
            self.emit("RTSP", **self.rtsp_fields(), route=["View"])
        return 0

    # RTSP stage recording

    def _m_start_record_avi(self, params: Any, conn: ConnectionInfo) -> Any:
        self._start_record()
        return 0

    def _m_stop_record_avi(self, params: Any, conn: ConnectionInfo) -> Any:
        if self.record is None or self.record.stopped is not None:
            raise FirmwareError(207, "fail to operate: not recording")
        self._stop_record()
        return 0

    def _m_get_stack_setting(self, params: Any, conn: ConnectionInfo) -> Any:
        return dict(self.stack_settings)

    def _m_set_stack_setting(self, params: Any, conn: ConnectionInfo) -> Any:
        if not isinstance(params, dict):
            raise ValueError("set_stack_setting takes an object")
        self.stack_settings.update(params)
        return 0

    def _m_pi_output_set2(self, params: Any, conn: ConnectionInfo) -> Any:
        heater = params["heater"]
        state, value = heater["state"], finite(heater.get("value", 0))
        if not isinstance(state, bool) or not 0 <= value <= 100:
            raise ValueError("heater state must be a boolean and value 0..100")
        self.settings["heater_enable"] = state
        self.settings["heater_value"] = int(value)
        return 0

    def _m_set_wheel_position(self, params: Any, conn: ConnectionInfo) -> Any:
        pos = params[0] if isinstance(params, list) else params
        if isinstance(pos, bool) or not isinstance(pos, int):
            raise ValueError("wheel position must be an integer")
        self._set_wheel(pos)
        return 0

    def _m_get_wheel_position(self, params: Any, conn: ConnectionInfo) -> Any:
        return self.wheel

    def _m_get_wheel_state(self, params: Any, conn: ConnectionInfo) -> Any:
        return {
            "state": "moving" if "WheelMove" in self.operations else "idle",
            "position": self.wheel,
        }

    def _m_get_wheel_setting(self, params: Any, conn: ConnectionInfo) -> Any:
        return {"names": [WHEEL_NAMES[i] for i in sorted(WHEEL_NAMES)]}

    # time, place, storage

    def _m_pi_get_time(self, params: Any, conn: ConnectionInfo) -> Any:
        now = datetime.fromtimestamp(self._clock() + self.time_offset_s, UTC)
        return {
            "year": now.year,
            "mon": now.month,
            "day": now.day,
            "hour": now.hour,
            "min": now.minute,
            "sec": now.second,
            "time_zone": self.time_zone,
        }

    def _m_pi_set_time(self, params: Any, conn: ConnectionInfo) -> Any:
        if isinstance(params, str):
            when = datetime.fromisoformat(params)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        else:
            t = params[0] if isinstance(params, list) else params
            when = datetime(
                int(t["year"]),
                int(t["mon"]),
                int(t["day"]),
                int(t["hour"]),
                int(t["min"]),
                int(t["sec"]),
                tzinfo=UTC,
            )
            zone = t.get("time_zone")
            if isinstance(zone, str):
                self.time_zone = zone
        # The simulated sky follows the host clock; the offset is only reported back.
        self.time_offset_s = when.timestamp() - self._clock()
        return 0

    def _m_set_user_location(self, params: Any, conn: ConnectionInfo) -> Any:
        lat, lon = finite(params["lat"]), finite(params["lon"])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError("location out of range")
        self.location = [lon, lat]
        self.mount.set_location(lat, lon)
        return 0

    def _m_get_user_location(self, params: Any, conn: ConnectionInfo) -> Any:
        return {"lon": self.location[0], "lat": self.location[1]}

    def _m_get_disk_volume(self, params: Any, conn: ConnectionInfo) -> Any:
        return {"totalMB": round(self.disk_total_mb), "freeMB": round(self.disk_free_mb)}

    def _m_get_camera_info(self, params: Any, conn: ConnectionInfo) -> Any:
        return {
            "chip_size": self.model.main.chip_size,
            "bins": [1, 2],
            "pixel_size_um": self.model.main.pixel_size_um,
            "unity_gain": 80,
            "has_cooler": False,
            "is_color": True,
            "is_usb3_host": False,
            "has_hpc": False,
            "debayer_pattern": "GR",
        }

    def _m_play_sound(self, params: Any, conn: ConnectionInfo) -> Any:
        return 0
