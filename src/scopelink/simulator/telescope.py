"""The simulated telescope's state and behaviour: mount, focuser, view, stacking, wheel, power.

`SimulatedTelescope.handle()` (its request methods live in `methods.py`) executes one control
request and returns its result or raises `FirmwareError`; long operations run as tasks that emit
events through the `emit` callback with the firmware's start → working → complete / fail / cancel
lifecycle. The servers own the sockets; this module owns what the telescope does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from scopelink.seestar import verify
from scopelink.seestar.messages import event_dict
from scopelink.seestar.models import MODELS, ModelFacts
from scopelink.settings import RTSP_PORT
from scopelink.simulator.firmware import (
    BAD_PARAM,
    FAIL,
    FOCUSER_MAX_STEP,
    FOCUSER_STEPS_PER_S,
    LOW_BATTERY_PERCENT,
    MOVING,
    WHEEL_NAMES,
    FirmwareError,
    FirmwareProfile,
)
from scopelink.simulator.methods import FirmwareMethods
from scopelink.simulator.mount import BelowHorizon, MotionKind, Mount, MountBusy
from scopelink.simulator.scene import Scene, StackSnapshot
from scopelink.simulator.video import RTSP_MODES

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Power:
    """Battery and temperature, drifting slowly."""

    battery: float = 87.0
    charging: bool = False
    temp: float = 35.0

    def step(self, dt: float) -> None:
        rate = 0.05 if self.charging else -0.01  # percent per second
        self.battery = min(100.0, max(0.0, self.battery + rate * dt))
        self.temp += (38.0 - self.temp) * min(1.0, dt / 300.0)

    @property
    def charger_status(self) -> str:
        if self.charging:
            return "Full" if self.battery >= 100.0 else "Charging"
        return "Discharging"


def _lapse_ms(start: float) -> int:
    """Milliseconds since `start` (monotonic): the events' `lapse_ms`."""
    return int((time.monotonic() - start) * 1000)


def _default_settings() -> dict[str, Any]:
    return {
        "temp_unit": "C",
        "beep_volume": "backyard",
        "lang": "en",
        "center_xy": [540, 960],
        "stack_lenhance": False,
        "heater_enable": False,
        "heater_value": 0,
        "exp_ms": {"stack_l": 10000, "continuous": 500},
        "auto_power_off": True,
        "stack_dither": {"pix": 50, "interval": 5, "enable": True},
        "auto_3ppa_calib": True,
        "auto_af": False,
        "frame_calib": True,
        "stack_after_goto": False,
        "guest_mode": False,
        "dark_mode": False,
        "af_before_stack": False,
        "stack": {"dbe": False, "star_correction": True, "cont_capt": False},
        "rtsp_roi_index": 0,
        "isp_exp_ms": 60.0,
        "isp_gain": 80,
        "isp_range_gain": [0, 400],
    }


@dataclass(slots=True)
class Operation:
    """A running long operation; cancelling its task cancels the operation."""

    name: str
    task: asyncio.Task[None]


@dataclass(slots=True)
class ViewState:
    mode: str | None = None
    stage: str | None = None
    state: str = "idle"
    target_name: str = ""
    target_ra_dec: list[float] | None = None
    lp_filter: bool = False
    started: float = 0.0


@dataclass(slots=True)
class AviRecordState:
    """The RTSP stage's recording ("mp4 record"); it stays in the view state once done."""

    started: float
    fps: float
    state: str = "working"
    stopped: float | None = None

    @property
    def lapse_ms(self) -> int:
        end = self.stopped if self.stopped is not None else time.monotonic()
        return int((end - self.started) * 1000)

    @property
    def saved_frames(self) -> int:
        return int(self.lapse_ms / 1000 * self.fps)

    def fields(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "lapse_ms": self.lapse_ms,
            "timelapse": {"enable": False},
            "note": "mp4 record",
            "saved_frames": self.saved_frames,
            "raw": False,
            "file_saved": self.stopped is not None,
        }


@dataclass(slots=True)
class StackState:
    stacked: int = 0
    dropped: int = 0
    ra_hours: float = 0.0
    dec_deg: float = 0.0
    active: bool = False


class SimulatedTelescope(FirmwareMethods):
    """A Seestar (S50 by default; `model`) in software."""

    def __init__(
        self,
        profile: FirmwareProfile,
        *,
        emit: Emit,
        serial: str = "4ddb0535",
        lat_deg: float = 52.0,
        lon_deg: float = 4.9,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        public_key_pem: bytes | None = None,
        slew_rate_deg_s: float = 4.0,
        charging: bool = False,
        model: ModelFacts = MODELS["S50"],
        video_fps: float = 30.0,
    ) -> None:
        self.profile = profile
        self.model = model
        #: The RTSP port the view state reports (the simulator sets the bound one).
        self.rtsp_port = RTSP_PORT
        self.video_fps = video_fps
        self.record: AviRecordState | None = None
        self.serial = serial
        self._emit_line = emit
        self._clock = clock
        self._boot = time.monotonic() - 3600.0  # the firmware has been up an hour
        self._rng = random.Random(seed)
        self.mount = Mount(lat_deg, lon_deg, clock=clock, slew_rate_deg_s=slew_rate_deg_s)
        self.location = [lon_deg, lat_deg]
        self.settings = _default_settings()
        self.stack_settings: dict[str, Any] = {
            "save_discrete_ok_frame": True,
            "save_discrete_frame": False,
            "light_duration_min": -1,
        }
        self.focus_best = 1580 + self._rng.randint(-60, 60)
        # Slightly soft at power-on: stars show at once, and autofocus still has work to do.
        self.focuser = self.focus_best + 30
        self.focuser_state = "idle"
        self.wheel = 1
        self.gain = 80
        self.power = Power(charging=charging)
        self.disk_total_mb = 51_000.0
        self.disk_free_mb = 40_200.0
        self.time_offset_s = 0.0
        self.time_zone = "UTC"
        self.view = ViewState()
        self.stack_state = StackState()
        self.operations: dict[str, Operation] = {}
        self._public_key = (
            verify.load_private_key(public_key_pem).public_key() if public_key_pem else None
        )
        self._ticker: asyncio.Task[None] | None = None
        self._was_moving = False
        self.clients = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def uptime(self) -> float:
        return time.monotonic() - self._boot

    def emit(self, name: str, /, **fields: Any) -> None:
        self._emit_line(event_dict(name, self.uptime(), **fields))

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="sim-telescope")

    async def stop(self) -> None:
        tasks = [op.task for op in self.operations.values()]
        if self._ticker is not None:
            tasks.append(self._ticker)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def version_event(self, verified: bool) -> dict[str, Any]:
        return event_dict(
            "Version",
            self.uptime(),
            name="ASI AIR imager",
            svr_ver_string="1.0",
            svr_ver_int=29,
            firmware_ver_int=self.profile.version_int,
            firmware_ver_string=self.profile.version,
            is_verified=verified,
        )

    async def _tick(self) -> None:
        """Background physics: power, PiStatus every ~5 s, and manual-move end events."""
        last = time.monotonic()
        last_status = 0.0
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            low_before = self.power.battery < LOW_BATTERY_PERCENT
            self.power.step(now - last)
            last = now
            if self.power.battery < LOW_BATTERY_PERCENT and not low_before:
                self.emit("Alert", state="working", error="battery low", code=0)
            moving = self.mount.motion is MotionKind.MOVE
            if self._was_moving and not moving:
                self.emit(
                    "ScopeTrack",
                    state="on" if self.mount.tracking else "off",
                    tracking=self.mount.tracking,
                    manual=True,
                    route=[],
                )
            self._was_moving = moving
            if now - last_status >= 5.0:
                last_status = now
                self.emit("PiStatus", **self._pi_status_fields())

    def _pi_status_fields(self) -> dict[str, Any]:
        return {
            "temp": round(self.power.temp, 6),
            "charger_status": self.power.charger_status,
            "charge_online": self.power.charging,
            "battery_capacity": round(self.power.battery),
        }

    # -- what the camera sees -------------------------------------------------------------------

    def scene(self) -> Scene:
        p = self.mount.position()
        exposure = self.settings["exp_ms"].get("continuous", 500)
        return Scene(
            ra_hours=p.ra_hours,
            dec_deg=p.dec_deg,
            focus_offset=self.focuser - self.focus_best,
            exposure_ms=float(exposure),
            gain=self.gain,
            moving=self.mount.motion is not MotionKind.NONE,
            rotation_deg=self.mount.rotation_deg(),
        )

    def stack(self) -> StackSnapshot | None:
        s = self.stack_state
        if s.stacked == 0:
            return None
        return StackSnapshot(s.ra_hours, s.dec_deg, s.stacked, s.dropped)

    # -- operations -----------------------------------------------------------------------------

    def _start_operation(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        async def runner() -> None:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("simulated operation %s crashed", name)
            finally:
                current = self.operations.get(name)
                if current is not None and current.task is asyncio.current_task():
                    del self.operations[name]

        self.operations[name] = Operation(name, asyncio.create_task(runner(), name=f"sim-{name}"))

    def _cancel_operation(self, name: str) -> bool:
        op = self.operations.pop(name, None)
        if op is None:
            return False
        op.task.cancel()
        return True

    def _busy_moving(self) -> bool:
        return (
            self.mount.motion in (MotionKind.GOTO, MotionKind.PARK) or "AutoGoto" in self.operations
        )

    async def _slew(self, ra: float, dec: float, route: list[str]) -> bool:
        """Run a mount goto with ScopeGoto progress; True when it arrived."""
        start = time.monotonic()
        self.emit("ScopeTrack", state="off", tracking=False, manual=False, route=route)
        last = -1.0
        try:
            while self.mount.motion is MotionKind.GOTO:
                now = time.monotonic()
                if now - last >= 0.5:
                    last = now
                    p = self.mount.position()
                    self.emit(
                        "ScopeGoto",
                        state="working",
                        lapse_ms=int((now - start) * 1000),
                        cur_ra_dec=[round(p.ra_hours, 6), round(p.dec_deg, 6)],
                        dist_deg=round(self.mount.distance_to_target_deg(), 6),
                        route=route,
                    )
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.mount.stop()
            self.emit("ScopeGoto", state="cancel", lapse_ms=_lapse_ms(start), route=route)
            raise
        lapse = _lapse_ms(start)
        if self.mount.target is None and not self.mount.tracking:
            self.emit("ScopeGoto", state="cancel", lapse_ms=lapse, route=route)
            return False
        p = self.mount.position()
        self.emit(
            "ScopeGoto",
            state="complete",
            lapse_ms=lapse,
            cur_ra_dec=[round(p.ra_hours, 6), round(p.dec_deg, 6)],
            dist_deg=0.0,
            route=route,
        )
        self.emit("ScopeTrack", state="on", tracking=True, manual=False, route=route)
        return True

    def _point_mount(self, ra: float, dec: float) -> None:
        """Start the mount's slew, refusing with the firmware's codes."""
        if self._busy_moving():
            raise MOVING
        try:
            self.mount.goto(ra, dec)
        except MountBusy:
            raise MOVING from None
        except BelowHorizon:
            raise FAIL from None

    def _goto(self, ra: float, dec: float) -> None:
        self._point_mount(ra, dec)

        async def body() -> None:
            await self._slew(ra, dec, [])

        self._start_operation("ScopeGoto", body)

    def _auto_goto(self, ra: float, dec: float, name: str, mode: str, lp: bool) -> None:
        self._point_mount(ra, dec)
        self._stop_stacking("cancel")
        self._leave_rtsp()
        self.view = ViewState(
            mode=mode,
            stage="AutoGoto",
            state="working",
            target_name=name,
            target_ra_dec=[ra, dec],
            lp_filter=lp,
            started=time.monotonic(),
        )
        self.emit(
            "View",
            state="working",
            mode=mode,
            stage="AutoGoto",
            target_name=name,
            lp_filter=lp,
            cam_id=0,
            route=[],
        )

        async def body() -> None:
            start = time.monotonic()
            route = ["View"]
            self.emit("AutoGoto", state="start", lapse_ms=0, count=0, route=route)
            try:
                self.emit("AutoGoto", state="working", lapse_ms=0, count=1, route=route)
                if not await self._slew(ra, dec, ["View", "AutoGoto"]):
                    self.emit("AutoGoto", state="cancel", route=route, lapse_ms=_lapse_ms(start))
                    return
                await self._plate_solve(["View", "AutoGoto"])
            except asyncio.CancelledError:
                self.emit("AutoGoto", state="cancel", route=route, lapse_ms=_lapse_ms(start))
                raise
            self.emit("AutoGoto", state="complete", route=route, lapse_ms=_lapse_ms(start))
            self._enter_preview()

        self._start_operation("AutoGoto", body)

    async def _plate_solve(self, route: list[str]) -> None:
        start = time.monotonic()
        self.emit("PlateSolve", state="start", page="focus", route=route)
        await asyncio.sleep(0.3)
        self.emit(
            "PlateSolve", state="solving", page="focus", star_number=800 + self._rng.randint(0, 600)
        )
        await asyncio.sleep(0.3)
        p = self.mount.position()
        duration = _lapse_ms(start)
        self.emit(
            "PlateSolve",
            state="complete",
            page="focus",
            result={
                "ra_dec": [round(p.ra_hours, 6), round(p.dec_deg, 6)],
                "fov": [0.71144, 1.265285],
                "focal_len": 252.135208,
                "angle": round(self.mount.rotation_deg(), 6),
                "image_id": 65535,
                "star_number": 1200,
                "duration_ms": duration,
            },
        )
        self.emit("PlateSolve", state="complete", lapse_ms=duration, route=route)

    @property
    def rtsp_mode(self) -> str | None:
        """The view mode while the stage is RTSP (the camera serves video), else None."""
        return self.view.mode if self.view.stage == "RTSP" else None

    @property
    def roi_index(self) -> int:
        value = self.settings.get("rtsp_roi_index", 0)
        return value if value in (0, 1, 2) else 0

    def rtsp_fields(self) -> dict[str, Any]:
        lapse = int((time.monotonic() - self.view.started) * 1000) if self.view.started else 0
        return {
            "state": "working",
            "lapse_ms": lapse,
            "roi_index": self.roi_index,
            "port": self.rtsp_port,
        }

    def _enter_rtsp(self) -> None:
        """Solar-system and scenery modes: live video on the RTSP port, nothing on 4800."""
        self.view.stage = "RTSP"
        self.view.state = "working"
        self.record = None
        self.emit(
            "View",
            state="working",
            mode=self.view.mode,
            stage="RTSP",
            target_name=self.view.target_name,
            lp_filter=self.view.lp_filter,
            cam_id=0,
            route=[],
        )
        self.emit("RTSP", **self.rtsp_fields(), route=["View"])

    def _start_record(self) -> None:
        # 207 like every other "not in this view" refusal (a stack outside a star view).
        if self.view.stage != "RTSP":
            raise FirmwareError(207, "fail to operate: record needs a solar system or scenery view")
        if self.record is not None and self.record.stopped is None:
            raise FirmwareError(207, "fail to operate: already recording")
        self.record = AviRecordState(started=time.monotonic(), fps=self.video_fps)
        self.emit("AviRecord", **{**self.record.fields(), "state": "start"}, route=["View"])
        self.emit("AviRecord", **self.record.fields(), route=["View"])

    def _stop_record(self, state: str = "complete") -> None:
        record = self.record
        if record is None or record.stopped is not None:
            return
        record.stopped = time.monotonic()
        record.state = state
        self.emit("AviRecord", **record.fields(), route=["View"])

    def _enter_preview(self) -> None:
        mode = self.view.mode or "star"
        if mode in RTSP_MODES:
            self._enter_rtsp()
            return
        self.view.stage = "ContinuousExposure"
        self.view.state = "working"
        self.emit(
            "View",
            state="working",
            mode=mode,
            stage="ContinuousExposure",
            target_name=self.view.target_name,
            lp_filter=self.view.lp_filter,
            cam_id=0,
            route=[],
        )
        self.emit(
            "ContinuousExposure",
            state="working",
            lapse_ms=0,
            fps=1000.0 / max(1.0, float(self.settings["exp_ms"].get("continuous", 500))),
            route=["View"],
        )

    def _park(self) -> None:
        if self._busy_moving():
            raise MOVING
        self._stop_stacking("cancel")
        self.mount.park()

        async def body() -> None:
            start = time.monotonic()
            self.emit("ScopeTrack", state="off", tracking=False, manual=False, route=[])
            self.emit("ScopeHome", state="start", lapse_ms=0, close=False)
            last = 0.0
            try:
                while self.mount.motion is MotionKind.PARK:
                    if time.monotonic() - last >= 0.5:
                        last = time.monotonic()
                        self.emit(
                            "ScopeHome",
                            state="working",
                            close=False,
                            lapse_ms=int((last - start) * 1000),
                        )
                    await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                self.mount.stop()
                self.emit("ScopeHome", state="cancel", close=False, lapse_ms=_lapse_ms(start))
                raise
            lapse = _lapse_ms(start)
            if self.mount.parked:
                self.emit("ScopeHome", state="complete", close=True, lapse_ms=lapse, equ_mode=False)
            else:
                self.emit("ScopeHome", state="cancel", close=False, lapse_ms=lapse)

        self._start_operation("ScopeHome", body)

    def _move_focuser(self, target: int, route: list[str]) -> None:
        if not 0 <= target <= FOCUSER_MAX_STEP:
            raise FirmwareError(207, f"focuser step out of range 0..{FOCUSER_MAX_STEP}")
        self._cancel_operation("FocuserMove")

        async def body() -> None:
            await self._focuser_travel(target, route)

        self._start_operation("FocuserMove", body)

    async def _focuser_travel(self, target: int, route: list[str]) -> None:
        start = time.monotonic()
        self.focuser_state = "moving"
        self.emit("FocuserMove", state="start", lapse_ms=0, position=self.focuser, route=route)
        try:
            while self.focuser != target:
                await asyncio.sleep(0.05)
                step = max(1, int(FOCUSER_STEPS_PER_S * 0.05))
                delta = max(-step, min(step, target - self.focuser))
                self.focuser += delta
                self.emit(
                    "FocuserMove",
                    state="working",
                    position=self.focuser,
                    route=route,
                    lapse_ms=_lapse_ms(start),
                )
        except asyncio.CancelledError:
            self.emit("FocuserMove", state="cancel", position=self.focuser, route=route)
            raise
        finally:
            self.focuser_state = "idle"
        self.emit(
            "FocuserMove",
            state="complete",
            position=self.focuser,
            route=route,
            lapse_ms=_lapse_ms(start),
        )

    def _autofocus(self) -> None:
        if "AutoFocus" in self.operations:
            raise MOVING
        if self.mount.motion is not MotionKind.NONE:
            raise MOVING
        self._cancel_operation("FocuserMove")

        async def body() -> None:
            start = time.monotonic()
            route = ["View"]
            self.emit("AutoFocus", state="start", lapse_ms=0, route=route)
            try:
                # Sweep through focus in a few samples, as the firmware does, then go to the best.
                points = [self.focus_best + d for d in (-150, -75, 0, 75, 150)]
                for step in points:
                    await self._focuser_travel(step, ["View", "AutoFocus"])
                    self.emit("AutoFocus", state="working", route=route, lapse_ms=_lapse_ms(start))
                await self._focuser_travel(self.focus_best, ["View", "AutoFocus"])
            except asyncio.CancelledError:
                self.emit("AutoFocus", state="cancel", route=route, lapse_ms=_lapse_ms(start))
                raise
            self.emit(
                "AutoFocus",
                state="complete",
                route=route,
                lapse_ms=_lapse_ms(start),
                result={"last_point": [self.focus_best, 2.1]},
            )

        self._start_operation("AutoFocus", body)

    def _start_stack(self, restart: bool) -> None:
        if self.view.stage not in ("ContinuousExposure", "Stack") or self.view.mode != "star":
            raise FirmwareError(207, "fail to operate: start a star view first")
        if self._busy_moving():
            raise MOVING
        if restart or not self.stack_state.active:
            p = self.mount.position()
            if restart or self.stack_state.stacked == 0:
                self.stack_state = StackState(ra_hours=p.ra_hours, dec_deg=p.dec_deg)
        self._cancel_operation("Stack")
        self.stack_state.active = True
        self.view.stage = "Stack"
        self.emit(
            "View",
            state="working",
            mode=self.view.mode,
            stage="Stack",
            target_name=self.view.target_name,
            cam_id=0,
            route=[],
        )

        async def body() -> None:
            start = time.monotonic()
            route = ["View"]
            self.emit("Stack", state="start", lapse_ms=0, route=route)
            while True:
                exposure_s = float(self.settings["exp_ms"].get("stack_l", 10000)) / 1000.0
                await asyncio.sleep(max(0.05, exposure_s))
                lapse = _lapse_ms(start)
                self.emit(
                    "Exposure",
                    state="complete",
                    exp_ms=exposure_s * 1000,
                    lapse_ms=lapse,
                    route=["View", "Stack"],
                )
                s = self.stack_state
                if self._rng.random() < 0.1:
                    s.dropped += 1
                else:
                    s.stacked += 1
                    self.disk_free_mb = max(0.0, self.disk_free_mb - 24.0)
                    self.emit("DiskSpace", used_percent=self._volume()["used_percent"])
                self.emit(
                    "Stack",
                    state="frame_complete",
                    lapse_ms=lapse,
                    frame_errcode=0,
                    stacked_frame=s.stacked,
                    dropped_frame=s.dropped,
                    total_frame=s.stacked + s.dropped,
                    can_annotate=False,
                    frame_type="light",
                    route=route,
                )

        self._start_operation("Stack", body)

    def _stop_stacking(self, state: str) -> None:
        if not self._cancel_operation("Stack"):
            return
        s = self.stack_state
        s.active = False
        self.emit(
            "Stack",
            state=state,
            stacked_frame=s.stacked,
            dropped_frame=s.dropped,
            total_frame=s.stacked + s.dropped,
            route=["View"],
        )
        if self.view.stage == "Stack":
            self._enter_preview()

    def _stop_view(self, stage: str | None) -> None:
        if stage == "AutoGoto":
            if not self._cancel_operation("AutoGoto"):
                self._cancel_operation("ScopeGoto")
            self.mount.stop()
            return
        if stage == "Stack":
            self._stop_stacking("cancel")
            return
        if stage == "AviRecord":
            self._stop_record()
            return
        if stage not in (None, "RTSP"):
            return
        for name in ("AutoGoto", "ScopeGoto", "AutoFocus", "Stack"):
            self._cancel_operation(name)
        self.mount.stop()
        self.stack_state.active = False
        self._leave_rtsp()
        mode = self.view.mode
        self.view = ViewState()
        self.emit("View", state="cancel", mode=mode, stage=None, route=[])

    def _leave_rtsp(self) -> None:
        """The RTSP stage ends: a recording is saved, the stream stops."""
        if self.view.stage != "RTSP":
            return
        self._stop_record()
        self.emit("RTSP", **{**self.rtsp_fields(), "state": "cancel"}, route=["View"])

    def _start_view(self, mode: str, lp: bool) -> None:
        self._stop_stacking("cancel")
        self._leave_rtsp()
        self.view = ViewState(mode=mode, state="working", lp_filter=lp, started=time.monotonic())
        self._enter_preview()

    def _set_wheel(self, pos: int) -> None:
        if pos not in WHEEL_NAMES:
            raise BAD_PARAM

        async def body() -> None:
            self.emit("WheelMove", state="start", position=self.wheel)
            await asyncio.sleep(0.3)
            self.wheel = pos
            self.emit("WheelMove", state="complete", position=pos)

        self._cancel_operation("WheelMove")
        self._start_operation("WheelMove", body)
