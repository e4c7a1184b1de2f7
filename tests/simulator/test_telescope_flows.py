"""Every command of the typed layer, client to simulator over real sockets, and the event flows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from scopelink import astro
from scopelink.seestar.commands import SeestarCommands, ViewMode
from scopelink.seestar.errors import CommandError
from scopelink.seestar.events import (
    AutoFocus,
    AutoGoto,
    DiskSpace,
    Event,
    FocuserMove,
    ScopeGoto,
    ScopeHome,
    ScopeTrack,
    Stack,
    WheelMove,
)
from scopelink.seestar.imaging import ImagingClient
from scopelink.simulator.firmware import ConnectionInfo
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.conftest import sky_at


def collect(scope: SeestarCommands, *names: str) -> list[Event]:
    seen: list[Event] = []
    scope.client.subscribe(seen.append, set(names) or None)
    return seen


async def test_goto_reaches_target_and_tracks(sim: Simulator, scope: SeestarCommands) -> None:
    ra, dec = sky_at(sim, 50.0, 160.0)
    seen = collect(scope, "AutoGoto", "ScopeGoto", "ScopeTrack", "PlateSolve", "View")
    done = asyncio.create_task(
        scope.client.wait_for_event("AutoGoto", lambda e: e.state == "complete", timeout=15)
    )
    await scope.goto_target(ra, dec, name="Test field")
    await done
    progress = [e for e in seen if isinstance(e, ScopeGoto) and e.state == "working"]
    assert progress, "the slew reports progress"
    distances = [e.dist_deg for e in progress if e.dist_deg is not None]
    assert distances[0] > distances[-1], "the distance to the target shrinks"
    assert any(isinstance(e, ScopeTrack) and e.tracking for e in seen)
    where = await scope.get_equatorial()
    assert astro.equatorial_separation_deg(where.ra_hours, where.dec_deg, ra, dec) < 0.05
    assert await scope.get_tracking() is True
    view = await scope.get_view_state()
    assert view["stage"] == "ContinuousExposure" and view["target_name"] == "Test field"
    before = await scope.get_horizontal()
    await asyncio.sleep(1.5)
    after = await scope.get_equatorial()
    assert astro.equatorial_separation_deg(after.ra_hours, after.dec_deg, ra, dec) < 0.05
    moved = await scope.get_horizontal()
    assert (moved.alt_deg, moved.az_deg) != (before.alt_deg, before.az_deg), "alt/az follow the sky"


async def test_goto_while_slewing_is_refused_as_equipment_moving(
    sim: Simulator, scope: SeestarCommands
) -> None:
    sim.telescope.mount.slew_rate_deg_s = 5.0
    await scope.goto(*sky_at(sim, 40.0, 200.0))
    with pytest.raises(CommandError) as err:
        await scope.goto(*sky_at(sim, 60.0, 100.0))
    assert err.value.code == 203
    assert err.value.text == "equipment is moving"
    await scope.stop_goto()


async def test_goto_below_the_horizon_fails_to_operate(
    sim: Simulator, scope: SeestarCommands
) -> None:
    with pytest.raises(CommandError) as err:
        await scope.goto(*sky_at(sim, -20.0, 0.0))
    assert err.value.code == 207


async def test_bad_coordinates_are_refused_before_sending(scope: SeestarCommands) -> None:
    with pytest.raises(ValueError, match="RA"):
        await scope.goto(25.0, 10.0)
    with pytest.raises(ValueError, match="Dec"):
        await scope.goto(1.0, float("nan"))


async def test_sync_moves_the_reported_position(sim: Simulator, scope: SeestarCommands) -> None:
    ra, dec = sky_at(sim, 45.0, 120.0)
    await scope.goto(ra, dec)
    await scope.client.wait_for_event("ScopeGoto", lambda e: e.state == "complete", timeout=10)
    ra2, dec2 = (ra + 0.01) % 24, dec + 0.1
    await scope.sync(ra2, dec2)
    where = await scope.get_equatorial()
    assert astro.equatorial_separation_deg(where.ra_hours, where.dec_deg, ra2, dec2) < 0.02


async def test_speed_move_turns_the_mount_and_stop_halts_it(
    sim: Simulator, scope: SeestarCommands
) -> None:
    await scope.goto(*sky_at(sim, 40.0, 180.0))
    await scope.client.wait_for_event("ScopeGoto", lambda e: e.state == "complete", timeout=10)
    start = await scope.get_horizontal()
    await scope.speed_move(90, 1440, 5)  # up
    await asyncio.sleep(0.5)
    await scope.stop_move()
    stopped = await scope.get_horizontal()
    assert stopped.alt_deg > start.alt_deg + 0.3
    await asyncio.sleep(0.5)
    later = await scope.get_horizontal()
    assert abs(later.alt_deg - stopped.alt_deg) < 0.2, "stop really stops"


async def test_park_ends_closed_with_tracking_off(sim: Simulator, scope: SeestarCommands) -> None:
    await scope.goto(*sky_at(sim, 40.0, 180.0))
    await scope.client.wait_for_event("ScopeGoto", lambda e: e.state == "complete", timeout=10)
    seen = collect(scope, "ScopeHome")
    await scope.park()
    home = await scope.client.wait_for_event("ScopeHome", lambda e: e.terminal, timeout=10)
    assert isinstance(home, ScopeHome) and home.state == "complete" and home.close is True
    assert any(e.state == "working" for e in seen if isinstance(e, ScopeHome))
    assert await scope.get_tracking() is False
    state = await scope.get_device_state(["mount"])
    assert state["mount"]["close"] is True
    with pytest.raises(CommandError):
        await scope.set_tracking(True)


async def test_tracking_can_be_switched(sim: Simulator, scope: SeestarCommands) -> None:
    await scope.goto(*sky_at(sim, 40.0, 180.0))
    await scope.client.wait_for_event("ScopeGoto", lambda e: e.state == "complete", timeout=10)
    await scope.set_tracking(False)
    assert await scope.get_tracking() is False
    await scope.set_tracking(True)
    assert await scope.get_tracking() is True


async def test_focuser_moves_to_an_absolute_position_with_progress(
    scope: SeestarCommands,
) -> None:
    seen = collect(scope, "FocuserMove")
    start = await scope.get_focuser_position()
    target = start - 100
    assert await scope.move_focuser(target) == target
    await scope.client.wait_for_event("FocuserMove", lambda e: e.state == "complete", timeout=5)
    assert await scope.get_focuser_position() == target
    positions = [e.position for e in seen if isinstance(e, FocuserMove) and e.position]
    assert len(positions) > 2 and positions[-1] == target


async def test_autofocus_finds_best_focus(sim: Simulator, scope: SeestarCommands) -> None:
    await scope.start_view(ViewMode.STAR)
    seen = collect(scope, "AutoFocus")
    await scope.start_autofocus()
    done = await scope.client.wait_for_event("AutoFocus", lambda e: e.terminal, timeout=20)
    assert isinstance(done, AutoFocus) and done.state == "complete"
    assert done.result == {"last_point": [sim.telescope.focus_best, 2.1]}
    assert next(e.state for e in seen if isinstance(e, AutoFocus)) == "start"
    assert await scope.get_focuser_position() == sim.telescope.focus_best


async def test_autofocus_can_be_stopped(scope: SeestarCommands) -> None:
    await scope.start_autofocus()
    await asyncio.sleep(0.2)
    ended = asyncio.create_task(
        scope.client.wait_for_event("AutoFocus", lambda e: e.terminal, timeout=5)
    )
    await scope.stop_autofocus()
    done = await ended
    assert done.state == "cancel"


async def test_stacking_counts_frames_and_stops(scope: SeestarCommands) -> None:
    await scope.set_exposure(stack_ms=100)
    await scope.start_view(ViewMode.STAR)
    seen = collect(scope, "Stack")
    await scope.start_stack(restart=True)
    for _ in range(4):
        await scope.client.wait_for_event("Stack", lambda e: e.state == "frame_complete", timeout=5)
    frames = [e for e in seen if isinstance(e, Stack) and e.state == "frame_complete"]
    totals = [(e.stacked_frame or 0) + (e.dropped_frame or 0) for e in frames]
    assert totals == sorted(totals) and totals[-1] >= 4
    view = await scope.get_view_state()
    assert view["stage"] == "Stack" and view["Stack"]["stacked_frame"] >= 1
    await scope.stop_stack()
    await asyncio.sleep(0.1)
    assert (await scope.get_view_state())["stage"] == "ContinuousExposure"


async def test_stacking_needs_a_star_view(scope: SeestarCommands) -> None:
    with pytest.raises(CommandError) as err:
        await scope.start_stack()
    assert err.value.code == 207


async def test_view_modes_start_and_stop(scope: SeestarCommands) -> None:
    await scope.start_view(ViewMode.MOON)
    view = await scope.get_view_state()
    assert view["mode"] == "moon" and view["state"] == "working"
    await scope.stop_view()
    assert (await scope.get_view_state())["state"] == "idle"


async def test_filter_wheel_moves_with_events(scope: SeestarCommands) -> None:
    await scope.set_lp_filter(True)
    done = await scope.client.wait_for_event("WheelMove", lambda e: e.terminal, timeout=5)
    assert isinstance(done, WheelMove) and done.position == 2
    assert await scope.get_filter() == 2
    with pytest.raises(ValueError):
        await scope.set_filter(7)


async def test_camera_settings_persist(scope: SeestarCommands) -> None:
    await scope.set_exposure(stack_ms=20000, continuous_ms=250)
    await scope.set_gain(120)
    await scope.set_dew_heater(True, 40)
    await scope.set_stack_settings(save_discrete_frame=True)
    settings = await scope.get_settings()
    assert settings["exp_ms"] == {"stack_l": 20000, "continuous": 250}
    assert settings["heater_enable"] is True
    gain = await scope.client.call("get_control_value", ["gain"])
    assert gain["value"] == 120
    assert (await scope.get_stack_settings())["save_discrete_frame"] is True
    with pytest.raises(CommandError) as err:
        await scope.client.call("set_control_value", ["gain", 9999])
    assert err.value.code == 103


async def test_time_location_and_disk(sim: Simulator, scope: SeestarCommands) -> None:
    await scope.set_time(datetime(2026, 11, 27, 21, 30, 0, tzinfo=UTC), "Europe/Amsterdam")
    now = await scope.get_time()
    assert (now["year"], now["mon"], now["day"], now["hour"]) == (2026, 11, 27, 21)
    assert now["time_zone"] == "Europe/Amsterdam"
    await scope.set_location(48.2, 16.4)
    state = await scope.get_device_state(["location_lon_lat"])
    assert state["location_lon_lat"] == [16.4, 48.2]
    assert sim.telescope.mount.lat_deg == 48.2
    disk = await scope.get_disk_volume()
    assert 0 < disk.free_mb < disk.total_mb


async def test_device_state_reports_every_section(scope: SeestarCommands) -> None:
    state = await scope.get_device_state()
    for section in ("device", "setting", "camera", "focuser", "mount", "pi_status", "storage"):
        assert section in state
    assert state["camera"]["chip_size"] == [1080, 1920]
    assert state["camera"]["debayer_pattern"] == "GR"


async def test_autogoto_is_cancelled_by_stop(sim: Simulator, scope: SeestarCommands) -> None:
    sim.telescope.mount.slew_rate_deg_s = 5.0
    await scope.goto_target(*sky_at(sim, 50.0, 90.0), name="far away")
    await asyncio.sleep(0.3)
    ended = asyncio.create_task(
        scope.client.wait_for_event("AutoGoto", lambda e: e.terminal, timeout=5)
    )
    await scope.stop_goto()
    done = await ended
    assert isinstance(done, AutoGoto) and done.state == "cancel"


async def test_stacking_with_image_download(sim: Simulator, scope: SeestarCommands) -> None:
    imaging = ImagingClient(sim.host, sim.imaging.port)
    await imaging.connect(5)
    try:
        assert await imaging.get_stacked_img(timeout=5) is None, "no stack yet: an empty ack"
        await scope.set_exposure(stack_ms=100)
        await scope.start_view(ViewMode.STAR)
        await scope.start_stack(restart=True)
        event = await scope.client.wait_for_event(
            "Stack", lambda e: e.state == "frame_complete" and bool(e.stacked_frame), timeout=5
        )
        stacked = await imaging.get_stacked_img(timeout=10)
        assert stacked is not None and stacked.rgb is not None
        assert stacked.rgb.shape == (1920, 1080, 3)
        assert isinstance(event, Stack)
        assert stacked.rgb.max() > 2 * np.median(stacked.rgb), "stars stand out of the sky"
    finally:
        await imaging.close()


async def test_stacked_frames_use_disk_space(scope: SeestarCommands) -> None:
    before = await scope.get_disk_volume()
    await scope.set_exposure(stack_ms=50)
    await scope.start_view(ViewMode.STAR)
    await scope.start_stack(restart=True)
    event = await scope.client.wait_for_event("DiskSpace", timeout=5)
    assert isinstance(event, DiskSpace) and event.used_percent is not None
    assert (await scope.get_disk_volume()).free_mb < before.free_mb


async def test_battery_drains_on_battery_and_charges_on_power() -> None:
    for charging in (False, True):
        async with Simulator(SimulatorConfig.ephemeral(charging=charging)) as sim:
            start = sim.telescope.power.battery
            await asyncio.sleep(0.5)
            state = sim.telescope.device_state(ConnectionInfo())["pi_status"]
            assert (sim.telescope.power.battery > start) is charging
            assert state["charger_status"] == ("Charging" if charging else "Discharging")
