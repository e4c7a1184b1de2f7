"""The telemetry hub: one state model per telescope, published as a snapshot plus deltas.

Every status consumer (SSE now, the data channel later) reads it. State is built from the
telescope's events and light polling. Messages carry increasing sequence numbers and the last
few hundred are kept in a ring, so a consumer can resume after a gap (`Last-Event-ID`); one that
fell further behind gets a fresh snapshot. Consumers hold only a cursor: a stalled consumer costs
no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from scopelink.schema.operations import Operation
from scopelink.schema.state import TelescopeState
from scopelink.seestar.commands import RTSP_ZOOMS
from scopelink.seestar.errors import SeestarError
from scopelink.seestar.events import (
    TERMINAL_STATES,
    DiskSpace,
    Event,
    FocuserMove,
    PiStatus,
    ScopeGoto,
    ScopeHome,
    ScopeTrack,
    Stack,
    Version,
    View,
)
from scopelink.seestar.link import ConnectionState
from scopelink.services.frame_pipeline import LiveMode
from scopelink.services.registry import TelescopeRegistry
from scopelink.services.telescope import Telescope

log = logging.getLogger(__name__)

#: How long a poll waits for each answer before it gives up until the next poll.
POLL_TIMEOUT_S = 5.0
#: Requests that change what the full poll reads: after one, it runs at once.
SETTING_METHODS = frozenset(
    {
        "set_setting",
        "set_control_value",
        "set_wheel_position",
        "pi_output_set2",
        "pi_set_time",
        "set_user_location",
    }
)
#: The filter wheel's light-pollution position.
FILTER_LP = 2

#: Firmware events also forwarded as-is, for the UI's event log.
LOGGED_EVENTS = frozenset(
    {
        "AutoGoto", "ScopeGoto", "ScopeTrack", "ScopeHome", "AutoFocus", "PlateSolve", "View",
        "Stack", "WheelMove", "Alert", "Exposure", "AviRecord",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    """One message of a telescope's telemetry stream."""

    seq: int
    #: "snapshot", "delta", "operation" or "event".
    kind: str
    data: dict[str, Any]


class TelemetryChannel:
    """State and message stream of one telescope."""

    def __init__(
        self,
        session: Telescope,
        *,
        ring_size: int = 512,
        poll_s: float = 2.0,
        full_poll_s: float = 10.0,
    ) -> None:
        self.session = session
        self.state = TelescopeState(id=session.id, name=session.name, simulated=session.simulated)
        self.seq = 0
        self._ring: deque[TelemetryMessage] = deque(maxlen=ring_size)
        self._changed = asyncio.Event()
        self._poll_s = poll_s
        self._full_poll_s = full_poll_s
        self._poller: asyncio.Task[None] | None = None
        self._unsubscribe: list[Any] = []
        self._closed = False
        self._stage_task: asyncio.Task[None] | None = None
        #: A settings change was made: poll everything now.
        self._refresh_due = False
        self._poke = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.session
        self._unsubscribe.append(s.control.subscribe(self._on_event))
        self._unsubscribe.append(s.control.on_done(self._on_done))
        self._unsubscribe.append(s.control.add_state_listener(lambda _: self._on_link()))
        self._unsubscribe.append(s.imaging.add_state_listener(lambda _: self._on_link()))
        self._unsubscribe.append(s.pipeline.add_source_listener(self._refresh_live))
        s.operations.subscribe(self._on_operation)
        self._on_link()
        self._refresh_live()
        self._poller = asyncio.create_task(self._poll(), name=f"telemetry-{s.id}")

    async def stop(self) -> None:
        self._closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._wake()

    # -- publishing -----------------------------------------------------------------------------

    def _append(self, kind: str, data: dict[str, Any]) -> None:
        self.seq += 1
        self._ring.append(TelemetryMessage(self.seq, kind, data))
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def update(self, changes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Merge `{section: {field: value}}` into the state; publish and return what changed."""
        delta: dict[str, dict[str, Any]] = {}
        for section, fields in changes.items():
            model = getattr(self.state, section)
            for name, value in fields.items():
                if getattr(model, name) != value:
                    setattr(model, name, value)
                    delta.setdefault(section, {})[name] = value
        if delta:
            self._append("delta", delta)
        if "stage" in delta.get("view", {}):
            # The live picture's source follows the view stage (RTSP: the telescope's video).
            self._stage_task = asyncio.get_running_loop().create_task(
                self.session.set_stage(self.state.view.stage)
            )
        return delta

    def snapshot(self) -> TelemetryMessage:
        return TelemetryMessage(self.seq, "snapshot", self.state.model_dump(mode="json"))

    async def messages(self, after_seq: int | None = None) -> AsyncIterator[TelemetryMessage]:
        """A snapshot (unless resuming within the ring), then every message as it comes.

        Ends when the channel stops. The consumer's only state is its cursor.
        """
        cursor = after_seq
        if cursor is None or not self._can_resume(cursor):
            snap = self.snapshot()
            yield snap
            cursor = snap.seq
        while not self._closed:
            if self.seq <= cursor:
                await self._changed.wait()
                continue
            if not self._can_resume(cursor):
                snap = self.snapshot()  # fell out of the ring: start over from the state
                yield snap
                cursor = snap.seq
                continue
            for message in list(self._ring):
                if message.seq > cursor:
                    yield message
                    cursor = message.seq

    def _can_resume(self, cursor: int) -> bool:
        if cursor > self.seq:
            return False  # from another run of the server
        if cursor == self.seq:
            return True
        return bool(self._ring) and self._ring[0].seq <= cursor + 1

    # -- inputs ---------------------------------------------------------------------------------

    def _on_link(self) -> None:
        s = self.session
        error = s.control.last_error if s.control.state is not ConnectionState.CONNECTED else None
        self.update(
            {
                "connection": {
                    "control": str(s.control.state),
                    "imaging": str(s.imaging.state),
                    "last_error": error,
                }
            }
        )
        # The session learned its model (and so its cameras) before this listener ran.
        self.update({"device": {"cameras": list(s.cameras)}})
        if s.control.connected:
            device = s.control.device_state.get("device") or {}
            self.update(
                {
                    "device": {
                        "model": device.get("product_model"),
                        "serial": device.get("sn"),
                        "firmware": device.get("firmware_ver_string"),
                    }
                }
            )
            self._apply_device_state(s.control.device_state)

    def _on_operation(self, op: Operation) -> None:
        self.state.operation = op.model_copy()
        self._append("operation", op.model_dump(mode="json"))

    def _on_event(self, event: Event) -> None:
        changes = _changes_from_event(event)
        if changes:
            self.update(changes)
        if event.event in LOGGED_EVENTS:
            self._append("event", event.raw)

    def _refresh_live(self) -> None:
        """The `live` section from the frame pipeline: no I/O, so cheap on every poll."""
        pipeline = self.session.pipeline
        video = pipeline.video
        playing = pipeline.mode is LiveMode.VIDEO and video is not None
        facts = video.facts if playing and video is not None else None
        live: dict[str, Any] = {
            "source": str(pipeline.mode),
            "passthrough": pipeline.passthrough is not None,
            "passthrough_refusal": video.passthrough_refusal if playing and video else None,
            "codec": None,
            "profile": None,
            "level": None,
            "width": None,
            "height": None,
            "frame_rate": None,
            "keyframe_interval_s": None,
            "bitrate_bps": None,
        }
        if facts is not None and video is not None:
            bitrate = video.bitrate
            live |= {
                "codec": facts.codec,
                "profile": facts.profile,
                "level": facts.level,
                "width": facts.width,
                "height": facts.height,
                # Rounded: measured figures jitter, and each change is a delta to every viewer.
                "frame_rate": _rounded(facts.frame_rate, 1),
                "keyframe_interval_s": _rounded(facts.keyframe_interval_s, 1),
                "bitrate_bps": None if bitrate is None else round(bitrate, -4),
            }
        self.update({"live": live})

    def _on_done(self, method: str, params: Any) -> None:
        """A request the telescope took: one that changes settings brings the next full poll
        forward, so the state shows the change at once (not up to `full_poll_s` later)."""
        if method in SETTING_METHODS:
            self._refresh_due = True
            self._poke.set()

    async def _poll(self) -> None:
        """Light polling for what events do not carry (position while idle, disk, settings)."""
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_s)
            self._poke.clear()
            self._refresh_live()
            if not self.session.control.connected:
                continue
            commands, limit = self.session.commands, POLL_TIMEOUT_S
            try:
                eq = await commands.get_equatorial(timeout=limit)
                hz = await commands.get_horizontal(timeout=limit)
                self.update(
                    {
                        "position": {
                            "ra_hours": eq.ra_hours,
                            "dec_deg": eq.dec_deg,
                            "alt_deg": hz.alt_deg,
                            "az_deg": hz.az_deg,
                        }
                    }
                )
                if self._refresh_due or time.monotonic() - last_full >= self._full_poll_s:
                    self._refresh_due = False
                    last_full = time.monotonic()
                    self._apply_device_state(await commands.get_device_state(timeout=limit))
                    self._apply_view_state(await commands.get_view_state(timeout=limit))
                    self.update(_filter(await commands.get_filter(timeout=limit)))
                elif self.state.recording.active:
                    # AviRecord events come at start and stop only: the frame count comes from here.
                    self._apply_view_state(await commands.get_view_state(timeout=limit))
            except SeestarError as exc:
                log.debug("telemetry poll of %s failed: %s", self.session.id, exc)

    def _apply_device_state(self, state: Any) -> None:
        if not isinstance(state, dict):
            return
        mount = state.get("mount") or {}
        pi = state.get("pi_status") or {}
        focuser = state.get("focuser") or {}
        setting = state.get("setting") or {}
        volumes = (state.get("storage") or {}).get("storage_volume") or [{}]
        vol = volumes[0] if isinstance(volumes[0], dict) else {}
        changes: dict[str, dict[str, Any]] = {
            "mount": {"tracking": mount.get("tracking"), "parked": mount.get("close")},
            "power": {
                "battery_percent": pi.get("battery_capacity"),
                "charging": pi.get("charge_online"),
                "charger_status": pi.get("charger_status"),
                "temperature_c": pi.get("temp"),
            },
            "focuser": {"position": focuser.get("step"), "max_step": focuser.get("max_step")},
            "disk": {
                "total_mb": vol.get("totalMB"),
                "free_mb": vol.get("freeMB"),
                "used_percent": vol.get("used_percent"),
            },
        }
        zoom = _zoom(setting.get("rtsp_roi_index"))
        if zoom is not None:
            changes["view"] = {"zoom": zoom}
        if isinstance(setting.get("heater_enable"), bool):
            changes["optics"] = {"dew_heater": setting["heater_enable"]}
        for section, fields in changes.items():
            changes[section] = {k: v for k, v in fields.items() if v is not None}
        self.update(changes)
        wanted = {k: setting[k] for k in ("exp_ms", "heater_enable", "isp_gain") if k in setting}
        if wanted and wanted != self.state.settings:
            self.state.settings = wanted
            self._append("delta", {"settings": wanted})

    def _apply_view_state(self, view: dict[str, Any]) -> None:
        """The view's state, as `get_view_state` gives it (its `View` object)."""
        changes: dict[str, dict[str, Any]] = {
            "view": {
                "mode": view.get("mode"),
                "stage": view.get("stage"),
                "state": view.get("state"),
                "target_name": view.get("target_name") or None,
            }
        }
        stack = view.get("Stack")
        if isinstance(stack, dict):
            changes["stack"] = {
                "stacked": stack.get("stacked_frame", 0),
                "dropped": stack.get("dropped_frame", 0),
                "active": stack.get("state") == "working",
            }
        rtsp = view.get("RTSP")
        zoom = _zoom(rtsp.get("roi_index")) if isinstance(rtsp, dict) else None
        if zoom is not None:
            changes["view"]["zoom"] = zoom
        record = view.get("AviRecord")
        if isinstance(record, dict):
            changes["recording"] = _recording(record)
        elif self.state.recording.active:
            changes["recording"] = {"active": False}  # the view that recorded has ended
        self.update(changes)


def _changes_from_event(event: Event) -> dict[str, dict[str, Any]]:
    """What an event says about the state, as `{section: {field: value}}`."""
    match event:
        case PiStatus():
            power = {
                "temperature_c": event.temp,
                "battery_percent": event.battery_capacity,
                "charger_status": event.charger_status,
                "charging": event.charge_online,
            }
            return {"power": {k: v for k, v in power.items() if v is not None}}
        case ScopeGoto():
            changes: dict[str, dict[str, Any]] = {
                "mount": {"motion": "idle" if event.terminal else "slewing", "parked": False}
            }
            if event.cur_ra_dec and len(event.cur_ra_dec) >= 2:
                ra, dec = event.cur_ra_dec[:2]
                changes["position"] = {"ra_hours": ra, "dec_deg": dec}
            return changes
        case ScopeTrack():
            return {"mount": {"tracking": event.tracking}} if event.tracking is not None else {}
        case ScopeHome():
            if event.state == "complete" and event.close:
                return {"mount": {"motion": "idle", "parked": True, "tracking": False}}
            return {"mount": {"motion": "idle" if event.terminal else "parking"}}
        case FocuserMove():
            changes = {"focuser": {"moving": event.state not in TERMINAL_STATES}}
            if event.position is not None:
                changes["focuser"]["position"] = event.position
            return changes
        case View():
            view = {"mode": event.mode, "stage": event.stage, "state": event.state}
            if event.target_name is not None:
                view["target_name"] = event.target_name or None
            return {"view": view}
        case Stack():
            stack: dict[str, Any] = {
                "active": event.state in ("start", "working", "frame_complete")
            }
            if event.stacked_frame is not None:
                stack["stacked"] = event.stacked_frame
            if event.dropped_frame is not None:
                stack["dropped"] = event.dropped_frame
            return {"stack": stack}
        case DiskSpace():
            return {"disk": {"used_percent": event.used_percent}}
        case Version():
            return {"device": {"firmware": event.firmware_ver_string}}
    raw = event.raw
    match event.event:
        case "AviRecord":
            return {"recording": _recording(raw)}
        case "RTSP" | "Setting":
            changes: dict[str, dict[str, Any]] = {}
            zoom = _zoom(raw.get("roi_index" if event.event == "RTSP" else "rtsp_roi_index"))
            if zoom is not None:
                changes["view"] = {"zoom": zoom}
            heater = raw.get("heater_enable")
            if isinstance(heater, bool):
                changes["optics"] = {"dew_heater": heater}
            return changes
        case "WheelMove" if raw.get("state") == "complete":
            return _filter(raw.get("position"))
    return {}


def _filter(position: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(position, int) or isinstance(position, bool):
        return {}
    return {"optics": {"filter_position": position, "lp_filter": position == FILTER_LP}}


def _zoom(roi_index: Any) -> int | None:
    """The zoom factor for a firmware `rtsp_roi_index`, or None if it is not one."""
    if isinstance(roi_index, int) and not isinstance(roi_index, bool):
        if 0 <= roi_index < len(RTSP_ZOOMS):
            return RTSP_ZOOMS[roi_index]
    return None


def _recording(record: dict[str, Any]) -> dict[str, Any]:
    """The `recording` section from an `AviRecord` event or view-state entry."""
    state = record.get("state")
    changes: dict[str, Any] = {
        "active": state in ("start", "working"),
        "state": state if isinstance(state, str) else None,
    }
    for name in ("lapse_ms", "saved_frames"):
        value = record.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            changes[name] = int(value)
    if isinstance(record.get("file_saved"), bool):
        changes["file_saved"] = record["file_saved"]
    return changes


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class TelemetryHub:
    """One TelemetryChannel per telescope, following the registry."""

    def __init__(self, registry: TelescopeRegistry) -> None:
        self._channels: dict[str, TelemetryChannel] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        registry.on_added(self._add)
        registry.on_removed(self._remove)
        for session in registry:
            self._add(session)

    def _add(self, session: Telescope) -> None:
        channel = TelemetryChannel(session)
        self._channels[session.id] = channel
        channel.start()

    def _remove(self, session: Telescope) -> None:
        channel = self._channels.pop(session.id, None)
        if channel is not None:
            task = asyncio.create_task(channel.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def channel(self, telescope_id: str) -> TelemetryChannel:
        return self._channels[telescope_id]

    async def stop(self) -> None:
        for channel in list(self._channels.values()):
            await channel.stop()
        self._channels.clear()
