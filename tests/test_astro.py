"""Positional astronomy against published values: sidereal time, alt/az, separations."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopelink import astro

#: 1987 April 10, the date of Meeus' worked examples 12.a, 12.b and 13.b.
MEEUS_MIDNIGHT = datetime(1987, 4, 10, tzinfo=UTC).timestamp()
MEEUS_EVENING = datetime(1987, 4, 10, 19, 21, tzinfo=UTC).timestamp()
SECOND_IN_HOURS = 1.0 / 3600.0


def hms(h: float, m: float, s: float) -> float:
    return h + m / 60.0 + s / 3600.0


def test_julian_date_of_the_unix_epoch_and_of_j2000() -> None:
    assert astro.julian_date(0.0) == 2440587.5
    assert astro.julian_date(astro.J2000_UNIX) == astro.J2000_JD


def test_gmst_at_the_j2000_epoch_is_18_697374558_hours() -> None:
    assert astro.gmst_hours_from_jd(astro.J2000_JD) == pytest.approx(18.697374558, abs=1e-9)
    assert astro.gmst_hours(astro.J2000_UNIX) == pytest.approx(18.697374558, abs=1e-9)


@pytest.mark.parametrize(
    ("unix_s", "expected_hours"),
    [
        (MEEUS_MIDNIGHT, hms(13, 10, 46.3668)),  # Meeus example 12.a
        (MEEUS_EVENING, hms(8, 34, 57.0896)),  # Meeus example 12.b
    ],
)
def test_gmst_matches_published_values_within_a_tenth_of_a_second(
    unix_s: float, expected_hours: float
) -> None:
    assert astro.gmst_hours(unix_s) == pytest.approx(expected_hours, abs=0.1 * SECOND_IN_HOURS)
    jd = astro.julian_date(unix_s)
    assert astro.gmst_hours_from_jd(jd) == pytest.approx(expected_hours, abs=SECOND_IN_HOURS)


def test_local_sidereal_time_is_ahead_by_east_longitude() -> None:
    gmst = astro.gmst_hours(MEEUS_EVENING)
    assert astro.local_sidereal_hours(MEEUS_EVENING, 15.0) == pytest.approx(gmst + 1.0)
    assert astro.local_sidereal_hours(MEEUS_EVENING, -135.0) == pytest.approx(
        astro.wrap_hours(gmst - 9.0)
    )


def test_venus_seen_from_washington_matches_meeus_example_13b() -> None:
    lat = 38 + 55 / 60 + 17 / 3600
    lon = -(77 + 3 / 60 + 56 / 3600)
    ra = hms(23, 9, 16.641)
    dec = -(6 + 43 / 60 + 11.61 / 3600)
    lst = astro.local_sidereal_hours(MEEUS_EVENING, lon)
    alt, az = astro.equatorial_to_horizontal(ra, dec, lat, lst)
    assert alt == pytest.approx(15.1249, abs=0.005)
    # Meeus counts azimuth westward from south: 68.0337° there is 248.0337° from north.
    assert az == pytest.approx(248.0337, abs=0.005)


@pytest.mark.parametrize("lat", [10.0, 35.0, 52.5, 70.0])
@pytest.mark.parametrize("hours_later", [0.0, 5.0, 11.0, 17.0])
def test_polaris_stands_at_about_the_observer_latitude(lat: float, hours_later: float) -> None:
    lst = astro.local_sidereal_hours(MEEUS_MIDNIGHT + hours_later * 3600.0, 13.4)
    alt, az = astro.equatorial_to_horizontal(hms(2, 31, 49), 89.264, lat, lst)
    assert abs(alt - lat) < 0.8
    # Due north, give or take its polar distance spread out by the latitude.
    assert min(az, 360.0 - az) < 0.8 / math.cos(math.radians(lat))


def test_star_on_the_meridian_south_of_zenith_is_due_south() -> None:
    lat, dec = 52.5, 20.0
    alt, az = astro.equatorial_to_horizontal(7.0, dec, lat, lst_hours=7.0)
    assert az == pytest.approx(180.0, abs=1e-9)
    assert alt == pytest.approx(90.0 - lat + dec, abs=1e-9)


def test_star_on_the_meridian_north_of_zenith_is_due_north() -> None:
    alt, az = astro.equatorial_to_horizontal(7.0, 70.0, 52.5, lst_hours=7.0)
    assert min(az, 360.0 - az) == pytest.approx(0.0, abs=1e-9)
    assert alt == pytest.approx(90.0 - 70.0 + 52.5, abs=1e-9)


def test_rising_stars_are_in_the_east_and_setting_stars_in_the_west() -> None:
    _, rising = astro.equatorial_to_horizontal(10.0, 0.0, 45.0, lst_hours=7.0)
    _, setting = astro.equatorial_to_horizontal(4.0, 0.0, 45.0, lst_hours=7.0)
    assert 0.0 < rising < 180.0
    assert 180.0 < setting < 360.0


@given(
    ra=st.floats(0.0, 24.0, exclude_max=True),
    dec=st.floats(-89.0, 89.0),
    lat=st.floats(-89.0, 89.0),
    lst=st.floats(0.0, 24.0, exclude_max=True),
)
def test_equatorial_to_horizontal_and_back_is_exact_to_a_microdegree(
    ra: float, dec: float, lat: float, lst: float
) -> None:
    alt, az = astro.equatorial_to_horizontal(ra, dec, lat, lst)
    back = astro.horizontal_to_equatorial(alt, az, lat, lst)
    assert astro.equatorial_separation_deg(ra, dec, *back) < 1e-6
    assert back.dec_deg == pytest.approx(dec, abs=1e-6)


@given(
    alt=st.floats(-90.0, 90.0),
    az=st.floats(0.0, 360.0, exclude_max=True),
    lat=st.floats(-90.0, 90.0),
    lst=st.floats(0.0, 24.0, exclude_max=True),
)
def test_horizontal_to_equatorial_and_back_is_exact_to_a_microdegree(
    alt: float, az: float, lat: float, lst: float
) -> None:
    ra, dec = astro.horizontal_to_equatorial(alt, az, lat, lst)
    back = astro.equatorial_to_horizontal(ra, dec, lat, lst)
    assert astro.angular_separation_deg(az, alt, back.az_deg, back.alt_deg) < 1e-6


def test_angular_separation_of_known_pairs() -> None:
    assert astro.angular_separation_deg(0.0, 0.0, 90.0, 0.0) == pytest.approx(90.0)
    assert astro.angular_separation_deg(10.0, 90.0, 200.0, 0.0) == pytest.approx(90.0)
    assert astro.angular_separation_deg(0.0, 0.0, 180.0, 0.0) == pytest.approx(180.0)
    assert astro.angular_separation_deg(359.0, 0.0, 1.0, 0.0) == pytest.approx(2.0)
    # One arcsecond survives: Vincenty does not lose small angles to rounding.
    assert astro.angular_separation_deg(0.0, 45.0, 0.0, 45.0 + 1 / 3600) == pytest.approx(
        1 / 3600, rel=1e-9
    )
    assert astro.equatorial_separation_deg(1.0, 0.0, 2.0, 0.0) == pytest.approx(15.0)


def test_parallactic_angle_is_zero_on_the_meridian_and_changes_sign_across_it() -> None:
    assert astro.parallactic_angle_deg(7.0, 20.0, 52.5, 7.0) == pytest.approx(0.0, abs=1e-9)
    assert astro.parallactic_angle_deg(7.0, 20.0, 52.5, 5.0) < 0.0  # east of the meridian
    assert astro.parallactic_angle_deg(7.0, 20.0, 52.5, 9.0) > 0.0  # west of it


def test_the_parked_position_is_what_old_clients_read_as_closed() -> None:
    assert astro.PARKED == astro.Horizontal(alt_deg=-90.0, az_deg=0.0)


def test_wrapping_keeps_angles_in_range() -> None:
    assert astro.wrap_hours(-1.0) == 23.0
    assert astro.wrap_hours(-1e-18) == 0.0
    assert astro.wrap_deg(370.0) == pytest.approx(10.0)
    assert astro.wrap_deg_signed(190.0) == pytest.approx(-170.0)
    assert astro.wrap_deg_signed(-180.0) == -180.0
