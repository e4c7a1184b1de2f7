"""The simulated mount moves like a mount: slews take time, tracking follows the sky, parks fold."""

from __future__ import annotations

import pytest

from scopelink import astro
from scopelink.simulator.mount import (
    BelowHorizon,
    MotionKind,
    Mount,
    MountBusy,
    MountParked,
    Pointing,
)

LAT, LON = 52.5, 13.4
#: 2024-03-20 22:00 UTC, an evening in Berlin.
T0 = 1710972000.0


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mount(clock: FakeClock) -> Mount:
    return Mount(LAT, LON, clock=clock)


def sky_at(clock: FakeClock, alt_deg: float, az_deg: float) -> astro.Equatorial:
    """The RA/Dec that stands at (alt, az) right now."""
    return astro.horizontal_to_equatorial(
        alt_deg, az_deg, LAT, astro.local_sidereal_hours(clock.now, LON)
    )


def run_until_idle(mount: Mount, clock: FakeClock, step_s: float = 0.25) -> float:
    """Advance the clock until the mount stops; return how long that took."""
    start = clock.now
    while mount.motion is not MotionKind.NONE:
        clock.advance(step_s)
        assert clock.now - start < 600.0, "the mount never stopped"
    return clock.now - start


def open_at(mount: Mount, clock: FakeClock, alt_deg: float, az_deg: float) -> Pointing:
    """GOTO (alt, az), wait for arrival, and return where the mount ended up."""
    mount.goto(*sky_at(clock, alt_deg, az_deg))
    run_until_idle(mount, clock)
    return mount.position()


def test_mount_starts_parked_at_home(mount: Mount) -> None:
    here = mount.position()
    assert mount.parked and not mount.tracking
    assert mount.motion is MotionKind.NONE
    assert (here.alt_deg, here.az_deg) == astro.PARKED
    assert mount.target is None and mount.distance_to_target_deg() is None


def test_goto_reaches_target_and_tracks(mount: Mount, clock: FakeClock) -> None:
    ra, dec = sky_at(clock, 35.0, 120.0)
    mount.goto(ra, dec)
    assert mount.motion is MotionKind.GOTO and not mount.parked and not mount.tracking
    run_until_idle(mount, clock)
    assert mount.tracking
    assert mount.target == (ra, dec)
    start = mount.position()
    assert astro.equatorial_separation_deg(start.ra_hours, start.dec_deg, ra, dec) < 0.01
    for _ in range(30):
        clock.advance(60.0)
        here = mount.position()
        assert (here.ra_hours, here.dec_deg) == pytest.approx((start.ra_hours, start.dec_deg))
        assert mount.distance_to_target_deg() == pytest.approx(0.0, abs=1e-6)
    # Half an hour later the target has climbed and moved round to the south.
    assert here.alt_deg - start.alt_deg > 3.0
    assert here.az_deg - start.az_deg > 3.0


def test_slewing_takes_a_time_proportional_to_distance(mount: Mount, clock: FakeClock) -> None:
    # From the folded arm (alt -90, az 0) the altitude axis has 125° to go, azimuth 100°.
    mount.goto(*sky_at(clock, 35.0, 100.0))
    first = run_until_idle(mount, clock, step_s=0.05)
    assert 125.0 / 4.0 <= first <= 125.0 / 4.0 + 1.5
    # Then 40° in azimuth along the same altitude.
    mount.goto(*sky_at(clock, 35.0, 140.0))
    second = run_until_idle(mount, clock, step_s=0.05)
    assert 40.0 / 4.0 <= second <= 40.0 / 4.0 + 1.5


def test_a_faster_mount_slews_faster(clock: FakeClock) -> None:
    fast = Mount(LAT, LON, clock=clock, slew_rate_deg_s=8.0)
    fast.goto(*sky_at(clock, 35.0, 100.0))
    assert run_until_idle(fast, clock, step_s=0.05) <= 125.0 / 8.0 + 1.5


def test_distance_to_target_shrinks_during_a_slew(mount: Mount, clock: FakeClock) -> None:
    open_at(mount, clock, 35.0, 100.0)
    mount.goto(*sky_at(clock, 50.0, 160.0))
    distances = []
    while mount.motion is MotionKind.GOTO:
        distance = mount.distance_to_target_deg()
        assert distance is not None
        distances.append(distance)
        clock.advance(2.0)
    assert distances == sorted(distances, reverse=True)
    assert mount.distance_to_target_deg() == pytest.approx(0.0, abs=0.01)


def test_goto_while_slewing_raises_mount_busy(mount: Mount, clock: FakeClock) -> None:
    mount.goto(*sky_at(clock, 35.0, 100.0))
    clock.advance(1.0)
    with pytest.raises(MountBusy) as caught:
        mount.goto(*sky_at(clock, 50.0, 200.0))
    assert caught.value.code == 203
    assert mount.motion is MotionKind.GOTO


def test_goto_while_parking_raises_mount_busy(mount: Mount, clock: FakeClock) -> None:
    open_at(mount, clock, 35.0, 100.0)
    mount.park()
    clock.advance(1.0)
    with pytest.raises(MountBusy):
        mount.goto(*sky_at(clock, 50.0, 200.0))


def test_goto_below_the_horizon_is_refused_and_the_mount_stays_put(
    mount: Mount, clock: FakeClock
) -> None:
    with pytest.raises(BelowHorizon) as caught:
        mount.goto(*sky_at(clock, -5.0, 200.0))
    assert caught.value.code == 207
    assert "below the horizon" in caught.value.reason
    assert mount.parked and mount.motion is MotionKind.NONE and mount.target is None


@pytest.mark.parametrize(
    ("angle", "d_alt", "d_az"),
    [(0.0, 0.0, 4.0), (90.0, 4.0, 0.0), (180.0, 0.0, -4.0), (270.0, -4.0, 0.0), (-90.0, -4.0, 0.0)],
)
def test_speed_move_follows_the_firmware_direction_convention(
    mount: Mount, clock: FakeClock, angle: float, d_alt: float, d_az: float
) -> None:
    before = open_at(mount, clock, 40.0, 180.0)
    mount.set_tracking(False)
    mount.speed_move(angle, speed=720, dur_s=2.0)
    assert mount.motion is MotionKind.MOVE
    clock.advance(3.0)
    after = mount.position()
    assert mount.motion is MotionKind.NONE
    # Unix-time rounding alone is a few microdegrees at this speed.
    assert after.alt_deg - before.alt_deg == pytest.approx(d_alt, abs=1e-4)
    assert after.az_deg - before.az_deg == pytest.approx(d_az, abs=1e-4)


def test_speed_is_in_firmware_units_and_clamped_to_the_slew_rate(
    mount: Mount, clock: FakeClock
) -> None:
    before = open_at(mount, clock, 40.0, 180.0)
    mount.set_tracking(False)
    mount.speed_move(0.0, speed=5000, dur_s=1.0)
    clock.advance(1.0)
    assert mount.position().az_deg - before.az_deg == pytest.approx(4.0)


def test_speed_zero_stops_a_manual_move(mount: Mount, clock: FakeClock) -> None:
    before = open_at(mount, clock, 40.0, 180.0)
    mount.set_tracking(False)
    mount.speed_move(90.0, speed=1440, dur_s=10.0)
    clock.advance(1.0)
    mount.speed_move(90.0, speed=0, dur_s=10.0)
    assert mount.motion is MotionKind.NONE
    clock.advance(5.0)
    assert mount.position().alt_deg - before.alt_deg == pytest.approx(4.0)


def test_a_manual_move_while_tracking_keeps_tracking_the_new_spot(
    mount: Mount, clock: FakeClock
) -> None:
    open_at(mount, clock, 40.0, 180.0)
    mount.speed_move(90.0, speed=1440, dur_s=0.5)
    clock.advance(1.0)
    assert mount.tracking and mount.target is None
    moved = mount.position()
    clock.advance(600.0)
    later = mount.position()
    assert (later.ra_hours, later.dec_deg) == (moved.ra_hours, moved.dec_deg)
    assert later.az_deg != pytest.approx(moved.az_deg, abs=1.0)


def test_stop_aborts_a_goto_where_it_is(mount: Mount, clock: FakeClock) -> None:
    mount.goto(*sky_at(clock, 35.0, 100.0))
    clock.advance(5.0)
    mount.stop()
    assert mount.motion is MotionKind.NONE
    assert mount.target is None and not mount.tracking
    stopped = mount.position()
    assert stopped.alt_deg < 0.0  # still on its way up
    clock.advance(60.0)
    here = mount.position()
    # Not tracking: the axes hold still and the sky drifts past.
    assert (here.alt_deg, here.az_deg) == (stopped.alt_deg, stopped.az_deg)


def test_stop_leaves_tracking_as_it_is(mount: Mount, clock: FakeClock) -> None:
    open_at(mount, clock, 40.0, 180.0)
    mount.speed_move(0.0, speed=1440, dur_s=5.0)
    clock.advance(1.0)
    mount.stop()
    assert mount.tracking and mount.motion is MotionKind.NONE


def test_an_idle_mount_without_tracking_holds_alt_az_while_ra_drifts(
    mount: Mount, clock: FakeClock
) -> None:
    open_at(mount, clock, 40.0, 180.0)
    mount.set_tracking(False)
    before = mount.position()
    clock.advance(3600.0)
    after = mount.position()
    assert (after.alt_deg, after.az_deg) == pytest.approx((before.alt_deg, before.az_deg))
    # One solar hour is 1.0027 sidereal hours.
    assert after.ra_hours - before.ra_hours == pytest.approx(1.0027379, abs=1e-5)


def test_park_ends_parked_with_tracking_off(mount: Mount, clock: FakeClock) -> None:
    open_at(mount, clock, 40.0, 180.0)
    mount.park()
    assert mount.motion is MotionKind.PARK
    assert not mount.tracking and not mount.parked
    took = run_until_idle(mount, clock)
    assert took >= 130.0 / 4.0  # 130° of altitude to fold down
    here = mount.position()
    assert mount.parked and not mount.tracking and mount.target is None
    assert (here.alt_deg, here.az_deg) == astro.PARKED
    with pytest.raises(MountParked):
        mount.set_tracking(True)


def test_a_parked_mount_opens_for_a_goto(mount: Mount, clock: FakeClock) -> None:
    open_at(mount, clock, 40.0, 180.0)
    mount.park()
    run_until_idle(mount, clock)
    open_at(mount, clock, 30.0, 90.0)
    assert not mount.parked and mount.tracking


def test_sync_makes_the_current_position_report_the_given_coordinates(
    mount: Mount, clock: FakeClock
) -> None:
    open_at(mount, clock, 40.0, 180.0)
    here = mount.position()
    synced = (here.ra_hours + 0.05, here.dec_deg + 0.3)
    mount.sync(*synced)
    assert (mount.position().ra_hours, mount.position().dec_deg) == pytest.approx(synced)
    clock.advance(600.0)
    # Still tracking, now the synced coordinates.
    assert (mount.position().ra_hours, mount.position().dec_deg) == pytest.approx(synced)
    offset = mount.sync_offset_deg
    assert abs(offset.alt_deg) + abs(offset.az_deg) > 0.1


def test_a_goto_after_sync_lands_on_the_target_in_the_synced_frame(
    mount: Mount, clock: FakeClock
) -> None:
    here = open_at(mount, clock, 40.0, 180.0)
    mount.sync(here.ra_hours + 0.05, here.dec_deg + 0.3)
    target = sky_at(clock, 50.0, 200.0)
    mount.goto(*target)
    run_until_idle(mount, clock)
    there = mount.position()
    assert astro.equatorial_separation_deg(there.ra_hours, there.dec_deg, *target) < 0.01


def test_sync_is_refused_while_moving_or_parked(mount: Mount, clock: FakeClock) -> None:
    with pytest.raises(MountParked):
        mount.sync(1.0, 10.0)
    mount.goto(*sky_at(clock, 35.0, 100.0))
    clock.advance(1.0)
    with pytest.raises(MountBusy):
        mount.sync(1.0, 10.0)


def test_field_rotation_is_about_zero_on_the_meridian(mount: Mount, clock: FakeClock) -> None:
    open_at(mount, clock, 30.0, 180.0)
    assert mount.rotation_deg() == pytest.approx(0.0, abs=0.5)
    clock.advance(3600.0)
    assert mount.rotation_deg() > 5.0  # west of the meridian the field turns the other way


def test_a_clock_stepping_back_leaves_the_mount_where_it_is(mount: Mount, clock: FakeClock) -> None:
    mount.goto(*sky_at(clock, 35.0, 100.0))
    clock.advance(5.0)
    before = mount.position()
    clock.advance(-3.0)
    assert mount.position() == before


def test_invalid_coordinates_are_rejected(mount: Mount) -> None:
    with pytest.raises(ValueError, match="declination"):
        mount.goto(1.0, 91.0)
    with pytest.raises(ValueError, match="finite"):
        mount.speed_move(float("nan"), 100, 1.0)
