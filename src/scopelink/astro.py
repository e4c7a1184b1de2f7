"""Positional astronomy for a telescope on the ground: time, sidereal time and sky coordinates.

Owns the conversions between Unix time, Julian date and sidereal time, and between equatorial
(RA in hours, Dec in degrees) and horizontal (altitude and azimuth in degrees) coordinates.
Azimuth is measured from north through east; longitude is east-positive. Accuracy is that of the
mean sidereal time (IAU 1982, about 0.1 s per century); precession, nutation, aberration and
refraction are not modelled, which is well below what a browser client or simulator can notice.
Pure Python, no dependencies.
"""

from __future__ import annotations

import math
from typing import NamedTuple

#: Julian date of the Unix epoch, 1970-01-01T00:00:00 UTC.
UNIX_EPOCH_JD = 2440587.5
#: Julian date of the J2000.0 epoch, 2000-01-01T12:00:00.
J2000_JD = 2451545.0
#: Unix time of J2000.0 (taken as UTC; UT1 − UTC < 0.9 s is ignored).
J2000_UNIX = 946728000.0
SECONDS_PER_DAY = 86400.0
#: Sidereal hours per solar day beyond 24 h, from the IAU 1982 GMST expression.
_GMST_HOURS_PER_DAY = 24.06570982441908


class Equatorial(NamedTuple):
    """A position on the celestial sphere: right ascension in hours, declination in degrees."""

    ra_hours: float
    dec_deg: float


class Horizontal(NamedTuple):
    """A position in the observer's sky: altitude and azimuth (north through east) in degrees."""

    alt_deg: float
    az_deg: float


#: Where a Seestar reports itself when closed: the arm folded down. Old clients treated about
#: `[-90, 0]` from `scope_get_horiz_coord` as the parked position, so the simulator uses it exactly.
PARKED = Horizontal(alt_deg=-90.0, az_deg=0.0)


def wrap_hours(hours: float) -> float:
    """An hour angle or RA folded into [0, 24)."""
    wrapped = hours % 24.0
    # `%` can return 24.0 for tiny negative inputs because of rounding.
    return 0.0 if wrapped >= 24.0 else wrapped


def wrap_deg(deg: float) -> float:
    """An angle folded into [0, 360)."""
    wrapped = deg % 360.0
    return 0.0 if wrapped >= 360.0 else wrapped


def wrap_deg_signed(deg: float) -> float:
    """An angle folded into [-180, 180): the short way round."""
    return wrap_deg(deg + 180.0) - 180.0


def julian_date(unix_s: float) -> float:
    """Julian date (UT) of a Unix time in seconds."""
    return UNIX_EPOCH_JD + unix_s / SECONDS_PER_DAY


def gmst_hours_from_jd(jd: float) -> float:
    """Greenwich mean sidereal time in hours at Julian date `jd` (UT1), IAU 1982."""
    days = jd - J2000_JD
    return _gmst_from_days(days)


def gmst_hours(unix_s: float) -> float:
    """Greenwich mean sidereal time in hours at a Unix time.

    Days since J2000 come straight from the Unix time rather than via the Julian date, which
    keeps about ten times more precision in the fraction of the day.
    """
    return _gmst_from_days((unix_s - J2000_UNIX) / SECONDS_PER_DAY)


def _gmst_from_days(days: float) -> float:
    centuries = days / 36525.0
    hours = (
        18.697374558
        + _GMST_HOURS_PER_DAY * days
        + (0.093104 * centuries**2 - 6.2e-6 * centuries**3) / 3600.0
    )
    return wrap_hours(hours)


def local_sidereal_hours(unix_s: float, lon_deg: float) -> float:
    """Local mean sidereal time in hours for an observer at east-positive longitude `lon_deg`."""
    return wrap_hours(gmst_hours(unix_s) + lon_deg / 15.0)


def equatorial_to_horizontal(
    ra_hours: float, dec_deg: float, lat_deg: float, lst_hours: float
) -> Horizontal:
    """Altitude and azimuth of (RA, Dec) for an observer at `lat_deg` at local sidereal time.

    Uses atan2 for both angles, so precision holds at the zenith and the horizon alike.
    """
    ha = math.radians((lst_hours - ra_hours) * 15.0)
    dec = math.radians(dec_deg)
    lat = math.radians(lat_deg)
    sin_dec, cos_dec = math.sin(dec), math.cos(dec)
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    up = sin_lat * sin_dec + cos_lat * cos_dec * math.cos(ha)
    east = -cos_dec * math.sin(ha)
    north = cos_lat * sin_dec - sin_lat * cos_dec * math.cos(ha)
    alt = math.degrees(math.atan2(up, math.hypot(east, north)))
    az = wrap_deg(math.degrees(math.atan2(east, north)))
    return Horizontal(alt, az)


def horizontal_to_equatorial(
    alt_deg: float, az_deg: float, lat_deg: float, lst_hours: float
) -> Equatorial:
    """RA and Dec of (alt, az) for an observer at `lat_deg` at local sidereal time."""
    alt = math.radians(alt_deg)
    az = math.radians(az_deg)
    lat = math.radians(lat_deg)
    sin_alt, cos_alt = math.sin(alt), math.cos(alt)
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    # The rotation between the two frames is its own inverse up to the sign of the east axis.
    z = sin_lat * sin_alt + cos_lat * cos_alt * math.cos(az)
    y = -cos_alt * math.sin(az)
    x = cos_lat * sin_alt - sin_lat * cos_alt * math.cos(az)
    dec = math.degrees(math.atan2(z, math.hypot(x, y)))
    ha_hours = math.degrees(math.atan2(y, x)) / 15.0
    return Equatorial(wrap_hours(lst_hours - ha_hours), dec)


def angular_separation_deg(
    lon1_deg: float, lat1_deg: float, lon2_deg: float, lat2_deg: float
) -> float:
    """Great-circle distance in degrees between two points given as (longitude, latitude).

    Works for any spherical pair: (az, alt), or (RA × 15, Dec). Vincenty's formula, which is
    well-conditioned for tiny and antipodal separations alike.
    """
    dlon = math.radians(lon2_deg - lon1_deg)
    lat1 = math.radians(lat1_deg)
    lat2 = math.radians(lat2_deg)
    sin_lat1, cos_lat1 = math.sin(lat1), math.cos(lat1)
    sin_lat2, cos_lat2 = math.sin(lat2), math.cos(lat2)
    num = math.hypot(
        cos_lat2 * math.sin(dlon), cos_lat1 * sin_lat2 - sin_lat1 * cos_lat2 * math.cos(dlon)
    )
    den = sin_lat1 * sin_lat2 + cos_lat1 * cos_lat2 * math.cos(dlon)
    return math.degrees(math.atan2(num, den))


def equatorial_separation_deg(
    ra1_hours: float, dec1_deg: float, ra2_hours: float, dec2_deg: float
) -> float:
    """Great-circle distance in degrees between two equatorial positions."""
    return angular_separation_deg(ra1_hours * 15.0, dec1_deg, ra2_hours * 15.0, dec2_deg)


def parallactic_angle_deg(
    ra_hours: float, dec_deg: float, lat_deg: float, lst_hours: float
) -> float:
    """Parallactic angle in degrees, in (-180, 180]: how far north on the sky is turned from
    straight up in an alt-az field. It is the field rotation an alt-az mount sees; negative
    east of the meridian, zero on it, positive west of it.
    """
    ha = math.radians((lst_hours - ra_hours) * 15.0)
    dec = math.radians(dec_deg)
    lat = math.radians(lat_deg)
    return math.degrees(
        math.atan2(
            math.sin(ha) * math.cos(lat),
            math.sin(lat) * math.cos(dec) - math.cos(lat) * math.sin(dec) * math.cos(ha),
        )
    )
